#include "server/pop3_service/auth_service.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "absl/hash/hash.h"
#include "base/log.h"
#include "base/strings.h"
#include "server/auth/password_hash.h"

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
  auto hash = auth::HashPassword(password);
  if (hash.ok()) dummy_hash_ = *hash;
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
  if (use_cache) {
    Stripe& stripe = StripeFor(key);
    std::lock_guard<std::mutex> lock(stripe.mu);
    if (stripe.entries.size() >= options_.cache_entries_max / kStripes + 1) stripe.entries.clear();
    stripe.entries[key] = Entry{account->password_hash, absl::Now() + options_.cache_ttl};
  }
  verdict.code = AuthVerdict::Code::kOk;
  verdict.address = account->address;
  return verdict;
}

}  // namespace posthaste::server
