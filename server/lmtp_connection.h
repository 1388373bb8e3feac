// LmtpConnection: the LMTP connection driver. It owns one lmtp::LmtpSession and turns its
// actions into io_uring operations on its shard's ring and jobs on the I/O offload pool:
//   input            multishot receive into the shard's LMTP buffer ring, fed to the session
//                    (paused while !WantsInput());
//   kWrite           appended to one output string, sent by one Sender at a time;
//   kCheckRecipient  MailStore::GetUsage off the reactor: unknown 550 5.1.1, disabled
//                    550 5.2.1, declared SIZE over the mailbox's limit 552 5.3.4, over quota
//                    452 4.2.2 / 552 5.2.2 (--lmtp_over_quota);
//   kDeliver         one MailStore::Deliver job per distinct recipient mailbox, all reading the
//                    session's one message buffer (never re-read from the client, never
//                    copied per recipient); the jobs run concurrently, so their fdatasyncs are
//                    shared by the store's group commit. The session's replies go out only when
//                    every copy has come back, each 250 meaning that copy is durable;
//   kClose           flush, then close.
// An idle timer (--lmtp_idle_timeout_s since the last input) answers 421 and closes; a peer
// that takes none of our replies for --send_stall_timeout_s (SendStallWatch, as for POP3) is
// aborted.
//
// Threading: everything on the owning shard's thread. Offloaded results find the connection by
// id (LmtpShard::Find). A connection with a check or a copy in flight is never destroyed (the
// jobs read the session's buffers), so results always find it.
// Ownership: owned by LmtpShard::connections; owns its socket fd and its session.
#ifndef POSTHASTE_SERVER_LMTP_CONNECTION_H_
#define POSTHASTE_SERVER_LMTP_CONNECTION_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/lmtp/session.h"
#include "server/reactor/net.h"
#include "server/reactor/send.h"
#include "server/reactor/timer.h"
#include "server/transport/tcp_progress.h"
#include "storage/mail_store.h"

namespace posthaste::server {

struct LmtpShard;

// RCPT verdict from the store's view of the recipient (MailStore::GetUsage).
lmtp::LmtpRecipientVerdict RecipientVerdict(const absl::StatusOr<storage::AccountUsage>& usage,
                                            std::optional<uint64_t> declared_size,
                                            bool over_quota_permanent);
// Per-copy outcome from MailStore::Deliver's status.
lmtp::LmtpDeliveryResult DeliveryOutcome(const absl::Status& status, bool over_quota_permanent);

class LmtpConnection {
 public:
  LmtpConnection(LmtpShard& ctx, uint64_t id, int fd);
  ~LmtpConnection();
  LmtpConnection(const LmtpConnection&) = delete;
  LmtpConnection& operator=(const LmtpConnection&) = delete;

  void Start();
  // Sends `reply` (a full line) and closes. Before Start only.
  void Reject(std::string_view reply);
  // Ends the connection now (shutdown). Copies in flight still complete.
  void Abort();
  // SIGTERM drain: closes with 421 as soon as no transaction is open (at once when idle).
  void Drain();

  // Results coming back from the I/O offload pool.
  void OnRecipientChecked(lmtp::LmtpRecipientVerdict verdict);
  void OnCopyStored(size_t index, lmtp::LmtpDeliveryResult result);

 private:
  void Drive();
  void Handle(const lmtp::LmtpAction& action);
  void StartCheck(std::string_view recipient, std::optional<uint64_t> declared_size);
  void StartDelivery(const lmtp::LmtpDelivery& delivery);
  void Enqueue(std::string_view bytes);
  void Flush();

  void OnData(uint16_t buffer_id, std::span<const char> data);
  void OnReceiveEnd(absl::Status status);
  void OnSendDone(absl::Status status, uint64_t bytes);
  void OnTimer();
  void ArmTimer();

  bool ResultPending() const { return check_pending_ || copies_pending_ > 0; }
  void BeginClose(bool abort);
  void MaybeFinish();

  LmtpShard& ctx_;
  const uint64_t id_;
  int fd_;
  std::unique_ptr<lmtp::LmtpSession> session_;
  reactor::Receiver receiver_;
  reactor::Sender sender_;
  reactor::Timer timer_;
  transport::SendStallWatch send_stall_;

  std::string out_;       // replies not yet handed to the Sender
  std::string inflight_;  // the bytes the Sender is sending
  bool taken_unflushed_ = false;

  bool check_pending_ = false;
  size_t copies_pending_ = 0;
  std::vector<lmtp::LmtpDeliveryResult> results_;

  bool started_ = false;
  bool recv_paused_ = false;
  bool peer_eof_ = false;
  bool close_after_flush_ = false;
  bool closing_ = false;
  bool draining_ = false;
  bool fd_closed_ = false;
  bool finished_ = false;
  uint64_t last_input_ns_ = 0;
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_LMTP_CONNECTION_H_
