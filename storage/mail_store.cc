// MailStore implementation: RocksDB index (storage/index_codec.h) + segment files
// (storage/segment.h).
//
// Locks, in the order they may be taken (never the reverse):
//   compaction_mu    one Compact() at a time
//   meta_mu          account creation/deletion, id allocation
//   mailbox_mu[inc]  changes to existing index entries of one mailbox (deletions, compaction
//                    moves, account deletion); deliveries only add entries and do not take it.
//                    Only compaction holds several stripes, taken in ascending order.
//   retire_mu        shared while Check() reads everything; exclusive
//                    while compaction forgets a segment
//   AccountState::mu in-memory account state: counters, reservations, sequence numbers
//   cache_mu / tenant_mu / legacy_mu / SegmentSet::mu_   leaf locks
#include "storage/mail_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/log.h"
#include "base/short_copy.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/listener.h"
#include "rocksdb/options.h"
#include "rocksdb/statistics.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"
#include "storage/account_keys.h"
#include "storage/crc32c.h"
#include "storage/index_codec.h"
#include "storage/segment.h"
#include "storage/store_error.h"

namespace posthaste::storage {

using internal::AccountRecord;
using internal::AppendResult;
using internal::CounterValue;
using internal::IndexRecord;
using internal::Segment;
using internal::SegmentSet;
using internal::SegmentStats;
using internal::TenantRecord;

namespace {

constexpr size_t kMailboxLockStripes = 64;
constexpr size_t kAccountCacheSweepMin = 4096;

rocksdb::Slice ToSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }
std::string_view View(const rocksdb::Slice& s) { return std::string_view(s.data(), s.size()); }

absl::Status IndexError(const rocksdb::Status& s, std::string_view what) {
  std::string message = absl::StrCat("index ", AbslView(what), ": ", s.ToString());
  if (s.IsCorruption()) return StoreErrorStatus(StoreError::kCorrupt, message);
  if (s.IsNotFound()) return WithStoreError(absl::NotFoundError(message), StoreError::kIo);
  if (s.IsNoSpace()) return StoreErrorStatus(StoreError::kNoSpace, message);
  if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut()) {
    return StoreErrorStatus(StoreError::kTemporary, message);
  }
  return StoreErrorStatus(StoreError::kIo, message);
}

absl::Status UnknownAccount(std::string_view address) {
  return StoreErrorStatus(StoreError::kUnknownAccount,
                          absl::StrCat("no such account: ", AbslView(address)));
}

absl::Status Corrupt(std::string_view message) {
  return StoreErrorStatus(StoreError::kCorrupt, message);
}

absl::Status InvalidArgument(std::string_view message) {
  return StoreErrorStatus(StoreError::kInvalidArgument, message);
}

std::string Hex(uint64_t v) { return absl::StrFormat("%x", v); }

