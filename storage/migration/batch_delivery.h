// Delivering imported messages in all-or-nothing batches while skipping those whose UIDL the
// account already has or had: what every importer here (Maildir, mailbox transfer) needs so that
// running it again after a crash neither duplicates nor loses a message.
//
// Threading: as MailStore (thread-safe, blocking); never on a reactor thread.
#ifndef POSTHASTE_STORAGE_MIGRATION_BATCH_DELIVERY_H_
#define POSTHASTE_STORAGE_MIGRATION_BATCH_DELIVERY_H_

#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "storage/mail_store.h"

namespace posthaste::storage::migration {

// Delivers `items` (each with options.uidl set) to `address` as one DeliverBatch. When some UIDL
// is already used in the account (the batch is then refused whole), delivers the items one by
// one instead and leaves those out. Returns one entry per item: its result, or nullopt when it
// was skipped. On error, the items before the failing one may be stored (a retry skips them);
// the error is the store's (its StoreError kind kept).
absl::StatusOr<std::vector<std::optional<DeliverResult>>> DeliverSkippingUsedUidls(
    MailStore& store, std::string_view address, const std::vector<DeliveryItem>& items);

// Whether `new_messages` more messages of `new_octets` more octets fit the mailbox's quota
// (0: unlimited) beside what it holds (`stats`): checked by importers before they store
// anything, so that an import too large for the account changes nothing. ResourceExhausted
// naming the quota otherwise.
absl::Status CheckImportFitsQuota(const MailboxStats& stats, uint64_t quota_messages,
                                  uint64_t quota_octets, uint64_t new_messages,
                                  uint64_t new_octets);

}  // namespace posthaste::storage::migration

#endif  // POSTHASTE_STORAGE_MIGRATION_BATCH_DELIVERY_H_
