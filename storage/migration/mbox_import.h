// Importing an mbox file (the mboxo/mboxrd family written by mutt, Thunderbird, Postfix's
// local delivery, `formail`) into a posthaste mailbox: `posthaste import mbox ADDRESS FILE`.
//
// The file is read twice, streaming (never whole in memory): first to check that every message
// fits the size limit and the whole import the quota, then to deliver in all-or-nothing
// batches. A message starts at a line beginning "From " at the start of the file or after an
// empty line (so an unescaped "From " inside a paragraph of an mboxo file stays text); lines
// ">From ", ">>From "... lose one '>' (mboxrd, which reads mboxo's single escapes right too);
// the empty line before the next separator belongs to the separator. A message's arrival time
// is the separator's date (asctime form) when it has one, else the file's mtime.
//
// UIDLs: "MB" + 32 hex digits of the SHA-256 of the message + "." + how many identical messages
// came before it, plus one. Deterministic, so running the import again skips what is already
// there, and two identical messages are both kept.
//
// Threading: the pure functions are thread-safe; ImportMbox blocks on disk I/O (the CLI, or an
// admin socket worker; never a reactor thread).
#ifndef POSTHASTE_STORAGE_MIGRATION_MBOX_IMPORT_H_
#define POSTHASTE_STORAGE_MIGRATION_MBOX_IMPORT_H_

#include <cstdint>
#include <functional>
#include <istream>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "storage/mail_store.h"

namespace posthaste::storage::migration {

struct MboxMessage {
  std::string text;                  // LF-ended lines, unescaped, without the separator
  std::optional<absl::Time> arrival;  // from the separator line, when it has a date
};

// Calls `each` for every message of `in` in order; stops at the first error `each` returns.
// InvalidArgument when the first line is not a separator (not an mbox), or a message grows
// beyond `message_bytes_max` (checked while reading, so memory stays bounded).
absl::Status ForEachMboxMessage(std::istream& in, uint64_t message_bytes_max,
                                const std::function<absl::Status(MboxMessage&)>& each);

// The date of a separator line "From SENDER Thu Jan  1 00:00:00 2026" (asctime, in UTC),
// nullopt when it has none that parses.
std::optional<absl::Time> MboxSeparatorTime(std::string_view line);

// The UIDL of a message whose text has `sha256_hex` (64 lowercase hex digits), the
// `occurrence`-th (1-based) with that text in the file.
std::string MboxUidl(std::string_view sha256_hex, uint64_t occurrence);

struct MboxImportProgress {
  uint64_t done = 0;  // messages handled (imported or skipped)
  uint64_t total = 0;
};

struct MboxImportResult {
  uint64_t total = 0;
  uint64_t imported = 0;
  uint64_t skipped = 0;  // UIDL already present (or used before) in the account
  uint64_t octets = 0;   // POP3 octets imported
};

// Imports FILE into the existing account `address`. Fails before storing anything when a
// message is over the size limit or the import does not fit the quota. Errors: NotFound (no
// such account or file), InvalidArgument (not an mbox), ResourceExhausted (size, quota), and
// the store's. `progress` (optional) is called after each batch.
absl::StatusOr<MboxImportResult> ImportMbox(
    MailStore& store, std::string_view address, const std::string& file,
    const std::function<void(const MboxImportProgress&)>& progress);

}  // namespace posthaste::storage::migration

#endif  // POSTHASTE_STORAGE_MIGRATION_MBOX_IMPORT_H_
