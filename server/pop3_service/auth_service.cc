#include "server/pop3_service/auth_service.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/hash/hash.h"
#include "base/log.h"
#include "base/strings.h"
#include "server/auth/password_hash.h"
#include "server/auth/shared_secret.h"

#ifndef OPENSSL_IS_BORINGSSL
#error "BoringSSL headers must come first (see //tools/build:defs.bzl)"
#endif

namespace posthaste::server {

AuthService::AuthService(storage::MailStore* store, const AuthServiceOptions& options)
    : store_(store), options_(options) {
  RAND_bytes(hmac_key_.data(), hmac_key_.size());
  // A real yescrypt hash of a random password: unknown users cost one verification too.
  uint8_t random[16];
  RAND_bytes(random, sizeof(random));
  std::string password;
  for (uint8_t b : random) password += static_cast<char>('a' + b % 26);
  auto hash = auth::HashPassword(password, options_.hash_setting);
  if (hash.ok()) dummy_hash_ = *hash;
}

auth::HashSetting AuthService::SettingFor(std::string_view address) const {
  const size_t at = address.rfind('@');
  if (at == std::string_view::npos) return options_.hash_setting;
  absl::StatusOr<storage::TenantInfo> tenant = store_->GetTenant(address.substr(at + 1));
  if (!tenant.ok()) return options_.hash_setting;
  return auth::TenantHashSetting(tenant->policy.password_scheme, options_.hash_setting);
}

std::optional<auth::ParsedStoredHash> AuthService::CostOf(const auth::HashSetting& setting) {
  const std::string key = auth::HashSettingText(setting);
  {
    std::lock_guard<std::mutex> lock(setting_costs_mu_);
    if (auto it = setting_costs_.find(key); it != setting_costs_.end()) return it->second;
  }
  // Once per setting: a hash of a throwaway password, for its parameters.
  std::optional<auth::ParsedStoredHash> cost;
  if (absl::StatusOr<std::string> hash = auth::HashPassword("cost probe", setting); hash.ok()) {
    if (absl::StatusOr<auth::ParsedStoredHash> parsed = auth::ParseStoredHash(*hash); parsed.ok()) {
      cost = *std::move(parsed);
      cost->encoded = {};
    }
  }
  std::lock_guard<std::mutex> lock(setting_costs_mu_);
  if (setting_costs_.size() < kSettingCostsMax) setting_costs_.emplace(key, cost);
  return cost;
}

std::string AuthService::MaybeRehash(const storage::AccountInfo& account, std::string_view password,
                                     bool* rehashed) {
  *rehashed = false;
  if (!options_.rehash_at_login) return account.password_hash;
  absl::StatusOr<auth::ParsedStoredHash> stored = auth::ParseStoredHash(account.password_hash);
  if (!stored.ok() || stored->scheme == auth::HashScheme::kPlain ||
      stored->scheme == auth::HashScheme::kCramMd5) {
    return account.password_hash;
  }
  const auth::HashSetting setting = SettingFor(account.address);
  const std::optional<auth::ParsedStoredHash> setting_cost = CostOf(setting);
  if (!setting_cost.has_value() || auth::SameSchemeAndCost(*stored, *setting_cost)) {
    return account.password_hash;
  }
  absl::StatusOr<std::string> fresh = auth::HashPassword(password, setting);
  if (!fresh.ok()) {
    LogEvent(LogLevel::kWarning, "rehash at login failed",
             {{"account", account.address}, {"error", fresh.status().ToString()}});
    return account.password_hash;
  }
  absl::Status replaced =
      store_->ReplacePasswordHash(account.address, account.password_hash, *fresh);
  if (!replaced.ok()) {
    // FailedPrecondition: the password changed meanwhile, and the new one stands.
    if (!absl::IsFailedPrecondition(replaced)) {
      LogEvent(LogLevel::kWarning, "rehash at login not stored",
               {{"account", account.address}, {"error", replaced.ToString()}});
    }
    return account.password_hash;
  }
  LogEvent(LogLevel::kInfo, "password rehashed at login",
           {{"account", account.address},
            {"from", std::string(auth::HashSchemeName(stored->scheme))},
            {"to", auth::HashSettingText(setting)}});
  *rehashed = true;
  return *std::move(fresh);
}

namespace {

constexpr std::string_view kHandoffMagic = "PHAUTHCACHE1\n";

void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutI64(std::string* out, int64_t v) {
  for (int i = 0; i < 8; ++i) {
    out->push_back(static_cast<char>((static_cast<uint64_t>(v) >> (8 * i)) & 0xff));
  }
}
void PutStr(std::string* out, std::string_view v) {
  PutU32(out, static_cast<uint32_t>(v.size()));
  out->append(v);
}

// Reads the blob front to back; any short read leaves it failed.
class HandoffReader {
 public:
  explicit HandoffReader(std::string_view in) : in_(in) {}
  bool U32(uint32_t* v) {
    if (in_.size() < 4) return Fail();
    *v = 0;
    for (int i = 3; i >= 0; --i) *v = *v << 8 | static_cast<uint8_t>(in_[i]);
    in_.remove_prefix(4);
    return true;
  }
  bool I64(int64_t* v) {
    if (in_.size() < 8) return Fail();
    uint64_t u = 0;
    for (int i = 7; i >= 0; --i) u = u << 8 | static_cast<uint8_t>(in_[i]);
    in_.remove_prefix(8);
    *v = static_cast<int64_t>(u);
    return true;
  }
  bool Str(std::string* v, size_t max) {
    uint32_t length = 0;
    if (!U32(&length) || length > max || in_.size() < length) return Fail();
    v->assign(in_.substr(0, length));
    in_.remove_prefix(length);
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  bool Fail() {
    in_ = {};
    return false;
  }
  std::string_view in_;
};

}  // namespace

std::string AuthService::ExportCacheForHandoff() const {
  std::string out(kHandoffMagic);
  out.append(reinterpret_cast<const char*>(hmac_key_.data()), hmac_key_.size());
  const absl::Time now = absl::Now();
  std::string entries;
  uint32_t count = 0;
  for (const Stripe& stripe : stripes_) {
    std::lock_guard<std::mutex> lock(stripe.mu);
    for (const auto& [key, entry] : stripe.entries) {
      if (entry.expires <= now) continue;
      PutStr(&entries, key);
      PutStr(&entries, entry.stored_hash);
      PutStr(&entries, entry.address);
      PutI64(&entries, absl::ToUnixMillis(entry.expires));
      ++count;
    }
  }
  PutU32(&out, count);
  out.append(entries);
  return out;
}

absl::StatusOr<size_t> AuthService::ImportCacheFromHandoff(std::string_view blob) {
  if (blob.substr(0, kHandoffMagic.size()) != kHandoffMagic ||
      blob.size() < kHandoffMagic.size() + hmac_key_.size()) {
    return absl::InvalidArgumentError("auth cache hand-off: bad header");
  }
  blob.remove_prefix(kHandoffMagic.size());
  std::array<uint8_t, 32> key{};
  std::memcpy(key.data(), blob.data(), key.size());
  blob.remove_prefix(key.size());
  HandoffReader in(blob);
  uint32_t count = 0;
  if (!in.U32(&count)) return absl::InvalidArgumentError("auth cache hand-off: truncated");
  struct Taken {
    std::string key;
    Entry entry;
  };
  std::vector<Taken> taken;
  const absl::Time now = absl::Now();
  for (uint32_t i = 0; i < count; ++i) {
    Taken t;
    int64_t expires_ms = 0;
    if (!in.Str(&t.key, 4096) || !in.Str(&t.entry.stored_hash, auth::kStoredHashBytesMax) ||
        !in.Str(&t.entry.address, 4096) || !in.I64(&expires_ms)) {
      return absl::InvalidArgumentError("auth cache hand-off: truncated entry");
    }
    t.entry.expires = absl::FromUnixMillis(expires_ms);
    // Never longer than this process's own TTL allows from now.
    t.entry.expires = std::min(t.entry.expires, now + options_.cache_ttl);
    if (t.entry.expires > now && taken.size() < options_.cache_entries_max) {
      taken.push_back(std::move(t));
    }
  }
  if (!in.done()) return absl::InvalidArgumentError("auth cache hand-off: trailing bytes");
  hmac_key_ = key;
  for (Taken& t : taken) {
    Stripe& stripe = StripeFor(t.key);
    std::lock_guard<std::mutex> lock(stripe.mu);
    stripe.entries[std::move(t.key)] = std::move(t.entry);
  }
  return taken.size();
}

std::string AuthService::CacheKey(std::string_view address, std::string_view password) const {
  uint8_t mac[SHA256_DIGEST_LENGTH];
  unsigned mac_len = 0;
  HMAC(EVP_sha256(), hmac_key_.data(), hmac_key_.size(),
       reinterpret_cast<const uint8_t*>(password.data()), password.size(), mac, &mac_len);
  std::string key(address);
  key.push_back('\0');
  key.append(reinterpret_cast<const char*>(mac), mac_len);
  return key;
}

AuthService::Stripe& AuthService::StripeFor(std::string_view key) {
  return stripes_[absl::HashOf(AbslView(key)) % kStripes];
}

bool AuthService::VerifiesInDirectory(std::string_view user) const {
  return options_.ldap != nullptr && options_.ldap->ForLogin(user) != nullptr;
}

AuthVerdict AuthService::Verify(std::string_view user, std::string_view password) {
  if (options_.ldap != nullptr) {
    if (auth::LdapPassdb* passdb = options_.ldap->ForLogin(user)) {
      return VerifyWithLdap(*passdb, user, password);
    }
  }
  AuthVerdict verdict;
  // The store finds the account whatever the case of `user`; from here on the account's
  // identity (account->address, its canonical address) is the key, so every spelling shares one
  // cache entry and one maildrop lock.
  absl::StatusOr<storage::AccountInfo> account = store_->GetAccount(user);
  if (!account.ok()) {
    if (!absl::IsNotFound(account.status()) && !absl::IsInvalidArgument(account.status())) {
      LogEvent(LogLevel::kWarning, "account lookup failed",
               {{"error", account.status().ToString()}});
      verdict.code = AuthVerdict::Code::kTempFailure;
      return verdict;
    }
    if (!dummy_hash_.empty()) (void)auth::VerifyPassword(password, dummy_hash_);
    verdict.code = AuthVerdict::Code::kBadCredentials;
    return verdict;
  }
  if (account->disabled) {
    verdict.code = AuthVerdict::Code::kBadCredentials;
    return verdict;
  }

  const bool use_cache = options_.cache_ttl > absl::ZeroDuration();
  std::string key;
  if (use_cache) {
    key = CacheKey(account->address, password);
    Stripe& stripe = StripeFor(key);
    std::lock_guard<std::mutex> lock(stripe.mu);
    auto it = stripe.entries.find(key);
    if (it != stripe.entries.end()) {
      if (it->second.expires > absl::Now() && it->second.stored_hash == account->password_hash) {
        verdict.code = AuthVerdict::Code::kOk;
        verdict.address = account->address;
        verdict.cache_hit = true;
        return verdict;
      }
      stripe.entries.erase(it);  // expired, or the password changed since
    }
  }

  absl::StatusOr<bool> match = auth::VerifyPassword(password, account->password_hash);
  if (!match.ok()) {
    LogEvent(LogLevel::kWarning, "stored password hash unusable",
             {{"account", account->address}, {"error", match.status().ToString()}});
    verdict.code = AuthVerdict::Code::kBadCredentials;
    return verdict;
  }
  if (!*match) {
    verdict.code = AuthVerdict::Code::kBadCredentials;
    return verdict;
  }
  std::string stored_hash = MaybeRehash(*account, password, &verdict.rehashed);
  if (use_cache) {
    Stripe& stripe = StripeFor(key);
    std::lock_guard<std::mutex> lock(stripe.mu);
    if (stripe.entries.size() >= options_.cache_entries_max / kStripes + 1) stripe.entries.clear();
    stripe.entries[key] = Entry{std::move(stored_hash), absl::Now() + options_.cache_ttl};
  }
  verdict.code = AuthVerdict::Code::kOk;
  verdict.address = account->address;
  return verdict;
}

std::optional<storage::AccountInfo> AuthService::SharedSecretAccount(std::string_view user,
                                                                     AuthVerdict* verdict) {
  verdict->code = AuthVerdict::Code::kBadCredentials;
  absl::StatusOr<storage::AccountInfo> account = store_->GetAccount(user);
  if (!account.ok()) {
    if (!absl::IsNotFound(account.status()) && !absl::IsInvalidArgument(account.status())) {
      LogEvent(LogLevel::kWarning, "account lookup failed",
               {{"error", account.status().ToString()}});
      verdict->code = AuthVerdict::Code::kTempFailure;
    }
    return std::nullopt;
  }
  if (account->disabled || account->shared_secret.empty()) return std::nullopt;
  return *std::move(account);
}

AuthVerdict AuthService::VerifyApop(std::string_view user, std::string_view timestamp,
                                    std::string_view digest_hex) {
  AuthVerdict verdict;
  std::optional<storage::AccountInfo> account = SharedSecretAccount(user, &verdict);
  if (!account.has_value()) return verdict;
  if (!auth::ApopDigestMatches(timestamp, account->shared_secret, digest_hex)) return verdict;
  verdict.code = AuthVerdict::Code::kOk;
  verdict.address = account->address;
  return verdict;
}

AuthVerdict AuthService::VerifyAs(std::string_view master, std::string_view password,
                                  std::string_view target) {
  AuthVerdict verdict = Verify(master, password);
  if (verdict.code != AuthVerdict::Code::kOk) return verdict;
  verdict.master = std::move(verdict.address);
  verdict.address.clear();
  absl::StatusOr<storage::AccountInfo> account = store_->GetAccount(target);
  if (!account.ok()) {
    const bool missing =
        absl::IsNotFound(account.status()) || absl::IsInvalidArgument(account.status());
    verdict.code = missing ? AuthVerdict::Code::kBadCredentials : AuthVerdict::Code::kTempFailure;
    return verdict;
  }
  if (account->disabled) {
    verdict.code = AuthVerdict::Code::kBadCredentials;
    return verdict;
  }
  verdict.address = account->address;
  return verdict;
}

}  // namespace posthaste::server
