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
// Rehash at login: when `rehash_at_login` is on and a password verified against a hash whose
// scheme or cost differs from the account's setting (its tenant's `tenant policy
// --password_scheme`, else `hash_setting`), e.g. an imported {SSHA} or an older yescrypt cost,
// the password is hashed again at that setting and stored, only if the stored hash is still the
// one verified (MailStore::ReplacePasswordHash). {PLAIN} and {CRAM-MD5} hashes are kept: they are
// the recoverable or challenge-response secrets a tenant chose for APOP and CRAM-MD5.
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
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/auth/ldap_passdb.h"
#include "server/auth/password_hash.h"
#include "storage/mail_store.h"

namespace posthaste::server {

struct AuthServiceOptions {
  absl::Duration cache_ttl = absl::Seconds(60);  // 0 disables the cache
  size_t cache_entries_max = 100'000;            // whole cache; a full stripe is cleared
  auth::HashSetting hash_setting = auth::kDefaultHashSetting;  // of rehashes and the dummy hash
  bool rehash_at_login = true;
  auth::LdapDirectory* ldap = nullptr;  // tenants whose passwords live in LDAP; must outlive
};

struct AuthVerdict {
  enum class Code : uint8_t { kOk, kBadCredentials, kTempFailure };
  Code code = Code::kBadCredentials;
  std::string address;  // kOk: the account's identity (AccountInfo::address, canonical)
  bool cache_hit = false;
  // VerifyAs, kOk: the master user's identity (who authenticated; `address` is whom as).
  std::string master;
  bool rehashed = false;  // kOk: the stored hash was replaced by one at the server's setting
};

class AuthService {
 public:
  AuthService(storage::MailStore* store, const AuthServiceOptions& options);

  // `user` as given by the client; `password` the presented secret. Blocking.
  AuthVerdict Verify(std::string_view user, std::string_view password);
  // Whether Verify(user, ...) asks a directory (LDAP) rather than hashing: mostly waiting on
  // the network, so callers run it on an I/O pool, not beside the CPU-bound hashing.
  bool VerifiesInDirectory(std::string_view user) const;
  // APOP (RFC 1939 section 7): `digest_hex` against MD5(timestamp || the account's shared
  // secret), compared in constant time. kBadCredentials for an unknown or disabled account or
  // one without a secret. Never cached (the digest changes with every greeting). Blocking.
  // The caller has checked that the account's tenant allows APOP.
  AuthVerdict VerifyApop(std::string_view user, std::string_view timestamp,
                         std::string_view digest_hex);
  // A master user (`master`, with its own password) logging in as `target`: Verify(master,
  // password), then `target` must exist and be enabled. On kOk `address` is the target's
  // identity and `master` the master's. The caller has checked that `master` is a master user
  // of `target`'s tenant. Blocking.
  AuthVerdict VerifyAs(std::string_view master, std::string_view password, std::string_view target);

  // The cache, for the next process on this host (server/handoff/systemd_fd_store.h): the HMAC
  // key and every unexpired entry. It holds fast hashes of passwords: it must stay in memory
  // (a sealed memfd), never on a disk. Call when no verification runs (at exit).
  std::string ExportCacheForHandoff() const;
  // Takes over what ExportCacheForHandoff made in the previous process: its HMAC key and its
  // entries, each until its own expiry (an entry still needs its stored hash unchanged to
  // answer). Call before the first Verify. InvalidArgument for a malformed blob (nothing
  // taken). Returns the entries taken.
  absl::StatusOr<size_t> ImportCacheFromHandoff(std::string_view blob);

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

  // The account of `user` when it may use a shared-secret mechanism (exists, enabled, has a
  // secret); nullopt with verdict->code set otherwise.
  std::optional<storage::AccountInfo> SharedSecretAccount(std::string_view user,
                                                          AuthVerdict* verdict);
  std::string CacheKey(std::string_view address, std::string_view password) const;
  // Replaces `account`'s hash by one of `password` at options_.hash_setting when it is due;
  // returns the hash now stored.
  std::string MaybeRehash(const storage::AccountInfo& account, std::string_view password,
                          bool* rehashed);
  // The setting new hashes of `address` use: its tenant's (tenant policy --password_scheme),
  // else options_.hash_setting. Reads the tenant record.
  auth::HashSetting SettingFor(std::string_view address) const;
  std::optional<auth::ParsedStoredHash> CostOf(const auth::HashSetting& setting);
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
  // The scheme and cost of each setting's hashes (encoded left empty), made once per setting;
  // nullopt when the setting cannot hash here. Few: the server's and the tenants' own.
  static constexpr size_t kSettingCostsMax = 64;
  std::mutex setting_costs_mu_;
  absl::flat_hash_map<std::string, std::optional<auth::ParsedStoredHash>> setting_costs_;
  std::array<Stripe, kStripes> stripes_;
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_POP3_SERVICE_AUTH_SERVICE_H_