absl::Status PreadFull(int fd, char* buf, uint64_t length, uint64_t offset, std::string_view what) {
  while (length > 0) {
    ssize_t n = ::pread(fd, buf, length, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return internal::ErrnoStatus(errno, absl::StrCat("read ", AbslView(what)));
    }
    if (n == 0) {
      return Corrupt(absl::StrCat(AbslView(what), ": segment ends before the message does"));
    }
    buf += n;
    length -= static_cast<uint64_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

struct AccountState {
  std::mutex mu;
  std::condition_variable cv;  // signalled when inflight drops
  std::string address;
  AccountRecord record;                              // guarded by mu
  bool deleted = false;                              // guarded by mu
  MailboxStats committed;                            // guarded by mu
  uint64_t reserved_messages = 0;                    // guarded by mu: deliveries in flight
  uint64_t reserved_octets = 0;                      // guarded by mu
  uint64_t next_seq = 1;                             // guarded by mu
  int inflight = 0;                                  // guarded by mu
  std::set<std::string, std::less<>> pending_uidls;  // guarded by mu: imports in flight
};

std::string_view DomainOf(std::string_view address) {
  return address.substr(address.rfind('@') + 1);
}

// The address as created: the record's display local part, else the key's.
std::string DisplayAddress(std::string_view key_address, const AccountRecord& r) {
  if (r.display_local.empty()) return std::string(key_address);
  return absl::StrCat(r.display_local, "@", AbslView(DomainOf(key_address)));
}

AccountInfo ToInfo(const std::string& address, const AccountRecord& r) {
  AccountInfo info;
  info.address = address;
  info.display_address = DisplayAddress(address, r);
  info.incarnation = r.incarnation;
  info.password_hash = r.password_hash;
  info.scram.sha1 = r.scram_sha1;
  info.scram.sha256 = r.scram_sha256;
  info.shared_secret = r.shared_secret;
  info.disabled = r.disabled;
  info.held = r.held;
  info.quota.messages = r.quota_messages;
  info.quota.octets = r.quota_octets;
  info.created_time = absl::FromUnixSeconds(r.created_unix_seconds);
  return info;
}

// After a failed write or sync of RocksDB's write-ahead log, RocksDB keeps a "background error"
// and refuses every write until DB::Resume() succeeds; for an I/O error on its log RocksDB 7.8
// rates the error fatal, and Resume() then fails until the DB is reopened (docs/RELIABILITY.md,
// "Disk faults"). IndexFaultWatch learns of it from RocksDB's listener, and a thread of its own
// (never a reactor: Resume() waits for RocksDB's background work) retries Resume() with backoff
// when RocksDB allows it, or logs that posthaste must be restarted when it does not.
struct IndexFaultWatch {
  std::mutex mu;
  std::condition_variable changed;
  bool stopping = false;               // by mu
  bool fault_pending = false;          // by mu: a fault the thread has not handled yet
  std::string error;                   // by mu: RocksDB's error text
  bool resumable = false;              // by mu: RocksDB rates it soft or hard, not fatal
  uint64_t faults = 0;                 // by mu: counts Fault() calls
  std::atomic<bool> read_only{false};  // read without mu (MailStore::IndexReadOnly)

  void Fault(const rocksdb::Status& status) {
    std::lock_guard<std::mutex> lock(mu);
    error = status.ToString();
    resumable = status.severity() <= rocksdb::Status::Severity::kHardError;
    ++faults;
    fault_pending = true;
    // A soft error stops RocksDB's background work only; writes still go through.
    if (status.severity() >= rocksdb::Status::Severity::kHardError) read_only.store(true);
    changed.notify_all();
  }
  void Recovered() {
    std::lock_guard<std::mutex> lock(mu);
    fault_pending = false;
    read_only.store(false);
    changed.notify_all();
  }
  // The Status a write is refused with while read-only (kTemporary: the MTA retries).
  absl::Status ReadOnlyError() {
    std::lock_guard<std::mutex> lock(mu);
    return StoreErrorStatus(
        StoreError::kTemporary,
        absl::StrCat("index read-only after a write fault (", error, "); ",
                     resumable ? "resuming by itself" : "restart posthaste to recover"));
  }
};

// Called by RocksDB on its own threads (or the writer's), without the DB mutex: records only.
class IndexFaultListener : public rocksdb::EventListener {
 public:
  explicit IndexFaultListener(std::shared_ptr<IndexFaultWatch> watch) : watch_(std::move(watch)) {}
  const char* Name() const override { return "PosthasteIndexFaultListener"; }
  void OnBackgroundError(rocksdb::BackgroundErrorReason, rocksdb::Status* error) override {
    if (error != nullptr && !error->ok()) watch_->Fault(*error);
  }
  void OnErrorRecoveryEnd(const rocksdb::BackgroundErrorRecoveryInfo& info) override {
    if (info.new_bg_error.ok()) watch_->Recovered();
  }

 private:
  std::shared_ptr<IndexFaultWatch> watch_;
};

// Backoff between Resume() attempts, and how often a fault RocksDB cannot resume from is
// logged again (so the line stays near the log's tail).
constexpr auto kResumeBackoffMin = std::chrono::milliseconds(500);
constexpr auto kResumeBackoffMax = std::chrono::seconds(30);
constexpr auto kRestartNeededRepeat = std::chrono::minutes(5);

}  // namespace

struct MailStore::Impl {
  StoreOptions options;
  int lock_fd = -1;
  std::unique_ptr<rocksdb::DB> db;
  rocksdb::WriteOptions sync_write;
  std::string store_id;  // 8 hex digits, random per store: first part of generated UIDLs
  std::unique_ptr<SegmentSet> segments;

  std::mutex compaction_mu;
  std::mutex meta_mu;
  std::array<std::mutex, kMailboxLockStripes> mailbox_mu;
  std::shared_mutex retire_mu;

  std::mutex cache_mu;
  std::unordered_map<std::string, std::shared_ptr<AccountState>> accounts;  // by cache_mu
  size_t sweep_at = kAccountCacheSweepMin;                                  // by cache_mu

  std::mutex tenant_mu;
  std::map<std::string, TenantRecord, std::less<>> tenants;  // by tenant_mu

  std::atomic<uint64_t> tenant_generation{0};  // bumped after each tenant write

  // Accounts kept under legacy (pre-canonical) keys because they collide; see
  // storage/account_keys.h. Filled at open; shrinks as such accounts are deleted.
  std::mutex legacy_mu;
  internal::LegacyAccountKeys legacy_keys;  // by legacy_mu

  std::atomic<uint64_t> deliveries{0};
  std::atomic<uint64_t> deletions{0};
  std::atomic<uint64_t> compactions{0};
  std::atomic<uint64_t> compacted_segments{0};
  std::shared_ptr<rocksdb::Statistics> statistics;  // tickers only (no histograms or timers)
  std::function<void()> after_index_read_for_test;  // set before concurrent use

  std::shared_ptr<IndexFaultWatch> index_fault = std::make_shared<IndexFaultWatch>();
  std::thread index_resumer;  // runs ResumeIndexAfterFaults while db is open

  ~Impl() {
    if (index_resumer.joinable()) {
      {
        std::lock_guard<std::mutex> lock(index_fault->mu);
        index_fault->stopping = true;
        index_fault->changed.notify_all();
      }
      index_resumer.join();
    }
    segments.reset();
    if (db != nullptr) {
      db->Close().PermitUncheckedError();
      db.reset();
    }
    if (lock_fd >= 0) ::close(lock_fd);  // releases the flock
  }

  std::mutex& MailboxMutex(uint64_t incarnation) {
    return mailbox_mu[incarnation % kMailboxLockStripes];
  }

  // OK, or kTemporary while RocksDB refuses writes after a write fault: checked before a
  // delivery writes its segment, so nothing is written that the index cannot take.
  absl::Status CheckIndexWritable() {
    if (!index_fault->read_only.load()) return absl::OkStatus();
    return index_fault->ReadOnlyError();
  }

  // The index_resumer thread: waits for a fault, then retries DB::Resume() with backoff until
  // it succeeds (or RocksDB recovers by itself), or logs that a restart is needed when RocksDB
  // rates the error fatal. Returns when the store closes.
  void ResumeIndexAfterFaults() {
    IndexFaultWatch& watch = *index_fault;
    std::unique_lock<std::mutex> lock(watch.mu);
    while (!watch.stopping) {
      if (!watch.fault_pending) {
        watch.changed.wait(lock);
        continue;
      }
      const std::string error = watch.error;
      if (!watch.resumable) {
        LogEvent(LogLevel::kError,
                 "index read-only: RocksDB cannot resume after this write fault; deliveries and "
                 "deletions get temporary errors until posthaste is restarted (restart posthaste "
                 "once the disk fault is cleared; nothing acknowledged is lost)",
                 {{"error", error}});
        watch.changed.wait_for(lock, kRestartNeededRepeat);
        continue;
      }
      LogEvent(LogLevel::kWarning,
               "index read-only after a write fault; resuming by itself once the fault clears",
               {{"error", error}});
      auto backoff = kResumeBackoffMin;
      uint64_t attempts = 0;
      while (!watch.stopping && watch.fault_pending && watch.resumable) {
        watch.changed.wait_for(lock, backoff);
        if (watch.stopping || !watch.fault_pending) break;
        const uint64_t faults_before = watch.faults;
        lock.unlock();
        const rocksdb::Status s = db->Resume();
        lock.lock();
        ++attempts;
        // A fault reported while Resume() ran is handled by the next round, not cleared here.
        if (s.ok() && watch.faults == faults_before) {
          // Resume() clears the error itself; OnErrorRecoveryEnd may have said so already.
          watch.fault_pending = false;
          watch.read_only.store(false);
          break;
        }
        if (attempts == 1 || attempts % 10 == 0) {
          LogEvent(LogLevel::kWarning, "index still read-only; resume failed",
                   {{"error", s.ToString()}, {"attempts", absl::StrCat(attempts)}});
        }
        backoff = std::min<std::chrono::milliseconds>(backoff * 2, kResumeBackoffMax);
      }
      if (!watch.fault_pending && !watch.stopping) {
        LogEvent(LogLevel::kInfo, "index resumed; deliveries and deletions accepted again",
                 {{"error_was", error}, {"attempts", absl::StrCat(attempts)}});
      }
    }
  }

  // ---- metadata ----
  absl::StatusOr<std::optional<uint64_t>> GetMeta(std::string_view key) {
    std::string value;
    rocksdb::Status s = db->Get(rocksdb::ReadOptions(), ToSlice(key), &value);
    if (s.IsNotFound()) return std::optional<uint64_t>();
    if (!s.ok()) return IndexError(s, key);
    if (value.size() != 8) return Corrupt(absl::StrCat("bad metadata ", AbslView(key)));
    return std::optional<uint64_t>(internal::GetLE64(value.data()));
  }

  static std::string MetaValue(uint64_t v) {
    std::string out;
    internal::PutLE64(&out, v);
    return out;
  }

  absl::StatusOr<uint64_t> AllocateSegmentId() {
    std::lock_guard<std::mutex> lock(meta_mu_for_segments);
    PH_ASSIGN_OR_RETURN(std::optional<uint64_t> next, GetMeta(internal::kMetaNextSegment));
    const uint64_t id = next.value_or(1);
    rocksdb::Status s =
        db->Put(sync_write, ToSlice(internal::kMetaNextSegment), ToSlice(MetaValue(id + 1)));
    if (!s.ok()) return IndexError(s, "allocate segment id");
    return id;
  }
  std::mutex meta_mu_for_segments;  // leaf: segment id allocation only

  // ---- download counts ----
  // The "D" record of (incarnation, utc_day); nullopt when there is none.
  absl::StatusOr<std::optional<uint64_t>> ReadDownloadRecord(uint64_t incarnation,
                                                             uint32_t utc_day) {
    std::string value;
    rocksdb::Status s = db->Get(rocksdb::ReadOptions(),
                                ToSlice(internal::DownloadKey(incarnation, utc_day)), &value);
    if (s.IsNotFound()) return std::optional<uint64_t>();
    if (!s.ok()) return IndexError(s, "read download count");
    if (value.size() != 8) return Corrupt("undecodable download count");
    return internal::GetLE64(value.data());
  }
  absl::StatusOr<uint64_t> ReadDownloadedOctets(uint64_t incarnation, uint32_t utc_day) {
    PH_ASSIGN_OR_RETURN(std::optional<uint64_t> octets, ReadDownloadRecord(incarnation, utc_day));
    return octets.value_or(0);
  }

  // ---- tenants ----
  absl::StatusOr<std::optional<TenantRecord>> LoadTenant(std::string_view domain) {
    {
      std::lock_guard<std::mutex> lock(tenant_mu);
      auto it = tenants.find(domain);
      if (it != tenants.end()) return std::optional<TenantRecord>(it->second);
    }
    std::string value;
    rocksdb::Status s =
        db->Get(rocksdb::ReadOptions(), ToSlice(internal::TenantKey(domain)), &value);
    if (s.IsNotFound()) return std::optional<TenantRecord>();
    if (!s.ok()) return IndexError(s, "read tenant");
    TenantRecord record;
    if (!internal::DecodeTenant(value, &record)) {
      return Corrupt(absl::StrCat("undecodable tenant record for ", AbslView(domain)));
    }
    std::lock_guard<std::mutex> lock(tenant_mu);
    // A concurrent SetTenantLimits may have cached a newer record meanwhile: keep that one.
    auto [it, inserted] = tenants.emplace(std::string(domain), record);
    return std::optional<TenantRecord>(it->second);
  }

  TenantRecord DefaultTenant() const {
    TenantRecord r;
    r.quota_messages = options.default_quota_messages;
    r.quota_octets = options.default_quota_octets;
    return r;
  }

  // Read-modify-write of one tenant record (the store's defaults when absent), serialised with
  // the other tenant and account writers by meta_mu, so setting limits keeps the policy and
  // the other way round.
  // `change` returns false to write nothing. With `on_exists`: the record must be absent; when
  // it is there, on_exists runs instead and nothing is written (CreateTenant).
  template <typename Change>
  absl::Status UpdateTenant(const std::string& domain, Change change,
                            const std::function<void()>& on_exists = nullptr) {
    std::lock_guard<std::mutex> meta(meta_mu);
    PH_ASSIGN_OR_RETURN(std::optional<TenantRecord> found, LoadTenant(domain));
    if (found.has_value() && on_exists) {
      on_exists();
      return absl::OkStatus();
    }
    TenantRecord record = found.value_or(DefaultTenant());
    if (!change(&record)) return absl::OkStatus();
    rocksdb::Status s = db->Put(sync_write, ToSlice(internal::TenantKey(domain)),
                                ToSlice(internal::EncodeTenant(record)));
    if (!s.ok()) return IndexError(s, "write tenant");
    {
      std::lock_guard<std::mutex> lock(tenant_mu);
      tenants[domain] = record;
    }
    tenant_generation.fetch_add(1, std::memory_order_acq_rel);
    return absl::OkStatus();
  }

  // Removes the tenant record unless an account of `domain` exists; under meta_mu, as
  // CreateAccount (which makes the record on first use) runs.
  absl::Status DeleteTenant(const std::string& domain) {
    std::lock_guard<std::mutex> meta(meta_mu);
    PH_ASSIGN_OR_RETURN(std::optional<TenantRecord> found, LoadTenant(domain));
    if (!found.has_value()) {
      return StoreErrorStatus(StoreError::kUnknownTenant, absl::StrCat("no such tenant: ", domain));
    }
    const std::string prefix = internal::AccountKeyDomainPrefix(domain);
    std::string upper = prefix;
    upper.back() = '\x01';
    rocksdb::ReadOptions ro;
    rocksdb::Slice upper_slice = ToSlice(upper);
    ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
    it->Seek(ToSlice(prefix));  // one account is enough to refuse: no scan under meta_mu
    if (it->Valid()) {
      return StoreErrorStatus(
          StoreError::kTenantNotEmpty,
          absl::StrCat("tenant ", domain, " still has accounts: delete them first"));
    }
    if (!it->status().ok()) return IndexError(it->status(), "scan tenant accounts");
    rocksdb::Status s = db->Delete(sync_write, ToSlice(internal::TenantKey(domain)));
    if (!s.ok()) return IndexError(s, "delete tenant");
    {
      std::lock_guard<std::mutex> lock(tenant_mu);
      tenants.erase(domain);
    }
    tenant_generation.fetch_add(1, std::memory_order_acq_rel);
    return absl::OkStatus();
  }

  // ---- addresses ----
  // The identity (key address) of the account `given` names, in any case: its canonical
  // address, except for accounts kept under legacy keys (storage/account_keys.h), which are
  // reached by their exact old spelling, or by any spelling once the only one left of their
  // group. InvalidArgument when malformed. Does not say whether the account exists.
  absl::StatusOr<std::string> KeyAddress(std::string_view given) {
    PH_ASSIGN_OR_RETURN(ParsedAddress parsed, ParseAddress(given));
    std::string sole_legacy;
    {
      std::lock_guard<std::mutex> lock(legacy_mu);
      if (legacy_keys.empty()) return std::move(parsed.canonical);
      auto it = legacy_keys.find(parsed.canonical);
      if (it == legacy_keys.end()) return std::move(parsed.canonical);
      for (const std::string& key_address : it->second) {
        if (key_address == parsed.display) return key_address;
      }
      if (it->second.size() != 1) return std::move(parsed.canonical);
      sole_legacy = it->second[0];
    }
    std::string value;
    rocksdb::Status s =
        db->Get(rocksdb::ReadOptions(), ToSlice(internal::AccountKey(parsed.canonical)), &value);
    if (s.IsNotFound()) return sole_legacy;
    if (!s.ok()) return IndexError(s, "read account");
    return std::move(parsed.canonical);
  }

  // Key addresses of legacy accounts sharing `canonical` (usually none).
  std::vector<std::string> LegacyKeysOf(const std::string& canonical) {
    std::lock_guard<std::mutex> lock(legacy_mu);
    auto it = legacy_keys.find(canonical);
    return it == legacy_keys.end() ? std::vector<std::string>() : it->second;
  }

  // The account at `key_address` was deleted: drop it from the legacy keys if it was one.
  void ForgetLegacyKey(const std::string& key_address) {
    absl::StatusOr<std::string> canonical = CanonicalAddress(key_address);
    if (!canonical.ok() || *canonical == key_address) return;
    std::lock_guard<std::mutex> lock(legacy_mu);
    auto it = legacy_keys.find(*canonical);
    if (it == legacy_keys.end()) return;
    std::vector<std::string>& keys = it->second;
    keys.erase(std::remove(keys.begin(), keys.end(), key_address), keys.end());
    if (keys.empty()) legacy_keys.erase(it);
  }

  // ---- account cache ----
  // `address` is a key address (KeyAddress).
  absl::StatusOr<std::shared_ptr<AccountState>> Account(const std::string& address) {
    std::lock_guard<std::mutex> lock(cache_mu);
    auto it = accounts.find(address);
    if (it != accounts.end()) return it->second;
    // Loaded under cache_mu so that no committed change can slip between the read and the
    // insertion (every change goes through a cached state).
    std::string value;
    rocksdb::Status s =
        db->Get(rocksdb::ReadOptions(), ToSlice(internal::AccountKey(address)), &value);
    if (s.IsNotFound()) {
      return UnknownAccount(address);
    }
    if (!s.ok()) return IndexError(s, "read account");
    auto state = std::make_shared<AccountState>();
    state->address = address;
    if (!internal::DecodeAccount(value, &state->record)) {
      return Corrupt(absl::StrCat("undecodable account record for ", address));
    }
    s = db->Get(rocksdb::ReadOptions(), ToSlice(internal::CounterKey(state->record.incarnation)),
                &value);
    if (s.ok()) {
      CounterValue c;
      if (!internal::DecodeCounter(value, &c)) {
        return Corrupt(absl::StrCat("undecodable counters for ", address));
      }
      state->committed.messages = static_cast<uint64_t>(std::max<int64_t>(c.messages, 0));
      state->committed.octets = static_cast<uint64_t>(std::max<int64_t>(c.octets, 0));
      state->next_seq = c.next_seq;
    } else if (!s.IsNotFound()) {
      return IndexError(s, "read counters");
    }
    if (accounts.size() >= sweep_at) {
      // Drop states nobody holds; they reload from the index on next use.
      for (auto i = accounts.begin(); i != accounts.end();) {
        i = i->second.use_count() == 1 ? accounts.erase(i) : std::next(i);
      }
      sweep_at = std::max(kAccountCacheSweepMin, accounts.size() * 2);
    }
    accounts[address] = state;
    return state;
  }

  void ForgetAccount(const std::string& address) {
    std::lock_guard<std::mutex> lock(cache_mu);
    accounts.erase(address);
  }

  std::string GeneratedUidlPrefix(uint64_t incarnation) const {
    return absl::StrCat(store_id, ".", Hex(incarnation), ".");
  }

  // Applies `change` to the account record and stores it durably.
  absl::Status UpdateAccount(std::string_view address_in,
                             const std::function<absl::Status(AccountRecord*)>& change) {
    PH_ASSIGN_OR_RETURN(std::string address, KeyAddress(address_in));
    PH_ASSIGN_OR_RETURN(std::shared_ptr<AccountState> state, Account(address));
    std::lock_guard<std::mutex> lock(state->mu);
    if (state->deleted) return UnknownAccount(address);
    AccountRecord record = state->record;
    PH_RETURN_IF_ERROR(change(&record));
    rocksdb::Status s = db->Put(sync_write, ToSlice(internal::AccountKey(address)),
                                ToSlice(internal::EncodeAccount(record)));
    if (!s.ok()) return IndexError(s, "update account");
    state->record = record;
    return absl::OkStatus();
  }

  // ---- snapshots ----
  absl::StatusOr<std::shared_ptr<const MailboxSnapshot>> OpenMailbox(std::string_view address_in);
  absl::StatusOr<bool> ReadMailboxIndex(MailboxSnapshot* snapshot, size_t expected);
  absl::StatusOr<DeletionResult> CommitDeletions(const MailboxSnapshot& snapshot,
                                                 const std::vector<size_t>& indexes);
  // kNoSpace while storing `incoming_bytes` would leave less than options.free_bytes_min
  // free on the data directory's filesystem.
  absl::Status CheckFreeSpace(uint64_t incoming_bytes) const;
  absl::StatusOr<std::vector<DeliverResult>> DeliverBatch(std::string_view address_in,
                                                          const std::vector<DeliveryItem>& items);
  absl::Status DeleteAccount(std::string_view address_in);
  absl::Status RecordRetrievals(const MailboxSnapshot& snapshot, const std::vector<size_t>& indexes,
                                absl::Time when);
  absl::StatusOr<CompactionResult> Compact(
      const std::function<void(const CompactionProgress&)>& progress);
  absl::StatusOr<CheckReport> Check();
};

// ------------------------------------------------------------------------------------------
// Open

absl::StatusOr<std::unique_ptr<MailStore>> MailStore::Open(const StoreOptions& options) {
  if (options.data_dir.empty()) return InvalidArgument("data_dir is empty");
  if (options.message_bytes_max == 0 || options.message_bytes_max > kMessageBytesMaxConfigurable) {
    return InvalidArgument(
        absl::StrCat("message_bytes_max must be 1..", kMessageBytesMaxConfigurable));
  }
  if (options.segment_roll_bytes < 4096) {
    return InvalidArgument("segment_roll_bytes must be at least 4096");
  }
  if (!(options.compaction_live_ratio >= 0.0 && options.compaction_live_ratio <= 1.0)) {
    return InvalidArgument("compaction_live_ratio must be within [0, 1]");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  const std::string& dir = options.data_dir;

  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) return internal::ErrnoStatus(errno, absl::StrCat("stat ", dir));
    if (!options.create_if_missing) {
      return StoreErrorStatus(StoreError::kNoStore,
                              absl::StrCat("data directory ", dir, " does not exist"));
    }
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return internal::ErrnoStatus(errno, absl::StrCat("mkdir ", dir));
    }
  } else if (!S_ISDIR(st.st_mode)) {
    return InvalidArgument(absl::StrCat("data directory ", dir, " is not a directory"));
  }

  // The lock: one process per data directory.
  const std::string lock_path = absl::StrCat(dir, "/posthaste.lock");
  impl->lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (impl->lock_fd < 0) {
    return internal::ErrnoStatus(errno, absl::StrCat("open ", lock_path));
  }
  if (::flock(impl->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) {
      return internal::ErrnoStatus(errno, absl::StrCat("lock ", lock_path));
    }
    char buf[32] = {};
    ssize_t n = ::pread(impl->lock_fd, buf, sizeof(buf) - 1, 0);
    std::string pid;
    for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i) pid.push_back(buf[i]);
    return StoreErrorStatus(
        StoreError::kStoreLocked,
        absl::StrCat("data directory ", dir, " is in use by another process (pid ",
                     pid.empty() ? "unknown" : pid, ")"));
  }
  {
    const std::string pid = absl::StrCat(::getpid(), "\n");
    if (::ftruncate(impl->lock_fd, 0) != 0 ||
        ::pwrite(impl->lock_fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
      return internal::ErrnoStatus(errno, absl::StrCat("write ", lock_path));
    }
  }

  const std::string segment_dir = absl::StrCat(dir, "/segments");
  const std::string index_dir = absl::StrCat(dir, "/index");
  if (::stat(index_dir.c_str(), &st) != 0 && !options.create_if_missing) {
    return StoreErrorStatus(StoreError::kNoStore,
                            absl::StrCat("data directory ", dir, " holds no store"));
  }
  if (::mkdir(segment_dir.c_str(), 0700) == 0) {
    // The new directory's entry must be durable before segment files in it can be indexed.
    PH_RETURN_IF_ERROR(internal::SyncDirectory(dir));
  } else if (errno != EEXIST) {
    return internal::ErrnoStatus(errno, absl::StrCat("mkdir ", segment_dir));
  }

  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.merge_operator = internal::NewStoreMergeOperator();
  db_options.max_background_jobs = 2;
  // Folds a chunk's operands once 16 pile up in the memtable, so reading a mailbox that was
  // just bulk-delivered never merges more than that per chunk.
  db_options.max_successive_merges = 16;
  db_options.keep_log_file_num = 4;
  db_options.max_manifest_file_size = 64 << 20;
  db_options.write_buffer_size = options.index_write_buffer_bytes;
  db_options.max_write_buffer_number = 2;
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(options.index_cache_bytes);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  db_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // Tickers for metrics (block cache hits, write stalls); no timers or histograms, so the
  // cost is a few relaxed counter increments per operation.
  impl->statistics = rocksdb::CreateDBStatistics();
  impl->statistics->set_stats_level(rocksdb::StatsLevel::kExceptHistogramOrTimers);
  db_options.statistics = impl->statistics;
  db_options.listeners.push_back(std::make_shared<IndexFaultListener>(impl->index_fault));
  if (options.index_env_for_test != nullptr) db_options.env = options.index_env_for_test.get();
  rocksdb::DB* raw_db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, index_dir, &raw_db);
  if (!s.ok()) return IndexError(s, absl::StrCat("open ", index_dir));
  impl->db.reset(raw_db);
  impl->sync_write.sync = true;
  impl->index_resumer =
      std::thread([raw_impl = impl.get()] { raw_impl->ResumeIndexAfterFaults(); });

  // Store id: random, fixed at creation.
  PH_ASSIGN_OR_RETURN(std::optional<uint64_t> store_id, impl->GetMeta(internal::kMetaStoreId));
  if (!store_id.has_value()) {
    uint32_t random = 0;
    if (::getrandom(&random, sizeof(random), 0) != sizeof(random)) {
      return internal::ErrnoStatus(errno, "getrandom");
    }
    store_id = random;
    s = impl->db->Put(impl->sync_write, ToSlice(internal::kMetaStoreId),
                      ToSlice(Impl::MetaValue(*store_id)));
    if (!s.ok()) return IndexError(s, "write store id");
  }
  impl->store_id = absl::StrFormat("%08x", static_cast<uint32_t>(*store_id));

  // Account keys from before case-insensitive addresses become canonical (once).
  PH_ASSIGN_OR_RETURN(internal::AccountKeyMigration migration,
                      internal::MigrateAccountKeys(impl->db.get()));
  impl->legacy_keys = std::move(migration.legacy);

  // Segment files that no index entry can name (no "S" key) are left over from a crash between
  // creating a segment and indexing into it: remove them.
  PH_ASSIGN_OR_RETURN(std::vector<uint64_t> file_ids, SegmentSet::ListFileIds(segment_dir));
  bool removed = false;
  for (uint64_t id : file_ids) {
    std::string value;
    s = impl->db->Get(rocksdb::ReadOptions(), ToSlice(internal::SegmentKey(id)), &value);
    if (s.ok()) continue;
    if (!s.IsNotFound()) return IndexError(s, "read segment stats");
    const std::string path = absl::StrCat(segment_dir, "/", SegmentSet::FileName(id));
    LogEvent(LogLevel::kInfo, "removing unreferenced segment", {{"path", path}});
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return internal::ErrnoStatus(errno, absl::StrCat("unlink ", path));
    }
    removed = true;
  }
  if (removed) PH_RETURN_IF_ERROR(internal::SyncDirectory(segment_dir));

  Impl* raw_impl = impl.get();
  impl->segments =
      std::make_unique<SegmentSet>(segment_dir, options.segment_roll_bytes,
                                   [raw_impl] { return raw_impl->AllocateSegmentId(); });

  // Every segment stays open while referenced: allow as many fds as the hard limit does.
  struct rlimit rl;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  return std::unique_ptr<MailStore>(new MailStore(std::move(impl)));
}

