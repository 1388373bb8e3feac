#include "server/lmtp/testing/fake_driver.h"

#include <algorithm>
#include <utility>

#include "base/check.h"

namespace posthaste::lmtp::testing {

FakeLmtpDriver::FakeLmtpDriver(LmtpSessionOptions options)
    : session_(std::make_unique<LmtpSession>(std::move(options))) {
  Pump();
}

void FakeLmtpDriver::AddRecipient(const std::string& address) {
  recipients_[address] = LmtpRecipientVerdict{LmtpRecipientVerdict::Code::kAccepted, "", ""};
}

void FakeLmtpDriver::Feed(std::string_view input, size_t fragment_bytes) {
  if (fragment_bytes == 0) fragment_bytes = input.size() == 0 ? 1 : input.size();
  while (!input.empty()) {
    const size_t n = std::min(fragment_bytes, input.size());
    session_->Feed(input.substr(0, n));
    input.remove_prefix(n);
    Pump();
  }
}

std::string FakeLmtpDriver::TakeOutput() {
  std::string out = std::move(output_);
  output_.clear();
  return out;
}

void FakeLmtpDriver::Flush() {
  taken_since_flush_ = false;
  session_->OnOutputFlushed();
  Pump();
}

void FakeLmtpDriver::Pump() {
  while (true) {
    const LmtpAction action = session_->NextAction();
    switch (action.kind) {
      case LmtpActionKind::kNone:
        if (auto_flush_ && taken_since_flush_) {
          taken_since_flush_ = false;
          session_->OnOutputFlushed();
          continue;
        }
        return;
      case LmtpActionKind::kWrite:
        output_.append(action.bytes.data(), action.bytes.size());
        taken_since_flush_ = true;
        break;
      case LmtpActionKind::kCheckRecipient: {
        PH_CHECK(pending_ == Pending::kNone);
        pending_ = Pending::kCheck;
        pending_address_.assign(action.recipient.data(), action.recipient.size());
        std::string event = "check " + pending_address_;
        if (action.declared_size) event += " size=" + std::to_string(*action.declared_size);
        events_.push_back(std::move(event));
        if (auto_answer_) Answer();
        break;
      }
      case LmtpActionKind::kDeliver: {
        PH_CHECK(pending_ == Pending::kNone);
        pending_ = Pending::kDeliver;
        pending_delivery_ = action.delivery;
        std::string event = "deliver ";
        for (size_t i = 0; i < action.delivery.recipients.size(); ++i) {
          if (i > 0) event += ",";
          event += action.delivery.recipients[i].mailbox;
        }
        event += " " + std::to_string(action.delivery.message.size());
        events_.push_back(std::move(event));
        if (auto_answer_) Answer();
        break;
      }
      case LmtpActionKind::kClose:
        events_.push_back("close");
        closed_ = true;
        break;
    }
  }
}

void FakeLmtpDriver::AnswerPending() {
  PH_CHECK(pending_ != Pending::kNone);
  Answer();
  Pump();
}

void FakeLmtpDriver::Answer() {
  const Pending pending = pending_;
  pending_ = Pending::kNone;
  if (pending == Pending::kCheck) {
    auto it = recipients_.find(pending_address_);
    LmtpRecipientVerdict verdict{LmtpRecipientVerdict::Code::kUnknown, "", ""};
    if (it != recipients_.end()) verdict = it->second;
    session_->OnRecipientChecked(std::move(verdict));
    return;
  }
  if (pending == Pending::kDeliver) {
    // The same bytes go to every mailbox: the client's data is never re-read.
    Delivery delivery;
    delivery.reverse_path.assign(pending_delivery_.reverse_path);
    delivery.body = pending_delivery_.body;
    delivery.message.assign(pending_delivery_.message);
    std::vector<LmtpDeliveryResult> results;
    for (const LmtpRecipient& recipient : pending_delivery_.recipients) {
      delivery.mailboxes.push_back(recipient.mailbox);
      auto it = outcomes_.find(recipient.mailbox);
      LmtpDeliveryResult result{LmtpDeliveryResult::Code::kDelivered, ""};
      if (it != outcomes_.end()) result = it->second;
      if (result.code == LmtpDeliveryResult::Code::kDelivered) {
        stored_[recipient.mailbox].emplace_back(pending_delivery_.message);
      }
      results.push_back(std::move(result));
    }
    deliveries_.push_back(std::move(delivery));
    pending_delivery_ = LmtpDelivery{};
    session_->OnDeliveryDone(results);
  }
}

}  // namespace posthaste::lmtp::testing
