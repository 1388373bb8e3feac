#include "storage/migration/maildir_import.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "storage/migration/batch_delivery.h"

namespace posthaste::storage::migration {
namespace {

// A message file larger than this is refused before reading (the store's own limit is far
// lower; this only bounds memory).
constexpr uint64_t kMessageFileBytesMax = uint64_t{2} << 30;
// One DeliverBatch holds at most this many messages / raw bytes (all in memory at once).
constexpr size_t kImportBatchMessagesMax = 256;
constexpr uint64_t kImportBatchBytesMax = uint64_t{32} << 20;

absl::Status ErrnoStatus(int err, std::string_view what) {
  std::string message = absl::StrCat(AbslView(what), ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

// Up to 10 decimal digits (ParseDecimalAtMost); false on none, too many, or past UINT32_MAX.
bool ParseUint32(std::string_view digits, uint32_t* out) {
  if (digits.size() > 10) return false;
  const std::optional<uint64_t> value = ParseDecimalAtMost(digits, UINT32_MAX);
  if (!value.has_value()) return false;
  *out = static_cast<uint32_t>(*value);
  return true;
}

std::vector<std::string_view> SplitSpaces(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

absl::Status BadUidlist(size_t line_number, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("dovecot-uidlist line ", line_number, ": ", AbslView(why)));
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("cannot open ", path));
  std::string data;
  char buffer[1 << 16];
  while (true) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      return ErrnoStatus(err, absl::StrCat("cannot read ", path));
    }
    if (n == 0) break;
    if (data.size() + static_cast<size_t>(n) > max_bytes) {
      close(fd);
      return absl::ResourceExhaustedError(
          absl::StrCat(path, " is larger than ", max_bytes, " bytes"));
    }
    data.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return data;
}

// Reads the regular, non-hidden files of DIR/sub into `out`. Returns false (and OK) when the
// subdirectory does not exist.
absl::StatusOr<bool> ListSubdir(const std::string& dir, const char* sub,
                                std::vector<MaildirFile>* out) {
  std::string path = absl::StrCat(dir, "/", sub);
  DIR* d = opendir(path.c_str());
  if (d == nullptr) {
    if (errno == ENOENT) return false;
    return ErrnoStatus(errno, absl::StrCat("cannot read directory ", path));
  }
  std::unique_ptr<DIR, int (*)(DIR*)> closer(d, closedir);
  while (true) {
    errno = 0;
    dirent* entry = readdir(d);
    if (entry == nullptr) {
      if (errno != 0) return ErrnoStatus(errno, absl::StrCat("cannot read directory ", path));
      break;
    }
    std::string_view name = entry->d_name;
    if (name.empty() || name[0] == '.') continue;
    MaildirFile file;
    file.name = std::string(name);
    file.path = absl::StrCat(path, "/", AbslView(name));
    struct stat st;
    if (stat(file.path.c_str(), &st) != 0) {
      return ErrnoStatus(errno, absl::StrCat("cannot read ", file.path));
    }
    if (!S_ISREG(st.st_mode)) continue;
    file.file_bytes = static_cast<uint64_t>(st.st_size);
    file.mtime_unix_seconds = st.st_mtim.tv_sec;
    if (out->size() >= kMaildirFilesMax) {
      return absl::ResourceExhaustedError(
          absl::StrCat(dir, " holds more than ", kMaildirFilesMax, " files"));
    }
    out->push_back(std::move(file));
  }
  return true;
}

uint64_t LeadingTimestamp(std::string_view name) {
  // The leading digits, at most 19 (which always fit in 64 bits); 0 when there are none.
  size_t digits = 0;
  while (digits < name.size() && digits < 19 && name[digits] >= '0' && name[digits] <= '9') {
    ++digits;
  }
  return ParseDecimalU64(name.substr(0, digits)).value_or(0);
}

// Planned work for one file.
struct PlannedFile {
  const MaildirFile* file;
  std::string uidl;
  bool from_dovecot = false;
  uint64_t pop3_size = 0;  // exact, once known (0 = not computed yet)
};

absl::StatusOr<uint64_t> ExactPop3Size(const MaildirFile& file) {
  PH_ASSIGN_OR_RETURN(std::string raw, ReadSmallFile(file.path, kMessageFileBytesMax));
  return storage::NormalizeForStorage(raw).pop3_size;
}

}  // namespace

absl::StatusOr<DovecotUidlist> ParseDovecotUidlist(std::string_view text) {
  DovecotUidlist out;
  size_t line_number = 0;
  bool header_seen = false;
  while (!text.empty()) {
    size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!header_seen) {
      header_seen = true;
      std::vector<std::string_view> fields = SplitSpaces(line);
      if (fields.empty() || !ParseUint32(fields[0], &out.version)) {
        return BadUidlist(line_number, "no version in the header");
      }
      if (out.version == 1) {
        if (fields.size() < 3 || !ParseUint32(fields[1], &out.uid_validity) ||
            !ParseUint32(fields[2], &out.next_uid)) {
          return BadUidlist(line_number, "version 1 header needs UIDVALIDITY and next UID");
        }
      } else if (out.version == 2 || out.version == 3) {
        bool have_validity = false;
        for (size_t i = 1; i < fields.size(); ++i) {
          std::string_view value = fields[i].substr(1);
          if (fields[i][0] == 'V') {
            if (!ParseUint32(value, &out.uid_validity)) return BadUidlist(line_number, "bad V");
            have_validity = true;
          } else if (fields[i][0] == 'N') {
            if (!ParseUint32(value, &out.next_uid)) return BadUidlist(line_number, "bad N");
          }
        }
        if (!have_validity) return BadUidlist(line_number, "no UIDVALIDITY (V) in the header");
      } else {
        return BadUidlist(line_number, absl::StrCat("unsupported version ", out.version));
      }
      continue;
    }
    if (line.empty()) continue;
    size_t space = line.find(' ');
    if (space == std::string_view::npos) return BadUidlist(line_number, "no file name");
    DovecotUidlistRecord record;
    if (!ParseUint32(line.substr(0, space), &record.uid) || record.uid == 0) {
      return BadUidlist(line_number, "bad UID");
    }
    std::string_view rest = line.substr(space + 1);
    std::string_view file_name;
    if (out.version == 1) {
      file_name = rest;
    } else {
      // Extension fields (a key letter and a value each) up to the one that starts with ':',
      // after which the rest of the line is the file name.
      while (true) {
        while (!rest.empty() && rest[0] == ' ') rest.remove_prefix(1);
        if (rest.empty()) return BadUidlist(line_number, "no ':' before the file name");
        if (rest[0] == ':') {
          file_name = rest.substr(1);
          break;
        }
        size_t end = rest.find(' ');
        std::string_view field = rest.substr(0, end);
        if (field[0] == 'P') record.pop3_uidl = std::string(field.substr(1));
        rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
      }
    }
    std::string_view base = MaildirBaseName(file_name);
    if (base.empty()) return BadUidlist(line_number, "empty file name");
    out.records.try_emplace(std::string(base), std::move(record));
  }
  if (!header_seen) return absl::InvalidArgumentError("dovecot-uidlist is empty");
  return out;
}

