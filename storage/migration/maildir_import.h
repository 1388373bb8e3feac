// Importing a Maildir into a posthaste mailbox, keeping the POP3 UIDLs clients already know.
//
// Defines the pure pieces (dovecot-uidlist parsing, Dovecot's default POP3 UIDL, Maildir file
// ordering) and ImportMaildir, which drives a MailStore.
//
// UIDLs, in order of preference, for each message file:
//   1. the "P<uidl>" field of its dovecot-uidlist line (Dovecot with pop3_save_uidl),
//   2. Dovecot's default pop3_uidl_format "%08Xu%08Xv": uid and UIDVALIDITY as 8 lowercase hex
//      digits each, when the file is listed in dovecot-uidlist,
//   3. the file's Maildir base name (the part before ':'), which is what Courier's POP3 server
//      uses as the UIDL, or "MD" + 40 hex digits of its SHA-256 when that is not a valid UIDL.
// Every UIDL is thus deterministic, so running an import again skips what is already there.
//
// Threading: the pure functions are thread-safe. ImportMaildir runs on the calling thread and
// blocks on disk I/O; it is meant for the CLI, never a reactor thread.
#ifndef POSTHASTE_STORAGE_MIGRATION_MAILDIR_IMPORT_H_
#define POSTHASTE_STORAGE_MIGRATION_MAILDIR_IMPORT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "storage/mail_store.h"

namespace posthaste::storage::migration {

// Limits on what an import reads.
inline constexpr size_t kUidlistBytesMax = 256u << 20;  // dovecot-uidlist file
inline constexpr size_t kMaildirFilesMax = 10'000'000;  // message files per Maildir

struct DovecotUidlistRecord {
  uint32_t uid = 0;
  std::string pop3_uidl;  // the "P" extension field; empty when absent
};

struct DovecotUidlist {
  uint32_t version = 0;  // 1 (Courier-compatible) or 3
  uint32_t uid_validity = 0;
  uint32_t next_uid = 0;
  // Keyed by Maildir base name (the file name up to its first ':').
  std::map<std::string, DovecotUidlistRecord, std::less<>> records;
};

// Parses the text of a dovecot-uidlist file. Version 3: header "3 V<uidvalidity> N<nextuid>
// [G<guid>] ..." and lines "<uid> [<ext fields>] :<filename>"; version 1: header "1 <uidvalidity>
// <nextuid>" and lines "<uid> <filename>". Unknown header and extension fields are ignored.
// InvalidArgument, naming the line, for anything malformed. Never crashes on any input.
absl::StatusOr<DovecotUidlist> ParseDovecotUidlist(std::string_view text);

// Dovecot's default POP3 UIDL: "%08Xu%08Xv" (lowercase hex, as Dovecot's %X modifier prints).
std::string DovecotDefaultUidl(uint32_t uid, uint32_t uid_validity);

// The Maildir base name of a file name: everything before the first ':'.
std::string_view MaildirBaseName(std::string_view file_name);

// The UIDL used for a file that dovecot-uidlist does not list (rule 3 above).
std::string FallbackUidl(std::string_view base_name);

// Sort key: the leading decimal timestamp of the name (0 when absent), then the name.
bool MaildirOrderLess(std::string_view a, std::string_view b);

struct MaildirFile {
  std::string path;  // DIR/cur/NAME or DIR/new/NAME
  std::string name;  // NAME
  uint64_t file_bytes = 0;
  int64_t mtime_unix_seconds = 0;
};

// Lists the regular files of DIR/cur and DIR/new (not tmp/, not dot files) in Maildir order.
// NotFound when DIR has neither cur/ nor new/; PermissionDenied/Internal on unreadable
// directories.
absl::StatusOr<std::vector<MaildirFile>> ListMaildir(const std::string& dir);

struct ImportProgress {
  uint64_t done = 0;  // files handled so far (imported or skipped)
  uint64_t total = 0;
};

struct ImportResult {
  uint64_t total = 0;  // message files found
  uint64_t imported = 0;
  uint64_t skipped = 0;             // UIDL already present (or used before) in the account
  uint64_t uidls_from_dovecot = 0;  // imported messages whose UIDL came from dovecot-uidlist
  uint64_t octets = 0;              // POP3 octets imported
};

// Imports DIR into the existing account `address`. Before delivering anything it checks that
// every file can be opened and that no message exceeds the size limit and the whole import
// fits the account's quota; if not, it fails and the store is unchanged. Files whose UIDL the
// account already has (or had) are skipped. Messages keep the file's mtime as arrival time.
// `progress` (optional) is called every `progress_every` files and after the last one.
// Errors: NotFound (no such account / not a Maildir), InvalidArgument (bad dovecot-uidlist),
// ResourceExhausted (size or quota), PermissionDenied/Internal (unreadable files), and store
// errors. Messages go to the store in all-or-nothing batches (DeliverBatch: up to 256
// messages or 32 MiB, sharing syncs) in Maildir order; after a failure during delivery,
// batches delivered so far stay (and are skipped by
// a re-run), and the error says how many.
absl::StatusOr<ImportResult> ImportMaildir(
    storage::MailStore& store, std::string_view address, const std::string& dir,
    const std::function<void(const ImportProgress&)>& progress, uint64_t progress_every = 1000);

}  // namespace posthaste::storage::migration

#endif  // POSTHASTE_STORAGE_MIGRATION_MAILDIR_IMPORT_H_
