// Pop3Connection: the connection driver. It owns one Pop3Session and turns its actions into
// io_uring operations on its shard's ring:
//   input   a multishot receive into the shard's provided buffer ring; each chunk is fed to
//           the session and its buffer released at once (paused while !WantsInput());
//   kWrite  copied into an ordered output queue, sent by one Sender (plain send);
//   kStreamMessage  a FileStreamer over the store's {fd, offset, length}: splice or SEND_ZC
//           (by size, see ServeOptions::copy_below_bytes/send_zc_min_bytes) - by default
//           splice for every size, so the body never passes through
//           user memory; for TOP the end offset is found off the reactor; then ".\r\n";
//   kAuthenticate / kOpenMaildrop / kCommit  run off the reactor, AuthService (hashing) on
//           the CPU offload pool, MailStore::OpenMailbox and CommitDeletions (disk, fdatasync)
//           on the I/O pool, and come back as messages; the maildrop
//           lock is asked of the user's owner shard first (MaildropRegistry);
//   kDelay  a ring timer; kClose  flush, then close.
// Only one send or stream is in flight at a time, so a slow reader holds back the session
// (the socket's send buffer is the back-pressure) and memory stays bounded.
// Timeouts run on one ring timer per connection: AUTHORIZATION (since connect), TRANSACTION
// idle (since the last input), and a send stall (SendStallWatch: from the first send until
// the kernel holds nothing unacknowledged, the socket's TCP_INFO is sampled at a bounded
// interval; no byte acknowledged by the peer for send_stall_timeout_s aborts the connection).
//
// TLS (implicit on the pop3s listener, or after STLS): a TlsEngine sits between the socket
// operations and the session. Received ciphertext goes into the engine and its plaintext to
// Feed(); replies are sealed by the engine and the ciphertext sent by the same Sender; a
// RETR/TOP body is mapped (mmap of the stored range) and sealed straight from that memory in
// record-sized pieces, at most TlsEngine::kCiphertextOutMax ahead of the socket, so no
// plaintext copy is made. After the handshake the keys go to the kernel when it has kTLS
// (then the connection runs as a plain one, splice and all); otherwise the engine stays.
// A handshake, record or certificate error closes this connection only (alert, log, counter).
// STLS: replies taken before the kStartTls action still go out in plaintext; ciphertext that
// arrives meanwhile already goes to the engine.
//
// Threading: everything on the owning shard's thread. Cross-shard and offloaded results name
// the connection by id and find it through ShardContext::Find, so a result for a connection
// that has gone is dropped (and any lock it was granted is released).
// Ownership: owned by ShardContext::connections; it owns its socket fd. It is destroyed only
// after every ring operation on it has completed (Finished()).
#ifndef POSTHASTE_SERVER_POP3_CONNECTION_H_
#define POSTHASTE_SERVER_POP3_CONNECTION_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/auth_service.h"
#include "server/pop3_service/maildrop_locks.h"
#include "server/pop3/session.h"
#include "server/reactor/net.h"
#include "server/reactor/send.h"
#include "server/reactor/timer.h"
#include "server/session_recorder.h"
#include "server/storage_adapter.h"
#include "server/transport/tcp_progress.h"
#include "tls/tls_engine.h"

namespace posthaste::server {

struct ShardContext;

struct PeerInfo {
  std::string ip;  // text form, the key of the per-IP limits
  uint8_t addr16[16] = {};
  bool loopback = false;
  bool trusted = false;  // in --trusted_networks: exempt from per-IP limits
};

class Pop3Connection {
 public:
  // `implicit_tls`: accepted on the pop3s listener (TLS from the first byte).
  Pop3Connection(ShardContext& ctx, uint64_t id, int fd, PeerInfo peer, bool implicit_tls);
  ~Pop3Connection();
  Pop3Connection(const Pop3Connection&) = delete;
  Pop3Connection& operator=(const Pop3Connection&) = delete;

  uint64_t id() const { return id_; }
  ConnectionRef ref() const;

  // Checks the per-IP limit (owner shard), then greets and starts receiving.
  void Start();
  // Sends the session's reply for `refusal`, then closes. Before Start only.
  void Reject(pop3::Pop3Refusal refusal);
  // Ends the connection now without committing (drain timeout, shutdown, takeover).
  void Abort();
  // Takeover check: in TRANSACTION, nothing pending or being sent, no input for `idle_ns`.
  bool IdleInTransactionFor(uint64_t idle_ns) const;

