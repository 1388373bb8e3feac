// AuthService: verifies POP3 credentials against the store, with a verification cache.
//
// Verify() looks the account up (MailStore::GetAccount), refuses disabled accounts, and checks
// the password with //server/auth's VerifyPassword (yescrypt costs about 20 ms of CPU). A
// successful verification is cached for `cache_ttl`, keyed by the account's canonical address
// (every case of the user name shares the entry) and an HMAC-SHA256 of the presented password
// under a random per-process key (the cache never holds a password or an unkeyed digest of
// one). Each entry remembers the stored hash string it was
// verified against, so a password change invalidates it on the next use (as Dovecot's auth
// cache does). Unknown users are checked against a dummy hash so their answer costs the same.
//
// Tenants configured in `ldap` (server/auth/ldap_passdb.h) are checked against their directory
// instead (auth_service_ldap.cc): the same cache holds their successes, keyed apart.
//
// Threading: thread-safe. Verify() blocks (RocksDB read, hashing): call it on the offload
// pool, never on a reactor thread. The cache is lock-striped (kStripes mutexes by key hash),
// touched once per login, never on a reactor thread.
// Ownership: the MailStore must outlive the AuthService.
#ifndef POSTHASTE_SERVER_POP3_SERVICE_AUTH_SERVICE_H_
#define POSTHASTE_SERVER_POP3_SERVICE_AUTH_SERVICE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "server/auth/ldap_passdb.h"
#include "storage/mail_store.h"

namespace posthaste::server {

struct AuthServiceOptions {
  absl::Duration cache_ttl = absl::Seconds(60);  // 0 disables the cache
  size_t cache_entries_max = 100'000;            // whole cache; a full stripe is cleared
  auth::LdapDirectory* ldap = nullptr;  // tenants whose passwords live in LDAP; must outlive
};

struct AuthVerdict {
  enum class Code : uint8_t { kOk, kBadCredentials, kTempFailure };
  Code code = Code::kBadCredentials;
  std::string address;  // kOk: the account's identity (AccountInfo::address, canonical)
  bool cache_hit = false;
};

class AuthService {
 public:
  AuthService(storage::MailStore* store, const AuthServiceOptions& options);

  // `user` as given by the client; `password` the presented secret. Blocking.
  AuthVerdict Verify(std::string_view user, std::string_view password);

 private:
  static constexpr size_t kStripes = 16;
  struct Entry {
    std::string stored_hash;  // the hash verified against; a change invalidates the entry
    absl::Time expires;
    std::string address;  // directory entries: the mailbox the directory named
  };
  struct Stripe {
    mutable std::mutex mu;
    absl::flat_hash_map<std::string, Entry> entries;  // key: address NUL hmac(password)
  };

  std::string CacheKey(std::string_view address, std::string_view password) const;
  // The LDAP path (auth_service_ldap.cc).
  AuthVerdict VerifyWithLdap(auth::LdapPassdb& passdb, std::string_view user,
                             std::string_view password);
  // The account `mailbox` names, created when the tenant allows it; kOk or a failure verdict.
  AuthVerdict OpenLdapAccount(const auth::LdapPassdb& passdb, const std::string& mailbox);
  Stripe& StripeFor(std::string_view key);

  storage::MailStore* const store_;
  const AuthServiceOptions options_;
  std::array<uint8_t, 32> hmac_key_{};
  std::string dummy_hash_;
  std::array<Stripe, kStripes> stripes_;
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_POP3_SERVICE_AUTH_SERVICE_H_
