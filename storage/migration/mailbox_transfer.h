// Copying one account's mailbox from one MailStore to another, in bounded pages, keeping
// everything a POP3 client or the account's owner can see: the password hash with its SCRAM
// verifiers, the APOP/CRAM-MD5 secret, the disabled flag, the quota, and for each message its UIDL,
// arrival time and stored (wire-form) bytes. A POP3 message has no flags: it is either in the
// mailbox or deleted, and a deletion is carried by the page that ends a pass (the source's complete
// UIDL list), see ImportMailboxPage.
//
// The page format (version 1), all integers little-endian:
//   "PHMOVE1\n"
//   frames: kind (1 byte), payload length (u32), CRC-32C of the payload (u32), payload
//     'A' account   str display_address, str password_hash, u8 disabled, u64 quota_messages,
//                   u64 quota_octets
//     'S' secrets   str scram_sha1, str scram_sha256, str shared_secret (optional, right after
//                   'A'; written only when one is set, so pages of other accounts stay
//                   readable by importers that predate it)
//     'M' message   u64 seq, u64 arrival_unix_seconds, u64 pop3_size, str uidl, str wire bytes
//     'U' UIDLs     u32 count, then count x str: every UIDL of the source mailbox at the
//                   moment of the page's snapshot (only in the page that completes a pass)
//     'E' end       u64 next_after_seq, u8 complete (always the last frame)
//   str is a u32 length and the bytes. A page holds one 'A', then messages in arrival order, then
//   (when complete) one 'U', then one 'E'; nothing may follow 'E'.
// Pages are cut by the source's per-account sequence number (arrival order): a page holds the
// messages whose seq is above `after_seq`. Sequence numbers are reserved before a delivery is
// committed, so a message delivered while a pass runs may land behind the cursor: a pass that
// must be complete (the one made while deliveries are held back) starts again from 0. Messages
// the target already has (by UIDL) are skipped, so repeating a pass costs bytes, never
// duplicates.
//
// Threading: the functions are thread-safe as MailStore is, and block on disk I/O (never call
// them from a reactor thread). Module rule: storage only; no network I/O.
#ifndef POSTHASTE_STORAGE_MIGRATION_MAILBOX_TRANSFER_H_
#define POSTHASTE_STORAGE_MIGRATION_MAILBOX_TRANSFER_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "storage/mail_store.h"

namespace posthaste::storage::migration {

inline constexpr std::string_view kTransferMagic = "PHMOVE1\n";
// Default and largest page sizes (bytes of message frames); a page always holds at least one
// message, so one message may make a page longer by up to the store's message size limit.
inline constexpr uint64_t kTransferPageBytesDefault = uint64_t{4} << 20;
inline constexpr uint64_t kTransferPageBytesMax = uint64_t{64} << 20;
// A page longer than this is refused by the parser before anything is imported.
inline constexpr uint64_t kTransferPageBytesLimit =
    kTransferPageBytesMax + kMessageBytesMaxConfigurable;
// UIDLs in one 'U' frame.
inline constexpr uint32_t kTransferUidlsMax = 10'000'000;

struct ExportPageOptions {
  uint64_t after_seq = 0;  // 0: from the first message
  uint64_t page_bytes_max = kTransferPageBytesDefault;
};

struct ExportPageInfo {
  uint64_t messages = 0;        // message frames in the page
  uint64_t next_after_seq = 0;  // pass this as after_seq for the next page
  bool complete = false;        // the page ends the pass (it carries the UIDL list)
};

// Appends one page of `address`'s mailbox to `*page`. Errors: the store's (kUnknownAccount,
// kInvalidAddress, kCorrupt/kIo when a segment cannot be read); `*page` is unspecified then.
absl::StatusOr<ExportPageInfo> ExportMailboxPage(MailStore& store, std::string_view address,
                                                 const ExportPageOptions& options,
                                                 std::string* page);

// Checks a page's framing, checksums and bounds without a store (what ImportMailboxPage does
// first). DataLoss for a bad checksum, InvalidArgument for anything else malformed. Never crashes
// on any input.
absl::Status CheckMailboxPage(std::string_view page);

struct ImportPageResult {
  uint64_t imported = 0;  // messages stored by this call
  uint64_t skipped = 0;   // messages whose UIDL the account already has (or had)
  uint64_t deleted = 0;   // messages removed because the source no longer has them
  bool account_created = false;
  uint64_t next_after_seq = 0;
  bool complete = false;
};

// Checks the whole page (framing, checksums, bounds) before changing anything; DataLoss for a
// bad checksum, InvalidArgument for anything else malformed. Then makes `address` (which must be
// the page's account) match it: creates the account when absent, sets its password hash,
// SCRAM verifiers, shared secret, disabled flag and quota to the source's, stores the messages it
// lacks with their UIDLs and arrival times (durably, in all-or-nothing batches), and, when the page
// completes a pass, deletes the messages whose UIDL the source no longer has. Idempotent: importing
// the same page again changes nothing. A failure part way leaves whole batches stored, which a
// retry skips.
absl::StatusOr<ImportPageResult> ImportMailboxPage(MailStore& store, std::string_view address,
                                                   std::string_view page);

}  // namespace posthaste::storage::migration

#endif  // POSTHASTE_STORAGE_MIGRATION_MAILBOX_TRANSFER_H_