MailStore::MailStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MailStore::~MailStore() = default;

const StoreOptions& MailStore::options() const { return impl_->options; }

StoreCounters MailStore::Counters() const {
  StoreCounters c;
  c.deliveries = impl_->deliveries.load();
  c.deletions = impl_->deletions.load();
  c.segment_syncs = impl_->segments->sync_count();
  return c;
}

absl::StatusOr<StoreStats> MailStore::Stats() {
  StoreStats out;
  out.counters = Counters();
  out.compactions = impl_->compactions.load();
  out.compacted_segments = impl_->compacted_segments.load();
  rocksdb::ReadOptions ro;
  std::unique_ptr<const rocksdb::Snapshot, std::function<void(const rocksdb::Snapshot*)>> snap(
      impl_->db->GetSnapshot(),
      [this](const rocksdb::Snapshot* p) { impl_->db->ReleaseSnapshot(p); });
  ro.snapshot = snap.get();
  // One scan per table, bounded by the next prefix byte.
  auto scan =
      [&](char prefix,
          const std::function<absl::Status(std::string_view key, std::string_view value)>& fn)
      -> absl::Status {
    const std::string lower(1, prefix);
    const std::string upper(1, static_cast<char>(prefix + 1));
    rocksdb::Slice upper_slice = ToSlice(upper);
    rocksdb::ReadOptions scan_ro = ro;
    scan_ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(scan_ro));
    for (it->Seek(ToSlice(lower)); it->Valid(); it->Next()) {
      PH_RETURN_IF_ERROR(fn(View(it->key()), View(it->value())));
    }
    if (!it->status().ok()) return IndexError(it->status(), "store stats");
    return absl::OkStatus();
  };
  PH_RETURN_IF_ERROR(scan(internal::kAccountPrefix, [&](std::string_view, std::string_view) {
    ++out.accounts;
    return absl::OkStatus();
  }));
  PH_RETURN_IF_ERROR(scan(internal::kCounterPrefix, [&](std::string_view, std::string_view v) {
    CounterValue c;
    if (internal::DecodeCounter(v, &c)) {
      out.messages += static_cast<uint64_t>(std::max<int64_t>(c.messages, 0));
      out.octets += static_cast<uint64_t>(std::max<int64_t>(c.octets, 0));
    }
    return absl::OkStatus();
  }));
  const std::string segment_dir = impl_->segments->dir();
  PH_RETURN_IF_ERROR(scan(internal::kSegmentPrefix, [&](std::string_view k, std::string_view v) {
    internal::SegmentStats stats;
    if (k.size() < 9 || !internal::DecodeSegmentStats(v, &stats)) return absl::OkStatus();
    ++out.segments;
    out.live_bytes += static_cast<uint64_t>(std::max<int64_t>(stats.live_bytes, 0));
    struct stat st;
    const std::string path =
        absl::StrCat(segment_dir, "/", SegmentSet::FileName(internal::KeyId(k)));
    if (::stat(path.c_str(), &st) == 0) out.segment_file_bytes += static_cast<uint64_t>(st.st_size);
    return absl::OkStatus();
  }));
  out.dead_bytes =
      out.segment_file_bytes > out.live_bytes ? out.segment_file_bytes - out.live_bytes : 0;
  if (impl_->statistics != nullptr) {
    out.block_cache_hits = impl_->statistics->getTickerCount(rocksdb::BLOCK_CACHE_HIT);
    out.block_cache_misses = impl_->statistics->getTickerCount(rocksdb::BLOCK_CACHE_MISS);
    out.write_stall_micros = impl_->statistics->getTickerCount(rocksdb::STALL_MICROS);
  }
  uint64_t stopped = 0;
  if (impl_->db->GetIntProperty("rocksdb.is-write-stopped", &stopped)) {
    out.write_stopped = stopped != 0;
  }
  impl_->db->GetIntProperty("rocksdb.cur-size-all-mem-tables", &out.index_memtable_bytes);
  impl_->db->GetIntProperty("rocksdb.block-cache-usage", &out.index_block_cache_bytes);
  impl_->db->GetIntProperty("rocksdb.block-cache-capacity", &out.index_block_cache_capacity);
  impl_->db->GetIntProperty("rocksdb.estimate-table-readers-mem", &out.index_table_reader_bytes);
  out.index_read_only = IndexReadOnly();
  return out;
}

bool MailStore::IndexReadOnly() const { return impl_->index_fault->read_only.load(); }

// ------------------------------------------------------------------------------------------
// Tenants and accounts

std::string_view PlaintextAuthName(PlaintextAuth value) {
  switch (value) {
    case PlaintextAuth::kDefault:
      return "default";
    case PlaintextAuth::kAllow:
      return "allow";
    case PlaintextAuth::kRequireTls:
      return "require_tls";
  }
  return "default";
}

std::optional<PlaintextAuth> ParsePlaintextAuth(std::string_view name) {
  for (PlaintextAuth value :
       {PlaintextAuth::kDefault, PlaintextAuth::kAllow, PlaintextAuth::kRequireTls}) {
    if (name == PlaintextAuthName(value)) return value;
  }
  return std::nullopt;
}

namespace {

TenantInfo TenantInfoOf(std::string_view domain, const TenantRecord& record) {
  TenantInfo info;
  info.domain = std::string(domain);
  info.limits.quota_messages = record.quota_messages;
  info.limits.quota_octets = record.quota_octets;
  info.limits.message_bytes_max = record.message_bytes_max;
  info.policy.plaintext_auth = static_cast<PlaintextAuth>(record.plaintext_auth);  // decoded: valid
  info.policy.apop_allowed = record.apop_allowed;
  info.policy.master_users = record.master_users;
  info.policy.password_scheme = record.password_scheme;
  info.policy.service = record.service;
  info.policy.revision = record.policy_revision;
  return info;
}

}  // namespace

absl::StatusOr<TenantInfo> MailStore::GetTenant(std::string_view domain_in) {
  PH_ASSIGN_OR_RETURN(std::string domain, NormalizeDomain(domain_in));
  PH_ASSIGN_OR_RETURN(std::optional<TenantRecord> record, impl_->LoadTenant(domain));
  if (!record.has_value()) {
    return StoreErrorStatus(StoreError::kUnknownTenant, absl::StrCat("no such tenant: ", domain));
  }
  return TenantInfoOf(domain, *record);
}

namespace {
absl::Status CheckLimits(const TenantLimits& limits);
}  // namespace

absl::Status MailStore::SetTenantLimits(std::string_view domain_in, const TenantLimits& limits) {
  PH_ASSIGN_OR_RETURN(std::string domain, NormalizeDomain(domain_in));
  PH_RETURN_IF_ERROR(CheckLimits(limits));
  return impl_->UpdateTenant(domain, [&limits](TenantRecord* record) {
    record->quota_messages = limits.quota_messages;
    record->quota_octets = limits.quota_octets;
    record->message_bytes_max = limits.message_bytes_max;
    return true;
  });
}

