#include "storage/migration/mbox_import.h"

#include <openssl/sha.h>
#include <sys/stat.h>

#include <fstream>
#include <set>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "storage/message_format.h"
#include "storage/migration/batch_delivery.h"

namespace posthaste::storage::migration {
namespace {

constexpr size_t kReadChunkBytes = 64 * 1024;
// Delivery batches: all or nothing, sharing syncs (as the Maildir import's).
constexpr size_t kBatchMessagesMax = 256;
constexpr uint64_t kBatchBytesMax = uint64_t{32} << 20;
constexpr std::string_view kSeparator = "From ";

bool IsEmptyLine(std::string_view line) { return line.empty() || line == "\r"; }

// ">From ", ">>From "...: one '>' less.
bool IsEscapedFrom(std::string_view line) {
  const size_t quotes = line.find_first_not_of('>');
  return quotes != std::string_view::npos && quotes > 0 &&
         line.substr(quotes).substr(0, kSeparator.size()) == kSeparator;
}

std::string Sha256Hex(std::string_view text) {
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(text.data()), text.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

struct PlannedMessage {
  std::string uidl;
  bool skip = false;
};

}  // namespace

std::optional<absl::Time> MboxSeparatorTime(std::string_view line) {
  if (line.substr(0, kSeparator.size()) != kSeparator) return std::nullopt;
  std::vector<std::string> words =
      absl::StrSplit(AbslView(line.substr(kSeparator.size())), ' ', absl::SkipWhitespace());
  // "SENDER Www Mmm dd hh:mm:ss yyyy": the last five words are the date.
  if (words.size() < 6) return std::nullopt;
  std::string date = absl::StrJoin(words.end() - 5, words.end(), " ");
  if (!date.empty() && date.back() == '\r') date.pop_back();
  absl::Time time;
  std::string error;
  if (!absl::ParseTime("%a %b %d %H:%M:%S %Y", date, absl::UTCTimeZone(), &time, &error)) {
    return std::nullopt;
  }
  return time;
}

std::string MboxUidl(std::string_view sha256_hex, uint64_t occurrence) {
  return absl::StrCat("MB", AbslView(sha256_hex.substr(0, 32)), ".", occurrence);
}

absl::Status ForEachMboxMessage(std::istream& in, uint64_t message_bytes_max,
                                const std::function<absl::Status(MboxMessage&)>& each) {
  MboxMessage message;
  bool in_message = false;
  bool first_line = true;
  bool previous_empty = true;  // the start of the file counts as after an empty line
  bool empty_pending = false;  // an empty line not yet known to be the message's or the separator's
  std::string line;

  auto finish = [&]() -> absl::Status {
    if (!in_message) return absl::OkStatus();
    empty_pending = false;  // the empty line before a separator is the separator's
    absl::Status status = each(message);
    message = MboxMessage();
    return status;
  };
  auto take_line = [&](std::string_view l) -> absl::Status {
    if (previous_empty && l.substr(0, kSeparator.size()) == kSeparator) {
      PH_RETURN_IF_ERROR(finish());
      in_message = true;
      message.arrival = MboxSeparatorTime(l);
    } else if (first_line) {
      return absl::InvalidArgumentError("not an mbox: the first line does not start with \"From \"");
    } else {
      if (empty_pending) message.text.push_back('\n');
      empty_pending = IsEmptyLine(l);
      if (!empty_pending) {
        if (IsEscapedFrom(l)) l.remove_prefix(1);
        message.text.append(l.data(), l.size());
        message.text.push_back('\n');
      }
      if (message.text.size() > message_bytes_max) {
        return absl::InvalidArgumentError(absl::StrCat(
            "a message exceeds the maximum message size of ", message_bytes_max, " octets"));
      }
    }
    first_line = false;
    previous_empty = IsEmptyLine(l);
    return absl::OkStatus();
  };

  std::vector<char> chunk(kReadChunkBytes);
  while (in) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    const std::string_view data(chunk.data(), static_cast<size_t>(in.gcount()));
    size_t start = 0;
    for (size_t newline = data.find('\n'); newline != std::string_view::npos;
         newline = data.find('\n', start)) {
      if (line.empty()) {
        PH_RETURN_IF_ERROR(take_line(data.substr(start, newline - start)));
      } else {
        line.append(data.substr(start, newline - start));
        PH_RETURN_IF_ERROR(take_line(line));
        line.clear();
      }
      start = newline + 1;
    }
    line.append(data.substr(start));
    if (line.size() > message_bytes_max) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a message exceeds the maximum message size of ", message_bytes_max, " octets"));
    }
  }
  if (in.bad()) return absl::DataLossError("reading the mbox failed");
  if (!line.empty()) PH_RETURN_IF_ERROR(take_line(line));
  return finish();
}

