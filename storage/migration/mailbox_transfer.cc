#include "storage/migration/mailbox_transfer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <set>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "storage/crc32c.h"
#include "storage/migration/batch_delivery.h"

namespace posthaste::storage::migration {
namespace {

// One DeliverBatch of an import holds at most this many messages (their bytes are in the page,
// already in memory).
constexpr size_t kImportBatchMessagesMax = 256;
// Frame header: kind, payload length, checksum.
constexpr size_t kFrameHeaderBytes = 1 + 4 + 4;

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutStr(std::string* out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out->append(s);
}
void PutFrame(std::string* out, char kind, std::string_view payload) {
  out->push_back(kind);
  PutU32(out, static_cast<uint32_t>(payload.size()));
  PutU32(out, Crc32c(payload));
  out->append(payload);
}

// Reads fields from one frame's payload; every read is bounds-checked.
class FieldReader {
 public:
  explicit FieldReader(std::string_view data) : data_(data) {}
  bool U8(uint8_t* v) {
    if (data_.empty()) return false;
    *v = static_cast<uint8_t>(data_[0]);
    data_.remove_prefix(1);
    return true;
  }
  bool U32(uint32_t* v) {
    if (data_.size() < 4) return false;
    *v = 0;
    for (int i = 0; i < 4; ++i) *v |= uint32_t{static_cast<uint8_t>(data_[i])} << (8 * i);
    data_.remove_prefix(4);
    return true;
  }
  bool U64(uint64_t* v) {
    if (data_.size() < 8) return false;
    *v = 0;
    for (int i = 0; i < 8; ++i) *v |= uint64_t{static_cast<uint8_t>(data_[i])} << (8 * i);
    data_.remove_prefix(8);
    return true;
  }
  bool Str(std::string_view* s) {
    uint32_t n = 0;
    if (!U32(&n) || data_.size() < n) return false;
    *s = data_.substr(0, n);
    data_.remove_prefix(n);
    return true;
  }
  bool done() const { return data_.empty(); }