namespace {

// The policy as stored: its limits checked, master users canonical, sorted and unique.
absl::StatusOr<std::vector<std::string>> CheckedMasterUsers(std::string_view domain,
                                                            const TenantPolicy& policy) {
  if (policy.master_users.size() > kTenantMasterUsersMax) {
    return InvalidArgument(absl::StrCat("at most ", kTenantMasterUsersMax, " master users"));
  }
  if (policy.password_scheme.size() > kTenantPasswordSchemeBytesMax) {
    return InvalidArgument("password scheme too long");
  }
  if (policy.service.login_mechanisms.size() > kLoginMechanismsBytesMax) {
    return InvalidArgument("login mechanism list too long");
  }
  if (policy.service.lang.size() > kLanguageTagBytesMax) {
    return InvalidArgument("language tag too long");
  }
  std::vector<std::string> masters;
  for (const std::string& user : policy.master_users) {
    absl::StatusOr<std::string> canonical = CanonicalAddress(user);
    if (!canonical.ok() || DomainOf(*canonical) != domain) {
      return InvalidArgument(
          absl::StrCat("master user \"", user, "\" is not an address of ", AbslView(domain)));
    }
    masters.push_back(*std::move(canonical));
  }
  std::sort(masters.begin(), masters.end());
  masters.erase(std::unique(masters.begin(), masters.end()), masters.end());
  return masters;
}

void ApplyPolicy(const TenantPolicy& policy, std::vector<std::string> masters,
                 TenantRecord* record) {
  record->plaintext_auth = static_cast<uint8_t>(policy.plaintext_auth);
  record->apop_allowed = policy.apop_allowed;
  record->master_users = std::move(masters);
  record->password_scheme = policy.password_scheme;
  record->service = policy.service;
  ++record->policy_revision;
}

absl::Status CheckLimits(const TenantLimits& limits) {
  if (limits.message_bytes_max > kMessageBytesMaxConfigurable) {
    return InvalidArgument(
        absl::StrCat("message_bytes_max may be at most ", kMessageBytesMaxConfigurable));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status MailStore::SetTenantPolicy(std::string_view domain_in, const TenantPolicy& policy,
                                        std::optional<uint64_t> expected_revision) {
  PH_ASSIGN_OR_RETURN(std::string domain, NormalizeDomain(domain_in));
  PH_ASSIGN_OR_RETURN(std::vector<std::string> masters, CheckedMasterUsers(domain, policy));
  absl::Status stale;
  PH_RETURN_IF_ERROR(impl_->UpdateTenant(domain, [&](TenantRecord* record) {
    if (expected_revision.has_value() && record->policy_revision != *expected_revision) {
      stale = StoreErrorStatus(
          StoreError::kStaleRevision,
          absl::StrCat("the policy of ", domain, " is at revision ", record->policy_revision,
                       ", not ", *expected_revision, ": read it again"));
      return false;
    }
    ApplyPolicy(policy, std::move(masters), record);
    return true;
  }));
  return stale;
}

absl::Status MailStore::CreateTenant(std::string_view domain_in, const TenantLimits& limits,
                                     const TenantPolicy& policy) {
  PH_ASSIGN_OR_RETURN(std::string domain, NormalizeDomain(domain_in));
  PH_RETURN_IF_ERROR(CheckLimits(limits));
  PH_ASSIGN_OR_RETURN(std::vector<std::string> masters, CheckedMasterUsers(domain, policy));
  absl::Status exists;
  PH_RETURN_IF_ERROR(impl_->UpdateTenant(
      domain,
      [&](TenantRecord* record) {
        record->quota_messages = limits.quota_messages;
        record->quota_octets = limits.quota_octets;
        record->message_bytes_max = limits.message_bytes_max;
        ApplyPolicy(policy, std::move(masters), record);
        return true;
      },
      [&] {
        exists = StoreErrorStatus(StoreError::kTenantExists,
                                  absl::StrCat("tenant ", domain, " already exists"));
      }));
  return exists;
}

absl::Status MailStore::DeleteTenant(std::string_view domain_in) {
  PH_ASSIGN_OR_RETURN(std::string domain, NormalizeDomain(domain_in));
  return impl_->DeleteTenant(domain);
}

absl::StatusOr<std::vector<TenantInfo>> MailStore::ListTenants() {
  const std::string prefix(1, internal::kTenantPrefix);
  const std::string upper(1, static_cast<char>(internal::kTenantPrefix + 1));
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper_slice = ToSlice(upper);
  ro.iterate_upper_bound = &upper_slice;
  std::vector<TenantInfo> out;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro));
  for (it->Seek(ToSlice(prefix)); it->Valid(); it->Next()) {
    const std::string_view domain = View(it->key()).substr(1);
    TenantRecord record;
    if (!internal::DecodeTenant(View(it->value()), &record)) {
      return Corrupt(absl::StrCat("undecodable tenant record for ", AbslView(domain)));
    }
    out.push_back(TenantInfoOf(domain, record));
  }
  if (!it->status().ok()) return IndexError(it->status(), "list tenants");
  return out;
}

uint64_t MailStore::tenant_generation() const {
  return impl_->tenant_generation.load(std::memory_order_acquire);
}

absl::StatusOr<AccountInfo> MailStore::CreateAccount(std::string_view address_in,
                                                     std::string_view password_hash,
                                                     const ScramVerifiers& scram) {
  PH_ASSIGN_OR_RETURN(ParsedAddress parsed, ParseAddress(address_in));
  const std::string& address = parsed.canonical;
  if (password_hash.size() > kMaxPasswordHashLength || scram.sha1.size() > kMaxPasswordHashLength ||
      scram.sha256.size() > kMaxPasswordHashLength) {
    return InvalidArgument("password hash too long");
  }
  Impl& s = *impl_;
  std::lock_guard<std::mutex> meta(s.meta_mu);
  const std::string key = internal::AccountKey(address);
  std::string value;
  rocksdb::Status st = s.db->Get(rocksdb::ReadOptions(), ToSlice(key), &value);
  if (st.ok()) {
    AccountRecord existing;
    const std::string as =
        internal::DecodeAccount(value, &existing) ? DisplayAddress(address, existing) : address;
    return StoreErrorStatus(
        StoreError::kAccountExists,
        absl::StrCat("account ", parsed.display, " already exists",
                     as == parsed.display ? "" : absl::StrCat(" (as ", as, ")")));
  }
  if (!st.IsNotFound()) return IndexError(st, "read account");
  // Accounts that differ only in case, kept apart by the migration, block the address too.
  if (std::vector<std::string> legacy = s.LegacyKeysOf(address); !legacy.empty()) {
    return StoreErrorStatus(StoreError::kAccountExists,
                            absl::StrCat("account ", parsed.display, " already exists (as ",
                                         absl::StrJoin(legacy, ", "), ")"));
  }

  PH_ASSIGN_OR_RETURN(std::optional<uint64_t> next, s.GetMeta(internal::kMetaNextIncarnation));
  AccountRecord record;
  record.incarnation = next.value_or(1);
  record.password_hash = std::string(password_hash);
  record.scram_sha1 = scram.sha1;
  record.scram_sha256 = scram.sha256;
  record.created_unix_seconds = absl::ToUnixSeconds(absl::Now());
  if (parsed.display != parsed.canonical) {
    record.display_local = parsed.display.substr(0, parsed.display.rfind('@'));
  }

  rocksdb::WriteBatch batch;
  batch.Put(ToSlice(internal::kMetaNextIncarnation),
            ToSlice(Impl::MetaValue(record.incarnation + 1)));
  const std::string domain(DomainOf(address));
  PH_ASSIGN_OR_RETURN(std::optional<TenantRecord> tenant, s.LoadTenant(domain));
  if (!tenant.has_value()) {
    batch.Put(ToSlice(internal::TenantKey(domain)),
              ToSlice(internal::EncodeTenant(s.DefaultTenant())));
  }
  batch.Put(ToSlice(key), ToSlice(internal::EncodeAccount(record)));
  st = s.db->Write(s.sync_write, &batch);
  if (!st.ok()) return IndexError(st, "create account");
  if (!tenant.has_value()) {
    std::lock_guard<std::mutex> lock(s.tenant_mu);
    s.tenants[domain] = s.DefaultTenant();
  }
  s.ForgetAccount(address);
  return ToInfo(address, record);
}

absl::Status MailStore::DeleteAccount(std::string_view address_in) {
  return impl_->DeleteAccount(address_in);
}

absl::Status MailStore::Impl::DeleteAccount(std::string_view address_in) {
  PH_ASSIGN_OR_RETURN(std::string address, KeyAddress(address_in));
  std::lock_guard<std::mutex> meta(meta_mu);
  PH_ASSIGN_OR_RETURN(std::shared_ptr<AccountState> state, Account(address));
  uint64_t incarnation;
  {
    std::unique_lock<std::mutex> lock(state->mu);
    if (state->deleted) return UnknownAccount(address);
    state->deleted = true;  // new deliveries fail from here on
    state->cv.wait(lock, [&] { return state->inflight == 0; });
    incarnation = state->record.incarnation;
  }
  std::lock_guard<std::mutex> mailbox(MailboxMutex(incarnation));
  rocksdb::WriteBatch batch;
  batch.Delete(ToSlice(internal::AccountKey(address)));
  batch.Delete(ToSlice(internal::CounterKey(incarnation)));
  std::map<uint64_t, SegmentStats> segment_deltas;
  auto undo = [&](const absl::Status& status) {
    std::lock_guard<std::mutex> lock(state->mu);
    state->deleted = false;
    return status;
  };
  for (std::string_view prefix_kind :
       {std::string_view("I"), std::string_view("U"), std::string_view("R"),
        std::string_view("D")}) {
    const auto prefix_of = [&](uint64_t id) {
      return prefix_kind == "I"   ? internal::ChunkPrefix(id)
             : prefix_kind == "U" ? internal::UidlPrefix(id)
             : prefix_kind == "R" ? internal::RetrievedPrefix(id)
                                  : internal::DownloadPrefix(id);
    };
    const std::string prefix = prefix_of(incarnation);
    const std::string upper = prefix_of(incarnation + 1);
    rocksdb::ReadOptions ro;
    rocksdb::Slice upper_slice = ToSlice(upper);
    ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
    for (it->Seek(ToSlice(prefix)); it->Valid(); it->Next()) {
      batch.Delete(it->key());
      if (prefix_kind != "I") continue;
      std::vector<IndexRecord> records;
      if (!internal::DecodeRecords(View(it->value()), &records)) {
        return undo(Corrupt(absl::StrCat("undecodable index chunk of ", address)));
      }
      for (const IndexRecord& r : records) {
        segment_deltas[r.segment].live_bytes -= r.stored_length;
        segment_deltas[r.segment].live_messages -= 1;
      }
    }
    if (!it->status().ok()) return undo(IndexError(it->status(), "scan mailbox"));
  }
  for (const auto& [segment, delta] : segment_deltas) {
    batch.Merge(ToSlice(internal::SegmentKey(segment)),
                ToSlice(internal::EncodeSegmentStats(delta)));
  }
  rocksdb::Status st = db->Write(sync_write, &batch);
  if (!st.ok()) return undo(IndexError(st, "delete account"));
  ForgetAccount(address);
  ForgetLegacyKey(address);
  return absl::OkStatus();
}

absl::Status MailStore::SetPasswordHash(std::string_view address, std::string_view hash,
                                        const ScramVerifiers& scram) {
  if (hash.size() > kMaxPasswordHashLength || scram.sha1.size() > kMaxPasswordHashLength ||
      scram.sha256.size() > kMaxPasswordHashLength) {
    return InvalidArgument("password hash too long");
  }
  return impl_->UpdateAccount(address, [&](AccountRecord* r) {
    r->password_hash = std::string(hash);
    r->scram_sha1 = scram.sha1;
    r->scram_sha256 = scram.sha256;
    return absl::OkStatus();
  });
}

absl::Status MailStore::SetSharedSecret(std::string_view address, std::string_view secret) {
  if (secret.size() > kMaxSharedSecretLength) {
    return InvalidArgument("APOP secret too long");
  }
  return impl_->UpdateAccount(address, [&](AccountRecord* r) {
    r->shared_secret = std::string(secret);
    return absl::OkStatus();
  });
}

absl::Status MailStore::ReplacePasswordHash(std::string_view address,
                                            std::string_view expected_hash, std::string_view hash) {
  if (hash.size() > kMaxPasswordHashLength) {
    return InvalidArgument("password hash too long");
  }
  return impl_->UpdateAccount(address, [&](AccountRecord* r) {
    if (r->password_hash != expected_hash) {
      return absl::FailedPreconditionError("password hash changed meanwhile");
    }
    r->password_hash = std::string(hash);
    return absl::OkStatus();
  });
}

absl::Status MailStore::SetDisabled(std::string_view address, bool disabled) {
  return impl_->UpdateAccount(address, [&](AccountRecord* r) {
    r->disabled = disabled;
    return absl::OkStatus();
  });
}

absl::Status MailStore::SetQuota(std::string_view address, const AccountQuota& quota) {
  return impl_->UpdateAccount(address, [&](AccountRecord* r) {
    r->quota_messages = quota.messages;
    r->quota_octets = quota.octets;
    return absl::OkStatus();
  });
}

absl::StatusOr<AccountInfo> MailStore::GetAccount(std::string_view address_in) {
  PH_ASSIGN_OR_RETURN(std::string address, impl_->KeyAddress(address_in));
  PH_ASSIGN_OR_RETURN(std::shared_ptr<AccountState> state, impl_->Account(address));
  std::lock_guard<std::mutex> lock(state->mu);
  if (state->deleted) return UnknownAccount(address);
  return ToInfo(address, state->record);
}

absl::StatusOr<uint64_t> MailStore::DownloadedOctets(std::string_view address_in,
                                                     uint32_t utc_day) {
  PH_ASSIGN_OR_RETURN(std::string address, impl_->KeyAddress(address_in));
  PH_ASSIGN_OR_RETURN(std::shared_ptr<AccountState> state, impl_->Account(address));
  std::lock_guard<std::mutex> lock(state->mu);
  if (state->deleted) return UnknownAccount(address);
  return impl_->ReadDownloadedOctets(state->record.incarnation, utc_day);
}

absl::Status MailStore::AddDownloadedOctets(std::string_view address_in, uint32_t utc_day,
                                            uint64_t octets) {
  PH_ASSIGN_OR_RETURN(std::string address, impl_->KeyAddress(address_in));
  PH_ASSIGN_OR_RETURN(std::shared_ptr<AccountState> state, impl_->Account(address));
  std::lock_guard<std::mutex> lock(state->mu);
  if (state->deleted) return UnknownAccount(address);
  const uint64_t incarnation = state->record.incarnation;
  PH_ASSIGN_OR_RETURN(std::optional<uint64_t> before,
                      impl_->ReadDownloadRecord(incarnation, utc_day));
  rocksdb::WriteBatch batch;
  if (!before.has_value()) {
    // A new day: the earlier days' counts are of no further use.
    const std::string lower = internal::DownloadPrefix(incarnation);
    const std::string upper = internal::DownloadKey(incarnation, utc_day);
    rocksdb::ReadOptions ro;
    rocksdb::Slice upper_slice = ToSlice(upper);
    ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro));
    for (it->Seek(ToSlice(lower)); it->Valid(); it->Next()) batch.Delete(it->key());
    if (!it->status().ok()) return IndexError(it->status(), "scan download counts");
  }
  std::string value;
  internal::PutLE64(&value, before.value_or(0) + octets);
  batch.Put(ToSlice(internal::DownloadKey(incarnation, utc_day)), ToSlice(value));
  rocksdb::Status s = impl_->db->Write(rocksdb::WriteOptions(), &batch);
  if (!s.ok()) return IndexError(s, "write download count");
  return absl::OkStatus();
}

absl::StatusOr<MailboxStats> MailStore::GetMailboxStats(std::string_view address_in) {
  PH_ASSIGN_OR_RETURN(std::string address, impl_->KeyAddress(address_in));
  PH_ASSIGN_OR_RETURN(std::shared_ptr<AccountState> state, impl_->Account(address));
  std::lock_guard<std::mutex> lock(state->mu);
  if (state->deleted) return UnknownAccount(address);
  return state->committed;
}

bool AccountUsage::WouldExceedQuota(uint64_t size) const {
  const uint64_t messages = stats.messages + reserved.messages;
  const uint64_t octets = stats.octets + reserved.octets;
  if (effective_quota.messages != 0 && messages + 1 > effective_quota.messages) return true;
  if (effective_quota.octets != 0 && octets + size > effective_quota.octets) return true;
  return false;
}

