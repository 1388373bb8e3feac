// The RocksDB schema of the message store: key layouts, value encodings and the merge operator
// that keeps per-mailbox indexes packed. Internal to //storage. Pure functions, thread-safe.
//
// Keys (one column family; the first byte names the table):
//   "M" name                         store metadata (u64 values): store id, next incarnation,
//                                    next segment id
//   "T" domain                       TenantRecord
//   "A" domain '\0' local            AccountRecord (sorted by domain, so one domain is a range);
//                                    the address in its canonical (lowercase) form, except
//                                    legacy keys kept by MigrateAccountKeys (account_keys.h)
//   "C" incarnation(BE64)            CounterValue: messages, octets, next sequence number (merge)
//   "I" incarnation(BE64) chunk(BE32) packed IndexRecords of sequence numbers
//                                    [chunk << kChunkShift, (chunk + 1) << kChunkShift) (merge)
//   "U" incarnation(BE64) uidl       imported UIDL -> sequence number; kept after the message
//                                    is deleted so an imported UIDL is never reused
//   "S" segment(BE64)                SegmentStats: live bytes and messages in the segment (merge)
//   "R" incarnation(BE64) seq(BE64)  first retrieval (RETR in a session that ended with QUIT) of
//                                    a message, LE64 unix seconds; deleted with the message. The
//                                    retention job (RFC 2449 EXPIRE n) counts days from it
//   "D" incarnation(BE64) day(BE32)  octets downloaded (RETR, TOP) on that UTC day (u64 LE);
//                                    only the latest day is kept (MailStore::AddDownloadedOctets)
//
// A mailbox index is a handful of chunk values, so opening a mailbox is one short range scan
// plus a parse. Writers never read-modify-write a chunk: they add merge operands (append a
// record, delete sequence numbers, move records to another segment) and RocksDB folds them in.
#ifndef POSTHASTE_STORAGE_INDEX_CODEC_H_
#define POSTHASTE_STORAGE_INDEX_CODEC_H_

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "storage/tenant_settings.h"

#include "rocksdb/merge_operator.h"

