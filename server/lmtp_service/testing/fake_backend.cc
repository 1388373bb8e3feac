#include "server/lmtp_service/testing/fake_backend.h"

#include <utility>

#include "base/check.h"

namespace posthaste::server::testing {

bool FakeLmtpBackend::StartCheck(LmtpBackendClient& client, std::string_view address,
                                 std::optional<uint64_t> declared_size) {
  if (refuse_work_) return false;
  checks_.push_back({&client, std::string(address), declared_size});
  return true;
}

bool FakeLmtpBackend::StartCopy(LmtpBackendClient& client, size_t index, std::string_view mailbox,
                                std::string_view message) {
  if (refuse_work_) return false;
  copies_.push_back({&client, index, std::string(mailbox), message});
  ++copies_started_;
  return true;
}

void FakeLmtpBackend::AnswerCheck(lmtp::LmtpRecipientVerdict verdict) {
  PH_CHECK(!checks_.empty());
  LmtpBackendClient* client = checks_.front().client;
  checks_.erase(checks_.begin());
  client->OnRecipientChecked(std::move(verdict));
}

void FakeLmtpBackend::AnswerCopy(std::string_view mailbox, lmtp::LmtpDeliveryResult result) {
  for (auto it = copies_.begin(); it != copies_.end(); ++it) {
    if (it->mailbox != mailbox) continue;
    const Copy copy = *it;
    copies_.erase(it);
    if (result.code == lmtp::LmtpDeliveryResult::Code::kDelivered) {
      stored_[copy.mailbox].emplace_back(copy.message);
    }
    copy.client->OnCopyStored(copy.index, std::move(result));
    return;
  }
  PH_CHECK(false && "no pending copy for that mailbox");
}

}  // namespace posthaste::server::testing
