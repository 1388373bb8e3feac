// What the store's answers mean to LMTP: the RCPT verdict from MailStore::GetUsage and the
// per-copy outcome from MailStore::Deliver. Pure functions; used by the store backend
// (store_backend.h) on the I/O offload pool.
//
// Threading: any thread.
#ifndef POSTHASTE_SERVER_LMTP_SERVICE_STORE_VERDICTS_H_
#define POSTHASTE_SERVER_LMTP_SERVICE_STORE_VERDICTS_H_

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/lmtp/session.h"
#include "storage/mail_store.h"

namespace posthaste::server {

// RCPT verdict from the store's view of the recipient (MailStore::GetUsage).
lmtp::LmtpRecipientVerdict RecipientVerdict(const absl::StatusOr<storage::AccountUsage>& usage,
                                            std::optional<uint64_t> declared_size,
                                            bool over_quota_permanent);
// Per-copy outcome from MailStore::Deliver's status.
lmtp::LmtpDeliveryResult DeliveryOutcome(const absl::Status& status, bool over_quota_permanent);

// True when MailStore::Deliver refused the copy for the mailbox's quota (an expected outcome,
// not logged as a failure).
bool IsQuotaError(const absl::Status& status);

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_LMTP_SERVICE_STORE_VERDICTS_H_
