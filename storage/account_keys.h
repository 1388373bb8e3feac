// Account keys in their canonical form, and the one-time migration of stores written before
// addresses were compared case-insensitively. Internal to //storage.
//
// Schema version 1 (stores without kMetaSchemaVersion) keyed each account by the address as
// the user gave it ("A" domain '\0' Local): Alice@x and alice@x were two accounts. Version 2
// keys every account by its canonical address (storage/message_format.h CanonicalAddress) and
// keeps the given case in the record (AccountRecord::display_local).
//
// MigrateAccountKeys moves each mixed-case key to its canonical key in one synced WriteBatch
// (the move, the version key and the collision count commit together or not at all, so a crash
// leaves version 1 and the next open redoes it). The incarnation travels with the record, so
// counters, mailbox indexes and UIDLs (all keyed by incarnation) are untouched. A key whose
// canonical form is already taken, by a canonical key or by another mixed-case key, is never
// merged or overwritten: every account of such a group stays under its old key ("legacy keys"),
// reachable by its exact old spelling, and MailStore::Check names the group until an operator
// deletes all but one. While legacy keys remain, kMetaCaseCollisions makes every open scan the
// account table again, moving keys whose collision has since been resolved.
//
// Threading: call at open, before the store is shared; it takes no locks.
#ifndef POSTHASTE_STORAGE_ACCOUNT_KEYS_H_
#define POSTHASTE_STORAGE_ACCOUNT_KEYS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "rocksdb/db.h"

namespace posthaste::storage::internal {

// Version 2: account keys are canonical (lowercase) addresses.
inline constexpr uint64_t kSchemaVersion = 2;

// Legacy keys left in place: canonical address -> the key addresses (as stored, sorted) that
// share it and were not moved.
using LegacyAccountKeys = std::map<std::string, std::vector<std::string>>;

struct AccountKeyMigration {
  uint64_t from_version = 0;  // the version found (1 when the key was absent)
  uint64_t moved = 0;         // accounts re-keyed under their canonical address by this call
  LegacyAccountKeys legacy;   // groups left as they were (see above)
};

// Brings the account keys of `db` to kSchemaVersion (see above). Errors: FailedPrecondition
// when the store's version is newer than this binary's; DataLoss for a malformed version key;
// other index errors as Internal/Unavailable. On error nothing was written.
absl::StatusOr<AccountKeyMigration> MigrateAccountKeys(rocksdb::DB* db);

}  // namespace posthaste::storage::internal

#endif  // POSTHASTE_STORAGE_ACCOUNT_KEYS_H_
