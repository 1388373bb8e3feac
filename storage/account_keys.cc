#include "storage/account_keys.h"

#include <memory>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/log.h"
#include "base/strings.h"
#include "rocksdb/write_batch.h"
#include "storage/index_codec.h"
#include "storage/message_format.h"
#include "storage/store_error.h"

namespace posthaste::storage::internal {
namespace {

rocksdb::Slice ToSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }
std::string_view View(const rocksdb::Slice& s) { return std::string_view(s.data(), s.size()); }

absl::Status MigrationError(const rocksdb::Status& s, std::string_view what) {
  const std::string message =
      absl::StrCat("account key migration: ", AbslView(what), ": ", s.ToString());
  if (s.IsCorruption()) return StoreErrorStatus(StoreError::kCorrupt, message);
  if (s.IsNoSpace()) return StoreErrorStatus(StoreError::kNoSpace, message);
  if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut()) {
    return StoreErrorStatus(StoreError::kTemporary, message);
  }
  return StoreErrorStatus(StoreError::kIo, message);
}

std::string MetaU64(uint64_t v) {
  std::string out;
  PutLE64(&out, v);
  return out;
}

absl::StatusOr<std::optional<uint64_t>> ReadMetaU64(rocksdb::DB* db, std::string_view key) {
  std::string value;
  rocksdb::Status s = db->Get(rocksdb::ReadOptions(), ToSlice(key), &value);
  if (s.IsNotFound()) return std::optional<uint64_t>();
  if (!s.ok()) return MigrationError(s, key);
  if (value.size() != 8) {
    return StoreErrorStatus(StoreError::kCorrupt, absl::StrCat("bad metadata ", AbslView(key)));
  }
  return std::optional<uint64_t>(GetLE64(value.data()));
}

struct MixedCaseKey {
  std::string key_address;
  std::string value;
};

}  // namespace

absl::StatusOr<AccountKeyMigration> MigrateAccountKeys(rocksdb::DB* db) {
  AccountKeyMigration result;
  absl::StatusOr<std::optional<uint64_t>> version = ReadMetaU64(db, kMetaSchemaVersion);
  if (!version.ok()) return version.status();
  result.from_version = version->value_or(1);
  if (result.from_version > kSchemaVersion) {
    return StoreErrorStatus(
        StoreError::kNewerSchema,
        absl::StrCat("the store's schema version is ", result.from_version,
                     "; this posthaste understands up to ", kSchemaVersion, ": use a newer one"));
  }
  absl::StatusOr<std::optional<uint64_t>> collisions = ReadMetaU64(db, kMetaCaseCollisions);
  if (!collisions.ok()) return collisions.status();
  if (result.from_version == kSchemaVersion && !collisions->has_value()) return result;

  // One pass over the account table: canonical keys, and mixed-case keys grouped by the
  // canonical address they would move to.
  std::set<std::string> canonical_keys;
  std::map<std::string, std::vector<MixedCaseKey>> mixed;
  {
    const std::string lower(1, kAccountPrefix);
    const std::string upper(1, static_cast<char>(kAccountPrefix + 1));
    rocksdb::Slice upper_slice = ToSlice(upper);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
    for (it->Seek(ToSlice(lower)); it->Valid(); it->Next()) {
      std::string key_address = AddressFromAccountKey(View(it->key()));
      absl::StatusOr<std::string> canonical = CanonicalAddress(key_address);
      // A key no valid address maps to was never written by posthaste: leave it to Check.
      if (!canonical.ok()) continue;
      if (*canonical == key_address) {
        canonical_keys.insert(*std::move(canonical));
      } else {
        mixed[*canonical].push_back({std::move(key_address), std::string(View(it->value()))});
      }
    }
    if (!it->status().ok()) return MigrationError(it->status(), "scan accounts");
  }

  rocksdb::WriteBatch batch;
  uint64_t legacy_count = 0;
  for (auto& [canonical, group] : mixed) {
    AccountRecord record;
    const bool movable = group.size() == 1 && canonical_keys.count(canonical) == 0 &&
                         DecodeAccount(group[0].value, &record);
    if (movable) {
      const std::string& old_address = group[0].key_address;
      record.display_local = old_address.substr(0, old_address.rfind('@'));
      batch.Delete(ToSlice(AccountKey(old_address)));
      batch.Put(ToSlice(AccountKey(canonical)), ToSlice(EncodeAccount(record)));
      ++result.moved;
      continue;
    }
    std::vector<std::string>& kept = result.legacy[canonical];
    for (MixedCaseKey& entry : group) kept.push_back(std::move(entry.key_address));
    legacy_count += kept.size();
  }
  batch.Put(ToSlice(kMetaSchemaVersion), ToSlice(MetaU64(kSchemaVersion)));
  if (legacy_count > 0) {
    batch.Put(ToSlice(kMetaCaseCollisions), ToSlice(MetaU64(legacy_count)));
  } else {
    batch.Delete(ToSlice(kMetaCaseCollisions));
  }
  rocksdb::WriteOptions sync;
  sync.sync = true;
  rocksdb::Status s = db->Write(sync, &batch);
  if (!s.ok()) return MigrationError(s, "write");

  if (result.moved > 0 || !result.legacy.empty()) {
    LogEvent(LogLevel::kInfo, "account keys are canonical (case-insensitive addresses)",
             {{"from_version", absl::StrCat(result.from_version)},
              {"to_version", absl::StrCat(kSchemaVersion)},
              {"moved", absl::StrCat(result.moved)},
              {"collisions", absl::StrCat(result.legacy.size())}});
  }
  for (const auto& [canonical, kept] : result.legacy) {
    const bool canonical_taken = canonical_keys.count(canonical) != 0;
    LogEvent(LogLevel::kWarning,
             "accounts differ only in case: kept apart under their old keys, see posthaste check",
             {{"address", canonical},
              {"accounts", absl::StrCat(canonical_taken ? canonical : "",
                                        canonical_taken ? " " : "", absl::StrJoin(kept, " "))}});
  }
  return result;
}

}  // namespace posthaste::storage::internal