absl::StatusOr<MboxImportResult> ImportMbox(
    MailStore& store, std::string_view address, const std::string& file,
    const std::function<void(const MboxImportProgress&)>& progress) {
  absl::StatusOr<AccountInfo> account = store.GetAccount(address);
  if (absl::IsNotFound(account.status())) {
    return absl::NotFoundError(absl::StrCat("unknown user ", AbslView(address)));
  }
  PH_RETURN_IF_ERROR(account.status());
  struct stat st;
  if (stat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::NotFoundError(absl::StrCat("no mbox file ", file));
  }
  const absl::Time file_time = absl::FromUnixSeconds(st.st_mtime);
  const std::string domain = account->address.substr(account->address.rfind('@') + 1);
  PH_ASSIGN_OR_RETURN(TenantInfo tenant, store.GetTenant(domain));
  const uint64_t message_bytes_max = tenant.limits.message_bytes_max != 0
                                         ? tenant.limits.message_bytes_max
                                         : store.options().message_bytes_max;
  const uint64_t quota_messages =
      account->quota.messages != 0 ? account->quota.messages : tenant.limits.quota_messages;
  const uint64_t quota_octets =
      account->quota.octets != 0 ? account->quota.octets : tenant.limits.quota_octets;
  PH_ASSIGN_OR_RETURN(auto snapshot, store.OpenMailbox(account->address));
  std::set<std::string, std::less<>> known;
  for (size_t i = 0; i < snapshot->size(); ++i) known.emplace(snapshot->uidl(i));

  // Pass 1: every message's UIDL and size; refuse what the store would refuse half-way.
  std::vector<PlannedMessage> plan;
  absl::flat_hash_map<std::string, uint64_t> occurrences;
  uint64_t new_messages = 0, new_octets = 0;
  {
    std::ifstream in(file, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", file));
    PH_RETURN_IF_ERROR(ForEachMboxMessage(
        in, message_bytes_max, [&](MboxMessage& message) -> absl::Status {
          const uint64_t pop3_size = NormalizeForStorage(message.text).pop3_size;
          if (pop3_size > message_bytes_max) {
            return absl::ResourceExhaustedError(
                absl::StrCat("message ", plan.size() + 1, " of ", pop3_size,
                             " octets exceeds the maximum message size of ", message_bytes_max,
                             " octets"));
          }
          const std::string hash = Sha256Hex(message.text);
          PlannedMessage planned{MboxUidl(hash, ++occurrences[hash])};
          planned.skip = known.contains(planned.uidl);
          if (!planned.skip) {
            ++new_messages;
            new_octets += pop3_size;
          }
          plan.push_back(std::move(planned));
          return absl::OkStatus();
        }));
  }
  PH_ASSIGN_OR_RETURN(MailboxStats stats, store.GetMailboxStats(account->address));
  PH_RETURN_IF_ERROR(storage::migration::CheckImportFitsQuota(
      stats, quota_messages, quota_octets, new_messages, new_octets));

  // Pass 2: deliver in batches, in the file's order.
  MboxImportResult result;
  result.total = plan.size();
  MboxImportProgress report{0, plan.size()};
  // The batch being gathered; its DeliveryItems are made at flush, once `texts` stops growing.
  std::vector<std::string> texts;
  std::vector<std::string> uidls;
  std::vector<absl::Time> arrivals;
  uint64_t batch_bytes = 0;
  auto flush = [&]() -> absl::Status {
    if (!texts.empty()) {
      std::vector<DeliveryItem> items(texts.size());
      for (size_t i = 0; i < texts.size(); ++i) {
        items[i].raw_message = texts[i];
        items[i].options.uidl = uidls[i];
        items[i].options.arrival_time = arrivals[i];
      }
      absl::StatusOr<std::vector<std::optional<DeliverResult>>> delivered =
          DeliverSkippingUsedUidls(store, account->address, items);
      if (!delivered.ok()) {
        return absl::Status(delivered.status().code(),
                            absl::StrCat(delivered.status().message(), " (after importing ",
                                         result.imported,
                                         " messages; run the import again to resume)"));
      }
      for (const std::optional<DeliverResult>& r : *delivered) {
        if (r.has_value()) {
          ++result.imported;
          result.octets += r->pop3_size;
        } else {
          ++result.skipped;
        }
      }
      report.done += items.size();
    }
    texts.clear();
    uidls.clear();
    arrivals.clear();
    batch_bytes = 0;
    if (progress) progress(report);
    return absl::OkStatus();
  };
  size_t index = 0;
  std::ifstream in(file, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", file));
  PH_RETURN_IF_ERROR(ForEachMboxMessage(
      in, message_bytes_max, [&](MboxMessage& message) -> absl::Status {
        if (index >= plan.size()) return absl::AbortedError("the mbox changed during the import");
        const PlannedMessage& planned = plan[index++];
        if (planned.skip) {
          ++result.skipped;
          ++report.done;
          return absl::OkStatus();
        }
        if (texts.size() >= kBatchMessagesMax ||
            (!texts.empty() && batch_bytes + message.text.size() > kBatchBytesMax)) {
          PH_RETURN_IF_ERROR(flush());
        }
        batch_bytes += message.text.size();
        texts.push_back(std::move(message.text));
        uidls.push_back(planned.uidl);
        arrivals.push_back(message.arrival.value_or(file_time));
        return absl::OkStatus();
      }));
  PH_RETURN_IF_ERROR(flush());
  return result;
}

}  // namespace posthaste::storage::migration
