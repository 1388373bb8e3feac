// MailStore: the durable, multi-tenant message store behind posthaste.
//
// A data directory holds:
//   DIR/posthaste.lock      an flock(2)ed lock file with the owner's pid (one process at a time)
//   DIR/index/              one RocksDB database: tenants, accounts, packed per-mailbox
//                           indexes, per-account counters, imported-UIDL tables, segment stats
//   DIR/segments/<16 hex digits>.seg
//                           append-only segment files holding message bodies in POP3 wire form
//                           (CRLF line endings, dot-stuffed, no ".\r\n" terminator)
//
// Durability: Deliver() and CommitDeletions() return OK only once their effect survives a
// crash or SIGKILL (segment bytes fdatasync'd before the index entry that points at them is
// written to RocksDB with a synced WAL). Concurrent deliveries share fsyncs (group commit).
//
// Threading: every MailStore method is thread-safe and may block on disk I/O (fsync,
// pread, RocksDB). Call it from an offload thread pool, never from a reactor thread.
// MailboxSnapshot is immutable and may be read from any thread without locking.
//
// Ownership: MailStore owns the RocksDB handle and the segment files. A MailboxSnapshot keeps
// the segment files it refers to open (reference-counted), so the fds it hands out stay valid
// for the snapshot's life even if compaction replaces and unlinks those segments. A snapshot is
// self-contained and may outlive the MailStore that produced it.
//
// Errors: every error Status a MailStore method returns carries a StoreError kind
// (storage/store_error.h; ErrorOf(status)). Callers switch on the kind; the message is for
// people. The kinds each method reports are named below; any method may also report kTemporary,
// kNoSpace (a write met a full disk), kCorrupt or kIo.
//
// Module rule: //storage depends only on //base, abseil and RocksDB, and never does network
// I/O.
#ifndef POSTHASTE_STORAGE_MAIL_STORE_H_
#define POSTHASTE_STORAGE_MAIL_STORE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "storage/message_format.h"  // NormalizeForStorage, ParseAddress, ValidateUidl
#include "storage/store_error.h"     // StoreError, ErrorOf: the kind every error below carries
#include "storage/tenant_settings.h"

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace posthaste::storage {

namespace internal {
class Segment;  // storage/segment.h
}  // namespace internal

inline constexpr uint64_t kMessageBytesMaxDefault = 50ull << 20;   // 50 MiB
inline constexpr uint64_t kDefaultSegmentRollBytes = 64ull << 20;  // 64 MiB
inline constexpr uint64_t kFreeBytesMinDefault = 64ull << 20;      // 64 MiB
inline constexpr size_t kMaxPasswordHashLength = 1024;
inline constexpr size_t kMaxSharedSecretLength = 1024;
inline constexpr size_t kJobCursorBytesMax = 1024;
// Upper bound for any configured maximum message size (stored lengths are 32-bit).
inline constexpr uint64_t kMessageBytesMaxConfigurable = 1ull << 30;

struct StoreOptions {
  std::string data_dir;
  // Creates DIR and its contents when absent. When false, a missing store is kNoStore.
  bool create_if_missing = true;
  // Store-wide maximum POP3 size of one message; tenants may lower (or raise) it.
  uint64_t message_bytes_max = kMessageBytesMaxDefault;
  // Limits copied into a tenant record when its first account is created. 0 = unlimited.
  uint64_t default_quota_messages = 0;
  uint64_t default_quota_octets = 0;
  // A delivery segment is closed and a new one started once it reaches this size.
  uint64_t segment_roll_bytes = kDefaultSegmentRollBytes;
  // Compact() rewrites closed segments whose live bytes / file bytes falls below this.
  double compaction_live_ratio = 0.5;
  // RocksDB block cache.
  size_t index_cache_bytes = 64ull << 20;
  // One RocksDB memtable; up to two are held (one filling, one flushing). RocksDB's 64 MiB
  // default made the server's RSS climb for a quarter of an hour under load before the first
  // flush (docs/RELIABILITY.md, "Soak"); index records are small, so smaller memtables cost
  // only more frequent, smaller flushes.
  size_t index_write_buffer_bytes = 16ull << 20;
  // Deliveries are refused (StoreError::kNoSpace, "disk full") while the data directory's
  // filesystem would have less than this free after storing them. RocksDB 7.8 aborts on an
  // assertion when its write-ahead log meets ENOSPC (docs/RELIABILITY.md, "Disk faults"), so
  // the index must never be the write that fills the disk. 0 turns the check off.
  uint64_t free_bytes_min = kFreeBytesMinDefault;
  // Tests only: the Env RocksDB opens the index with (to inject faults); null: the default.
  std::shared_ptr<rocksdb::Env> index_env_for_test;
};

// Per-tenant (per-domain) settings. 0 = unlimited, or for message_bytes_max: the store-wide
// StoreOptions::message_bytes_max.
struct TenantLimits {
  uint64_t quota_messages = 0;  // default per-account message quota
  uint64_t quota_octets = 0;    // default per-account octet quota (POP3 sizes)
  uint64_t message_bytes_max = 0;
};

// Whether USER/PASS, AUTH PLAIN and AUTH LOGIN may run before TLS for a tenant's users.
// kDefault follows the server's --plaintext_requires_tls rule; kAllow permits plaintext logins
// from any address; kRequireTls refuses them without TLS even where the server-wide rule would
// allow them (loopback, or --plaintext_requires_tls=false). Stored as its integer value.
enum class PlaintextAuth : uint8_t { kDefault = 0, kAllow = 1, kRequireTls = 2 };
// "default", "allow", "require_tls".
std::string_view PlaintextAuthName(PlaintextAuth value);
// The inverse of PlaintextAuthName; nullopt for anything else.
std::optional<PlaintextAuth> ParsePlaintextAuth(std::string_view name);

// Per-tenant policies (besides limits). Default-constructed: everything follows the server.
struct TenantPolicy {
  PlaintextAuth plaintext_auth = PlaintextAuth::kDefault;
  // APOP and CRAM-MD5 for the tenant's accounts that have a shared secret (SetSharedSecret).
  bool apop_allowed = false;
  // Accounts of this tenant (canonical addresses, sorted, in the tenant's domain) that may log
  // in as any other account of the same tenant with their own password (SASL PLAIN with an
  // authorisation id). At most kTenantMasterUsersMax.
  std::vector<std::string> master_users;
  // The scheme and cost of the password hashes made for this tenant's accounts (`user add`,
  // `user passwd`, the admin API, rehash at login), in server/auth/password_hash.h's
  // HashSetting text ("yescrypt:3", "sha512-crypt"); empty: the server's. Opaque here: callers
  // check it. At most kTenantPasswordSchemeBytesMax bytes.
  std::string password_scheme;
  // The tenant's POP3 service settings (LOGIN-DELAY, EXPIRE, download limit, listing cap, ...).
  TenantServiceSettings service;
  // Read only: starts at 0 and grows by one with every SetTenantPolicy, so that a reader can
  // tell which version of the policy it saw (the admin API's ETag).
  uint64_t revision = 0;
};
inline constexpr size_t kTenantMasterUsersMax = 64;
inline constexpr size_t kTenantPasswordSchemeBytesMax = 64;

struct TenantInfo {
  std::string domain;
  TenantLimits limits;
  TenantPolicy policy;
};

// Per-account quota. 0 = use the tenant default (which itself may be 0 = unlimited).
struct AccountQuota {
  uint64_t messages = 0;
  uint64_t octets = 0;
};

// Addresses: every method taking an address accepts any case of it and reaches the one account
// whose canonical form (CanonicalAddress) it has. Results carry two forms: `address`, the
// account's identity (its canonical address; for an account kept under a legacy key because it
// collides with another one that differs only in case, see storage/account_keys.h, the address
// as it was created), to be used as a key (locks, caches, registries); and `display_address`,
// the case the user gave at creation (domain lowercased), for output.
// SCRAM verifiers kept beside the password hash (RFC 5803 strings made by server/auth/scram.h),
// opaque to storage; empty when the account has none. Replaced with the hash: a hash set
// without them clears them, so a changed password never leaves old verifiers behind.
struct ScramVerifiers {
  std::string sha1;
  std::string sha256;
};

struct AccountInfo {
  std::string address;          // identity: canonical local@domain (see above)
  std::string display_address;  // as created (domain lowercased)
  uint64_t incarnation = 0;     // unique per account creation, never reused; part of UIDLs
  std::string password_hash;    // opaque to storage (hashing lives in server/auth)
  ScramVerifiers scram;         // beside password_hash, set and cleared with it
  // The recoverable secret APOP and CRAM-MD5 need, kept only for accounts that opted in (empty
  // otherwise). Opaque to storage; stored as given, so anyone who reads the store can read it.
  std::string shared_secret;
  bool disabled = false;
  bool held = false;  // held for a move (MailStore::HoldAccount)
  AccountQuota quota;
  absl::Time created_time;
};

// Counters kept per account so STAT is O(1). Octets are POP3 sizes (CRLF, not dot-stuffed).
struct MailboxStats {
  uint64_t messages = 0;
  uint64_t octets = 0;
};

// An account's usage against its effective limits (account quota, else the tenant default;
// 0 = unlimited), for admission checks (LMTP RCPT) and administration. `stats` counts committed
// messages; `reserved` counts deliveries in flight (they count against the quota too).
struct AccountUsage {
  std::string address;          // identity (see AccountInfo)
  std::string display_address;  // as created
  bool disabled = false;
  bool held = false;  // held for a move (MailStore::HoldAccount): deliveries wait
  MailboxStats stats;
  MailboxStats reserved;
  AccountQuota quota;              // as set on the account (0 = tenant default)
  AccountQuota effective_quota;    // what deliveries are checked against (0 = unlimited)
  uint64_t message_bytes_max = 0;  // effective (tenant, else store-wide)

  // Whether one more message of `size` octets (POP3 size) would pass the quota.
  bool WouldExceedQuota(uint64_t size) const;
};

struct AccountSummary {
  std::string address;          // identity (see AccountInfo)
  std::string display_address;  // as created
  bool disabled = false;
  MailboxStats stats;
};

// How the message given to Deliver is encoded.
enum class MessageInput : uint8_t {
  // RFC 5322 text with any line ends (CLI deliver, imports): normalised by NormalizeForStorage.
  kText,
  // Already the stored wire form (CRLF lines, dot-stuffed, ending in CRLF), as the LMTP session
  // reads DATA: checked by CheckWireForm and stored as given, neither rewritten nor copied.
  // Input that is not in wire form is refused with kNotWireForm.
  kWireForm,
};

struct DeliverOptions {
  // A UIDL to keep (migration/import). Must be 1-70 chars in 0x21-0x7E and not used before in
  // this account (also not by a deleted message). Absent: storage generates one.
  std::optional<std::string> uidl;
  // Defaults to now.
  std::optional<absl::Time> arrival_time;
  MessageInput input = MessageInput::kText;
};

struct DeliveryItem {
  std::string_view raw_message;  // must stay valid during the DeliverBatch call
  DeliverOptions options;
};

struct DeliverResult {
  std::string uidl;
  uint64_t pop3_size = 0;     // what STAT/LIST report
  uint64_t stored_bytes = 0;  // dot-stuffed length in the segment
};

// Where a message's stored bytes are: `length` bytes at `offset` of `fd`, the dot-stuffed
// message ending in CRLF, without the ".\r\n" terminator (the transport appends it). The first
// `header_length` bytes are the header block including the blank line that ends it (all of the
// message when it has no blank line), which TOP sends before the requested body lines.
// The fd is owned by storage: never close it; it is valid as long as the snapshot (or the
// PinnedMessage) it came from is alive.
struct MessageRef {
  int fd = -1;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t header_length = 0;
};

// A MessageRef plus a reference that keeps its segment file open on its own.
struct PinnedMessage {
  MessageRef ref;
  std::shared_ptr<const void> keep_alive;
};

class MailboxSnapshot;

// Outcome of CommitDeletions.
struct DeletionResult {
  uint64_t deleted = 0;       // removed by this call
  uint64_t already_gone = 0;  // removed earlier (e.g. by a concurrent session); not counted
  MailboxStats stats_after;   // the account's counters after the commit
};

struct CompactionProgress {
  uint64_t segments_total = 0;  // segments selected for rewriting
  uint64_t segments_done = 0;
  uint64_t bytes_copied = 0;     // live bytes copied so far
  uint64_t bytes_reclaimed = 0;  // file bytes released so far
};

struct CompactionResult {
  uint64_t segments_rewritten = 0;
  uint64_t messages_moved = 0;
  uint64_t bytes_copied = 0;
  uint64_t bytes_reclaimed = 0;
};

struct CheckReport {
  uint64_t accounts = 0;
  uint64_t messages = 0;
  uint64_t segments = 0;
  std::vector<std::string> problems;  // one line each; empty when the store is consistent
  bool ok() const { return problems.empty(); }
};

// Operational counters (for metrics and tests).
struct StoreCounters {
  uint64_t deliveries = 0;     // acknowledged deliveries
  uint64_t segment_syncs = 0;  // fdatasync calls on segment files (group commit shares them)
  uint64_t deletions = 0;      // messages removed by CommitDeletions
};

// Whole-store figures for monitoring (plain values; the server turns them into metrics).
struct StoreStats {
  uint64_t accounts = 0;
  uint64_t messages = 0;            // sum of the accounts' counters
  uint64_t octets = 0;              // POP3 octets, likewise
  uint64_t segments = 0;            // segment files with index entries
  uint64_t segment_file_bytes = 0;  // their sizes on disk
  uint64_t live_bytes = 0;          // stored bytes of messages still indexed
  uint64_t dead_bytes = 0;          // segment_file_bytes - live_bytes (compaction reclaims it)
  uint64_t compactions = 0;         // Compact() runs that rewrote at least one segment
  uint64_t compacted_segments = 0;  // segments rewritten and removed by compaction
  StoreCounters counters;
  // RocksDB statistics (tickers) and properties.
  uint64_t block_cache_hits = 0;
  uint64_t block_cache_misses = 0;
  uint64_t write_stall_micros = 0;
  bool write_stopped = false;
  bool index_read_only = false;  // IndexReadOnly()
  // The index's memory, from RocksDB's properties: what a server's RSS is mostly made of
  // beyond its sessions. Memtables are bounded by index_write_buffer_bytes x 2, the block
  // cache by index_cache_bytes; table readers (indexes and filters of the index's files, kept
  // outside the cache) grow with the files until RocksDB's compaction merges them.
  uint64_t index_memtable_bytes = 0;           // rocksdb.cur-size-all-mem-tables
  uint64_t index_block_cache_bytes = 0;        // rocksdb.block-cache-usage
  uint64_t index_block_cache_capacity = 0;     // rocksdb.block-cache-capacity
  uint64_t index_table_reader_bytes = 0;       // rocksdb.estimate-table-readers-mem
};

class MailStore {
 public:
  // Opens (creating when allowed) the store in options.data_dir and takes an exclusive flock on
  // DIR/posthaste.lock. Errors: kStoreLocked "data directory DIR is in use by another process
  // (pid N)" while another process (or another MailStore in this one) holds it;
  // kInvalidArgument for bad options; kNoStore when absent and !create_if_missing;
  // kNewerSchema when the store was written by a newer posthaste (schema version); kIo/kCorrupt
  // for I/O or index errors. A store from before case-insensitive addresses is migrated first, once
  // (storage/account_keys.h).
  static absl::StatusOr<std::unique_ptr<MailStore>> Open(const StoreOptions& options);

  // Closes the index and releases the lock. Outstanding snapshots stay readable.
  ~MailStore();
  MailStore(const MailStore&) = delete;
  MailStore& operator=(const MailStore&) = delete;

  // ---- Tenants ----
  // kUnknownTenant until the tenant's first account exists. Malformed domain: kInvalidAddress.
  absl::StatusOr<TenantInfo> GetTenant(std::string_view domain);
  // Creates the tenant when absent. kInvalidAddress for a malformed domain.
  // Keeps the tenant's policy.
  absl::Status SetTenantLimits(std::string_view domain, const TenantLimits& limits);
  // Creates the tenant when absent (with the store's default limits). Keeps the limits.
  // kInvalidAddress for a malformed domain; kInvalidArgument for a master user that is no
  // address of `domain` or more than kTenantMasterUsersMax of them (stored canonical, sorted).
  // With `expected_revision`: only while the stored policy's revision is that one (checked
  // under the tenant writers' lock; an absent tenant has revision 0), else kStaleRevision and
  // nothing changes (the admin API's If-Match).
  absl::Status SetTenantPolicy(std::string_view domain, const TenantPolicy& policy,
                               std::optional<uint64_t> expected_revision = std::nullopt);
  // Creates the tenant record with `limits` and `policy` (checked as by SetTenantLimits and
  // SetTenantPolicy; the policy's revision starts at 1). kTenantExists when the domain has a
  // record already (made by an earlier create, a limit or policy change, or its first account).
  absl::Status CreateTenant(std::string_view domain, const TenantLimits& limits,
                            const TenantPolicy& policy);
  // Removes the tenant record (its limits and policy). Refused with kTenantNotEmpty while any
  // account of the domain exists (deleting mail is `user del`'s job, one account at a time);
  // kUnknownTenant when there is no record. Serialised with CreateAccount, so an account
  // created meanwhile either blocks the delete or finds no record and makes a fresh one.
  absl::Status DeleteTenant(std::string_view domain);
  // Every tenant, sorted by domain (a scan of the tenant records).
  absl::StatusOr<std::vector<TenantInfo>> ListTenants();
  // Bumped (release) after every tenant change made through this MailStore; cheap to poll, so a
  // caller can re-read tenants only when it moved.
  uint64_t tenant_generation() const;

  // ---- Accounts ----
  // Every method taking an address reports kInvalidAddress when it is malformed (see
  // ParseAddress) and, but for CreateAccount, kUnknownAccount when no account has it.
  // `address` is local@domain. kAccountExists when an account with the same canonical address
  // exists, in whatever case it was created; kInvalidArgument for an over-long password hash.
  // Keeps the given case as the display address. Creates the tenant record on first use.
  absl::StatusOr<AccountInfo> CreateAccount(std::string_view address,
                                            std::string_view password_hash,
                                            const ScramVerifiers& scram = {});
  // Removes the account, its messages and its UIDL table. kUnknownAccount when absent. A later
  // CreateAccount of the same address gets a new incarnation, so UIDLs are never reused.
  absl::Status DeleteAccount(std::string_view address);
  // Replaces the hash and the SCRAM verifiers (empty `scram`: the account has none after).
  absl::Status SetPasswordHash(std::string_view address, std::string_view password_hash,
                               const ScramVerifiers& scram = {});
  // Sets the account's APOP/CRAM-MD5 secret (AccountInfo::shared_secret); empty removes it.
  // kInvalidArgument when longer than kMaxSharedSecretLength.
  absl::Status SetSharedSecret(std::string_view address, std::string_view secret);
  // As SetPasswordHash, only while the stored hash is still `expected_hash` (checked under the
  // account's lock), keeping the SCRAM verifiers (the password is the same): a rehash at login
  // never overwrites a password changed meanwhile. FailedPrecondition when the stored hash
  // differs.
  absl::Status ReplacePasswordHash(std::string_view address, std::string_view expected_hash,
                                   std::string_view password_hash);
  absl::Status SetDisabled(std::string_view address, bool disabled);
  absl::Status SetQuota(std::string_view address, const AccountQuota& quota);
  absl::StatusOr<AccountInfo> GetAccount(std::string_view address);
  // All accounts (of `domain` only, when given), sorted by domain, then canonical local part.
  absl::StatusOr<std::vector<AccountSummary>> ListAccounts(
      std::optional<std::string_view> domain = std::nullopt);
  // The account's counters: O(1), no scan. kUnknownAccount when absent.
  absl::StatusOr<MailboxStats> GetMailboxStats(std::string_view address);
  // Counters, deliveries in flight and effective limits, read together under the account's
  // lock (no scan). kUnknownAccount when absent.
  absl::StatusOr<AccountUsage> GetUsage(std::string_view address);
  // Holds or releases writes to the account while it moves to another store (a live move,
  // storage/migration/mailbox_transfer.h). While held, Deliver, DeliverBatch and CommitDeletions
  // fail with kAccountHeld (the caller retries later: LMTP answers 451 4.2.0, a POP3 session's
  // deletions are not committed) and GetUsage reports `held`. Holding returns only once no
  // delivery or deletion that began before it is still running, so a copy taken afterwards is
  // final. Reading (OpenMailbox), account changes and DeleteAccount are not held; a snapshot
  // says whether it was taken while held (MailboxSnapshot::held: POP3 refuses such logins). The
  // hold is stored durably with the account record before this waits, so a restarted store
  // still holds it until it is released or the account is deleted (which ends it).
  // kUnknownAccount when absent (releasing an unknown account is OK).
  absl::Status HoldAccount(std::string_view address, bool held);

  // ---- Messages ----
  // Normalises `raw_message` (see NormalizeForStorage; with options.input kWireForm: checks
  // that it is already normal, see CheckWireForm) and stores it durably. Returns only after
  // the bytes and their index entry survive a crash. Errors: kInvalidAddress, kInvalidUidl,
  // kUnknownAccount, kDisabled, kMessageTooBig ("message of N octets exceeds the maximum message
  // size of M octets"), kOverQuota ("mailbox quota exceeded: ... messages" / "... octets"),
  // kUidlInUse (imported UIDL already used in this account), kNotWireForm (wire-form input that
  // is not), kNoSpace (disk full, or below StoreOptions::free_bytes_min), kTemporary (out of
  // fds, the index read-only after a write fault) or kIo/kCorrupt on other I/O failures (nothing
  // acknowledged). Delivery to a disabled
  // account is refused so the sender learns it instead of mail piling up unread.
  absl::StatusOr<DeliverResult> Deliver(std::string_view address, std::string_view raw_message,
                                        const DeliverOptions& options = {});

  // Delivers several messages to one account all or nothing: either every message is stored
  // and indexed (one synced index batch; segment syncs shared), or none is. Each item is
  // normalised and checked as in Deliver; the quota check covers the whole batch; an imported
  // UIDL may not appear twice in it. Errors about one item name it ("message 3 of 10: ...").
  // Results are in item order. Meant for imports: bound the batch (memory holds every message).
  absl::StatusOr<std::vector<DeliverResult>> DeliverBatch(std::string_view address,
                                                          const std::vector<DeliveryItem>& items);

  // An immutable snapshot of the mailbox: messages in arrival order. Deliveries made after it
  // was taken are not in it; message indexes never shift for its life. kUnknownAccount when the
  // account does not exist; kCorrupt when a segment it needs is missing; kTemporary in the
  // unlikely case that compaction moved its messages five times while it was reading. Cost: one
  // RocksDB range scan plus one parse (no per-message allocation).
  absl::StatusOr<std::shared_ptr<const MailboxSnapshot>> OpenMailbox(std::string_view address);

  // Reads the stored bytes of message `index` (0-based) of `snapshot` (pread; tests only).
  // kNoSuchMessage for a bad index; kCorrupt when the segment is shorter than the index says.
  absl::StatusOr<std::string> ReadMessageForTest(const MailboxSnapshot& snapshot, size_t index);

  // Deletes the messages at `indexes` (0-based, into `snapshot`) atomically: one synced RocksDB
  // batch, all or nothing; counters updated. Messages already removed (by a concurrent session)
  // are skipped and reported, never counted twice. Their UIDLs are never reused.
  // kNoSuchMessage for a bad index (nothing deleted); kUnknownAccount when the account was
  // deleted (or re-created) since the snapshot was taken.
  absl::StatusOr<DeletionResult> CommitDeletions(const MailboxSnapshot& snapshot,
                                                 const std::vector<size_t>& indexes);

  // ---- Retrieval times (RFC 2449 EXPIRE n: the retention job counts days from them) ----
  // Records `when` as the first retrieval of each message at `indexes` (0-based, into
  // `snapshot`) that has none yet and is still in the mailbox; an earlier time is kept. Not
  // synced: a time lost in a crash only keeps the message longer. kNoSuchMessage for a bad
  // index (nothing recorded); kUnknownAccount when the account was deleted (or re-created)
  // since the snapshot was taken. CommitDeletions and DeleteAccount remove the times.
  absl::Status RecordRetrievals(const MailboxSnapshot& snapshot, const std::vector<size_t>& indexes,
                                absl::Time when);
  // The indexes (ascending) of the messages of `snapshot` first retrieved at or before
  // `cutoff`. One range scan of the mailbox's retrieval rows.
  absl::StatusOr<std::vector<size_t>> RetrievedAtOrBefore(const MailboxSnapshot& snapshot,
                                                          absl::Time cutoff);
  // A maintenance job's resume point (opaque text of at most kJobCursorBytesMax bytes, kept
  // durably with the index); empty when none. Setting an empty one clears it.
  // kInvalidArgument for a longer cursor or an empty job name.
  absl::StatusOr<std::string> GetJobCursor(std::string_view job);
  absl::Status SetJobCursor(std::string_view job, std::string_view cursor);

  // ---- Download counts (the tenant's daily download limit) ----
  // Octets of RETR and TOP answers recorded for `address` on UTC day `utc_day` (days since
  // 1970-01-01); 0 when none were. Errors: kInvalidAddress, kUnknownAccount.
  absl::StatusOr<uint64_t> DownloadedOctets(std::string_view address, uint32_t utc_day);
  // Adds `octets` to that day's count, read and written under the account's lock, and drops
  // the counts of earlier days when it starts a day's. Written to the index's WAL without a
  // sync: it survives the process being killed, and an OS crash loses at most what was added
  // since the store's last synced write (a delivery or a commit syncs the WAL behind it).
  // Removed with the account. Errors: kInvalidAddress, kUnknownAccount.
  absl::Status AddDownloadedOctets(std::string_view address, uint32_t utc_day, uint64_t octets);

  // ---- Maintenance ----
  // Rewrites closed segments whose live ratio is below options.compaction_live_ratio: copies
  // their live messages to new segments, fsyncs, repoints the index entries atomically, then
  // unlinks the old file. Online: deliveries, deletions and readers holding old snapshots stay
  // correct. Calls `progress` (when set) after each segment. Runs on the calling thread; one
  // Compact() at a time (a second concurrent call waits).
  absl::StatusOr<CompactionResult> Compact(
      const std::function<void(const CompactionProgress&)>& progress = nullptr);

  // Verifies every index entry against the segments (segment exists, entry within the file,
  // header_length <= length, stored bytes end in CRLF and match their checksum), counters
  // against the sum of entries, UIDL uniqueness per account, and segment accounting, and
  // names accounts that differ only in case (left apart by the migration). Returns
  // the problems found (an error Status only when the check itself could not run).
  absl::StatusOr<CheckReport> Check();

  // Flushes the index memtable and compacts the whole index, folding pending merge operands
  // into packed values (what RocksDB does on its own over time). Useful after bulk imports;
  // never needed for correctness.
  absl::Status CompactIndex();

  StoreCounters Counters() const;

  // Store-wide figures. Scans the account, counter and segment rows of the index (O(accounts +
  // segments), no message records) and stats each segment file: meant for a scrape every few
  // seconds, off the reactor. Thread-safe.
  absl::StatusOr<StoreStats> Stats();

  // True while RocksDB refuses writes after a write fault (a failed write or sync of its log):
  // deliveries and deletions fail with kTemporary meanwhile. The store retries DB::Resume() in
  // the background and clears this when RocksDB resumes; when RocksDB cannot resume from the
  // error (it rates an I/O error on its log fatal) it stays true and the log says to restart
  // posthaste. Reads keep working. Thread-safe and cheap (an atomic load): /readyz calls it.
  bool IndexReadOnly() const;

  // Runs `hook` inside OpenMailbox after the index is read and before its segments are opened
  // (tests use it to make compaction retire a segment at that moment). Not thread-safe: set it
  // before concurrent use.
  void SetAfterIndexReadHookForTest(std::function<void()> hook);
  const StoreOptions& options() const;

  struct Impl;

 private:
  explicit MailStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// One message of a snapshot (internal layout; read it through MailboxSnapshot's accessors).
struct SnapshotEntry {
  uint64_t seq = 0;  // per-account sequence number (arrival order)
  uint64_t offset = 0;
  uint64_t arrival_unix_seconds = 0;
  uint32_t segment_slot = 0;  // index into the snapshot's segment table
  uint32_t stored_length = 0;
  uint32_t pop3_size = 0;
  uint32_t header_length = 0;
  uint32_t uidl_offset = 0;  // into the snapshot's UIDL arena
  uint32_t uidl_length = 0;
  uint32_t crc32c = 0;  // of the stored bytes, as the index records it
};

// An immutable view of one mailbox at one moment. Thread-safe (read-only). Indexes are 0-based
// positions in arrival order; POP3 message numbers are index + 1 (the session converts).
class MailboxSnapshot {
 public:
  const std::string& address() const { return address_; }
  uint64_t incarnation() const { return incarnation_; }
  size_t size() const { return entries_.size(); }
  uint64_t total_octets() const { return total_octets_; }
  // The account was held for a move (MailStore::HoldAccount) when this snapshot was taken.
  bool held() const { return held_; }

  // REQUIRES: index < size().
  uint64_t pop3_size(size_t index) const { return entries_[index].pop3_size; }
  std::string_view uidl(size_t index) const {
    const SnapshotEntry& e = entries_[index];
    return std::string_view(uidl_arena_).substr(e.uidl_offset, e.uidl_length);
  }
  absl::Time arrival_time(size_t index) const {
    return absl::FromUnixSeconds(static_cast<int64_t>(entries_[index].arrival_unix_seconds));
  }
  // Valid while this snapshot is alive.
  MessageRef Ref(size_t index) const;
  // The stored length POP3 TOP sends of message `index`: its header block, the blank line and
  // the first `body_lines` lines of its body (all of it when it has fewer). Blocking: reads the
  // segment (pread), so call it off a reactor thread. DataLoss when the segment ends early.
  absl::StatusOr<uint64_t> TopLength(size_t index, uint64_t body_lines) const;
  // Reads the stored bytes of message `index` (pread, in chunks) and checks them against the
  // CRC32C its index record holds, so a damaged message is refused before it is sent. Every
  // index record carries that checksum (storage/index_codec.h has one record layout). OK when
  // they match; DataLoss when they differ or the segment ends early, an errno status when the
  // read fails; either message names the segment file and the offset. Blocking: call it off a
  // reactor thread.
  absl::Status VerifyStoredBytes(size_t index) const;
  // Valid for as long as the returned object is alive.
  PinnedMessage PinForTest(size_t index) const;

  // Internal (used by MailStore).
  const SnapshotEntry& entry(size_t index) const { return entries_[index]; }

 private:
  friend struct MailStore::Impl;

  std::string address_;
  uint64_t incarnation_ = 0;
  bool held_ = false;
  uint64_t total_octets_ = 0;
  std::vector<SnapshotEntry> entries_;
  std::string uidl_arena_;
  std::vector<std::shared_ptr<const internal::Segment>> segments_;
  std::vector<uint64_t> segment_ids_;  // parallel to segments_
};

}  // namespace posthaste::storage

#endif  // POSTHASTE_STORAGE_MAIL_STORE_H_
