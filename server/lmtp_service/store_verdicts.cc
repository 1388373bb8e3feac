#include "server/lmtp_service/store_verdicts.h"

#include "storage/store_error.h"

namespace posthaste::server {

using lmtp::LmtpDeliveryResult;
using lmtp::LmtpRecipientVerdict;

bool IsQuotaError(const absl::Status& status) {
  return storage::ErrorOf(status) == storage::StoreError::kOverQuota;
}

LmtpRecipientVerdict RecipientVerdict(const absl::StatusOr<storage::AccountUsage>& usage,
                                      std::optional<uint64_t> declared_size,
                                      bool over_quota_permanent) {
  using Code = LmtpRecipientVerdict::Code;
  using storage::StoreError;
  if (!usage.ok()) {
    switch (storage::ErrorOf(usage)) {
      case StoreError::kUnknownAccount:
      case StoreError::kInvalidAddress:  // a malformed address cannot name a mailbox here either
        return {Code::kUnknown, "", ""};
      default:
        return {Code::kTempFailure, "", ""};
    }
  }
  if (usage->disabled) return {Code::kDisabled, "", ""};
  if (usage->held) return {Code::kMoving, "", ""};
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
  using storage::StoreError;
  if (status.ok()) return {Code::kDelivered, ""};
  switch (storage::ErrorOf(status)) {
    case StoreError::kOverQuota:
      return {over_quota_permanent ? Code::kOverQuotaPerm : Code::kOverQuotaTemp, ""};
    case StoreError::kMessageTooBig:
      return {Code::kTooBig, ""};
    // Deleted or disabled between RCPT and the end of DATA.
    case StoreError::kUnknownAccount:
      return {Code::kPermFailure, "No such user here"};
    case StoreError::kDisabled:
      return {Code::kPermFailure, "Mailbox disabled"};
    // Held for a move between RCPT and the end of DATA: the MTA retries, and finds the new
    // backend once the move is done.
    case StoreError::kAccountHeld:
      return {Code::kMoving, ""};
    // The disk is full (or below the store's free-space reserve): 452 4.3.1, retried.
    case StoreError::kNoSpace:
      return {Code::kNoSpace, ""};
    default:
      // I/O trouble, and anything unexpected: the MTA keeps the message and retries.
      return {Code::kTempFailure, ""};
  }
}

}  // namespace posthaste::server