absl::StatusOr<AccountUsage> MailStore::GetUsage(std::string_view address_in) {
  PH_ASSIGN_OR_RETURN(std::string address, impl_->KeyAddress(address_in));
  PH_ASSIGN_OR_RETURN(std::shared_ptr<AccountState> state, impl_->Account(address));
  PH_ASSIGN_OR_RETURN(std::optional<TenantRecord> tenant_found,
                      impl_->LoadTenant(DomainOf(address)));
  const TenantRecord tenant = tenant_found.value_or(impl_->DefaultTenant());
  AccountUsage usage;
  usage.address = address;
  usage.message_bytes_max =
      tenant.message_bytes_max != 0 ? tenant.message_bytes_max : impl_->options.message_bytes_max;
  std::lock_guard<std::mutex> lock(state->mu);
  if (state->deleted) return UnknownAccount(address);
  usage.display_address = DisplayAddress(address, state->record);
  usage.disabled = state->record.disabled;
  usage.held = state->record.held;
  usage.stats = state->committed;
  usage.reserved = {state->reserved_messages, state->reserved_octets};
  usage.quota = {state->record.quota_messages, state->record.quota_octets};
  // The same rule as the delivery path's reservation.
  usage.effective_quota.messages =
      state->record.quota_messages != 0 ? state->record.quota_messages : tenant.quota_messages;
  usage.effective_quota.octets =
      state->record.quota_octets != 0 ? state->record.quota_octets : tenant.quota_octets;
  return usage;
}

absl::Status MailStore::HoldAccount(std::string_view address_in, bool held) {
  if (!held) {
    absl::Status released = impl_->UpdateAccount(address_in, [](AccountRecord* r) {
      r->held = false;
      return absl::OkStatus();
    });
    // Releasing an account that is gone (deleted at the end of a move) is not an error.
    if (ErrorOf(released) == StoreError::kUnknownAccount) return absl::OkStatus();
    return released;
  }
  PH_ASSIGN_OR_RETURN(std::string address, impl_->KeyAddress(address_in));
  PH_ASSIGN_OR_RETURN(std::shared_ptr<AccountState> state, impl_->Account(address));
  uint64_t incarnation = 0;
  {
    std::unique_lock<std::mutex> lock(state->mu);
    if (state->deleted) return UnknownAccount(address);
    if (!state->record.held) {
      // Durable before anything waits on it: a store restarted from here on still holds.
      AccountRecord record = state->record;
      record.held = true;
      rocksdb::Status s = impl_->db->Put(impl_->sync_write, ToSlice(internal::AccountKey(address)),
                                         ToSlice(internal::EncodeAccount(record)));
      if (!s.ok()) return IndexError(s, "hold account");
      state->record = record;
    }
    // Deliveries that passed the check before the hold finish (or fail) first.
    state->cv.wait(lock, [&] { return state->inflight == 0; });
    incarnation = state->record.incarnation;
  }
  // A deletion commit in progress holds the mailbox lock until it is written.
  std::lock_guard<std::mutex> mailbox(impl_->MailboxMutex(incarnation));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<AccountSummary>> MailStore::ListAccounts(
    std::optional<std::string_view> domain_in) {
  std::string prefix(1, internal::kAccountPrefix);
  std::string upper(1, internal::kAccountPrefix + 1);
  if (domain_in.has_value()) {
    PH_ASSIGN_OR_RETURN(std::string domain, NormalizeDomain(*domain_in));
    prefix = internal::AccountKeyDomainPrefix(domain);
    upper = prefix;
    upper.back() = '\x01';
  }
  rocksdb::ReadOptions ro;
  std::unique_ptr<const rocksdb::Snapshot, std::function<void(const rocksdb::Snapshot*)>> snap(
      impl_->db->GetSnapshot(),
      [this](const rocksdb::Snapshot* p) { impl_->db->ReleaseSnapshot(p); });
  ro.snapshot = snap.get();
  rocksdb::Slice upper_slice = ToSlice(upper);
  ro.iterate_upper_bound = &upper_slice;
  std::vector<AccountSummary> out;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro));
  rocksdb::ReadOptions get_ro;
  get_ro.snapshot = snap.get();
  for (it->Seek(ToSlice(prefix)); it->Valid(); it->Next()) {
    AccountRecord record;
    if (!internal::DecodeAccount(View(it->value()), &record)) {
      return Corrupt(absl::StrCat("undecodable account record ",
                                  internal::AddressFromAccountKey(View(it->key()))));
    }
    AccountSummary summary;
    summary.address = internal::AddressFromAccountKey(View(it->key()));
    summary.display_address = DisplayAddress(summary.address, record);
    summary.disabled = record.disabled;
    std::string value;
    rocksdb::Status s =
        impl_->db->Get(get_ro, ToSlice(internal::CounterKey(record.incarnation)), &value);
    CounterValue c;
    if (s.ok() && internal::DecodeCounter(value, &c)) {
      summary.stats.messages = static_cast<uint64_t>(std::max<int64_t>(c.messages, 0));
      summary.stats.octets = static_cast<uint64_t>(std::max<int64_t>(c.octets, 0));
    } else if (!s.ok() && !s.IsNotFound()) {
      return IndexError(s, "read counters");
    }
    out.push_back(std::move(summary));
  }
  if (!it->status().ok()) return IndexError(it->status(), "list accounts");
  return out;
}

// ------------------------------------------------------------------------------------------
// Delivery

absl::StatusOr<DeliverResult> MailStore::Deliver(std::string_view address,
                                                 std::string_view raw_message,
                                                 const DeliverOptions& options) {
  PH_ASSIGN_OR_RETURN(std::vector<DeliverResult> results,
                      impl_->DeliverBatch(address, {DeliveryItem{raw_message, options}}));
  return std::move(results[0]);
}

absl::StatusOr<std::vector<DeliverResult>> MailStore::DeliverBatch(
    std::string_view address, const std::vector<DeliveryItem>& items) {
  return impl_->DeliverBatch(address, items);
}

absl::Status MailStore::Impl::CheckFreeSpace(uint64_t incoming_bytes) const {
  if (options.free_bytes_min == 0) return absl::OkStatus();
  struct statvfs fs;
  if (::statvfs(options.data_dir.c_str(), &fs) != 0) {
    return internal::ErrnoStatus(errno, absl::StrCat("statvfs ", options.data_dir));
  }
  const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  if (free_bytes >= options.free_bytes_min + incoming_bytes) return absl::OkStatus();
  return StoreErrorStatus(
      StoreError::kNoSpace,
      absl::StrCat("disk full: ", free_bytes, " bytes free under ", options.data_dir,
                   ", below the reserve of ", options.free_bytes_min, " plus ", incoming_bytes,
                   " to store; deliveries resume by themselves once space is freed"));
}

namespace {

// One message as it goes into a segment: normalised from text into `normalised`, or wire-form
// input stored from the caller's buffer as it is (`in_place`).
struct StoredForm {
  std::string normalised;
  bool in_place = false;
  uint64_t pop3_size = 0;
  uint64_t header_length = 0;
};

}  // namespace

absl::StatusOr<std::vector<DeliverResult>> MailStore::Impl::DeliverBatch(
    std::string_view address_in, const std::vector<DeliveryItem>& items) {
  PH_ASSIGN_OR_RETURN(std::string address, KeyAddress(address_in));
  if (items.empty()) return std::vector<DeliverResult>();
  // Errors about one message of a batch say which one.
  auto which = [&](size_t i, const absl::Status& status) {
    if (items.size() == 1) return status;
    absl::Status named(status.code(), absl::StrCat("message ", i + 1, " of ", items.size(), ": ",
                                                   status.message()));
    return WithStoreError(std::move(named), ErrorOf(status));
  };
  std::set<std::string_view> batch_uidls;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!items[i].options.uidl.has_value()) continue;
    const std::string& uidl = *items[i].options.uidl;
    absl::Status valid = ValidateUidl(uidl);
    if (!valid.ok()) return which(i, valid);
    if (!batch_uidls.insert(uidl).second) {
      return which(i, StoreErrorStatus(StoreError::kUidlInUse,
                                       absl::StrCat("UIDL ", uidl, " appears twice in the batch")));
    }
  }
  PH_ASSIGN_OR_RETURN(std::shared_ptr<AccountState> state, Account(address));
  PH_ASSIGN_OR_RETURN(std::optional<TenantRecord> tenant_found, LoadTenant(DomainOf(address)));
  const TenantRecord tenant = tenant_found.value_or(DefaultTenant());
  const uint64_t max_bytes =
      tenant.message_bytes_max != 0 ? tenant.message_bytes_max : options.message_bytes_max;
  auto too_big = [&](uint64_t size) {
    return StoreErrorStatus(
        StoreError::kMessageTooBig,
        absl::StrCat("message of ", size, " octets exceeds the maximum message size of ", max_bytes,
                     " octets"));
  };
  // Wire-form input is checked in place (one pass, no copy). Text is normalised below, after
  // the account checks; its POP3 size is never smaller than its raw size, so huge input is
  // refused before copying.
  std::vector<StoredForm> forms(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i].options.input == MessageInput::kWireForm) {
      absl::StatusOr<WireFormInfo> info = CheckWireForm(items[i].raw_message);
      if (!info.ok()) return which(i, info.status());
      if (info->pop3_size > max_bytes) return which(i, too_big(info->pop3_size));
      forms[i].in_place = true;
      forms[i].pop3_size = info->pop3_size;
      forms[i].header_length = info->header_length;
    } else if (items[i].raw_message.size() > max_bytes) {
      return which(i, too_big(items[i].raw_message.size()));
    }
  }
  {
    std::lock_guard<std::mutex> lock(state->mu);
    if (state->deleted) return UnknownAccount(address);
    if (state->record.disabled) {
      return StoreErrorStatus(StoreError::kDisabled,
                              absl::StrCat("account ", address, " is disabled"));
    }
  }
  uint64_t batch_octets = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    StoredForm& form = forms[i];
    if (!form.in_place) {
      NormalizedMessage m = NormalizeForStorage(items[i].raw_message);
      if (m.pop3_size > max_bytes) return which(i, too_big(m.pop3_size));
      form.normalised = std::move(m.stored);
      form.pop3_size = m.pop3_size;
      form.header_length = m.header_length;
    }
    batch_octets += form.pop3_size;
  }
  auto stored_bytes = [&](size_t i) {
    return forms[i].in_place ? items[i].raw_message : std::string_view(forms[i].normalised);
  };
  const uint64_t batch_messages = items.size();
  PH_RETURN_IF_ERROR(CheckIndexWritable());
  PH_RETURN_IF_ERROR(CheckFreeSpace(batch_octets));

  // Reserve: quota, sequence numbers, UIDLs.
  uint64_t first_seq;
  uint64_t incarnation;
  {
    std::lock_guard<std::mutex> lock(state->mu);
    if (state->deleted) return UnknownAccount(address);
    if (state->record.disabled) {
      return StoreErrorStatus(StoreError::kDisabled,
                              absl::StrCat("account ", address, " is disabled"));
    }
    // Checked under mu, where inflight is counted: HoldAccount waits for what passed here.
    if (state->record.held) {
      return StoreErrorStatus(StoreError::kAccountHeld,
                              absl::StrCat("account ", address, " is moving; try again later"));
    }
    incarnation = state->record.incarnation;
    const uint64_t quota_messages =
        state->record.quota_messages != 0 ? state->record.quota_messages : tenant.quota_messages;
    const uint64_t quota_octets =
        state->record.quota_octets != 0 ? state->record.quota_octets : tenant.quota_octets;
    const uint64_t held_messages = state->committed.messages + state->reserved_messages;
    const uint64_t held_octets = state->committed.octets + state->reserved_octets;
    if (quota_messages != 0 && held_messages + batch_messages > quota_messages) {
      return StoreErrorStatus(
          StoreError::kOverQuota,
          absl::StrCat("mailbox quota exceeded: ", address, " holds ", held_messages,
                       " messages, adding ", batch_messages, " would pass the limit of ",
                       quota_messages, " messages"));
    }
    if (quota_octets != 0 && held_octets + batch_octets > quota_octets) {
      return StoreErrorStatus(StoreError::kOverQuota,
                              absl::StrCat("mailbox quota exceeded: ", address, " holds ",
                                           held_octets, " octets, adding ", batch_octets,
                                           " would pass the limit of ", quota_octets, " octets"));
    }
    const std::string generated_prefix = GeneratedUidlPrefix(incarnation);
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].options.uidl.has_value()) continue;
      const std::string& uidl = *items[i].options.uidl;
      if (uidl.rfind(generated_prefix, 0) == 0 || state->pending_uidls.count(uidl) != 0) {
        return which(
            i, StoreErrorStatus(StoreError::kUidlInUse,
                                absl::StrCat("UIDL ", uidl, " is already used in ", address)));
      }
      std::string value;
      rocksdb::Status s =
          db->Get(rocksdb::ReadOptions(), ToSlice(internal::UidlKey(incarnation, uidl)), &value);
      if (s.ok()) {
        return which(
            i, StoreErrorStatus(StoreError::kUidlInUse,
                                absl::StrCat("UIDL ", uidl, " is already used in ", address)));
      }
      if (!s.IsNotFound()) return IndexError(s, "read UIDL table");
    }
    for (std::string_view uidl : batch_uidls) state->pending_uidls.emplace(uidl);
    first_seq = state->next_seq;
    state->next_seq += batch_messages;
    state->reserved_messages += batch_messages;
    state->reserved_octets += batch_octets;
    state->inflight += 1;
  }
  auto finish = [&](bool committed) {
    std::lock_guard<std::mutex> lock(state->mu);
    state->reserved_messages -= batch_messages;
    state->reserved_octets -= batch_octets;
    if (committed) {
      state->committed.messages += batch_messages;
      state->committed.octets += batch_octets;
    }
    for (std::string_view uidl : batch_uidls) state->pending_uidls.erase(std::string(uidl));
    if (--state->inflight == 0) state->cv.notify_all();
  };

  std::vector<std::string_view> stored;
  stored.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) stored.push_back(stored_bytes(i));
  absl::StatusOr<std::vector<AppendResult>> appended = segments->AppendDurable(stored);
  if (!appended.ok()) {
    finish(false);
    return appended.status();
  }

  const std::string generated_prefix = GeneratedUidlPrefix(incarnation);
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  std::vector<DeliverResult> results(items.size());
  rocksdb::WriteBatch batch;
  std::map<uint64_t, SegmentStats> segment_deltas;
  for (size_t i = 0; i < items.size(); ++i) {
    const uint64_t seq = first_seq + i;
    const StoredForm& m = forms[i];
    const std::string_view bytes = stored[i];
    const DeliverOptions& o = items[i].options;
    DeliverResult& result = results[i];
    result.uidl = o.uidl.has_value() ? *o.uidl : absl::StrCat(generated_prefix, Hex(seq));
    result.pop3_size = m.pop3_size;
    result.stored_bytes = bytes.size();
    IndexRecord record;
    record.seq = seq;
    record.segment = (*appended)[i].segment->id();
    record.offset = (*appended)[i].offset;
    record.stored_length = static_cast<uint32_t>(bytes.size());
    record.pop3_size = static_cast<uint32_t>(m.pop3_size);
    record.header_length = static_cast<uint32_t>(m.header_length);
    record.crc32c = Crc32c(bytes);
    record.arrival_unix_seconds =
        o.arrival_time.has_value() ? absl::ToUnixSeconds(*o.arrival_time) : now;
    record.uidl = result.uidl;
    batch.Merge(ToSlice(internal::ChunkKey(incarnation, seq)),
                ToSlice(internal::AppendOperand(record)));
    segment_deltas[record.segment].live_bytes += record.stored_length;
    segment_deltas[record.segment].live_messages += 1;
    if (o.uidl.has_value()) {
      std::string seq_value;
      internal::PutLE64(&seq_value, seq);
      batch.Put(ToSlice(internal::UidlKey(incarnation, result.uidl)), ToSlice(seq_value));
    }
  }
  CounterValue counter_delta;
  counter_delta.messages = static_cast<int64_t>(batch_messages);
  counter_delta.octets = static_cast<int64_t>(batch_octets);
  counter_delta.next_seq = first_seq + batch_messages;
  batch.Merge(ToSlice(internal::CounterKey(incarnation)),
              ToSlice(internal::EncodeCounter(counter_delta)));
  for (const auto& [segment, delta] : segment_deltas) {
    batch.Merge(ToSlice(internal::SegmentKey(segment)),
                ToSlice(internal::EncodeSegmentStats(delta)));
  }
  rocksdb::Status s = db->Write(sync_write, &batch);
  for (const AppendResult& a : *appended) a.segment->pending_appends.fetch_sub(1);
  finish(s.ok());
  if (!s.ok()) return IndexError(s, "write index entries");
  deliveries.fetch_add(batch_messages, std::memory_order_relaxed);
  return results;
}

