// LmtpAdapter: one LMTP connection: an lmtp::LmtpSession between a transport::Transport (the
// bytes) and an LmtpBackend (recipient checks and stored copies). It holds no transport logic
// and writes no reply of its own: the session decides every reply and every close, the
// transport moves the bytes, the adapter only carries the session's actions across:
//   kWrite           Transport::Send (one Flush per batch of actions);
//   kCheckRecipient  LmtpBackend::StartCheck;
//   kDeliver         one LmtpBackend::StartCopy per distinct recipient mailbox, all reading the
//                    session's one message buffer and running concurrently; the session
//                    replies (250 only for durable copies) once every copy is back;
//   kClose           Transport::Close (queued replies go out first).
// Events the adapter notices go to the session too: the idle deadline (OnIdleTimeout), a
// SIGTERM drain (OnShutdown: 421 between transactions), a connection over the shard's limit
// (OnOverCapacity). Receiving pauses while the session wants no input.
//
// Lifetime: a connection with a recipient check or a copy in flight is never finished (the
// copies read the session's buffer): `on_finished` runs once, after the transport's OnClosed
// and after every backend result, and only then may the owner destroy the adapter.
//
// Threading: the shard's thread. Every entry point (the Transport and backend callbacks,
// Start, Drain, Abort) is a separate event; none is called from inside another.
// Ownership: the shard's connection table owns the adapter; the adapter owns its session and
// its transport. `backend`, `stats` and `metrics` outlive it.
#ifndef POSTHASTE_SERVER_LMTP_SERVICE_LMTP_ADAPTER_H_
#define POSTHASTE_SERVER_LMTP_SERVICE_LMTP_ADAPTER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "metrics/shard_metrics.h"
#include "server/lmtp/session.h"
#include "server/lmtp_service/lmtp_backend.h"
#include "server/lmtp_service/lmtp_counters.h"
#include "server/transport/transport.h"

namespace posthaste::server {

struct LmtpAdapterOptions {
  lmtp::LmtpSessionOptions session;
  // No input for this long (and no result pending): 421 4.4.2 and close
  // (--lmtp_idle_timeout_s; RFC 5321 section 4.5.3.2.7).
  uint64_t idle_timeout_ns = 300'000'000'000;
};

class LmtpAdapter final : public transport::TransportClient, public LmtpBackendClient {
 public:
  LmtpAdapter(LmtpAdapterOptions options, std::unique_ptr<transport::Transport> transport,
              LmtpBackend& backend, LmtpStats& stats, metrics::ShardMetrics& metrics,
              absl::AnyInvocable<void()> on_finished);
  ~LmtpAdapter() override;
  LmtpAdapter(const LmtpAdapter&) = delete;
  LmtpAdapter& operator=(const LmtpAdapter&) = delete;

  // Starts the transport and greets (Start), or refuses with the session's 421 when the shard
  // is at its connection limit (StartOverCapacity). Call one of them, once.
  void Start();
  void StartOverCapacity();
  // SIGTERM drain: the session answers 421 and closes between transactions.
  void Drain();
  // Shutdown: ends the connection now (RST). Backend results still come back before
  // on_finished.
  void Abort();

  // ---- transport::TransportClient ----
  void OnReceive(std::string_view bytes) override;
  void OnPeerFinished() override;
  void OnOutputDrained() override;
  void OnTlsStarted(const transport::TlsSessionInfo& info) override {}  // LMTP has no TLS
  void OnDeadline() override;
  void OnClosed(transport::CloseReason reason) override;

  // ---- LmtpBackendClient ----
  void OnRecipientChecked(lmtp::LmtpRecipientVerdict verdict) override;
  void OnCopyStored(size_t index, lmtp::LmtpDeliveryResult result) override;

  const lmtp::LmtpSession& session() const { return session_; }
  bool ResultPending() const { return check_pending_ || copies_pending_ > 0; }

 private:
  enum class Phase : uint8_t {
    kNew,       // before Start
    kOpen,      // exchanging commands
    kClosing,   // Close() or Abort() asked of the transport; OnClosed not yet come
    kClosed,    // the transport is done; waiting for backend results
    kFinished,  // on_finished has run
  };

  // Carries out the session's actions, flushes once, then closes or adjusts receiving.
  void Drive();
  void StartCheck(const lmtp::LmtpAction& action);
  void StartDelivery(const lmtp::LmtpDelivery& delivery);
  // After a backend result: drive the session on, or finish once closed.
  void AfterResult();
  void BeginClose(bool abort);
  void MaybeFinish();

  const uint64_t idle_timeout_ns_;
  lmtp::LmtpSession session_;
  std::unique_ptr<transport::Transport> transport_;
  LmtpBackend& backend_;
  LmtpStats& stats_;
  metrics::ShardMetrics& metrics_;
  absl::AnyInvocable<void()> on_finished_;

  Phase phase_ = Phase::kNew;
  bool driving_ = false;  // inside Drive(): asserts it is never re-entered
  bool receive_paused_ = false;
  bool peer_finished_ = false;
  uint64_t last_input_ns_ = 0;  // the idle clock: last input, or last backend result

  bool check_pending_ = false;
  size_t copies_pending_ = 0;
  std::vector<lmtp::LmtpDeliveryResult> results_;  // by recipient index
  std::vector<bool> copy_returned_;                // by recipient index
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_LMTP_SERVICE_LMTP_ADAPTER_H_