std::string DovecotDefaultUidl(uint32_t uid, uint32_t uid_validity) {
  char buffer[17];
  std::snprintf(buffer, sizeof(buffer), "%08x%08x", uid, uid_validity);
  return buffer;
}

std::string_view MaildirBaseName(std::string_view file_name) {
  return file_name.substr(0, file_name.find(':'));
}

std::string FallbackUidl(std::string_view base_name) {
  if (storage::ValidateUidl(base_name).ok()) return std::string(base_name);
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(base_name.data()), base_name.size(), digest);
  std::string out = "MD";
  static constexpr char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < 20; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

bool MaildirOrderLess(std::string_view a, std::string_view b) {
  uint64_t ta = LeadingTimestamp(a), tb = LeadingTimestamp(b);
  if (ta != tb) return ta < tb;
  return a < b;
}

absl::StatusOr<std::vector<MaildirFile>> ListMaildir(const std::string& dir) {
  std::vector<MaildirFile> files;
  PH_ASSIGN_OR_RETURN(bool has_cur, ListSubdir(dir, "cur", &files));
  PH_ASSIGN_OR_RETURN(bool has_new, ListSubdir(dir, "new", &files));
  if (!has_cur && !has_new) {
    struct stat st;
    if (stat(dir.c_str(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("cannot read ", dir));
    return absl::NotFoundError(absl::StrCat(dir, " is not a Maildir (no cur/ or new/)"));
  }
  std::sort(files.begin(), files.end(), [](const MaildirFile& a, const MaildirFile& b) {
    return MaildirOrderLess(a.name, b.name);
  });
  return files;
}

absl::StatusOr<ImportResult> ImportMaildir(
    storage::MailStore& store, std::string_view address, const std::string& dir,
    const std::function<void(const ImportProgress&)>& progress, uint64_t progress_every) {
  absl::StatusOr<storage::AccountInfo> account = store.GetAccount(address);
  if (absl::IsNotFound(account.status())) {
    return absl::NotFoundError(absl::StrCat("unknown user ", AbslView(address)));
  }
  PH_RETURN_IF_ERROR(account.status());
  const std::string domain = account->address.substr(account->address.rfind('@') + 1);

  // UIDLs from dovecot-uidlist, when there is one.
  std::optional<DovecotUidlist> uidlist;
  const std::string uidlist_path = dir + "/dovecot-uidlist";
  if (access(uidlist_path.c_str(), F_OK) == 0) {
    PH_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(uidlist_path, kUidlistBytesMax));
    absl::StatusOr<DovecotUidlist> parsed = ParseDovecotUidlist(text);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(uidlist_path, ": ", parsed.status().message()));
    }
    uidlist = std::move(*parsed);
  }

  PH_ASSIGN_OR_RETURN(std::vector<MaildirFile> files, ListMaildir(dir));
  PH_ASSIGN_OR_RETURN(auto snapshot, store.OpenMailbox(account->address));
  std::set<std::string, std::less<>> known;
  for (size_t i = 0; i < snapshot->size(); ++i) known.emplace(snapshot->uidl(i));

  ImportResult result;
  result.total = files.size();
  std::vector<PlannedFile> plan;
  for (const MaildirFile& file : files) {
    PlannedFile planned{&file, "", false, 0};
    std::string_view base = MaildirBaseName(file.name);
    if (uidlist.has_value()) {
      auto it = uidlist->records.find(base);
      if (it != uidlist->records.end()) {
        planned.from_dovecot = true;
        if (!it->second.pop3_uidl.empty() && storage::ValidateUidl(it->second.pop3_uidl).ok()) {
          planned.uidl = it->second.pop3_uidl;
        } else {
          planned.uidl = DovecotDefaultUidl(it->second.uid, uidlist->uid_validity);
        }
      }
    }
    if (planned.uidl.empty()) planned.uidl = FallbackUidl(base);
    if (!known.insert(planned.uidl).second) {
      ++result.skipped;
      continue;
    }
    plan.push_back(std::move(planned));
  }

  // Refuse up front what the store would refuse half-way: unreadable files, oversized
  // messages, a quota the whole import does not fit. The POP3 size of a file of n bytes lies
  // in [n, 2n + 2] (line endings only grow), so most files need no reading here.
  PH_ASSIGN_OR_RETURN(storage::TenantInfo tenant, store.GetTenant(domain));
  const uint64_t message_bytes_max = tenant.limits.message_bytes_max != 0
                                         ? tenant.limits.message_bytes_max
                                         : store.options().message_bytes_max;
  const uint64_t quota_messages =
      account->quota.messages != 0 ? account->quota.messages : tenant.limits.quota_messages;
  const uint64_t quota_octets =
      account->quota.octets != 0 ? account->quota.octets : tenant.limits.quota_octets;
  PH_ASSIGN_OR_RETURN(storage::MailboxStats stats, store.GetMailboxStats(account->address));
  uint64_t low_total = 0, high_total = 0;
  for (PlannedFile& planned : plan) {
    const MaildirFile& file = *planned.file;
    int fd = open(file.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ErrnoStatus(errno, absl::StrCat("cannot read ", file.path));
    close(fd);
    if (file.file_bytes > kMessageFileBytesMax) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "message ", file.path, " of ", file.file_bytes,
          " octets exceeds the maximum message size of ", message_bytes_max, " octets"));
    }
    if (2 * file.file_bytes + 2 > message_bytes_max) {
      PH_ASSIGN_OR_RETURN(planned.pop3_size, ExactPop3Size(file));
      if (planned.pop3_size > message_bytes_max) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "message ", file.path, " of ", planned.pop3_size,
            " octets exceeds the maximum message size of ", message_bytes_max, " octets"));
      }
    }
    low_total += planned.pop3_size != 0 ? planned.pop3_size : file.file_bytes;
    high_total += planned.pop3_size != 0 ? planned.pop3_size : 2 * file.file_bytes + 2;
  }
  if (quota_messages != 0 && stats.messages + plan.size() > quota_messages) {
    return absl::ResourceExhaustedError(
        absl::StrCat("mailbox quota exceeded: ", stats.messages, " messages + ", plan.size(),
                     " to import > quota of ", quota_messages, " messages"));
  }
  if (quota_octets != 0 && stats.octets + high_total > quota_octets) {
    uint64_t exact_total = 0;
    if (stats.octets + low_total <= quota_octets) {
      for (PlannedFile& planned : plan) {
        if (planned.pop3_size == 0) {
          PH_ASSIGN_OR_RETURN(planned.pop3_size, ExactPop3Size(*planned.file));
        }
        exact_total += planned.pop3_size;
      }
    } else {
      exact_total = low_total;
    }
    if (stats.octets + exact_total > quota_octets) {
      return absl::ResourceExhaustedError(
          absl::StrCat("mailbox quota exceeded: ", stats.octets, " octets + ", exact_total,
                       " to import > quota of ", quota_octets, " octets"));
    }
  }

  ImportProgress report{result.skipped, result.total};
  uint64_t next_report = report.done + progress_every;
  auto advance = [&](uint64_t files) {
    report.done += files;
    if (progress && (report.done >= next_report || report.done == report.total)) {
      next_report = report.done + progress_every;
      progress(report);
    }
  };
  auto count_delivered = [&](const PlannedFile& planned, const storage::DeliverResult& r) {
    ++result.imported;
    result.octets += r.pop3_size;
    if (planned.from_dovecot) ++result.uidls_from_dovecot;
  };
  auto fail = [&](const std::string& path, const absl::Status& status) {
    return absl::Status(
        status.code(),
        absl::StrCat(path, ": ", status.message(), " (after importing ", result.imported, " of ",
                     plan.size(), " messages; run the import again to resume)"));
  };
  // Batches keep Maildir order and share one index sync and segment syncs among many
  // messages; a batch is all or nothing.
  size_t next = 0;
  while (next < plan.size()) {
    std::vector<std::string> raws;
    std::vector<storage::DeliveryItem> items;
    uint64_t batch_bytes = 0;
    const size_t first = next;
    while (next < plan.size() && raws.size() < kImportBatchMessagesMax &&
           (raws.empty() || batch_bytes + plan[next].file->file_bytes <= kImportBatchBytesMax)) {
      absl::StatusOr<std::string> raw = ReadSmallFile(plan[next].file->path, kMessageFileBytesMax);
      if (!raw.ok()) return fail(plan[next].file->path, raw.status());
      batch_bytes += raw->size();
      raws.push_back(std::move(*raw));
      ++next;
    }
    for (size_t i = first; i < next; ++i) {
      storage::DeliverOptions options;
      options.uidl = plan[i].uidl;
      options.arrival_time = absl::FromUnixSeconds(plan[i].file->mtime_unix_seconds);
      items.push_back(storage::DeliveryItem{raws[i - first], std::move(options)});
    }
    absl::StatusOr<std::vector<std::optional<storage::DeliverResult>>> delivered =
        DeliverSkippingUsedUidls(store, account->address, items);
    if (!delivered.ok()) {
      return fail(absl::StrCat(plan[first].file->path, " (batch of ", next - first, ")"),
                  delivered.status());
    }
    for (size_t i = first; i < next; ++i) {
      if ((*delivered)[i - first].has_value()) {
        count_delivered(plan[i], *(*delivered)[i - first]);
      } else {
        ++result.skipped;
      }
    }
    advance(next - first);
  }
  if (plan.empty() && progress) progress(report);
  return result;
}

}  // namespace posthaste::storage::migration