// ------------------------------------------------------------------------------------------
// Snapshots and reading

absl::StatusOr<std::shared_ptr<const MailboxSnapshot>> MailStore::OpenMailbox(
    std::string_view address) {
  return impl_->OpenMailbox(address);
}

absl::StatusOr<std::shared_ptr<const MailboxSnapshot>> MailStore::Impl::OpenMailbox(
    std::string_view address_in) {
  PH_ASSIGN_OR_RETURN(std::string address, KeyAddress(address_in));
  PH_ASSIGN_OR_RETURN(std::shared_ptr<AccountState> state, Account(address));
  auto snapshot = std::make_shared<MailboxSnapshot>();
  size_t expected = 0;
  {
    std::lock_guard<std::mutex> lock(state->mu);
    if (state->deleted) return UnknownAccount(address);
    snapshot->incarnation_ = state->record.incarnation;
    snapshot->held_ = state->record.held;
    expected = state->committed.messages + state->reserved_messages;
  }
  snapshot->address_ = std::move(address);
  // Compaction may retire a segment between our reading an entry that names it and opening
  // the file; it repoints (durably) before it retires, so reading the index again finds the new
  // place. No lock is shared with compaction on this path.
  constexpr int kAttempts = 5;
  for (int attempt = 1;; ++attempt) {
    absl::StatusOr<bool> complete = ReadMailboxIndex(snapshot.get(), expected);
    if (!complete.ok()) return complete.status();
    if (*complete) break;
    if (attempt == kAttempts) {
      return StoreErrorStatus(
          StoreError::kTemporary,
          absl::StrCat("mailbox ", snapshot->address_, " kept moving under compaction; try again"));
    }
  }
  return std::shared_ptr<const MailboxSnapshot>(std::move(snapshot));
}

// Fills `snapshot` (incarnation and address set) from the index. Returns false when a segment
// named by the index was retired meanwhile (the caller reads again).
absl::StatusOr<bool> MailStore::Impl::ReadMailboxIndex(MailboxSnapshot* snapshot, size_t expected) {
  snapshot->entries_.clear();
  snapshot->uidl_arena_.clear();
  snapshot->segments_.clear();
  snapshot->segment_ids_.clear();
  snapshot->entries_.reserve(expected);
  snapshot->uidl_arena_.reserve(expected * 24);
  const std::string prefix = internal::ChunkPrefix(snapshot->incarnation_);
  const std::string upper = internal::ChunkPrefix(snapshot->incarnation_ + 1);
  rocksdb::Slice upper_slice = ToSlice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
  absl::flat_hash_map<uint64_t, uint32_t> slots;
  uint64_t last_segment = 0;
  uint32_t last_slot = 0;
  bool have_last = false;
  uint64_t total = 0;
  std::string& arena = snapshot->uidl_arena_;
  for (it->Seek(ToSlice(prefix)); it->Valid(); it->Next()) {
    const rocksdb::Slice value = it->value();
    const char* p = value.data();
    const char* end = p + value.size();
    // The chunk's UIDLs are copied into room made once per chunk (trimmed below), with
    // fixed-size moves: a string append per UIDL compiled to `rep movsq`, whose start-up cost
    // was most of opening a 10,000-message mailbox.
    size_t arena_used = arena.size();
    arena.resize(arena_used + value.size());
    while (p < end) {
      if (static_cast<size_t>(end - p) < internal::kRecordFixedBytes) {
        return Corrupt(absl::StrCat("undecodable index of ", snapshot->address_));
      }
      const size_t uidl_len = static_cast<uint8_t>(p[48]);
      if (static_cast<size_t>(end - p) < internal::kRecordFixedBytes + uidl_len) {
        return Corrupt(absl::StrCat("undecodable index of ", snapshot->address_));
      }
      SnapshotEntry& e = snapshot->entries_.emplace_back();
      e.seq = internal::GetLE64(p);
      const uint64_t segment = internal::GetLE64(p + 8);
      e.offset = internal::GetLE64(p + 16);
      e.stored_length = internal::GetLE32(p + 24);
      e.pop3_size = internal::GetLE32(p + 28);
      e.header_length = internal::GetLE32(p + 32);
      e.crc32c = internal::GetLE32(p + 36);
      e.arrival_unix_seconds = internal::GetLE64(p + 40);
      e.uidl_offset = static_cast<uint32_t>(arena_used);
      e.uidl_length = static_cast<uint32_t>(uidl_len);
      CopyShort(arena.data() + arena_used, p + internal::kRecordFixedBytes, uidl_len);
      arena_used += uidl_len;
      if (!have_last || segment != last_segment) {
        auto [slot, inserted] =
            slots.try_emplace(segment, static_cast<uint32_t>(snapshot->segment_ids_.size()));
        if (inserted) snapshot->segment_ids_.push_back(segment);
        last_slot = slot->second;
        last_segment = segment;
        have_last = true;
      }
      e.segment_slot = last_slot;
      total += e.pop3_size;
      p += internal::kRecordFixedBytes + uidl_len;
    }
    arena.resize(arena_used);
  }
  if (!it->status().ok()) return IndexError(it->status(), "read mailbox index");
  snapshot->total_octets_ = total;
  if (after_index_read_for_test) after_index_read_for_test();
  snapshot->segments_.reserve(snapshot->segment_ids_.size());
  for (uint64_t id : snapshot->segment_ids_) {
    absl::StatusOr<std::shared_ptr<Segment>> segment = segments->Get(id);
    if (!segment.ok()) {
      if (segments->Retired(id)) return false;
      return Corrupt(absl::StrCat("mailbox ", snapshot->address_, ": segment ",
                                  SegmentSet::FileName(id),
                                  " is unavailable: ", segment.status().message()));
    }
    snapshot->segments_.push_back(*std::move(segment));
  }
  return true;
}

MessageRef MailboxSnapshot::Ref(size_t index) const {
  const SnapshotEntry& e = entries_[index];
  return MessageRef{segments_[e.segment_slot]->fd(), e.offset, e.stored_length, e.header_length};
}

absl::StatusOr<uint64_t> MailboxSnapshot::TopLength(size_t index, uint64_t body_lines) const {
  const MessageRef ref = Ref(index);
  if (body_lines == 0 || ref.header_length >= ref.length) return ref.header_length;
  constexpr size_t kScanChunkBytes = 64 * 1024;  // bytes read per pread while counting lines
  std::vector<char> buf(static_cast<size_t>(std::min<uint64_t>(kScanChunkBytes, ref.length)));
  uint64_t pos = ref.header_length;
  uint64_t seen = 0;
  while (pos < ref.length) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), ref.length - pos));
    const ssize_t n = pread(ref.fd, buf.data(), want, static_cast<off_t>(ref.offset + pos));
    if (n <= 0) return absl::DataLossError("segment ended inside a message");
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == '\n' && ++seen == body_lines) return pos + static_cast<uint64_t>(i) + 1;
    }
    pos += static_cast<uint64_t>(n);
  }
  return ref.length;
}

absl::Status MailboxSnapshot::VerifyStoredBytes(size_t index) const {
  const MessageRef ref = Ref(index);
  const std::string where =
      absl::StrCat("segment ", SegmentSet::FileName(segment_ids_[entries_[index].segment_slot]),
                   " offset ", ref.offset, " length ", ref.length);
  // Large enough that a 10 MB message costs few syscalls, small enough for an I/O pool thread.
  constexpr uint64_t kVerifyChunkBytes = 256 * 1024;
  std::vector<char> buf(static_cast<size_t>(std::min<uint64_t>(kVerifyChunkBytes, ref.length)));
  uint32_t crc = 0;
  for (uint64_t pos = 0; pos < ref.length;) {
    const uint64_t want = std::min<uint64_t>(buf.size(), ref.length - pos);
    PH_RETURN_IF_ERROR(PreadFull(ref.fd, buf.data(), want, ref.offset + pos, where));
    crc = Crc32cExtend(crc, buf.data(), static_cast<size_t>(want));
    pos += want;
  }
  if (crc != entries_[index].crc32c) {
    return absl::DataLossError(absl::StrCat("stored bytes fail their checksum (", where, ")"));
  }
  return absl::OkStatus();
}

PinnedMessage MailboxSnapshot::PinForTest(size_t index) const {
  return PinnedMessage{Ref(index), segments_[entries_[index].segment_slot]};
}

absl::StatusOr<std::string> MailStore::ReadMessageForTest(const MailboxSnapshot& snapshot,
                                                          size_t index) {
  if (index >= snapshot.size()) {
    return StoreErrorStatus(StoreError::kNoSuchMessage,
                            absl::StrCat("no message at index ", index));
  }
  const MessageRef ref = snapshot.Ref(index);
  std::string out(ref.length, '\0');
  PH_RETURN_IF_ERROR(PreadFull(ref.fd, out.data(), ref.length, ref.offset,
                               absl::StrCat("message ", index + 1, " of ", snapshot.address())));
  return out;
}

// ------------------------------------------------------------------------------------------
// Deletions

absl::StatusOr<DeletionResult> MailStore::CommitDeletions(const MailboxSnapshot& snapshot,
                                                          const std::vector<size_t>& indexes) {
  return impl_->CommitDeletions(snapshot, indexes);
}

absl::StatusOr<DeletionResult> MailStore::Impl::CommitDeletions(
    const MailboxSnapshot& snapshot, const std::vector<size_t>& indexes) {
  std::map<std::string, std::vector<uint64_t>> seqs_by_chunk;
  for (size_t index : indexes) {
    if (index >= snapshot.size()) {
      return StoreErrorStatus(StoreError::kNoSuchMessage,
                              absl::StrCat("no message at index ", index));
    }
    const uint64_t seq = snapshot.entry(index).seq;
    seqs_by_chunk[internal::ChunkKey(snapshot.incarnation(), seq)].push_back(seq);
  }
  // Temporary (POP3 keeps the messages) rather than RocksDB's stored I/O error.
  PH_RETURN_IF_ERROR(CheckIndexWritable());
  const uint64_t incarnation = snapshot.incarnation();
  PH_ASSIGN_OR_RETURN(std::shared_ptr<AccountState> state, Account(snapshot.address()));
  const std::string gone =
      absl::StrCat("account ", snapshot.address(), " was deleted after the mailbox was opened");
  std::lock_guard<std::mutex> mailbox(MailboxMutex(incarnation));
  {
    std::lock_guard<std::mutex> lock(state->mu);
    if (state->deleted || state->record.incarnation != incarnation) {
      return StoreErrorStatus(StoreError::kUnknownAccount, gone);
    }
    // Under the mailbox lock, which HoldAccount takes once after holding.
    if (state->record.held) {
      return StoreErrorStatus(
          StoreError::kAccountHeld,
          absl::StrCat("account ", snapshot.address(), " is moving; deletions not committed"));
    }
  }
  DeletionResult result;
  rocksdb::WriteBatch batch;
  CounterValue counter_delta;
  counter_delta.next_seq = 0;
  std::map<uint64_t, SegmentStats> segment_deltas;
  for (auto& [key, seqs] : seqs_by_chunk) {
    std::sort(seqs.begin(), seqs.end());
    seqs.erase(std::unique(seqs.begin(), seqs.end()), seqs.end());
    std::string value;
    rocksdb::Status s = db->Get(rocksdb::ReadOptions(), ToSlice(key), &value);
    if (!s.ok() && !s.IsNotFound()) return IndexError(s, "read mailbox index");
    std::vector<IndexRecord> records;
    if (!internal::DecodeRecords(value, &records)) {
      return Corrupt(absl::StrCat("undecodable index of ", snapshot.address()));
    }
    std::vector<uint64_t> present;
    for (const IndexRecord& r : records) {
      if (!std::binary_search(seqs.begin(), seqs.end(), r.seq)) continue;
      present.push_back(r.seq);
      counter_delta.messages -= 1;
      counter_delta.octets -= r.pop3_size;
      segment_deltas[r.segment].live_bytes -= r.stored_length;
      segment_deltas[r.segment].live_messages -= 1;
    }
    result.already_gone += seqs.size() - present.size();
    result.deleted += present.size();
    if (!present.empty()) {
      batch.Merge(ToSlice(key), ToSlice(internal::DeleteOperand(present)));
    }
    for (uint64_t seq : present) {
      batch.Delete(ToSlice(internal::RetrievedKey(incarnation, seq)));
    }
  }
  if (result.deleted > 0) {
    batch.Merge(ToSlice(internal::CounterKey(incarnation)),
                ToSlice(internal::EncodeCounter(counter_delta)));
    for (const auto& [segment, delta] : segment_deltas) {
      batch.Merge(ToSlice(internal::SegmentKey(segment)),
                  ToSlice(internal::EncodeSegmentStats(delta)));
    }
    rocksdb::Status s = db->Write(sync_write, &batch);
    if (!s.ok()) return IndexError(s, "commit deletions");
    deletions.fetch_add(result.deleted, std::memory_order_relaxed);
  }
  std::lock_guard<std::mutex> lock(state->mu);
  state->committed.messages -= static_cast<uint64_t>(-counter_delta.messages);
  state->committed.octets -= static_cast<uint64_t>(-counter_delta.octets);
  result.stats_after = state->committed;
  return result;
}

