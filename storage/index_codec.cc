#include "storage/index_codec.h"

#include <algorithm>
#include <optional>

#include "rocksdb/slice.h"

namespace posthaste::storage::internal {
namespace {

constexpr char kOpAppend = 'a';
constexpr char kOpDelete = 'd';
constexpr char kOpMove = 'm';
constexpr uint8_t kAccountVersion = 1;
constexpr uint8_t kAccountVersionWithDisplay = 2;  // + display local part (u8 length, bytes)
// + display local part (u8 length, may be 0), then tagged fields: u8 tag, u32 length, bytes.
constexpr uint8_t kAccountVersionWithFields = 3;
constexpr uint8_t kAccountFieldSharedSecret = 1;  // APOP/CRAM-MD5 secret of an opted-in account
constexpr uint8_t kAccountFieldFlags = 2;         // one byte of kAccountFlag*
constexpr uint8_t kAccountFieldScramSha1 = 3;     // RFC 5803 verifier
constexpr uint8_t kAccountFieldScramSha256 = 4;   // RFC 5803 verifier
constexpr uint8_t kAccountFlagHeld = 1;
constexpr uint8_t kTenantVersion = 1;
constexpr uint8_t kTenantVersionWithPolicy = 2;  // + plaintext_auth byte
constexpr uint8_t kTenantPlaintextAuthMax = 2;   // PlaintextAuth::kRequireTls
constexpr uint8_t kTenantVersionWithAuth = 3;    // + flags, master users
constexpr uint8_t kTenantFlagApop = 1;
constexpr uint8_t kTenantFieldPasswordScheme = 1;
constexpr uint8_t kTenantFieldLoginDelay = 2;
constexpr uint8_t kTenantFieldExpireDays = 3;
constexpr uint8_t kTenantFieldDailyDownloadBytes = 4;
constexpr uint8_t kTenantFieldListNewest = 5;
constexpr uint8_t kTenantFieldIdleTimeout = 6;
constexpr uint8_t kTenantFieldConnectionsPerUser = 7;
constexpr uint8_t kTenantFieldLoginMechanisms = 8;
constexpr uint8_t kTenantFieldLang = 9;
constexpr uint8_t kTenantFieldPolicyRevision = 10;
constexpr size_t kMoveBytes = 5 * 8;

std::string_view View(const rocksdb::Slice& s) { return std::string_view(s.data(), s.size()); }

// Tagged fields (account and tenant records, version 3): u8 tag, u32 length, bytes.
void PutTaggedField(std::string* out, uint8_t tag, std::string_view value) {
  if (value.empty()) return;
  out->push_back(static_cast<char>(tag));
  PutLE32(out, static_cast<uint32_t>(value.size()));
  out->append(value);
}

// Calls `field(tag, value)` for each tagged field of `rest`, which must hold nothing else. False
// for a truncated field, a tag above 31 or repeated, or when `field` refuses one.
template <typename Field>
bool ForEachTaggedField(std::string_view rest, Field field) {
  uint32_t seen = 0;
  while (!rest.empty()) {
    if (rest.size() < 5) return false;
    const uint8_t tag = static_cast<uint8_t>(rest[0]);
    const uint32_t length = GetLE32(rest.data() + 1);
    rest.remove_prefix(5);
    if (rest.size() < length || tag >= 32 || (seen & (1u << tag)) != 0) return false;
    seen |= 1u << tag;
    if (!field(tag, rest.substr(0, length))) return false;
    rest.remove_prefix(length);
  }
  return true;
}

std::string LE32Text(uint32_t value) {
  std::string out;
  PutLE32(&out, value);
  return out;
}

std::string LE64Text(uint64_t value) {
  std::string out;
  PutLE64(&out, value);
  return out;
}

// A tagged number: 0 is written only when `present` (optional fields), as empty values are not.
void PutTaggedNumber32(std::string* out, uint8_t tag, std::optional<uint32_t> value) {
  if (value.has_value()) PutTaggedField(out, tag, LE32Text(*value));
}

void PutTaggedNumber64(std::string* out, uint8_t tag, uint64_t value) {
  if (value != 0) PutTaggedField(out, tag, LE64Text(value));
}

bool GetTaggedNumber32(std::string_view value, uint32_t* out) {
  if (value.size() != 4) return false;
  *out = GetLE32(value.data());
  return true;
}

bool GetTaggedNumber64(std::string_view value, uint64_t* out) {
  if (value.size() != 8) return false;
  *out = GetLE64(value.data());
  return true;
}

class StoreMergeOperator : public rocksdb::MergeOperator {
 public:
  const char* Name() const override { return "posthaste.StoreMergeOperator.v1"; }

