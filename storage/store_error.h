// StoreError: what went wrong in a storage call, as a kind callers switch on. Every error
// Status that MailStore (and the address/UIDL rules of storage/message_format.h) returns carries
// its kind as a Status payload, beside the canonical code and the human-readable message, so a
// caller maps errors to its own replies (LMTP codes, POP3 -ERR, CLI lines, HTTP statuses) by
// kind, never by reading the message text.
//
// Who may call: anyone holding a Status from storage. Thread-safe: pure functions.
#ifndef POSTHASTE_STORAGE_STORE_ERROR_H_
#define POSTHASTE_STORAGE_STORE_ERROR_H_

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace posthaste::storage {

// The canonical code each kind comes with is given after it.
enum class StoreError : uint8_t {
  kNone,             // OK, or a Status storage did not make (it carries no kind)
  kUnknownAccount,   // NotFound: no account has this address (deleted, or re-created since the
                     // snapshot was taken, for CommitDeletions)
  kUnknownTenant,    // NotFound: GetTenant before the tenant's first account
  kAccountExists,    // AlreadyExists: CreateAccount of an address in use, in any case
  kDisabled,         // FailedPrecondition: delivery to a disabled account
  kOverQuota,        // ResourceExhausted: the account's message or octet quota would be passed
  kMessageTooBig,    // ResourceExhausted: over the tenant's (else the store's) message size limit
  kInvalidAddress,   // InvalidArgument: a malformed address or domain
  kInvalidUidl,      // InvalidArgument: a UIDL to keep breaks the UIDL rule
  kUidlInUse,        // AlreadyExists: a UIDL to keep is used in the account (or twice in a batch)
  kNotWireForm,      // InvalidArgument: input given as wire form (MessageInput::kWireForm)
                     // breaks it
  kInvalidArgument,  // InvalidArgument: another bad argument (options, password hash length)
  kNoSuchMessage,    // OutOfRange: a message index outside the snapshot
  kNoStore,          // NotFound: no store in the data directory and !create_if_missing
  kStoreLocked,      // Unavailable: another process (or MailStore) holds the data directory
  kNewerSchema,      // FailedPrecondition: the store was written by a newer posthaste
  kTemporary,        // Unavailable: out of descriptors or memory, index busy or read-only
                     // after a write fault, a mailbox moving under compaction: the same call
                     // may succeed later
  kCorrupt,          // DataLoss: an index record or segment file is damaged or missing
  kIo,               // Internal: another I/O or index failure (an errno-based one keeps its
                     // errno's code, e.g. PermissionDenied)
  kAccountHeld,      // Unavailable: a delivery or deletion while the account is held for a
                     // move to another backend (MailStore::HoldAccount): retry later
  kTenantExists,     // AlreadyExists: CreateTenant of a domain that has a tenant record
  kTenantNotEmpty,   // FailedPrecondition: DeleteTenant while the tenant still has accounts
  kStaleRevision,    // FailedPrecondition: SetTenantPolicy expected another policy revision
  kNoSpace,          // ResourceExhausted: the data directory's file system is full (ENOSPC,
                     // EDQUOT) or below StoreOptions::free_bytes_min; temporary like kTemporary,
                     // told apart so LMTP answers 452 4.3.1 (RFC 3463) rather than 451 4.3.0
};

// "unknown_account", "over_quota", ...: the payload's text, so logs of Status::ToString() show
// the kind. "none" for kNone.
std::string_view StoreErrorName(StoreError kind);

// The kind `status` carries; kNone when it is OK or carries none.
StoreError ErrorOf(const absl::Status& status);
template <typename T>
StoreError ErrorOf(const absl::StatusOr<T>& result) {
  return result.ok() ? StoreError::kNone : ErrorOf(result.status());
}

// For storage's own use. A new error of `kind` with the kind's canonical code (listed above).
// REQUIRES: kind != kNone.
absl::Status StoreErrorStatus(StoreError kind, std::string_view message);
// `status` (its code and message kept) with `kind` attached, replacing any kind it had; OK and
// kNone leave it as it is.
absl::Status WithStoreError(absl::Status status, StoreError kind);

}  // namespace posthaste::storage

#endif  // POSTHASTE_STORAGE_STORE_ERROR_H_
