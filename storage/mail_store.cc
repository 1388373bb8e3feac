// Skeleton: the API compiles; the implementation lands in the following commits.
#include "storage/mail_store.h"

namespace posthaste::storage {

struct MailStore::Impl {
  StoreOptions options;
};

struct MailboxSnapshot::SegmentHandle {
  int fd = -1;
};

namespace {
absl::Status NotYet() { return absl::UnimplementedError("MailStore: not implemented yet"); }
}  // namespace

MailStore::MailStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MailStore::~MailStore() = default;

absl::StatusOr<std::unique_ptr<MailStore>> MailStore::Open(const StoreOptions& options) {
  return NotYet();
}
absl::StatusOr<TenantInfo> MailStore::GetTenant(std::string_view) { return NotYet(); }
absl::Status MailStore::SetTenantLimits(std::string_view, const TenantLimits&) { return NotYet(); }
absl::StatusOr<AccountInfo> MailStore::CreateAccount(std::string_view, std::string_view) {
  return NotYet();
}
absl::Status MailStore::DeleteAccount(std::string_view) { return NotYet(); }
absl::Status MailStore::SetPasswordHash(std::string_view, std::string_view) { return NotYet(); }
absl::Status MailStore::SetDisabled(std::string_view, bool) { return NotYet(); }
absl::Status MailStore::SetQuota(std::string_view, const AccountQuota&) { return NotYet(); }
absl::StatusOr<AccountInfo> MailStore::GetAccount(std::string_view) { return NotYet(); }
absl::StatusOr<std::vector<AccountSummary>> MailStore::ListAccounts(
    std::optional<std::string_view>) {
  return NotYet();
}
absl::StatusOr<MailboxStats> MailStore::GetMailboxStats(std::string_view) { return NotYet(); }
absl::StatusOr<DeliverResult> MailStore::Deliver(std::string_view, std::string_view,
                                                 const DeliverOptions&) {
  return NotYet();
}
absl::StatusOr<std::shared_ptr<const MailboxSnapshot>> MailStore::OpenMailbox(std::string_view) {
  return NotYet();
}
absl::StatusOr<std::string> MailStore::ReadMessage(const MailboxSnapshot&, size_t) {
  return NotYet();
}
absl::StatusOr<DeletionResult> MailStore::CommitDeletions(const MailboxSnapshot&,
                                                          const std::vector<size_t>&) {
  return NotYet();
}
absl::StatusOr<CompactionResult> MailStore::Compact(
    const std::function<void(const CompactionProgress&)>&) {
  return NotYet();
}
absl::StatusOr<CheckReport> MailStore::Check() { return NotYet(); }
StoreCounters MailStore::Counters() const { return {}; }
const StoreOptions& MailStore::options() const { return impl_->options; }

MessageRef MailboxSnapshot::Ref(size_t index) const {
  const SnapshotEntry& e = entries_[index];
  return MessageRef{segments_[e.segment_slot]->fd, e.offset, e.stored_length, e.header_length};
}
PinnedMessage MailboxSnapshot::Pin(size_t index) const {
  return PinnedMessage{Ref(index), segments_[entries_[index].segment_slot]};
}

}  // namespace posthaste::storage
