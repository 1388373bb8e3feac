#include "server/lmtp_service/store_verdicts.h"

#include "absl/strings/match.h"

namespace posthaste::server {

using lmtp::LmtpDeliveryResult;
using lmtp::LmtpRecipientVerdict;

bool IsQuotaError(const absl::Status& status) {
  return absl::IsResourceExhausted(status) && absl::StrContains(status.message(), "quota");
}

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

}  // namespace posthaste::server
