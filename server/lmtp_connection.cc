#include "server/lmtp_connection.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "base/check.h"
#include "base/log.h"
#include "base/strings.h"
#include "server/lmtp_server.h"
#include "server/session_recorder.h"

namespace posthaste::server {
namespace {

using lmtp::LmtpActionKind;
using transport::ReadTcpSendProgress;
using transport::TcpSendProgress;
using lmtp::LmtpDeliveryResult;
using lmtp::LmtpRecipientVerdict;
using reactor::MonotonicNowNs;

constexpr uint64_t kNsPerSecond = 1'000'000'000;

lmtp::LmtpSessionOptions SessionOptions(const ServerContext& server) {
  lmtp::LmtpSessionOptions o;
  o.hostname = server.options.hostname;
  // The session's limit bounds memory; each tenant's (usually smaller) limit is applied per
  // recipient by the store. Stored sizes are 32-bit.
  o.message_bytes_max = std::min<uint64_t>(server.store->options().message_bytes_max,
                                           storage::kMessageBytesMaxConfigurable);
  return o;
}

bool IsQuotaError(const absl::Status& status) {
  return absl::IsResourceExhausted(status) && absl::StrContains(status.message(), "quota");
}

}  // namespace

LmtpRecipientVerdict RecipientVerdict(const absl::StatusOr<storage::AccountUsage>& usage,
                                      std::optional<uint64_t> declared_size,
                                      bool over_quota_permanent) {
  using Code = LmtpRecipientVerdict::Code;
  if (!usage.ok()) {
    // A malformed address cannot name a mailbox here either.
    if (absl::IsNotFound(usage.status()) || absl::IsInvalidArgument(usage.status())) {
      return {Code::kUnknown, "", ""};
    }
    return {Code::kTempFailure, "", ""};
  }
  if (usage->disabled) return {Code::kDisabled, "", ""};
  if (declared_size.has_value() && *declared_size > usage->message_bytes_max) {
    return {Code::kTooBig, "", ""};
  }
  if (usage->WouldExceedQuota(declared_size.value_or(0))) {
    return {over_quota_permanent ? Code::kOverQuotaPerm : Code::kOverQuotaTemp, "", ""};
  }
  return {Code::kAccepted, usage->address, ""};
}

LmtpDeliveryResult DeliveryOutcome(const absl::Status& status, bool over_quota_permanent) {
  using Code = LmtpDeliveryResult::Code;
  if (status.ok()) return {Code::kDelivered, ""};
  if (IsQuotaError(status)) {
    return {over_quota_permanent ? Code::kOverQuotaPerm : Code::kOverQuotaTemp, ""};
  }
  if (absl::IsResourceExhausted(status)) return {Code::kTooBig, ""};
  // Deleted or disabled between RCPT and the end of DATA.
  if (absl::IsNotFound(status)) return {Code::kPermFailure, "No such user here"};
  if (absl::IsFailedPrecondition(status)) return {Code::kPermFailure, "Mailbox disabled"};
  return {Code::kTempFailure, ""};
}

LmtpConnection::LmtpConnection(LmtpShard& ctx, uint64_t id, int fd)
    : ctx_(ctx),
      id_(id),
      fd_(fd),
      session_(std::make_unique<lmtp::LmtpSession>(SessionOptions(*ctx.server))),
      receiver_(
          ctx.shard->ring(), *ctx.buffers, fd,
          [this](uint16_t buffer_id, std::span<const char> data) { OnData(buffer_id, data); },
          [this](absl::Status status) { OnReceiveEnd(std::move(status)); }),
      sender_(
          ctx.shard->ring(), ctx.stats.send,
          [this](absl::Status status, uint64_t bytes) { OnSendDone(std::move(status), bytes); }),
      send_stall_(uint64_t{ctx.server->options.send_stall_timeout_s} * kNsPerSecond) {
  timer_.Bind<&LmtpConnection::OnTimer>(this);
  last_input_ns_ = MonotonicNowNs();
}

LmtpConnection::~LmtpConnection() {
  PH_CHECK(!receiver_.active() && !sender_.busy() && !ResultPending());
  if (!fd_closed_) close(fd_);
}

void LmtpConnection::Start() {
  started_ = true;
  ArmTimer();
  receiver_.Start();
  Drive();
}

void LmtpConnection::Reject(std::string_view reply) {
  PH_CHECK(!started_);
  Enqueue(reply);
  close_after_flush_ = true;
  Drive();
}

// ---- The action loop ----

void LmtpConnection::Drive() {
  if (closing_) {
    MaybeFinish();
    return;
  }
  for (;;) {
    while (started_ && !closing_ && !close_after_flush_) {
      lmtp::LmtpAction action = session_->NextAction();
      if (action.kind == LmtpActionKind::kNone) break;
      Handle(action);
    }
    if (closing_) return;
    Flush();
    if (closing_) return;
    if (started_ && out_.empty() && !sender_.busy() && taken_unflushed_) {
      taken_unflushed_ = false;
      session_->OnOutputFlushed();
      continue;
    }
    break;
  }
  if (recv_paused_ && started_ && session_->WantsInput() && !receiver_.active() && !peer_eof_) {
    recv_paused_ = false;
    receiver_.Start();
  }
  const bool idle_output = out_.empty() && !sender_.busy();
  const lmtp::LmtpState state = session_->state();
  if (draining_ && started_ && !close_after_flush_ && idle_output && !ResultPending() &&
      (state == lmtp::LmtpState::kGreeted || state == lmtp::LmtpState::kReady)) {
    // Between transactions: nothing is lost by leaving now (RFC 5321 3.8: 421 at shutdown).
    session_->OnConnectionLost();
    started_ = false;
    close_after_flush_ = true;
    Enqueue("421 4.3.2 " + ctx_.server->options.hostname + " Service shutting down\r\n");
    Flush();
    return;
  }
  if (close_after_flush_ && idle_output) {
    BeginClose(/*abort=*/false);
    return;
  }
  if (peer_eof_ && idle_output && !ResultPending()) BeginClose(/*abort=*/false);
}

void LmtpConnection::Handle(const lmtp::LmtpAction& action) {
  switch (action.kind) {
    case LmtpActionKind::kNone:
      break;
    case LmtpActionKind::kWrite:
      Enqueue(action.bytes);
      taken_unflushed_ = true;
      break;
    case LmtpActionKind::kCheckRecipient:
      StartCheck(action.recipient, action.declared_size);
      break;
    case LmtpActionKind::kDeliver:
      StartDelivery(action.delivery);
      break;
    case LmtpActionKind::kClose:
      close_after_flush_ = true;
      break;
  }
}

// ---- Recipients and delivery, off the reactor ----

void LmtpConnection::StartCheck(std::string_view recipient, std::optional<uint64_t> declared_size) {
  ++ctx_.stats.recipients_checked;
  LmtpShard* home = &ctx_;
  storage::MailStore* store = ctx_.server->store;
  const bool permanent = ctx_.server->options.lmtp_over_quota_permanent;
  check_pending_ = true;
  const bool accepted =
      ctx_.shard->OffloadIo([home, store, id = id_, address = std::string(recipient), declared_size,
                             permanent]() -> reactor::OffloadPool::Reply {
        LmtpRecipientVerdict verdict =
            RecipientVerdict(store->GetUsage(address), declared_size, permanent);
        return [home, id, verdict = std::move(verdict)]() mutable {
          if (LmtpConnection* conn = home->Find(id)) conn->OnRecipientChecked(std::move(verdict));
        };
      });
  if (!accepted) {
    ++ctx_.stats.offload_rejected;
    check_pending_ = false;
    session_->OnRecipientChecked({LmtpRecipientVerdict::Code::kTempFailure, "", ""});
  }
}

void LmtpConnection::OnRecipientChecked(LmtpRecipientVerdict verdict) {
  check_pending_ = false;
  if (verdict.code != LmtpRecipientVerdict::Code::kAccepted) ++ctx_.stats.recipients_refused;
  session_->OnRecipientChecked(std::move(verdict));
  Drive();
}

void LmtpConnection::StartDelivery(const lmtp::LmtpDelivery& delivery) {
  ++ctx_.stats.messages_received;
  results_.assign(delivery.recipients.size(), LmtpDeliveryResult{});
  LmtpShard* home = &ctx_;
  storage::MailStore* store = ctx_.server->store;
  const bool permanent = ctx_.server->options.lmtp_over_quota_permanent;
  // `delivery.message` stays valid until OnDeliveryDone, which is called only after every
  // copy has come back (this connection is not destroyed before), so the jobs share it.
  const std::string_view message = delivery.message;
  for (size_t i = 0; i < delivery.recipients.size(); ++i) {
    ++copies_pending_;
    const bool accepted =
        ctx_.shard->OffloadIo([home, store, id = id_, i, mailbox = delivery.recipients[i].mailbox,
                               message, permanent]() -> reactor::OffloadPool::Reply {
          absl::Status status = store->Deliver(mailbox, message).status();
          if (!status.ok() && !IsQuotaError(status)) {
            LogEvent(LogLevel::kWarning, "lmtp delivery failed",
                     {{"user", mailbox}, {"error", status.ToString()}});
          }
          LmtpDeliveryResult result = DeliveryOutcome(status, permanent);
          return [home, id, i, result = std::move(result)]() mutable {
            if (LmtpConnection* conn = home->Find(id)) conn->OnCopyStored(i, std::move(result));
          };
        });
    if (!accepted) {
      ++ctx_.stats.offload_rejected;
      --copies_pending_;
      results_[i] = {LmtpDeliveryResult::Code::kTempFailure, ""};
    }
  }
  if (copies_pending_ == 0) {
    session_->OnDeliveryDone(results_);
    results_.clear();
  }
}

void LmtpConnection::OnCopyStored(size_t index, LmtpDeliveryResult result) {
  PH_CHECK(copies_pending_ > 0 && index < results_.size());
  ctx_.server->shards[ctx_.index]->metrics.CountLmtpDelivery(LmtpResultLabelOf(result.code));
  if (result.code == LmtpDeliveryResult::Code::kDelivered) {
    ++ctx_.stats.copies_delivered;
  } else {
    ++ctx_.stats.copies_failed;
  }
  results_[index] = std::move(result);
  if (--copies_pending_ > 0) return;
  // Every copy is back: the replies (250 only for durable copies) may go out. After a lost
  // connection this only releases the message buffer.
  session_->OnDeliveryDone(results_);
  results_.clear();
  Drive();
}

// ---- Output ----

void LmtpConnection::Enqueue(std::string_view bytes) { out_.append(bytes); }

void LmtpConnection::Flush() {
  if (closing_ || sender_.busy() || out_.empty()) return;
  inflight_.swap(out_);
  out_.clear();
  sender_.Send(fd_, std::span<const char>(inflight_.data(), inflight_.size()),
               /*zero_copy=*/false);
  if (!send_stall_.active()) {
    const std::optional<TcpSendProgress> progress = ReadTcpSendProgress(fd_);
    send_stall_.Start(MonotonicNowNs(),
                      progress.has_value() ? std::optional(progress->bytes_acked) : std::nullopt);
    ArmTimer();
  }
}

void LmtpConnection::OnSendDone(absl::Status status, uint64_t /*bytes*/) {
  inflight_.clear();
  if (closing_) {
    MaybeFinish();
    return;
  }
  if (!status.ok()) {
    BeginClose(/*abort=*/true);
    return;
  }
  Drive();
}

// ---- Input ----

void LmtpConnection::OnData(uint16_t buffer_id, std::span<const char> data) {
  if (!closing_) {
    last_input_ns_ = MonotonicNowNs();
    session_->Feed(std::string_view(data.data(), data.size()));
  }
  ctx_.buffers->Release(buffer_id);
  if (closing_) return;
  if (!session_->WantsInput() && !recv_paused_) {
    recv_paused_ = true;
    receiver_.Stop();
  }
  Drive();
}

void LmtpConnection::OnReceiveEnd(absl::Status status) {
  if (closing_) {
    MaybeFinish();
    return;
  }
  if (recv_paused_ && absl::IsCancelled(status)) {
    Drive();
    return;
  }
  if (status.ok()) {
    peer_eof_ = true;  // answer what was received (a delivery in flight finishes), then close
    Drive();
    return;
  }
  BeginClose(/*abort=*/true);
}

// ---- Timeouts ----

void LmtpConnection::ArmTimer() {
  uint64_t deadline =
      last_input_ns_ + uint64_t{ctx_.server->options.lmtp_idle_timeout_s} * kNsPerSecond;
  if (send_stall_.active()) deadline = std::min(deadline, send_stall_.next_sample_ns());
  ctx_.shard->ring().timers().StartAt(&timer_, deadline);
}

void LmtpConnection::OnTimer() {
  if (closing_) return;
  const uint64_t now = MonotonicNowNs();
  if (send_stall_.active()) {
    const std::optional<TcpSendProgress> progress = ReadTcpSendProgress(fd_);
    if (!sender_.busy() && !(progress.has_value() && progress->bytes_outstanding)) {
      send_stall_.Stop();  // the peer has every reply
    } else if (send_stall_.Sample(now, progress.has_value() ? std::optional(progress->bytes_acked)
                                                            : std::nullopt)) {
      ++ctx_.stats.timeouts_send_stall;
      LogEvent(
          LogLevel::kInfo, "lmtp send stalled, closing",
          {{"stalled_ms", std::to_string((now - send_stall_.last_progress_ns()) / 1'000'000)}});
      BeginClose(/*abort=*/true);
      return;
    }
  }
  const uint64_t deadline =
      last_input_ns_ + uint64_t{ctx_.server->options.lmtp_idle_timeout_s} * kNsPerSecond;
  if (now < deadline || ResultPending()) {
    if (now >= deadline) {  // waiting on the store
      uint64_t next = now + kNsPerSecond;
      if (send_stall_.active()) next = std::min(next, send_stall_.next_sample_ns());
      ctx_.shard->ring().timers().StartAt(&timer_, next);
    } else {
      ArmTimer();
    }
    return;
  }
  ++ctx_.stats.timeouts_idle;
  if (sender_.busy()) {  // not reading our replies either
    BeginClose(/*abort=*/true);
    return;
  }
  session_->OnConnectionLost();
  out_.clear();
  Enqueue("421 4.4.2 " + ctx_.server->options.hostname + " Idle timeout, closing connection\r\n");
  close_after_flush_ = true;
  started_ = false;  // take no further session actions
  Drive();
  if (!closing_) ArmTimer();  // the 421 itself may wait on the peer
}

// ---- Closing ----

void LmtpConnection::Abort() { BeginClose(/*abort=*/true); }

void LmtpConnection::Drain() {
  draining_ = true;
  Drive();
}

void LmtpConnection::BeginClose(bool abort) {
  if (closing_) return;
  closing_ = true;
  ctx_.shard->ring().timers().Cancel(&timer_);
  if (session_->state() != lmtp::LmtpState::kClosed) session_->OnConnectionLost();
  const bool sending = sender_.busy();
  if (receiver_.active()) receiver_.Stop();
  if (sending) sender_.Cancel();
  if (abort || sending) {
    reactor::AbortSocket(fd_);
    fd_closed_ = true;
  } else {
    shutdown(fd_, SHUT_WR);
  }
  MaybeFinish();
}

void LmtpConnection::MaybeFinish() {
  if (!closing_ || finished_) return;
  // Copies in flight read the session's message buffer: wait for them.
  if (receiver_.active() || sender_.busy() || ResultPending()) return;
  finished_ = true;
  if (!fd_closed_) {
    close(fd_);
    fd_closed_ = true;
  }
  ctx_.Destroy(id_);
}

}  // namespace posthaste::server