namespace posthaste::storage::internal {

inline constexpr char kMetaPrefix = 'M';
inline constexpr char kTenantPrefix = 'T';
inline constexpr char kAccountPrefix = 'A';
inline constexpr char kCounterPrefix = 'C';
inline constexpr char kIndexPrefix = 'I';
inline constexpr char kUidlPrefix = 'U';
inline constexpr char kSegmentPrefix = 'S';
inline constexpr char kRetrievedPrefix = 'R';
inline constexpr char kDownloadPrefix = 'D';

// 128 records per chunk: a chunk value stays a few KiB, and a 10k mailbox is ~80 chunks.
inline constexpr int kChunkShift = 7;

inline constexpr std::string_view kMetaStoreId = "Mstore_id";
inline constexpr std::string_view kMetaNextIncarnation = "Mnext_incarnation";
inline constexpr std::string_view kMetaNextSegment = "Mnext_segment";
// The store's schema version (u64); absent in stores written before versioning (version 1:
// account keys in the case the user gave). See account_keys.h.
inline constexpr std::string_view kMetaSchemaVersion = "Mschema_version";
// Number of legacy account keys left in place because they collide (u64); absent when none.
inline constexpr std::string_view kMetaCaseCollisions = "Mcase_collisions";
// A maintenance job's resume point: this prefix, then the job's name; the value is opaque text.
inline constexpr std::string_view kMetaJobCursorPrefix = "Mjob_cursor.";

// ---- fixed-width integers ----
inline void PutBE64(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline void PutBE32(std::string* out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline uint64_t GetBE64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
inline void PutLE64(std::string* out, uint64_t v) {
  char b[8];
  std::memcpy(b, &v, 8);  // x86-64 and aarch64 Linux are little-endian
  out->append(b, 8);
}
inline void PutLE32(std::string* out, uint32_t v) {
  char b[4];
  std::memcpy(b, &v, 4);
  out->append(b, 4);
}
inline uint64_t GetLE64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint32_t GetLE32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// ---- keys ----
std::string AccountKey(std::string_view normalized_address);
std::string AccountKeyDomainPrefix(std::string_view domain);  // "A" domain '\0'
// Inverse of AccountKey; empty when `key` is not an account key.
std::string AddressFromAccountKey(std::string_view key);
std::string TenantKey(std::string_view domain);
std::string CounterKey(uint64_t incarnation);
std::string ChunkKey(uint64_t incarnation, uint64_t seq);  // the chunk holding `seq`
std::string ChunkPrefix(uint64_t incarnation);             // all chunks of a mailbox
std::string UidlKey(uint64_t incarnation, std::string_view uidl);
std::string UidlPrefix(uint64_t incarnation);
std::string SegmentKey(uint64_t segment_id);
std::string RetrievedKey(uint64_t incarnation, uint64_t seq);
std::string RetrievedPrefix(uint64_t incarnation);  // all retrieval rows of a mailbox
std::string DownloadKey(uint64_t incarnation, uint32_t utc_day);
std::string DownloadPrefix(uint64_t incarnation);
// Reads the BE64 after the one-byte prefix (incarnation of C/I/U keys, id of S keys).
inline uint64_t KeyId(std::string_view key) { return GetBE64(key.data() + 1); }

// ---- index records ----
inline constexpr size_t kRecordFixedBytes = 8 + 8 + 8 + 4 + 4 + 4 + 4 + 8 + 1;

struct IndexRecord {
  uint64_t seq = 0;
  uint64_t segment = 0;
  uint64_t offset = 0;
  uint32_t stored_length = 0;
  uint32_t pop3_size = 0;
  uint32_t header_length = 0;
  uint32_t crc32c = 0;  // of the stored bytes
  int64_t arrival_unix_seconds = 0;
  std::string_view uidl;  // points into the buffer it was decoded from
};

void AppendRecord(std::string* out, const IndexRecord& record);
// Decodes one record from the front of `*in` and advances it. False on malformed input.
bool DecodeRecord(std::string_view* in, IndexRecord* record);
bool DecodeRecords(std::string_view in, std::vector<IndexRecord>* records);

// Merge operands for "I" keys.
struct RecordMove {
  uint64_t seq = 0;
  uint64_t old_segment = 0;
  uint64_t old_offset = 0;
  uint64_t new_segment = 0;
  uint64_t new_offset = 0;
};
std::string AppendOperand(const IndexRecord& record);
std::string DeleteOperand(const std::vector<uint64_t>& seqs);
// A move applies only to a record still at (old_segment, old_offset).
std::string MoveOperand(const std::vector<RecordMove>& moves);

// "C" values and operands: deltas are added, next_seq takes the maximum.
struct CounterValue {
  int64_t messages = 0;
  int64_t octets = 0;
  uint64_t next_seq = 1;
};
std::string EncodeCounter(const CounterValue& v);
bool DecodeCounter(std::string_view in, CounterValue* v);

// "S" values and operands: deltas are added.
struct SegmentStats {
  int64_t live_bytes = 0;
  int64_t live_messages = 0;
};
std::string EncodeSegmentStats(const SegmentStats& v);
bool DecodeSegmentStats(std::string_view in, SegmentStats* v);

struct AccountRecord {
  uint64_t incarnation = 0;
  std::string password_hash;
  bool disabled = false;
  uint64_t quota_messages = 0;
  uint64_t quota_octets = 0;
  int64_t created_unix_seconds = 0;
  // The local part as the user gave it, when it differs from the key's (canonical, lowercase)
  // local part; empty otherwise. Version 1 records (no such field) are written when it is
  // empty, so a store whose users gave lowercase addresses keeps records older binaries read.
  std::string display_local;
  // Records that carry any field below are version 3: the display part (u8 length, may be 0),
  // then tagged fields (u8 tag, u32 length, bytes; an unknown or repeated tag is corruption).
  // Records without them are written as version 1 or 2, so stores that never use them stay
  // readable by older binaries; a held account is refused as corrupt by binaries that predate
  // the field, rather than delivered to while its mailbox moves away.
  //
  // Held for a live move (MailStore::HoldAccount), kept with the account so a restarted store
  // still holds it.
  bool held = false;
  // RFC 5803 SCRAM verifiers (opaque here).
  std::string scram_sha1;
  std::string scram_sha256;
  // The recoverable APOP/CRAM-MD5 secret of an account that opted in; empty otherwise.
  std::string shared_secret;
};
std::string EncodeAccount(const AccountRecord& r);
bool DecodeAccount(std::string_view in, AccountRecord* r);

struct TenantRecord {
  uint64_t quota_messages = 0;
  uint64_t quota_octets = 0;
  uint64_t message_bytes_max = 0;
  // PlaintextAuth (mail_store.h) as its integer; 0 = default. Version 1 records (no such byte)
  // decode as 0; a record whose value is 0 is still written as version 1, so a store without
  // tenant overrides stays readable by binaries that predate the field.
  uint8_t plaintext_auth = 0;
  // Version 3 adds, after plaintext_auth: a flags byte (bit 0: APOP and CRAM-MD5 allowed) and
  // the master users (u16 count, then each as u8 length and canonical address). Written only
  // when a flag is set or a master user exists, so other stores keep version 1 or 2 records.
  bool apop_allowed = false;
  std::vector<std::string> master_users;
  // Then tagged fields (u8 tag, u32 length, bytes; an unknown or repeated tag is corruption):
  // the password scheme of the tenant's new hashes (text, e.g. "yescrypt:3"; empty: the
  // server's). A record with one is version 3. Then the service settings (tags 2-9) and the
  // policy's revision (tag 10), bumped by every policy change.
  std::string password_scheme;
  TenantServiceSettings service;
  uint64_t policy_revision = 0;
};
std::string EncodeTenant(const TenantRecord& r);
bool DecodeTenant(std::string_view in, TenantRecord* r);

// Folds "I", "C" and "S" operands (dispatching on the key's first byte).
std::shared_ptr<rocksdb::MergeOperator> NewStoreMergeOperator();

}  // namespace posthaste::storage::internal

#endif  // POSTHASTE_STORAGE_INDEX_CODEC_H_
