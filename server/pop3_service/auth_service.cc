#include "server/pop3_service/auth_service.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

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
    if (absl::StatusOr<auth::ParsedStoredHash> parsed = auth::ParseStoredHash(*hash);
        parsed.ok()) {
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