  // Results coming back to this shard.
  void OnAdmitted(bool ok);
  void OnAuthVerdict(const AuthVerdict& verdict);
  void OnLockResult(MaildropRegistry::Outcome outcome);
  void OnMaildropLoaded(absl::StatusOr<OpenMaildrop> maildrop);
  void OnCommitDone(absl::Status status);
  // Computes TOP's byte length off the reactor; false (connection closing) if the pool refused.
  bool StartTopLength(uint64_t index, uint64_t body_lines);
  void OnTopLength(absl::StatusOr<uint64_t> length);

 private:
  struct OutItem {
    bool stream = false;
    std::string bytes;  // !stream
    pop3::MessageIndex message;
    std::optional<uint64_t> top_body_lines;
  };

  void Drive();
  void Handle(const pop3::Pop3Action& action);
  void StartAuthenticate(const pop3::Pop3Credentials& credentials);
  void StartOpenMaildrop(std::string_view user);
  void StartCommit(std::span<const pop3::MessageIndex> deletions);
  void Enqueue(std::string_view bytes);
  void Flush();
  void StartStream(uint64_t length);
  bool SendBusy() const;
  bool SocketSendBusy() const;
  void WatchSendStall();

  void OnData(uint16_t buffer_id, std::span<const char> data);
  void OnReceiveEnd(absl::Status status);
  void OnSendDone(absl::Status status, uint64_t bytes);
  void OnStreamDone(absl::Status status, uint64_t bytes);
  void OnTimer();
  void OnDelayOver();
  void ArmTimer();
  void TimeOut(pop3::Pop3Timeout timeout);
  // Queues the session's last reply (after Refuse/OnTimeout) and marks close-after-flush.
  void TakeFinalReply();

  // TLS.
  bool TlsEngineActive() const { return tls_ != nullptr && !tls_plain_flush_; }
  bool TlsHandshaking() const { return tls_ != nullptr && !tls_->HandshakeDone(); }
  bool OutputIdle() const;
  void TlsOnCiphertext(std::span<const char> data);
  void TlsOnHandshakeDone(bool input_pending);
  void TlsFlush();
  bool TlsStartStream(const storage::MessageRef& ref, uint64_t length);
  void TlsEndStream();
  void TlsFail(std::string_view stage);

  void BeginClose(bool abort);
  void MaybeFinish();
  void ReleaseRegistrations();

  ShardContext& ctx_;
  const uint64_t id_;
  int fd_;
  const PeerInfo peer_;
  SessionRecorder recorder_;  // metrics and the summary log line; before session_ (observer)
  std::unique_ptr<pop3::Pop3Session> session_;
  reactor::Receiver receiver_;
  reactor::Sender sender_;
  std::unique_ptr<reactor::FileStreamer> streamer_;
  reactor::Timer timer_;
  reactor::Timer delay_timer_;

  // Usually 0-3 items; a vector (unlike std::deque) allocates nothing while empty.
  std::vector<OutItem> out_;
  std::string inflight_;          // the bytes the Sender is sending
  bool stream_active_ = false;    // streamer running, or a TOP length being computed
  bool taken_unflushed_ = false;  // session output taken since the last OnOutputFlushed

  bool admitted_ = false;
  bool admission_pending_ = false;
  bool ip_counted_ = false;
  bool recv_paused_ = false;
  bool peer_eof_ = false;
  bool close_after_flush_ = false;
  bool closing_ = false;
  bool fd_closed_ = false;
  bool finished_ = false;

  // Maildrop lock: requested for lock_user_ at the owner shard.
  std::string lock_user_;
  bool lock_request_pending_ = false;
  bool commit_in_flight_ = false;  // QUIT's commit runs; the lock is released after it
  OpenMaildrop maildrop_;

  // TLS: null on a plain connection (and after a kernel TLS hand-off, then tls_kernel_).
  std::unique_ptr<TlsEngine> tls_;
  const bool implicit_tls_;
  bool tls_plain_flush_ = false;  // STLS: earlier replies still go out in plaintext
  bool tls_handshake_seen_ = false;
  bool tls_kernel_ = false;
  bool tls_failed_ = false;
  bool tls_close_notify_ = false;
  std::string tls_plain_;  // plaintext just read from the engine, fed to the session
  // The body being sealed from its mapping (stream_active_ is true while it lasts).
  struct TlsBodyStream {
    void* map = nullptr;
    size_t map_len = 0;
    const uint8_t* data = nullptr;
    uint64_t length = 0;
    uint64_t done = 0;
  };
  TlsBodyStream tls_stream_;
  bool tls_stream_active_ = false;

  uint64_t connected_ns_ = 0;
  uint64_t last_input_ns_ = 0;
  transport::SendStallWatch send_stall_;
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_POP3_CONNECTION_H_
