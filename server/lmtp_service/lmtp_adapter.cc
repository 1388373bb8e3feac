#include "server/lmtp_service/lmtp_adapter.h"

#include <utility>

#include "base/check.h"
#include "base/log.h"

namespace posthaste::server {

using lmtp::LmtpActionKind;
using lmtp::LmtpDeliveryResult;
using lmtp::LmtpRecipientVerdict;

LmtpAdapter::LmtpAdapter(LmtpAdapterOptions options,
                         std::unique_ptr<transport::Transport> transport, LmtpBackend& backend,
                         LmtpStats& stats, metrics::ShardMetrics& metrics,
                         absl::AnyInvocable<void()> on_finished)
    : idle_timeout_ns_(options.idle_timeout_ns),
      session_(std::move(options.session)),
      transport_(std::move(transport)),
      backend_(backend),
      stats_(stats),
      metrics_(metrics),
      on_finished_(std::move(on_finished)) {}

// The backend's jobs read the session's buffers: they must all have come back.
LmtpAdapter::~LmtpAdapter() { PH_CHECK(!ResultPending()); }

void LmtpAdapter::Start() {
  PH_CHECK(phase_ == Phase::kNew);
  phase_ = Phase::kOpen;
  transport_->Start(this);
  last_input_ns_ = transport_->NowNs();
  transport_->SetDeadline(last_input_ns_ + idle_timeout_ns_);
  Drive();
}

void LmtpAdapter::StartOverCapacity() {
  session_.OnOverCapacity();
  Start();
}

void LmtpAdapter::Drain() {
  if (phase_ != Phase::kOpen) return;
  session_.OnShutdown();
  Drive();
}

void LmtpAdapter::Abort() { BeginClose(/*abort=*/true); }

// ---- The action loop ----

void LmtpAdapter::Drive() {
  if (phase_ != Phase::kOpen) return;
  PH_CHECK(!driving_);
  driving_ = true;
  bool wrote = false;
  bool close = false;
  for (lmtp::LmtpAction action = session_.NextAction(); action.kind != LmtpActionKind::kNone;
       action = session_.NextAction()) {
    switch (action.kind) {
      case LmtpActionKind::kWrite:
        transport_->Send(action.bytes);
        wrote = true;
        break;
      case LmtpActionKind::kCheckRecipient:
        StartCheck(action);
        break;
      case LmtpActionKind::kDeliver:
        StartDelivery(action.delivery);
        break;
      case LmtpActionKind::kClose:
        close = true;
        break;
      case LmtpActionKind::kNone:
        break;
    }
  }
  driving_ = false;
  if (wrote) transport_->Flush();
  // After the peer's FIN: answer everything it sent (a delivery in flight finishes), then close.
  if (close || (peer_finished_ && !ResultPending() && !transport_->OutputPending())) {
    BeginClose(/*abort=*/false);
    return;
  }
  if (peer_finished_) return;  // nothing more to receive
  if (!session_.WantsInput() && !receive_paused_) {
    receive_paused_ = true;
    transport_->PauseReceive();
  } else if (session_.WantsInput() && receive_paused_) {
    receive_paused_ = false;
    transport_->ResumeReceive();
  }
}

// ---- Recipients and copies ----

void LmtpAdapter::StartCheck(const lmtp::LmtpAction& action) {
  ++stats_.recipients_checked;
  check_pending_ = backend_.StartCheck(*this, action.recipient, action.declared_size);
  if (!check_pending_) {
    ++stats_.offload_rejected;
    session_.OnRecipientChecked({LmtpRecipientVerdict::Code::kTempFailure, "", ""});
  }
}

void LmtpAdapter::OnRecipientChecked(LmtpRecipientVerdict verdict) {
  PH_CHECK(check_pending_);
  check_pending_ = false;
  if (verdict.code != LmtpRecipientVerdict::Code::kAccepted) ++stats_.recipients_refused;
  session_.OnRecipientChecked(std::move(verdict));
  AfterResult();
}

void LmtpAdapter::StartDelivery(const lmtp::LmtpDelivery& delivery) {
  ++stats_.messages_received;
  const size_t count = delivery.recipients.size();
  results_.assign(count, LmtpDeliveryResult{});
  copy_returned_.assign(count, false);
  // `delivery.message` stays valid until OnDeliveryDone, which is called only once every copy
  // has come back (this adapter is not destroyed before), so the copies share it.
  for (size_t i = 0; i < count; ++i) {
    if (backend_.StartCopy(*this, i, delivery.recipients[i].mailbox, delivery.message)) {
      ++copies_pending_;
    } else {
      ++stats_.offload_rejected;
      results_[i] = {LmtpDeliveryResult::Code::kTempFailure, ""};
      copy_returned_[i] = true;
    }
  }
  if (copies_pending_ == 0) session_.OnDeliveryDone(results_);
}

void LmtpAdapter::OnCopyStored(size_t index, LmtpDeliveryResult result) {
  PH_CHECK(copies_pending_ > 0 && index < results_.size() && !copy_returned_[index]);
  metrics_.CountLmtpDelivery(LmtpResultLabelOf(result.code));
  if (result.code == LmtpDeliveryResult::Code::kDelivered) {
    ++stats_.copies_delivered;
  } else {
    ++stats_.copies_failed;
  }
  results_[index] = std::move(result);
  copy_returned_[index] = true;
  if (--copies_pending_ > 0) return;
  // Every copy is back: the replies (250 only for durable copies) may go out. After a lost
  // connection this only releases the message buffer.
  session_.OnDeliveryDone(results_);
  AfterResult();
}

void LmtpAdapter::AfterResult() {
  if (phase_ != Phase::kOpen) {
    MaybeFinish();
    return;
  }
  // The peer waited for this answer: its idle time starts now (the armed deadline finds out).
  last_input_ns_ = transport_->NowNs();
  Drive();
}

// ---- Transport events ----

void LmtpAdapter::OnReceive(std::string_view bytes) {
  if (phase_ != Phase::kOpen) return;
  last_input_ns_ = transport_->NowNs();
  session_.Feed(bytes);
  Drive();
}

void LmtpAdapter::OnPeerFinished() {
  peer_finished_ = true;
  Drive();
}

void LmtpAdapter::OnOutputDrained() {
  if (phase_ != Phase::kOpen) return;
  if (!transport_->OutputPending()) session_.OnOutputFlushed();
  Drive();
}

void LmtpAdapter::OnDeadline() {
  if (phase_ != Phase::kOpen) return;
  const uint64_t now = transport_->NowNs();
  if (ResultPending()) {  // the peer is waiting on the store, not idle: look again later
    transport_->SetDeadline(now + idle_timeout_ns_);
    return;
  }
  // Input and results only move last_input_ns_; the deadline catches up here, so a busy
  // connection re-arms its timer once per idle period, not once per command.
  const uint64_t deadline = last_input_ns_ + idle_timeout_ns_;
  if (now < deadline) {
    transport_->SetDeadline(deadline);
    return;
  }
  ++stats_.timeouts_idle;
  if (transport_->OutputPending()) {
    // The peer takes none of our replies either: a 421 could not reach it.
    BeginClose(/*abort=*/true);
    return;
  }
  session_.OnIdleTimeout();
  Drive();
}

void LmtpAdapter::OnClosed(transport::CloseReason reason) {
  if (reason == transport::CloseReason::kSendStalled) {
    ++stats_.timeouts_send_stall;
    LogEvent(LogLevel::kInfo, "lmtp send stalled, closing");
  }
  if (session_.state() != lmtp::LmtpState::kClosed) session_.OnConnectionLost();
  phase_ = Phase::kClosed;
  MaybeFinish();
}

// ---- Closing ----

void LmtpAdapter::BeginClose(bool abort) {
  if (phase_ == Phase::kClosing && abort) transport_->Abort();  // shutdown overtakes a Close
  if (phase_ != Phase::kOpen) return;
  phase_ = Phase::kClosing;
  if (session_.state() != lmtp::LmtpState::kClosed) session_.OnConnectionLost();
  transport_->SetDeadline(0);
  if (abort) {
    transport_->Abort();
  } else {
    transport_->Close();
  }
}

void LmtpAdapter::MaybeFinish() {
  // Copies in flight read the session's message buffer: wait for them.
  if (phase_ != Phase::kClosed || ResultPending()) return;
  phase_ = Phase::kFinished;
  absl::AnyInvocable<void()> on_finished = std::move(on_finished_);
  on_finished();  // the owner may destroy this adapter now: touch nothing after
}

}  // namespace posthaste::server