  bool FullMergeV2(const MergeOperationInput& in, MergeOperationOutput* out) const override {
    const std::string_view key = View(in.key);
    if (key.empty()) return false;
    switch (key[0]) {
      case kIndexPrefix:
        return MergeChunk(in, out);
      case kCounterPrefix:
        return MergeCounter(in, out);
      case kSegmentPrefix:
        return MergeSegmentStats(in, out);
      default:
        return false;
    }
  }

 private:
  static bool MergeCounter(const MergeOperationInput& in, MergeOperationOutput* out) {
    CounterValue total;
    if (in.existing_value != nullptr && !DecodeCounter(View(*in.existing_value), &total)) {
      return false;
    }
    for (const rocksdb::Slice& op : in.operand_list) {
      CounterValue d;
      if (!DecodeCounter(View(op), &d)) return false;
      total.messages += d.messages;
      total.octets += d.octets;
      total.next_seq = std::max(total.next_seq, d.next_seq);
    }
    out->new_value = EncodeCounter(total);
    return true;
  }

  static bool MergeSegmentStats(const MergeOperationInput& in, MergeOperationOutput* out) {
    SegmentStats total;
    if (in.existing_value != nullptr && !DecodeSegmentStats(View(*in.existing_value), &total)) {
      return false;
    }
    for (const rocksdb::Slice& op : in.operand_list) {
      SegmentStats d;
      if (!DecodeSegmentStats(View(op), &d)) return false;
      total.live_bytes += d.live_bytes;
      total.live_messages += d.live_messages;
    }
    out->new_value = EncodeSegmentStats(total);
    return true;
  }