// ------------------------------------------------------------------------------------------
// Retrieval times and job cursors

absl::Status MailStore::RecordRetrievals(const MailboxSnapshot& snapshot,
                                         const std::vector<size_t>& indexes, absl::Time when) {
  return impl_->RecordRetrievals(snapshot, indexes, when);
}

absl::Status MailStore::Impl::RecordRetrievals(const MailboxSnapshot& snapshot,
                                               const std::vector<size_t>& indexes,
                                               absl::Time when) {
  std::map<std::string, std::vector<uint64_t>> seqs_by_chunk;
  const uint64_t incarnation = snapshot.incarnation();
  for (size_t index : indexes) {
    if (index >= snapshot.size()) {
      return StoreErrorStatus(StoreError::kNoSuchMessage,
                              absl::StrCat("no message at index ", index));
    }
    const uint64_t seq = snapshot.entry(index).seq;
    seqs_by_chunk[internal::ChunkKey(incarnation, seq)].push_back(seq);
  }
  if (seqs_by_chunk.empty()) return absl::OkStatus();
  PH_ASSIGN_OR_RETURN(std::shared_ptr<AccountState> state, Account(snapshot.address()));
  // Under the mailbox lock, as CommitDeletions: a message deleted meanwhile gets no row.
  std::lock_guard<std::mutex> mailbox(MailboxMutex(incarnation));
  {
    std::lock_guard<std::mutex> lock(state->mu);
    if (state->deleted || state->record.incarnation != incarnation) {
      return StoreErrorStatus(StoreError::kUnknownAccount,
                              absl::StrCat("account ", snapshot.address(),
                                           " was deleted after the mailbox was opened"));
    }
  }
  std::string when_value;
  internal::PutLE64(&when_value,
                    static_cast<uint64_t>(std::max<int64_t>(0, absl::ToUnixSeconds(when))));
  rocksdb::WriteBatch batch;
  for (auto& [key, seqs] : seqs_by_chunk) {
    std::sort(seqs.begin(), seqs.end());
    seqs.erase(std::unique(seqs.begin(), seqs.end()), seqs.end());
    std::string value;
    rocksdb::Status s = db->Get(rocksdb::ReadOptions(), ToSlice(key), &value);
    if (!s.ok() && !s.IsNotFound()) return IndexError(s, "read mailbox index");
    std::vector<IndexRecord> records;
    if (!internal::DecodeRecords(value, &records)) {
      return Corrupt(absl::StrCat("undecodable index of ", snapshot.address()));
    }
    for (const IndexRecord& r : records) {
      if (!std::binary_search(seqs.begin(), seqs.end(), r.seq)) continue;
      const std::string retrieved_key = internal::RetrievedKey(incarnation, r.seq);
      std::string existing;
      s = db->Get(rocksdb::ReadOptions(), ToSlice(retrieved_key), &existing);
      if (s.ok()) continue;  // the first retrieval counts
      if (!s.IsNotFound()) return IndexError(s, "read retrieval time");
      batch.Put(ToSlice(retrieved_key), ToSlice(when_value));
    }
  }
  if (batch.Count() == 0) return absl::OkStatus();
  rocksdb::Status s = db->Write(rocksdb::WriteOptions(), &batch);
  if (!s.ok()) return IndexError(s, "record retrievals");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<size_t>> MailStore::RetrievedAtOrBefore(const MailboxSnapshot& snapshot,
                                                                   absl::Time cutoff) {
  const uint64_t incarnation = snapshot.incarnation();
  const int64_t cutoff_s = absl::ToUnixSeconds(cutoff);
  const std::string prefix = internal::RetrievedPrefix(incarnation);
  const std::string upper = internal::RetrievedPrefix(incarnation + 1);
  rocksdb::ReadOptions ro;
  rocksdb::Slice upper_slice = ToSlice(upper);
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(ro));
  std::vector<uint64_t> seqs;  // ascending: the keys sort by sequence number
  for (it->Seek(ToSlice(prefix)); it->Valid(); it->Next()) {
    const std::string_view key = View(it->key());
    const std::string_view value = View(it->value());
    if (key.size() != 17 || value.size() != 8) {
      return Corrupt(absl::StrCat("malformed retrieval row of ", snapshot.address()));
    }
    if (static_cast<int64_t>(internal::GetLE64(value.data())) > cutoff_s) continue;
    seqs.push_back(internal::GetBE64(key.data() + 9));
  }
  if (!it->status().ok()) return IndexError(it->status(), "scan retrieval times");
  // Both the snapshot and `seqs` are in sequence order: one merge walk.
  std::vector<size_t> indexes;
  size_t next = 0;
  for (size_t i = 0; i < snapshot.size() && next < seqs.size(); ++i) {
    const uint64_t seq = snapshot.entry(i).seq;
    while (next < seqs.size() && seqs[next] < seq) ++next;
    if (next < seqs.size() && seqs[next] == seq) indexes.push_back(i);
  }
  return indexes;
}

absl::StatusOr<std::string> MailStore::GetJobCursor(std::string_view job) {
  if (job.empty()) return InvalidArgument("empty job name");
  std::string value;
  rocksdb::Status s = impl_->db->Get(
      rocksdb::ReadOptions(),
      ToSlice(absl::StrCat(AbslView(internal::kMetaJobCursorPrefix), AbslView(job))), &value);
  if (s.IsNotFound()) return std::string();
  if (!s.ok()) return IndexError(s, "read job cursor");
  return value;
}

absl::Status MailStore::SetJobCursor(std::string_view job, std::string_view cursor) {
  if (job.empty()) return InvalidArgument("empty job name");
  if (cursor.size() > kJobCursorBytesMax) {
    return InvalidArgument(
        absl::StrCat("job cursor of ", cursor.size(), " bytes is over ", kJobCursorBytesMax));
  }
  const std::string key = absl::StrCat(AbslView(internal::kMetaJobCursorPrefix), AbslView(job));
  rocksdb::Status s = cursor.empty()
                          ? impl_->db->Delete(impl_->sync_write, ToSlice(key))
                          : impl_->db->Put(impl_->sync_write, ToSlice(key), ToSlice(cursor));
  if (!s.ok()) return IndexError(s, "write job cursor");
  return absl::OkStatus();
}

// ------------------------------------------------------------------------------------------
// Compaction

absl::StatusOr<CompactionResult> MailStore::Compact(
    const std::function<void(const CompactionProgress&)>& progress) {
  return impl_->Compact(progress);
}

absl::StatusOr<CompactionResult> MailStore::Impl::Compact(
    const std::function<void(const CompactionProgress&)>& progress) {
  std::lock_guard<std::mutex> compaction(compaction_mu);
  CompactionResult result;

  // 1. Victims: closed segments whose live ratio is below the threshold.
  struct Victim {
    std::shared_ptr<Segment> segment;
    uint64_t file_bytes = 0;
  };
  std::map<uint64_t, Victim> victims;
  std::map<uint64_t, Victim> small;
  {
    rocksdb::ReadOptions ro;
    const std::string upper(1, internal::kSegmentPrefix + 1);
    rocksdb::Slice upper_slice = ToSlice(upper);
    ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
    for (it->Seek(ToSlice(std::string(1, internal::kSegmentPrefix))); it->Valid(); it->Next()) {
      const uint64_t id = internal::KeyId(View(it->key()));
      SegmentStats stats;
      if (!internal::DecodeSegmentStats(View(it->value()), &stats)) {
        return Corrupt(absl::StrCat("undecodable stats of segment ", id));
      }
      if (segments->Busy(id)) continue;
      absl::StatusOr<std::shared_ptr<Segment>> segment = segments->Get(id);
      if (!segment.ok()) {
        LogEvent(LogLevel::kWarning, "compaction: segment unavailable",
                 {{"segment", SegmentSet::FileName(id)},
                  {"error", std::string(StdView(segment.status().message()))}});
        continue;
      }
      struct stat st;
      if (::fstat((*segment)->fd(), &st) != 0) {
        return internal::ErrnoStatus(errno, absl::StrCat("stat ", (*segment)->path()));
      }
      const uint64_t size = static_cast<uint64_t>(st.st_size);
      const double ratio =
          size == 0 ? 0.0 : static_cast<double>(std::max<int64_t>(stats.live_bytes, 0)) / size;
      if (stats.live_messages <= 0 || ratio < options.compaction_live_ratio) {
        victims[id] = Victim{*std::move(segment), size};
      } else if (size < options.segment_roll_bytes / 8) {
        small[id] = Victim{*std::move(segment), size};
      }
    }
    if (!it->status().ok()) return IndexError(it->status(), "scan segment stats");
  }
  // Every restart and every compaction leaves one partly filled segment behind; merge such
  // small segments (two or more) so their number, and the fds they hold, stay bounded.
  if (small.size() >= 2) victims.merge(small);
  CompactionProgress status;
  status.segments_total = victims.size();
  if (victims.empty()) return result;

  // 2. The live messages in the victims (one scan of all mailbox indexes).
  struct Live {
    uint64_t incarnation;
    uint64_t seq;
    uint64_t offset;
    uint32_t length;
  };
  std::map<uint64_t, std::vector<Live>> live;
  {
    rocksdb::ReadOptions ro;
    const std::string upper(1, internal::kIndexPrefix + 1);
    rocksdb::Slice upper_slice = ToSlice(upper);
    ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
    std::vector<IndexRecord> records;
    for (it->Seek(ToSlice(std::string(1, internal::kIndexPrefix))); it->Valid(); it->Next()) {
      records.clear();
      if (!internal::DecodeRecords(View(it->value()), &records)) {
        return Corrupt("undecodable index chunk");
      }
      const uint64_t incarnation = internal::KeyId(View(it->key()));
      for (const IndexRecord& r : records) {
        if (victims.count(r.segment) != 0) {
          live[r.segment].push_back(Live{incarnation, r.seq, r.offset, r.stored_length});
        }
      }
    }
    if (!it->status().ok()) return IndexError(it->status(), "scan mailbox indexes");
  }

  // 3. Per victim: copy, sync, repoint, retire.
  std::shared_ptr<Segment> output;
  uint64_t output_size = 0;
  std::string buffer;
  for (auto& [victim_id, victim] : victims) {
    std::vector<Live>& messages = live[victim_id];
    // Copy mailbox by mailbox, in arrival order: later reads of a mailbox touch few segments.
    std::sort(messages.begin(), messages.end(), [](const Live& a, const Live& b) {
      return a.incarnation != b.incarnation ? a.incarnation < b.incarnation : a.seq < b.seq;
    });
    struct Moved {
      Live from;
      uint64_t new_segment;
      uint64_t new_offset;
    };
    std::vector<Moved> moved;
    std::vector<std::shared_ptr<Segment>> touched;
    for (const Live& m : messages) {
      if (output == nullptr ||
          (output_size > 0 && output_size + m.length > options.segment_roll_bytes)) {
        PH_ASSIGN_OR_RETURN(output, segments->CreateSegment());
        output_size = 0;
      }
      if (touched.empty() || touched.back() != output) touched.push_back(output);
      buffer.resize(m.length);
      PH_RETURN_IF_ERROR(PreadFull(victim.segment->fd(), buffer.data(), m.length, m.offset,
                                   victim.segment->path()));
      PH_RETURN_IF_ERROR(output->WriteAt(output_size, buffer));
      moved.push_back(Moved{m, output->id(), output_size});
      output_size += m.length;
      status.bytes_copied += m.length;
      result.bytes_copied += m.length;
    }
    for (const auto& segment : touched) PH_RETURN_IF_ERROR(segment->SyncWritten());

    // Repoint under the mailbox locks so deletions cannot interleave: up to kRepointGroup
    // mailboxes per synced batch (a segment may hold messages of thousands of mailboxes), their
    // lock stripes taken in ascending order (only compaction ever holds more than one).
    std::map<uint64_t, std::vector<const Moved*>> by_mailbox;
    for (const Moved& m : moved) by_mailbox[m.from.incarnation].push_back(&m);
    constexpr size_t kRepointGroup = 512;
    for (auto group_begin = by_mailbox.begin(); group_begin != by_mailbox.end();) {
      auto group_end = group_begin;
      std::set<size_t> stripes;
      for (size_t n = 0; group_end != by_mailbox.end() && n < kRepointGroup; ++group_end, ++n) {
        stripes.insert(group_end->first % kMailboxLockStripes);
      }
      std::vector<std::unique_lock<std::mutex>> locks;
      locks.reserve(stripes.size());
      for (size_t stripe : stripes) locks.emplace_back(mailbox_mu[stripe]);
      rocksdb::WriteBatch batch;
      std::map<uint64_t, SegmentStats> deltas;
      for (auto entry = group_begin; entry != group_end; ++entry) {
        const uint64_t incarnation = entry->first;
        std::map<std::string, std::vector<internal::RecordMove>> moves_by_chunk;
        for (const Moved* m : entry->second) {
          moves_by_chunk[internal::ChunkKey(incarnation, m->from.seq)].push_back(
              internal::RecordMove{m->from.seq, victim_id, m->from.offset, m->new_segment,
                                   m->new_offset});
        }
        for (auto& [key, moves] : moves_by_chunk) {
          std::string value;
          rocksdb::Status s = db->Get(rocksdb::ReadOptions(), ToSlice(key), &value);
          if (!s.ok() && !s.IsNotFound()) return IndexError(s, "read mailbox index");
          std::vector<IndexRecord> records;
          if (!internal::DecodeRecords(value, &records)) {
            return Corrupt("undecodable index chunk");
          }
          std::vector<internal::RecordMove> still_there;
          for (const internal::RecordMove& mv : moves) {
            for (const IndexRecord& r : records) {
              if (r.seq == mv.seq && r.segment == mv.old_segment && r.offset == mv.old_offset) {
                still_there.push_back(mv);
                deltas[mv.old_segment].live_bytes -= r.stored_length;
                deltas[mv.old_segment].live_messages -= 1;
                deltas[mv.new_segment].live_bytes += r.stored_length;
                deltas[mv.new_segment].live_messages += 1;
                break;
              }
            }
          }
          if (!still_there.empty()) {
            batch.Merge(ToSlice(key), ToSlice(internal::MoveOperand(still_there)));
            result.messages_moved += still_there.size();
          }
        }
      }
      group_begin = group_end;
      if (batch.Count() == 0) continue;
      for (const auto& [segment, delta] : deltas) {
        batch.Merge(ToSlice(internal::SegmentKey(segment)),
                    ToSlice(internal::EncodeSegmentStats(delta)));
      }
      rocksdb::Status s = db->Write(sync_write, &batch);
      if (!s.ok()) return IndexError(s, "repoint index entries");
    }

    // Retire the victim once nothing in the index points at it any more.
    {
      std::unique_lock<std::shared_mutex> retire(retire_mu);
      std::string value;
      rocksdb::Status s =
          db->Get(rocksdb::ReadOptions(), ToSlice(internal::SegmentKey(victim_id)), &value);
      SegmentStats stats;
      if (!s.ok() || !internal::DecodeSegmentStats(value, &stats)) {
        return IndexError(s, "read segment stats");
      }
      if (stats.live_messages != 0 || stats.live_bytes != 0) {
        LogEvent(LogLevel::kWarning, "compaction: segment still referenced; kept",
                 {{"segment", SegmentSet::FileName(victim_id)},
                  {"live_messages", absl::StrCat(stats.live_messages)}});
      } else {
        s = db->Delete(sync_write, ToSlice(internal::SegmentKey(victim_id)));
        if (!s.ok()) return IndexError(s, "delete segment stats");
        PH_RETURN_IF_ERROR(segments->Retire(victim_id));
        result.segments_rewritten += 1;
        result.bytes_reclaimed += victim.file_bytes;
        status.bytes_reclaimed += victim.file_bytes;
      }
    }
    victim.segment.reset();
    status.segments_done += 1;
    if (progress) progress(status);
  }
  if (result.segments_rewritten > 0) {
    compactions.fetch_add(1);
    compacted_segments.fetch_add(result.segments_rewritten);
  }
  return result;
}

