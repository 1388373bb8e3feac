// Pop3Adapter: one POP3 connection, between a sans-I/O Pop3Session and a Transport. It carries
// out the session's actions and holds no transport logic of its own:
//   kWrite          Transport::Send
//   kCheckMessage   the backend checks the stored bytes against their CRC32C on its I/O pool
//                   (Pop3Backend::CheckMessage); the session writes RETR's or TOP's status
//                   line only once OnMessageChecked has told it the result
//   kStreamMessage  the stored message's FileRange (looked up once) by SendFile, then ".\r\n";
//                   for TOP the length comes from the backend first, and no later action is
//                   taken until it has, so replies keep their order
//   kStartTls       Transport::StartTls (the "+OK" queued before it goes out in plaintext)
//   kDelay          no further action until the time has passed (the transport's deadline)
//   kClose          Transport::Close (queued replies go out first)
//   kAuthenticate, kOpenMaildrop, kCommit   the Pop3Backend, whose answers come back through
//                   OnAuthenticated, OnMaildropOpened, OnCommitted
// Actions are taken in batches and the transport is flushed once per batch. The session is
// told its output is flushed when the transport has taken everything (OnOutputDrained).
// Receiving pauses while the session wants no input (pipelining back-pressure).
//
// Clocks (one transport deadline): AUTHORIZATION, and a TLS handshake, may last
// auth_timeout_ns from connect; TRANSACTION may be idle idle_timeout_ns since the last input.
// A timeout is answered by the session (Pop3Session::OnTimeout) unless the peer is not even
// reading what is queued, or a handshake is unfinished: then the connection is aborted.
//
// Threading: one shard thread. All entry points are callbacks (transport, backend answers,
// the shard's Start/Refuse/Abort), none re-entered: Drive() runs only from them.
// Ownership: the shard's connection table owns the adapter; the adapter owns its session and
// its transport; the backend must outlive it. It is freed only after Pop3Backend::Finished.
#ifndef POSTHASTE_SERVER_POP3_SERVICE_POP3_ADAPTER_H_
#define POSTHASTE_SERVER_POP3_SERVICE_POP3_ADAPTER_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "metrics/shard_metrics.h"
#include "metrics/tenant_series.h"
#include "server/pop3/session.h"
#include "server/pop3_service/pop3_backend.h"
#include "server/pop3_service/session_recorder.h"
#include "server/transport/transport.h"

namespace posthaste::server::pop3_service {

struct Pop3AdapterOptions {
  // The session's options; command_observer is set by the adapter (its SessionRecorder).
  pop3::Pop3SessionOptions session;
  bool implicit_tls = false;     // accepted on the pop3s listener
  uint64_t auth_timeout_ns = 0;  // AUTHORIZATION (and a TLS handshake), from connect
  uint64_t idle_timeout_ns = 0;  // TRANSACTION, from the last input
  // Metrics: the shard's block and its tenant series (must outlive the adapter).
  metrics::ShardMetrics* metrics = nullptr;
  metrics::ShardTenantSeries* tenant_series = nullptr;
  bool count_sessions = true;  // --metrics_sessions
  RedownloadAlarmOptions redownload_alarm;
  uint32_t shard = 0;          // for the session id in logs
};

class Pop3Adapter final : public transport::TransportClient {
 public:
  Pop3Adapter(uint64_t id, std::unique_ptr<transport::Transport> transport, Pop3Backend& backend,
              Pop3AdapterOptions options);
  ~Pop3Adapter() override;
  Pop3Adapter(const Pop3Adapter&) = delete;
  Pop3Adapter& operator=(const Pop3Adapter&) = delete;

  uint64_t id() const { return id_; }

  // Starts the transport and asks for admission; greets once admitted. Call one of Start and
  // Refuse, once.
  void Start();
  // Starts the transport, sends the session's refusal and closes (pop3s: just closes, as no
  // plaintext can be sent before a handshake).
  void Refuse(pop3::Pop3Refusal refusal);
  // Ends the connection now, committing nothing (shutdown, drain timeout, takeover).
  void Abort();
  // For a takeover: in TRANSACTION, nothing pending or being sent, no input for `idle_ns`.
  bool IdleInTransactionFor(uint64_t idle_ns) const;

  // Backend answers (see Pop3Backend). Ignored once the connection is closing.
  void OnAdmitted(std::optional<pop3::Pop3Refusal> refusal);
  void OnAuthenticated(const pop3::Pop3AuthResult& result);
  void OnMaildropOpened(Pop3MaildropOpened opened);
  void OnMessageChecked(absl::Status status);
  void OnTopLength(absl::StatusOr<uint64_t> length);
  void OnCommitted(absl::Status status);
  // A line of the session's log (its id, client and tenant, then `fields`) for what the
  // backend audits: a master user logging in as another user.
  void LogForBackend(LogLevel level, std::string_view message,
                     std::initializer_list<LogField> fields) {
    recorder_.Log(level, message, fields);
  }

