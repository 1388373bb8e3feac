#include "storage/migration/batch_delivery.h"

#include "absl/strings/str_cat.h"

namespace posthaste::storage::migration {

absl::StatusOr<std::vector<std::optional<DeliverResult>>> DeliverSkippingUsedUidls(
    MailStore& store, std::string_view address, const std::vector<DeliveryItem>& items) {
  std::vector<std::optional<DeliverResult>> results;
  results.reserve(items.size());
  if (items.empty()) return results;
  absl::StatusOr<std::vector<DeliverResult>> batch = store.DeliverBatch(address, items);
  if (batch.ok()) {
    for (DeliverResult& one : *batch) results.emplace_back(std::move(one));
    return results;
  }
  if (!absl::IsAlreadyExists(batch.status())) return batch.status();
  // Some UIDL belonged to a message stored (or deleted) earlier, and UIDLs are never reused:
  // nothing of the batch was stored, so deliver it one by one and skip those.
  for (size_t i = 0; i < items.size(); ++i) {
    absl::StatusOr<DeliverResult> one =
        store.Deliver(address, items[i].raw_message, items[i].options);
    if (absl::IsAlreadyExists(one.status())) {
      results.emplace_back(std::nullopt);
    } else if (!one.ok()) {
      return one.status();
    } else {
      results.emplace_back(*std::move(one));
    }
  }
  return results;
}

absl::Status CheckImportFitsQuota(const MailboxStats& stats, uint64_t quota_messages,
                                  uint64_t quota_octets, uint64_t new_messages,
                                  uint64_t new_octets) {
  if (quota_messages != 0 && stats.messages + new_messages > quota_messages) {
    return absl::ResourceExhaustedError(
        absl::StrCat("mailbox quota exceeded: ", stats.messages, " messages + ", new_messages,
                     " to import > quota of ", quota_messages, " messages; nothing imported"));
  }
  if (quota_octets != 0 && stats.octets + new_octets > quota_octets) {
    return absl::ResourceExhaustedError(
        absl::StrCat("mailbox quota exceeded: ", stats.octets, " octets + ", new_octets,
                     " to import > quota of ", quota_octets, " octets; nothing imported"));
  }
  return absl::OkStatus();
}

}  // namespace posthaste::storage::migration