 private:
  std::string_view data_;
};

absl::Status Malformed(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("mailbox page: ", AbslView(what)));
}

struct ParsedAccount {
  std::string_view display_address;
  std::string_view password_hash;
  bool disabled = false;
  AccountQuota quota;
  // From the 'S' frame; empty when the page has none.
  std::string_view scram_sha1;
  std::string_view scram_sha256;
  std::string_view shared_secret;
};

struct ParsedMessage {
  uint64_t seq = 0;
  uint64_t arrival_unix_seconds = 0;
  uint64_t pop3_size = 0;
  std::string_view uidl;
  std::string_view wire;
};

struct ParsedPage {
  ParsedAccount account;
  std::vector<ParsedMessage> messages;
  std::optional<std::vector<std::string_view>> source_uidls;  // set in a completing page
  uint64_t next_after_seq = 0;
  bool complete = false;
};

absl::StatusOr<ParsedPage> ParsePage(std::string_view page) {
  if (page.size() > kTransferPageBytesLimit) return Malformed("too long");
  if (page.substr(0, kTransferMagic.size()) != kTransferMagic) return Malformed("bad magic");
  page.remove_prefix(kTransferMagic.size());
  ParsedPage parsed;
  enum class Expect : uint8_t { kAccount, kMessagesOrUidls, kEnd, kNothing };
  Expect expect = Expect::kAccount;
  bool secrets_seen = false;
  while (!page.empty()) {
    if (expect == Expect::kNothing) return Malformed("bytes after the end frame");
    FieldReader header(page.substr(0, kFrameHeaderBytes));
    uint8_t kind = 0;
    uint32_t length = 0;
    uint32_t crc = 0;
    if (!header.U8(&kind) || !header.U32(&length) || !header.U32(&crc)) {
      return Malformed("truncated frame header");
    }
    page.remove_prefix(kFrameHeaderBytes);
    if (page.size() < length) return Malformed("truncated frame");
    const std::string_view payload = page.substr(0, length);
    page.remove_prefix(length);
    if (Crc32c(payload) != crc) {
      return absl::DataLossError(
          absl::StrCat("mailbox page: checksum mismatch in a '", std::string(1, kind), "' frame"));
    }
    FieldReader in(payload);
    switch (kind) {
      case 'A': {
        if (expect != Expect::kAccount) return Malformed("unexpected account frame");
        uint8_t disabled = 0;
        ParsedAccount& a = parsed.account;
        if (!in.Str(&a.display_address) || !in.Str(&a.password_hash) || !in.U8(&disabled) ||
            !in.U64(&a.quota.messages) || !in.U64(&a.quota.octets) || !in.done() || disabled > 1) {
          return Malformed("bad account frame");
        }
        a.disabled = disabled == 1;
        expect = Expect::kMessagesOrUidls;
        break;
      }
      case 'S': {
        if (expect != Expect::kMessagesOrUidls || !parsed.messages.empty() || secrets_seen) {
          return Malformed("unexpected secrets frame");
        }
        ParsedAccount& a = parsed.account;
        if (!in.Str(&a.scram_sha1) || !in.Str(&a.scram_sha256) || !in.Str(&a.shared_secret) ||
            !in.done() || a.scram_sha1.size() > kMaxPasswordHashLength ||
            a.scram_sha256.size() > kMaxPasswordHashLength ||
            a.shared_secret.size() > kMaxSharedSecretLength) {
          return Malformed("bad secrets frame");
        }
        secrets_seen = true;
        break;
      }
      case 'M': {
        if (expect != Expect::kMessagesOrUidls) return Malformed("unexpected message frame");
        ParsedMessage m;
        if (!in.U64(&m.seq) || !in.U64(&m.arrival_unix_seconds) || !in.U64(&m.pop3_size) ||
            !in.Str(&m.uidl) || !in.Str(&m.wire) || !in.done()) {
          return Malformed("bad message frame");
        }
        if (!ValidateUidl(m.uidl).ok()) return Malformed("bad UIDL in a message frame");
        parsed.messages.push_back(m);
        break;
      }
      case 'U': {
        if (expect != Expect::kMessagesOrUidls) return Malformed("unexpected UIDL list frame");
        uint32_t count = 0;
        if (!in.U32(&count) || count > kTransferUidlsMax) return Malformed("bad UIDL list");
        std::vector<std::string_view> uidls;
        uidls.reserve(std::min<uint32_t>(count, length / 4));
        for (uint32_t i = 0; i < count; ++i) {
          std::string_view uidl;
          if (!in.Str(&uidl)) return Malformed("bad UIDL list");
          uidls.push_back(uidl);
        }
        if (!in.done()) return Malformed("bad UIDL list");
        parsed.source_uidls = std::move(uidls);
        expect = Expect::kEnd;
        break;
      }
      case 'E': {
        if (expect != Expect::kMessagesOrUidls && expect != Expect::kEnd) {
          return Malformed("unexpected end frame");
        }
        uint8_t complete = 0;
        if (!in.U64(&parsed.next_after_seq) || !in.U8(&complete) || !in.done() || complete > 1) {
          return Malformed("bad end frame");
        }
        parsed.complete = complete == 1;
        if (parsed.complete != parsed.source_uidls.has_value()) {
          return Malformed("a complete page needs a UIDL list, and only it");
        }
        expect = Expect::kNothing;
        break;
      }
      default:
        return Malformed(absl::StrCat("unknown frame kind ", kind));
    }
  }
  if (expect != Expect::kNothing) return Malformed("no end frame");
  return parsed;
}

absl::Status ReadStored(const MailboxSnapshot& snapshot, size_t index, std::string* out) {
  const MessageRef ref = snapshot.Ref(index);
  out->resize(ref.length);
  size_t done = 0;
  while (done < ref.length) {
    const ssize_t n = ::pread(ref.fd, out->data() + done, ref.length - done,
                              static_cast<off_t>(ref.offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return absl::InternalError(absl::StrCat("reading a segment: ", std::strerror(errno)));
    if (n == 0) return absl::DataLossError("segment shorter than its index entry");
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ExportPageInfo> ExportMailboxPage(MailStore& store, std::string_view address,
                                                 const ExportPageOptions& options,
                                                 std::string* page) {
  PH_ASSIGN_OR_RETURN(AccountInfo account, store.GetAccount(address));
  PH_ASSIGN_OR_RETURN(std::shared_ptr<const MailboxSnapshot> snapshot,
                      store.OpenMailbox(account.address));
  const uint64_t page_bytes_max =
      std::clamp<uint64_t>(options.page_bytes_max, 1, kTransferPageBytesMax);
  page->append(kTransferMagic);
  std::string payload;
  PutStr(&payload, account.display_address);
  PutStr(&payload, account.password_hash);
  payload.push_back(account.disabled ? 1 : 0);
  PutU64(&payload, account.quota.messages);
  PutU64(&payload, account.quota.octets);
  PutFrame(page, 'A', payload);
  if (!account.scram.sha1.empty() || !account.scram.sha256.empty() ||
      !account.shared_secret.empty()) {
    payload.clear();
    PutStr(&payload, account.scram.sha1);
    PutStr(&payload, account.scram.sha256);
    PutStr(&payload, account.shared_secret);
    PutFrame(page, 'S', payload);
  }

  ExportPageInfo info;
  info.next_after_seq = options.after_seq;
  // Entries are in seq order: start after the cursor.
  size_t index = 0;
  while (index < snapshot->size() && snapshot->entry(index).seq <= options.after_seq) ++index;
  uint64_t bytes = 0;
  std::string wire;
  for (; index < snapshot->size(); ++index) {
    const SnapshotEntry& e = snapshot->entry(index);
    if (info.messages > 0 && bytes + e.stored_length > page_bytes_max) break;
    PH_RETURN_IF_ERROR(ReadStored(*snapshot, index, &wire));
    payload.clear();
    PutU64(&payload, e.seq);
    PutU64(&payload, e.arrival_unix_seconds);
    PutU64(&payload, e.pop3_size);
    PutStr(&payload, snapshot->uidl(index));
    PutStr(&payload, wire);
    PutFrame(page, 'M', payload);
    bytes += e.stored_length;
    ++info.messages;
    info.next_after_seq = e.seq;
  }
  info.complete = index == snapshot->size();
  if (info.complete) {
    payload.clear();
    PutU32(&payload, static_cast<uint32_t>(snapshot->size()));
    for (size_t i = 0; i < snapshot->size(); ++i) PutStr(&payload, snapshot->uidl(i));
    PutFrame(page, 'U', payload);
  }
  payload.clear();
  PutU64(&payload, info.next_after_seq);
  payload.push_back(info.complete ? 1 : 0);
  PutFrame(page, 'E', payload);
  return info;
}

absl::Status CheckMailboxPage(std::string_view page) { return ParsePage(page).status(); }

absl::StatusOr<ImportPageResult> ImportMailboxPage(MailStore& store, std::string_view address,
                                                   std::string_view page) {
  PH_ASSIGN_OR_RETURN(ParsedPage parsed, ParsePage(page));
  if (absl::AsciiStrToLower(AbslView(parsed.account.display_address)) !=
      absl::AsciiStrToLower(AbslView(address))) {
    return absl::InvalidArgumentError(absl::StrCat("mailbox page is for ",
                                                   AbslView(parsed.account.display_address),
                                                   ", not ", AbslView(address)));
  }
  ImportPageResult result;
  result.next_after_seq = parsed.next_after_seq;
  result.complete = parsed.complete;

  absl::StatusOr<AccountInfo> account = store.GetAccount(address);
  if (ErrorOf(account) == StoreError::kUnknownAccount) {
    // Created under the source's spelling, so the display address stays what the user gave.
    account = store.CreateAccount(parsed.account.display_address, parsed.account.password_hash);
    result.account_created = account.ok();
  }
  if (!account.ok()) return account.status();
  const ParsedAccount& source = parsed.account;
  if (account->password_hash != source.password_hash || account->scram.sha1 != source.scram_sha1 ||
      account->scram.sha256 != source.scram_sha256) {
    PH_RETURN_IF_ERROR(
        store.SetPasswordHash(account->address, source.password_hash,
                              ScramVerifiers{.sha1 = std::string(source.scram_sha1),
                                             .sha256 = std::string(source.scram_sha256)}));
  }
  if (account->shared_secret != source.shared_secret) {
    PH_RETURN_IF_ERROR(store.SetSharedSecret(account->address, source.shared_secret));
  }
  // Enabled while importing: a disabled account refuses deliveries, imports included.
  if (account->disabled) PH_RETURN_IF_ERROR(store.SetDisabled(account->address, false));

  for (size_t first = 0; first < parsed.messages.size(); first += kImportBatchMessagesMax) {
    const size_t end = std::min(parsed.messages.size(), first + kImportBatchMessagesMax);
    std::vector<DeliveryItem> items;
    items.reserve(end - first);
    for (size_t i = first; i < end; ++i) {
      DeliverOptions options;
      options.uidl = std::string(parsed.messages[i].uidl);
      options.arrival_time =
          absl::FromUnixSeconds(static_cast<int64_t>(parsed.messages[i].arrival_unix_seconds));
      options.input = MessageInput::kWireForm;
      items.push_back(DeliveryItem{parsed.messages[i].wire, std::move(options)});
    }
    PH_ASSIGN_OR_RETURN(std::vector<std::optional<DeliverResult>> delivered,
                        DeliverSkippingUsedUidls(store, account->address, items));
    for (const std::optional<DeliverResult>& one : delivered) {
      if (one.has_value()) {
        ++result.imported;
      } else {
        ++result.skipped;
      }
    }
  }

  if (parsed.source_uidls.has_value()) {
    // The source deleted these since they were copied (a POP3 client's DELE and QUIT).
    const std::set<std::string_view> keep(parsed.source_uidls->begin(), parsed.source_uidls->end());
    PH_ASSIGN_OR_RETURN(std::shared_ptr<const MailboxSnapshot> snapshot,
                        store.OpenMailbox(account->address));
    std::vector<size_t> gone;
    for (size_t i = 0; i < snapshot->size(); ++i) {
      if (!keep.contains(snapshot->uidl(i))) gone.push_back(i);
    }
    if (!gone.empty()) {
      PH_ASSIGN_OR_RETURN(DeletionResult deleted, store.CommitDeletions(*snapshot, gone));
      result.deleted = deleted.deleted;
    }
  }
  PH_RETURN_IF_ERROR(store.SetQuota(account->address, parsed.account.quota));
  if (parsed.account.disabled) PH_RETURN_IF_ERROR(store.SetDisabled(account->address, true));
  return result;
}

}  // namespace posthaste::storage::migration
