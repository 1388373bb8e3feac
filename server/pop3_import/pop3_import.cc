#include "server/pop3_import/pop3_import.h"

#include <set>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "storage/message_format.h"
#include "storage/migration/batch_delivery.h"

namespace posthaste::server::pop3_import {
namespace {

// Delivery batches: all or nothing, sharing syncs (as the other importers').
constexpr size_t kBatchMessagesMax = 128;
constexpr uint64_t kBatchBytesMax = uint64_t{16} << 20;

struct PlannedMessage {
  uint64_t number = 0;
  std::string uidl;
  uint64_t listed_octets = 0;
};

struct FetchedMessage {
  std::string bytes;
  storage::MessageInput input = storage::MessageInput::kWireForm;
  uint64_t pop3_size = 0;
};

// The RETR body as the store takes it: wire form when it is one, else text.
FetchedMessage AsStored(std::string body) {
  FetchedMessage message;
  absl::StatusOr<storage::WireFormInfo> wire = storage::CheckWireForm(body);
  if (wire.ok()) {
    message.pop3_size = wire->pop3_size;
    message.bytes = std::move(body);
    return message;
  }
  message.bytes = UnstuffBody(body);
  message.input = storage::MessageInput::kText;
  message.pop3_size = storage::NormalizeForStorage(message.bytes).pop3_size;
  return message;
}

}  // namespace

absl::StatusOr<Pop3ImportResult> ImportPop3(
    storage::MailStore& store, std::string_view address, const Pop3ImportOptions& options,
    const std::function<void(const Pop3ImportProgress&)>& progress) {
  absl::StatusOr<storage::AccountInfo> account = store.GetAccount(address);
  if (absl::IsNotFound(account.status())) {
    return absl::NotFoundError(absl::StrCat("unknown user ", AbslView(address)));
  }
  PH_RETURN_IF_ERROR(account.status());
  const std::string domain = account->address.substr(account->address.rfind('@') + 1);
  PH_ASSIGN_OR_RETURN(storage::TenantInfo tenant, store.GetTenant(domain));
  const uint64_t message_bytes_max = tenant.limits.message_bytes_max != 0
                                         ? tenant.limits.message_bytes_max
                                         : store.options().message_bytes_max;
  const uint64_t quota_messages =
      account->quota.messages != 0 ? account->quota.messages : tenant.limits.quota_messages;
  const uint64_t quota_octets =
      account->quota.octets != 0 ? account->quota.octets : tenant.limits.quota_octets;

  const std::string user = !options.source_user.empty()
                               ? options.source_user
                               : std::string(address.substr(0, address.rfind('@')));
  PH_ASSIGN_OR_RETURN(std::unique_ptr<Pop3SourceClient> source,
                      Pop3SourceClient::Connect(options.source));
  PH_RETURN_IF_ERROR(source->Login(user, options.password));
  PH_ASSIGN_OR_RETURN(std::vector<UidlEntry> uidls, source->Uidl());
  PH_ASSIGN_OR_RETURN(std::vector<ListEntry> sizes, source->List());
  absl::flat_hash_map<uint64_t, uint64_t> size_of;
  for (const ListEntry& entry : sizes) size_of[entry.number] = entry.octets;

  std::set<std::string, std::less<>> known;
  {
    PH_ASSIGN_OR_RETURN(auto snapshot, store.OpenMailbox(account->address));
    for (size_t i = 0; i < snapshot->size(); ++i) known.emplace(snapshot->uidl(i));
  }
  // The plan, checked against the limits before anything is stored.
  std::vector<PlannedMessage> plan;
  uint64_t new_octets = 0;
  for (const UidlEntry& entry : uidls) {
    auto size = size_of.find(entry.number);
    if (size == size_of.end()) {
      return absl::InvalidArgumentError(absl::StrCat(source->options().host, " lists message ",
                                                     entry.number, " in UIDL but not in LIST"));
    }
    if (known.contains(entry.uidl)) continue;
    if (size->second > message_bytes_max) {
      return absl::ResourceExhaustedError(
          absl::StrCat("message ", entry.number, " (UIDL ", entry.uidl, ") of ", size->second,
                       " octets exceeds the maximum message size of ", message_bytes_max,
                       " octets; nothing imported"));
    }
    new_octets += size->second;
    plan.push_back(PlannedMessage{entry.number, entry.uidl, size->second});
  }
  PH_ASSIGN_OR_RETURN(storage::MailboxStats stats, store.GetMailboxStats(account->address));
  PH_RETURN_IF_ERROR(storage::migration::CheckImportFitsQuota(
      stats, quota_messages, quota_octets, plan.size(), new_octets));

  Pop3ImportResult result;
  result.total = uidls.size();
  result.skipped = uidls.size() - plan.size();
  Pop3ImportProgress report{result.skipped, result.total, 0};
  if (progress) progress(report);
  auto resumable = [&result](const absl::Status& status) {
    if (result.imported == 0) return status;
    return absl::Status(status.code(),
                        absl::StrCat(status.message(), " (after importing ", result.imported,
                                     " messages; run the import again to resume)"));
  };
  std::vector<FetchedMessage> batch;
  std::vector<const PlannedMessage*> batch_plan;
  uint64_t batch_bytes = 0;
  auto flush = [&]() -> absl::Status {
    if (batch.empty()) return absl::OkStatus();
    std::vector<storage::DeliveryItem> items(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      items[i].raw_message = batch[i].bytes;
      items[i].options.uidl = batch_plan[i]->uidl;
      items[i].options.input = batch[i].input;
    }
    absl::StatusOr<std::vector<std::optional<storage::DeliverResult>>> delivered =
        storage::migration::DeliverSkippingUsedUidls(store, account->address, items);
    if (!delivered.ok()) return resumable(delivered.status());
    for (const std::optional<storage::DeliverResult>& one : *delivered) {
      if (one.has_value()) {
        ++result.imported;
        result.octets += one->pop3_size;
      } else {
        ++result.skipped;
      }
    }
    report.done += batch.size();
    report.octets = result.octets;
    batch.clear();
    batch_plan.clear();
    batch_bytes = 0;
    if (progress) progress(report);
    return absl::OkStatus();
  };
  // A wire-form body is at most 3/2 of the message: a stuffed line "..\n" for ".\n".
  const uint64_t body_bytes_max = message_bytes_max + message_bytes_max / 2 + 3;
  for (const PlannedMessage& planned : plan) {
    absl::StatusOr<Pop3Reply> reply = source->Command(absl::StrCat("RETR ", planned.number),
                                                      ReplyShape::kMultiLine, body_bytes_max);
    if (!reply.ok()) return resumable(reply.status());
    if (!reply->ok) {
      return resumable(absl::UnavailableError(absl::StrCat(source->options().host, " refused RETR ",
                                                           planned.number, " (UIDL ", planned.uidl,
                                                           "): ", reply->text)));
    }
    FetchedMessage message = AsStored(std::move(reply->body));
    if (message.pop3_size > message_bytes_max) {
      return resumable(absl::ResourceExhaustedError(absl::StrCat(
          "message ", planned.number, " (UIDL ", planned.uidl, ") of ", message.pop3_size,
          " octets exceeds the maximum message size of ", message_bytes_max, " octets")));
    }
    if (!batch.empty() && (batch.size() >= kBatchMessagesMax ||
                           batch_bytes + message.bytes.size() > kBatchBytesMax)) {
      PH_RETURN_IF_ERROR(flush());
    }
    batch_bytes += message.bytes.size();
    batch.push_back(std::move(message));
    batch_plan.push_back(&planned);
  }
  PH_RETURN_IF_ERROR(flush());
  source->Quit();
  return result;
}

}  // namespace posthaste::server::pop3_import