// ------------------------------------------------------------------------------------------
// Check

void MailStore::SetAfterIndexReadHookForTest(std::function<void()> hook) {
  impl_->after_index_read_for_test = std::move(hook);
}

absl::Status MailStore::CompactIndex() {
  rocksdb::Status s = impl_->db->Flush(rocksdb::FlushOptions());
  if (!s.ok()) return IndexError(s, "flush");
  rocksdb::CompactRangeOptions options;
  options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  s = impl_->db->CompactRange(options, nullptr, nullptr);
  if (!s.ok()) return IndexError(s, "compact");
  return absl::OkStatus();
}

absl::StatusOr<CheckReport> MailStore::Check() { return impl_->Check(); }

absl::StatusOr<CheckReport> MailStore::Impl::Check() {
  CheckReport report;
  std::shared_lock<std::shared_mutex> retire_guard(retire_mu);
  const rocksdb::Snapshot* snap = db->GetSnapshot();
  struct Release {
    rocksdb::DB* db;
    const rocksdb::Snapshot* snap;
    ~Release() { db->ReleaseSnapshot(snap); }
  } release{db.get(), snap};
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  ro.fill_cache = false;

  auto scan = [&](char prefix,
                  const std::function<void(std::string_view, std::string_view)>& visit) {
    rocksdb::ReadOptions sro = ro;
    const std::string upper(1, static_cast<char>(prefix + 1));
    rocksdb::Slice upper_slice = ToSlice(upper);
    sro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(sro));
    for (it->Seek(ToSlice(std::string(1, prefix))); it->Valid(); it->Next()) {
      visit(View(it->key()), View(it->value()));
    }
    if (!it->status().ok()) return IndexError(it->status(), "check scan");
    return absl::OkStatus();
  };

  std::unordered_map<uint64_t, std::string> address_of;
  std::map<std::string, std::vector<std::string>> keys_by_canonical;
  PH_RETURN_IF_ERROR(
      scan(internal::kAccountPrefix, [&](std::string_view key, std::string_view value) {
        const std::string address = internal::AddressFromAccountKey(key);
        AccountRecord record;
        if (address.empty() || !internal::DecodeAccount(value, &record)) {
          report.problems.push_back(
              absl::StrCat("undecodable account record (key length ", key.size(), ")"));
          return;
        }
        report.accounts += 1;
        if (absl::StatusOr<std::string> canonical = CanonicalAddress(address); canonical.ok()) {
          keys_by_canonical[*canonical].push_back(address);
        } else {
          report.problems.push_back(absl::StrCat("account key ", address, " is not an address"));
        }
        if (!address_of.emplace(record.incarnation, address).second) {
          report.problems.push_back(absl::StrCat("accounts ", address, " and ",
                                                 address_of[record.incarnation],
                                                 " share incarnation ", record.incarnation));
        }
        std::string tenant;
        if (!db->Get(ro, ToSlice(internal::TenantKey(DomainOf(address))), &tenant).ok()) {
          report.problems.push_back(absl::StrCat(address, ": tenant record missing"));
        }
      }));
  // Left apart by the migration to case-insensitive addresses (storage/account_keys.h).
  for (auto& [canonical, keys] : keys_by_canonical) {
    if (keys.size() < 2) continue;
    std::sort(keys.begin(), keys.end());
    report.problems.push_back(
        absl::StrCat("accounts ", absl::StrJoin(keys, " and "), " differ only in case (",
                     keys.size(), " mailboxes, not merged; each is reached by its exact spelling",
                     std::find(keys.begin(), keys.end(), canonical) != keys.end()
                         ? absl::StrCat(", any other spelling reaches ", canonical)
                         : "",
                     "): move the mail and delete all but one"));
  }
  auto name = [&](uint64_t incarnation) {
    auto it = address_of.find(incarnation);
    return it != address_of.end() ? it->second : absl::StrCat("incarnation ", incarnation);
  };

  std::unordered_map<uint64_t, CounterValue> counters;
  PH_RETURN_IF_ERROR(
      scan(internal::kCounterPrefix, [&](std::string_view key, std::string_view value) {
        CounterValue c;
        const uint64_t incarnation = internal::KeyId(key);
        if (key.size() != 9 || !internal::DecodeCounter(value, &c)) {
          report.problems.push_back(absl::StrCat(name(incarnation), ": undecodable counters"));
          return;
        }
        if (address_of.count(incarnation) == 0) {
          report.problems.push_back(
              absl::StrCat("counters for incarnation ", incarnation, " which has no account"));
        }
        counters[incarnation] = c;
      }));

  std::map<uint64_t, SegmentStats> segment_stats;
  PH_RETURN_IF_ERROR(
      scan(internal::kSegmentPrefix, [&](std::string_view key, std::string_view value) {
        SegmentStats st;
        if (key.size() != 9 || !internal::DecodeSegmentStats(value, &st)) {
          report.problems.push_back("undecodable segment stats");
          return;
        }
        segment_stats[internal::KeyId(key)] = st;
      }));

  struct Sum {
    int64_t messages = 0;
    int64_t octets = 0;
    uint64_t max_seq = 0;
  };
  std::unordered_map<uint64_t, Sum> sums;
  std::map<uint64_t, SegmentStats> segment_sums;
  std::unordered_map<uint64_t, std::unordered_set<std::string>> uidls;
  struct OpenSegment {
    std::shared_ptr<Segment> segment;
    uint64_t size = 0;
  };
  std::unordered_map<uint64_t, std::optional<OpenSegment>> open_segments;
  std::set<uint64_t> orphan_incarnations;
  std::string buffer;
  absl::Status io_error;
  PH_RETURN_IF_ERROR(scan(internal::kIndexPrefix, [&](std::string_view key,
                                                      std::string_view value) {
    if (key.size() != 13) {
      report.problems.push_back("malformed index key");
      return;
    }
    const uint64_t incarnation = internal::KeyId(key);
    const uint32_t chunk = static_cast<uint32_t>(internal::GetBE64(key.data() + 5) & 0xffffffff);
    const std::string who = name(incarnation);
    if (address_of.count(incarnation) == 0 && orphan_incarnations.insert(incarnation).second) {
      report.problems.push_back(
          absl::StrCat("index entries for incarnation ", incarnation, " which has no account"));
    }
    std::vector<IndexRecord> records;
    if (!internal::DecodeRecords(value, &records)) {
      report.problems.push_back(absl::StrCat(who, ": undecodable index chunk ", chunk));
      return;
    }
    for (const IndexRecord& r : records) {
      report.messages += 1;
      const std::string what =
          absl::StrCat(who, ": message seq ", r.seq, " (UIDL ", AbslView(r.uidl), ")");
      if ((r.seq >> internal::kChunkShift) != chunk) {
        report.problems.push_back(absl::StrCat(what, ": filed in the wrong index chunk"));
      }
      Sum& sum = sums[incarnation];
      sum.messages += 1;
      sum.octets += r.pop3_size;
      sum.max_seq = std::max(sum.max_seq, r.seq);
      segment_sums[r.segment].live_bytes += r.stored_length;
      segment_sums[r.segment].live_messages += 1;
      if (!ValidateUidl(r.uidl).ok()) {
        report.problems.push_back(absl::StrCat(what, ": malformed UIDL"));
      } else if (!uidls[incarnation].insert(std::string(r.uidl)).second) {
        report.problems.push_back(absl::StrCat(what, ": duplicate UIDL"));
      }
      if (r.header_length > r.stored_length) {
        report.problems.push_back(absl::StrCat(what, ": header length ", r.header_length,
                                               " exceeds stored length ", r.stored_length));
      }
      if (r.pop3_size > r.stored_length) {
        report.problems.push_back(absl::StrCat(what, ": POP3 size exceeds stored length"));
      }
      auto [slot, inserted] = open_segments.try_emplace(r.segment);
      if (inserted) {
        absl::StatusOr<std::shared_ptr<Segment>> segment = segments->Get(r.segment);
        struct stat st;
        if (segment.ok() && ::fstat((*segment)->fd(), &st) == 0) {
          slot->second = OpenSegment{*segment, static_cast<uint64_t>(st.st_size)};
        } else {
          report.problems.push_back(absl::StrCat("segment ", SegmentSet::FileName(r.segment),
                                                 " is missing or unreadable"));
        }
      }
      if (!slot->second.has_value()) {
        report.problems.push_back(
            absl::StrCat(what, ": segment ", SegmentSet::FileName(r.segment), " missing"));
        continue;
      }
      const OpenSegment& seg = *slot->second;
      if (r.offset + r.stored_length > seg.size) {
        report.problems.push_back(absl::StrCat(
            what, ": points outside segment ", SegmentSet::FileName(r.segment), " (bytes ",
            r.offset, "..", r.offset + r.stored_length, " of ", seg.size, ")"));
        continue;
      }
      buffer.resize(r.stored_length);
      absl::Status read = PreadFull(seg.segment->fd(), buffer.data(), r.stored_length, r.offset,
                                    seg.segment->path());
      if (!read.ok()) {
        report.problems.push_back(absl::StrCat(what, ": ", read.message()));
        continue;
      }
      if (r.stored_length < 2 || buffer[r.stored_length - 2] != '\r' ||
          buffer[r.stored_length - 1] != '\n') {
        report.problems.push_back(absl::StrCat(what, ": stored bytes do not end in CRLF"));
      }
      if (Crc32c(buffer) != r.crc32c) {
        report.problems.push_back(absl::StrCat(what, ": stored bytes fail their checksum (segment ",
                                               SegmentSet::FileName(r.segment), " corrupted)"));
      }
    }
  }));

  for (const auto& [incarnation, address] : address_of) {
    const Sum sum = sums.count(incarnation) ? sums[incarnation] : Sum{};
    CounterValue c;
    auto it = counters.find(incarnation);
    if (it != counters.end()) c = it->second;
    if (c.messages != sum.messages || c.octets != sum.octets) {
      report.problems.push_back(absl::StrCat(address, ": counters say ", c.messages, " messages / ",
                                             c.octets, " octets, index holds ", sum.messages, " / ",
                                             sum.octets));
    }
    if (sum.messages > 0 && c.next_seq <= sum.max_seq) {
      report.problems.push_back(absl::StrCat(address, ": next sequence number ", c.next_seq,
                                             " is not above the highest in use ", sum.max_seq));
    }
  }
  for (const auto& [id, sum] : segment_sums) {
    const SegmentStats st = segment_stats.count(id) ? segment_stats[id] : SegmentStats{};
    if (st.live_bytes != sum.live_bytes || st.live_messages != sum.live_messages) {
      report.problems.push_back(absl::StrCat("segment ", SegmentSet::FileName(id),
                                             ": accounting says ", st.live_messages, " messages / ",
                                             st.live_bytes, " bytes, index holds ",
                                             sum.live_messages, " / ", sum.live_bytes));
    }
  }
  for (const auto& [id, st] : segment_stats) {
    if (segment_sums.count(id) == 0 && (st.live_bytes != 0 || st.live_messages != 0)) {
      report.problems.push_back(absl::StrCat("segment ", SegmentSet::FileName(id),
                                             ": accounting says ", st.live_messages,
                                             " messages, index holds none"));
    }
  }
  report.segments = segment_stats.size();
  return report;
}

}  // namespace posthaste::storage