  static bool MergeChunk(const MergeOperationInput& in, MergeOperationOutput* out) {
    std::vector<IndexRecord> records;
    if (in.existing_value != nullptr && !DecodeRecords(View(*in.existing_value), &records)) {
      return false;
    }
    std::vector<uint64_t> doomed;
    for (const rocksdb::Slice& slice : in.operand_list) {
      std::string_view op = View(slice);
      if (op.empty()) return false;
      const char kind = op[0];
      op.remove_prefix(1);
      if (kind == kOpAppend) {
        IndexRecord r;
        if (!DecodeRecord(&op, &r) || !op.empty()) return false;
        records.push_back(r);
      } else if (kind == kOpDelete) {
        if (op.size() % 8 != 0) return false;
        doomed.clear();
        for (size_t i = 0; i < op.size(); i += 8) doomed.push_back(GetLE64(op.data() + i));
        std::sort(doomed.begin(), doomed.end());
        records.erase(std::remove_if(records.begin(), records.end(),
                                     [&](const IndexRecord& r) {
                                       return std::binary_search(doomed.begin(), doomed.end(),
                                                                 r.seq);
                                     }),
                      records.end());
      } else if (kind == kOpMove) {
        if (op.size() % kMoveBytes != 0) return false;
        for (size_t i = 0; i < op.size(); i += kMoveBytes) {
          const char* p = op.data() + i;
          const uint64_t seq = GetLE64(p);
          for (IndexRecord& r : records) {
            if (r.seq == seq && r.segment == GetLE64(p + 8) && r.offset == GetLE64(p + 16)) {
              r.segment = GetLE64(p + 24);
              r.offset = GetLE64(p + 32);
            }
          }
        }
      } else {
        return false;
      }
    }
    // Concurrent deliveries may commit out of sequence order; keep arrival (sequence) order.
    if (!std::is_sorted(records.begin(), records.end(),
                        [](const IndexRecord& a, const IndexRecord& b) { return a.seq < b.seq; })) {
      std::stable_sort(records.begin(), records.end(),
                       [](const IndexRecord& a, const IndexRecord& b) { return a.seq < b.seq; });
    }
    std::string& value = out->new_value;
    value.clear();
    size_t bytes = 0;
    for (const IndexRecord& r : records) bytes += kRecordFixedBytes + r.uidl.size();
    value.reserve(bytes);
    for (const IndexRecord& r : records) AppendRecord(&value, r);
    return true;
  }
};

}  // namespace

std::string AccountKey(std::string_view address) {
  const size_t at = address.rfind('@');
  std::string key(1, kAccountPrefix);
  key.append(address.substr(at + 1));
  key.push_back('\0');
  key.append(address.substr(0, at));
  return key;
}

std::string AccountKeyDomainPrefix(std::string_view domain) {
  std::string key(1, kAccountPrefix);
  key.append(domain);
  key.push_back('\0');
  return key;
}

std::string AddressFromAccountKey(std::string_view key) {
  if (key.size() < 2 || key[0] != kAccountPrefix) return {};
  const size_t nul = key.find('\0');
  if (nul == std::string_view::npos) return {};
  std::string address(key.substr(nul + 1));
  address.push_back('@');
  address.append(key.substr(1, nul - 1));
  return address;
}

std::string TenantKey(std::string_view domain) {
  std::string key(1, kTenantPrefix);
  key.append(domain);
  return key;
}

std::string CounterKey(uint64_t incarnation) {
  std::string key(1, kCounterPrefix);
  PutBE64(&key, incarnation);
  return key;
}

std::string ChunkKey(uint64_t incarnation, uint64_t seq) {
  std::string key(1, kIndexPrefix);
  PutBE64(&key, incarnation);
  PutBE32(&key, static_cast<uint32_t>(seq >> kChunkShift));
  return key;
}

std::string ChunkPrefix(uint64_t incarnation) {
  std::string key(1, kIndexPrefix);
  PutBE64(&key, incarnation);
  return key;
}

std::string UidlKey(uint64_t incarnation, std::string_view uidl) {
  std::string key(1, kUidlPrefix);
  PutBE64(&key, incarnation);
  key.append(uidl);
  return key;
}

std::string UidlPrefix(uint64_t incarnation) {
  std::string key(1, kUidlPrefix);
  PutBE64(&key, incarnation);
  return key;
}

std::string RetrievedKey(uint64_t incarnation, uint64_t seq) {
  std::string key = RetrievedPrefix(incarnation);
  PutBE64(&key, seq);
  return key;
}

std::string RetrievedPrefix(uint64_t incarnation) {
  std::string key(1, kRetrievedPrefix);
  PutBE64(&key, incarnation);
  return key;
}

std::string DownloadKey(uint64_t incarnation, uint32_t utc_day) {
  std::string key = DownloadPrefix(incarnation);
  PutBE32(&key, utc_day);
  return key;
}

std::string DownloadPrefix(uint64_t incarnation) {
  std::string key(1, kDownloadPrefix);
  PutBE64(&key, incarnation);
  return key;
}

std::string SegmentKey(uint64_t segment_id) {
  std::string key(1, kSegmentPrefix);
  PutBE64(&key, segment_id);
  return key;
}

void AppendRecord(std::string* out, const IndexRecord& r) {
  PutLE64(out, r.seq);
  PutLE64(out, r.segment);
  PutLE64(out, r.offset);
  PutLE32(out, r.stored_length);
  PutLE32(out, r.pop3_size);
  PutLE32(out, r.header_length);
  PutLE32(out, r.crc32c);
  PutLE64(out, static_cast<uint64_t>(r.arrival_unix_seconds));
  out->push_back(static_cast<char>(r.uidl.size()));
  out->append(r.uidl);
}

bool DecodeRecord(std::string_view* in, IndexRecord* r) {
  if (in->size() < kRecordFixedBytes) return false;
  const char* p = in->data();
  r->seq = GetLE64(p);
  r->segment = GetLE64(p + 8);
  r->offset = GetLE64(p + 16);
  r->stored_length = GetLE32(p + 24);
  r->pop3_size = GetLE32(p + 28);
  r->header_length = GetLE32(p + 32);
  r->crc32c = GetLE32(p + 36);
  r->arrival_unix_seconds = static_cast<int64_t>(GetLE64(p + 40));
  const size_t uidl_len = static_cast<uint8_t>(p[48]);
  if (in->size() < kRecordFixedBytes + uidl_len) return false;
  r->uidl = in->substr(kRecordFixedBytes, uidl_len);
  in->remove_prefix(kRecordFixedBytes + uidl_len);
  return true;
}

bool DecodeRecords(std::string_view in, std::vector<IndexRecord>* records) {
  while (!in.empty()) {
    IndexRecord r;
    if (!DecodeRecord(&in, &r)) return false;
    records->push_back(r);
  }
  return true;
}

std::string AppendOperand(const IndexRecord& record) {
  std::string op(1, kOpAppend);
  AppendRecord(&op, record);
  return op;
}

std::string DeleteOperand(const std::vector<uint64_t>& seqs) {
  std::string op(1, kOpDelete);
  for (uint64_t s : seqs) PutLE64(&op, s);
  return op;
}

std::string MoveOperand(const std::vector<RecordMove>& moves) {
  std::string op(1, kOpMove);
  for (const RecordMove& m : moves) {
    PutLE64(&op, m.seq);
    PutLE64(&op, m.old_segment);
    PutLE64(&op, m.old_offset);
    PutLE64(&op, m.new_segment);
    PutLE64(&op, m.new_offset);
  }
  return op;
}

std::string EncodeCounter(const CounterValue& v) {
  std::string out;
  PutLE64(&out, static_cast<uint64_t>(v.messages));
  PutLE64(&out, static_cast<uint64_t>(v.octets));
  PutLE64(&out, v.next_seq);
  return out;
}

bool DecodeCounter(std::string_view in, CounterValue* v) {
  if (in.size() != 24) return false;
  v->messages = static_cast<int64_t>(GetLE64(in.data()));
  v->octets = static_cast<int64_t>(GetLE64(in.data() + 8));
  v->next_seq = GetLE64(in.data() + 16);
  return true;
}

std::string EncodeSegmentStats(const SegmentStats& v) {
  std::string out;
  PutLE64(&out, static_cast<uint64_t>(v.live_bytes));
  PutLE64(&out, static_cast<uint64_t>(v.live_messages));
  return out;
}

bool DecodeSegmentStats(std::string_view in, SegmentStats* v) {
  if (in.size() != 16) return false;
  v->live_bytes = static_cast<int64_t>(GetLE64(in.data()));
  v->live_messages = static_cast<int64_t>(GetLE64(in.data() + 8));
  return true;
}

std::string EncodeAccount(const AccountRecord& r) {
  const uint8_t flags = r.held ? kAccountFlagHeld : 0;
  const bool with_fields =
      flags != 0 || !r.scram_sha1.empty() || !r.scram_sha256.empty() || !r.shared_secret.empty();
  const bool with_display = !r.display_local.empty() || with_fields;
  const uint8_t version = with_fields    ? kAccountVersionWithFields
                          : with_display ? kAccountVersionWithDisplay
                                         : kAccountVersion;
  std::string out(1, static_cast<char>(version));
  PutLE64(&out, r.incarnation);
  out.push_back(r.disabled ? 1 : 0);
  PutLE64(&out, r.quota_messages);
  PutLE64(&out, r.quota_octets);
  PutLE64(&out, static_cast<uint64_t>(r.created_unix_seconds));
  PutLE32(&out, static_cast<uint32_t>(r.password_hash.size()));
  out.append(r.password_hash);
  if (version != kAccountVersion) {
    out.push_back(static_cast<char>(static_cast<uint8_t>(r.display_local.size())));
    out.append(r.display_local);
  }
  if (with_fields) {
    const char flags_byte = static_cast<char>(flags);
    PutTaggedField(&out, kAccountFieldSharedSecret, r.shared_secret);
    PutTaggedField(&out, kAccountFieldFlags, flags != 0 ? std::string_view(&flags_byte, 1) : "");
    PutTaggedField(&out, kAccountFieldScramSha1, r.scram_sha1);
    PutTaggedField(&out, kAccountFieldScramSha256, r.scram_sha256);
  }
  return out;
}

bool DecodeAccount(std::string_view in, AccountRecord* r) {
  constexpr size_t kFixed = 1 + 8 + 1 + 8 + 8 + 8 + 4;
  if (in.size() < kFixed) return false;
  const uint8_t version = static_cast<uint8_t>(in[0]);
  if (version != kAccountVersion && version != kAccountVersionWithDisplay &&
      version != kAccountVersionWithFields) {
    return false;
  }
  const char* p = in.data() + 1;
  r->incarnation = GetLE64(p);
  r->disabled = p[8] != 0;
  r->quota_messages = GetLE64(p + 9);
  r->quota_octets = GetLE64(p + 17);
  r->created_unix_seconds = static_cast<int64_t>(GetLE64(p + 25));
  const uint32_t hash_len = GetLE32(p + 33);
  if (in.size() - kFixed < hash_len) return false;
  r->password_hash.assign(in.substr(kFixed, hash_len));
  std::string_view rest = in.substr(kFixed + hash_len);
  r->display_local.clear();
  r->held = false;
  r->scram_sha1.clear();
  r->scram_sha256.clear();
  r->shared_secret.clear();
  if (version == kAccountVersion) return rest.empty();
  if (rest.empty()) return false;
  const size_t display_len = static_cast<uint8_t>(rest[0]);
  rest.remove_prefix(1);
  if (version == kAccountVersionWithDisplay) {
    if (display_len == 0 || rest.size() != display_len) return false;
    r->display_local.assign(rest);
    return true;
  }
  // Version 3: the display part may be empty; then tagged fields, each known and at most once.
  if (rest.size() < display_len) return false;
  r->display_local.assign(rest.substr(0, display_len));
  rest.remove_prefix(display_len);
  return ForEachTaggedField(rest, [r](uint8_t tag, std::string_view value) {
    switch (tag) {
      case kAccountFieldSharedSecret:
        r->shared_secret.assign(value);
        return true;
      case kAccountFieldFlags:
        if (value.size() != 1 || (static_cast<uint8_t>(value[0]) & ~kAccountFlagHeld) != 0) {
          return false;
        }
        r->held = (static_cast<uint8_t>(value[0]) & kAccountFlagHeld) != 0;
        return true;
      case kAccountFieldScramSha1:
        r->scram_sha1.assign(value);
        return true;
      case kAccountFieldScramSha256:
        r->scram_sha256.assign(value);
        return true;
      default:
        return false;
    }
  });
}

std::string EncodeTenant(const TenantRecord& r) {
  const bool with_auth = r.apop_allowed || !r.master_users.empty() || !r.password_scheme.empty() ||
                         r.service != TenantServiceSettings() || r.policy_revision != 0;
  const bool with_policy = with_auth || r.plaintext_auth != 0;
  const uint8_t version = with_auth     ? kTenantVersionWithAuth
                          : with_policy ? kTenantVersionWithPolicy
                                        : kTenantVersion;
  std::string out(1, static_cast<char>(version));
  PutLE64(&out, r.quota_messages);
  PutLE64(&out, r.quota_octets);
  PutLE64(&out, r.message_bytes_max);
  if (with_policy) out.push_back(static_cast<char>(r.plaintext_auth));
  if (with_auth) {
    out.push_back(static_cast<char>(r.apop_allowed ? kTenantFlagApop : 0));
    const uint16_t count = static_cast<uint16_t>(r.master_users.size());
    out.push_back(static_cast<char>(count & 0xff));
    out.push_back(static_cast<char>(count >> 8));
    for (size_t i = 0; i < count; ++i) {
      const std::string& user = r.master_users[i];
      out.push_back(static_cast<char>(static_cast<uint8_t>(user.size())));
      out.append(user, 0, std::min<size_t>(user.size(), 255));
    }
    PutTaggedField(&out, kTenantFieldPasswordScheme, r.password_scheme);
    const TenantServiceSettings& service = r.service;
    PutTaggedNumber32(&out, kTenantFieldLoginDelay, service.login_delay_s);
    PutTaggedNumber32(&out, kTenantFieldExpireDays, service.expire_days);
    PutTaggedNumber64(&out, kTenantFieldDailyDownloadBytes, service.daily_download_bytes);
    PutTaggedNumber64(&out, kTenantFieldListNewest, service.list_newest);
    PutTaggedNumber64(&out, kTenantFieldIdleTimeout, service.idle_timeout_s);
    PutTaggedNumber64(&out, kTenantFieldConnectionsPerUser, service.connections_per_user);
    PutTaggedField(&out, kTenantFieldLoginMechanisms, service.login_mechanisms);
    PutTaggedField(&out, kTenantFieldLang, service.lang);
    PutTaggedNumber64(&out, kTenantFieldPolicyRevision, r.policy_revision);
  }
  return out;
}

bool DecodeTenant(std::string_view in, TenantRecord* r) {
  if (in.empty()) return false;
  const uint8_t version = static_cast<uint8_t>(in[0]);
  if (!(version == kTenantVersion && in.size() == 25) &&
      !(version == kTenantVersionWithPolicy && in.size() == 26) &&
      !(version == kTenantVersionWithAuth && in.size() >= 29)) {
    return false;
  }
  r->quota_messages = GetLE64(in.data() + 1);
  r->quota_octets = GetLE64(in.data() + 9);
  r->message_bytes_max = GetLE64(in.data() + 17);
  r->plaintext_auth = version >= kTenantVersionWithPolicy ? static_cast<uint8_t>(in[25]) : 0;
  r->apop_allowed = false;
  r->master_users.clear();
  r->password_scheme.clear();
  r->service = TenantServiceSettings();
  r->policy_revision = 0;
  if (version == kTenantVersionWithAuth) {
    const uint8_t flags = static_cast<uint8_t>(in[26]);
    if ((flags & ~kTenantFlagApop) != 0) return false;
    r->apop_allowed = (flags & kTenantFlagApop) != 0;
    const size_t count = static_cast<uint8_t>(in[27]) | (size_t{static_cast<uint8_t>(in[28])} << 8);
    std::string_view rest = in.substr(29);
    for (size_t i = 0; i < count; ++i) {
      if (rest.empty()) return false;
      const size_t length = static_cast<uint8_t>(rest[0]);
      rest.remove_prefix(1);
      if (length == 0 || rest.size() < length) return false;
      r->master_users.emplace_back(rest.substr(0, length));
      rest.remove_prefix(length);
    }
    const bool fields_ok = ForEachTaggedField(rest, [r](uint8_t tag, std::string_view value) {
      TenantServiceSettings& service = r->service;
      uint32_t number32 = 0;
      uint64_t number64 = 0;
      switch (tag) {
        case kTenantFieldPasswordScheme:
          r->password_scheme.assign(value);
          return !value.empty();
        case kTenantFieldLoginDelay:
          if (!GetTaggedNumber32(value, &number32)) return false;
          service.login_delay_s = number32;
          return true;
        case kTenantFieldExpireDays:
          if (!GetTaggedNumber32(value, &number32)) return false;
          service.expire_days = number32;
          return true;
        case kTenantFieldDailyDownloadBytes:
          return GetTaggedNumber64(value, &service.daily_download_bytes);
        case kTenantFieldListNewest:
        case kTenantFieldIdleTimeout:
        case kTenantFieldConnectionsPerUser: {
          if (!GetTaggedNumber64(value, &number64) || number64 > UINT32_MAX) return false;
          const uint32_t number = static_cast<uint32_t>(number64);
          (tag == kTenantFieldListNewest         ? service.list_newest
           : tag == kTenantFieldIdleTimeout      ? service.idle_timeout_s
                                                 : service.connections_per_user) = number;
          return true;
        }
        case kTenantFieldLoginMechanisms:
          service.login_mechanisms.assign(value);
          return !value.empty();
        case kTenantFieldLang:
          service.lang.assign(value);
          return !value.empty();
        case kTenantFieldPolicyRevision:
          return GetTaggedNumber64(value, &r->policy_revision);
        default:
          return false;
      }
    });
    if (!fields_ok) return false;
  }
  return r->plaintext_auth <= kTenantPlaintextAuthMax;
}

std::shared_ptr<rocksdb::MergeOperator> NewStoreMergeOperator() {
  return std::make_shared<StoreMergeOperator>();
}

}  // namespace posthaste::storage::internal