  // transport::TransportClient.
  void OnReceive(std::string_view bytes) override;
  void OnPeerFinished() override;
  void OnOutputDrained() override;
  void OnTlsStarted(const transport::TlsSessionInfo& info) override;
  void OnDeadline() override;
  void OnClosed(transport::CloseReason reason) override;

  const pop3::Pop3Session& session() const { return session_; }
  // When AUTHORIZATION runs out for this connection (auth_timeout_ns after connect, on the
  // transport's clock: MonotonicNowNs on a shard). A login check that starts later is wasted.
  uint64_t LoginDeadlineNs() const { return connected_ns_ + auth_timeout_ns_; }

  // What the admin API's live-session list shows of this connection besides the session
  // (server/live_sessions.h).
  struct AdminView {
    std::string_view client_ip;  // the client's (a proxy's PROXY header or XCLIENT named it)
    uint64_t age_ns = 0;         // since accepted
    uint64_t bytes_sent = 0;     // replies and message bytes the socket took
    bool closing = false;        // Close or Abort asked
  };
  AdminView ViewForAdmin() const {
    const transport::TransportTotals& totals = transport_->totals();
    return {.client_ip = recorder_.client_ip(),
            .age_ns = transport_->NowNs() - connected_ns_,
            .bytes_sent = totals.reply_bytes_sent + totals.file_bytes_sent,
            .closing = phase_ == Phase::kClosing || phase_ == Phase::kClosed};
  }

 private:
  enum class Phase : uint8_t {
    kAdmitting,  // waiting for admission; nothing sent, nothing read
    kOpen,       // the session's actions are carried out
    kClosing,    // Close/Abort asked; waiting for OnClosed
    kClosed,     // OnClosed came: no more callbacks
  };
  // What holds back the next session action.
  enum class Hold : uint8_t {
    kNone,
    kDelay,      // a kDelay runs until delay_until_ns_
    kTopLength,  // a TOP body waits for its length from the backend
  };

  void Drive();
  // Restarts the idle clock when the session has parsed a command line since the last call.
  void NoteCommandLines();
  // Takes actions until none is left or one holds the rest back.
  void TakeActions();
  void Handle(const pop3::Pop3Action& action);
  void StartStream(const pop3::Pop3Action& action);
  void NoteRetrieved(pop3::MessageIndex message);
  std::vector<pop3::MessageIndex> RetrievedMessages() const;
  void StartTls();
  void TimeOut(pop3::Pop3Timeout timeout);
  void ArmDeadline();
  void BeginClose(bool abort);

  // Only what is read after construction is kept of Pop3AdapterOptions: the session and the
  // recorder take the rest, so an idle connection holds no second copy of the session's
  // options (docs/BENCHMARKS.md, memory per idle session).
  const uint64_t id_;
  std::unique_ptr<transport::Transport> transport_;
  Pop3Backend& backend_;
  metrics::ShardMetrics* const metrics_;
  const uint64_t auth_timeout_ns_;
  uint64_t idle_timeout_ns_;  // the server's, or the user's tenant's once logged in
  SessionRecorder recorder_;  // before session_: the session's command observer
  pop3::Pop3Session session_;
  std::shared_ptr<const Pop3Maildrop> maildrop_;  // in TRANSACTION
  // Messages sent whole (RETR), by index: recorded as retrieved at the commit (EXPIRE n).
  std::vector<bool> retrieved_;

  Phase phase_ = Phase::kAdmitting;
  Hold hold_ = Hold::kNone;
  Pop3EndCause end_cause_ = Pop3EndCause::kOther;  // told to the backend in Finished
  const bool implicit_tls_;
  bool driving_ = false;          // inside Drive (asserts it is never re-entered)
  bool unflushed_ = false;        // Send/SendFile since the last Flush
  bool taken_unflushed_ = false;  // session output taken since the last OnOutputFlushed
  bool receive_paused_ = false;
  bool peer_finished_ = false;
  bool handshaking_ = false;       // a TLS handshake (implicit or STLS) has not finished
  bool has_tls_exporter_ = false;  // TLS 1.3: tls_exporter_ holds the RFC 9266 binding
  std::array<char, 32> tls_exporter_{};
  std::string client_certificate_identity_;  // a verified TLS client certificate's (EXTERNAL)
  transport::FileRange top_range_;  // Hold::kTopLength: the message, its length to come
  pop3::MessageIndex top_message_{0};
  uint64_t top_message_octets_ = 0;  // Hold::kTopLength: the session's size of that message
  pop3::MessageIndex checking_message_{0};  // the kCheckMessage the backend answers next
  uint64_t delay_until_ns_ = 0;
  uint64_t connected_ns_ = 0;
  uint64_t last_input_ns_ = 0;  // when the last whole command line was parsed
  uint64_t commands_seen_ = 0;  // session_.counters().commands at that time
  uint64_t deadline_ns_ = 0;  // what the transport's deadline is set to (0: none)
};

}  // namespace posthaste::server::pop3_service

#endif  // POSTHASTE_SERVER_POP3_SERVICE_POP3_ADAPTER_H_
