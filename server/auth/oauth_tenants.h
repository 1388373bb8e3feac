// Per-tenant OAuth settings and the registry of their JWKS, for OAUTHBEARER and XOAUTH2
// (server/auth/oauth_exchange.h).
//
// Configuration: one JSON file (`--oauth_config=FILE`), one entry per tenant domain:
//   {"tenants": {"example.com": {"issuer": "https://idp.example.com/",
//                                "audiences": ["pop.example.com"],
//                                "jwks_path": "example.com.jwks.json",
//                                "mailbox_claim": "email", "clock_skew_seconds": 60,
//                                "scope": "mail", "openid_configuration": "https://..."}}}
// issuer, audiences and jwks_path are required; a relative jwks_path is resolved against the
// directory of the configuration file; unknown members are refused so a typo is not silently
// ignored. docs/OAUTH.md describes it for operators.
//
// OAuthRegistry holds the keys: Create() loads every tenant's JWKS (any failure fails it, so a
// server never starts with a tenant it cannot verify), ReloadChanged() re-reads the files whose
// (device, inode, size, mtime) moved, on whatever interval the caller drives. A file that no
// longer parses, or has no usable key, keeps the tenant's previous keys and is reported.
//
// Threading: Create, ReloadChanged and ReloadTenant read files (blocking I/O): call them from
// the main or an admin thread, never a reactor thread; they are serialised by an internal mutex.
// Readers call Current() from any thread: it returns an immutable snapshot that stays valid as
// long as the caller holds it (an std::atomic<std::shared_ptr> load, no mutex), as in
// server/pop3_service/tenant_policies.h.
#ifndef POSTHASTE_SERVER_AUTH_OAUTH_TENANTS_H_
#define POSTHASTE_SERVER_AUTH_OAUTH_TENANTS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/auth/jwks.h"
#include "server/auth/jwt.h"
#include "server/auth/sasl_exchange.h"

namespace posthaste::auth {

inline constexpr size_t kOAuthConfigBytesMax = 1 << 20;
inline constexpr size_t kOAuthTenantsMax = 10000;
inline constexpr int64_t kOAuthClockSkewSecondsMax = 600;

struct OAuthTenantConfig {
  std::string domain;  // lower-case
  JwtCheckOptions checks;
  std::string jwks_path;
  std::string scope;                 // for the RFC 7628 error JSON; empty leaves it out
  std::string openid_configuration;  // likewise
};

// The configuration file's text; `config_dir` resolves relative jwks paths. InvalidArgument
// naming the tenant and member for anything wrong.
absl::StatusOr<std::vector<OAuthTenantConfig>> ParseOAuthConfig(std::string_view text,
                                                                std::string_view config_dir);
// Reads `path` (at most kOAuthConfigBytesMax) and parses it.
absl::StatusOr<std::vector<OAuthTenantConfig>> LoadOAuthConfigFile(const std::string& path);

struct OAuthTenant {
  OAuthTenantConfig config;
  std::shared_ptr<const JwkSet> keys;
};

// An immutable view of every tenant's configuration and keys.
struct OAuthSnapshot {
  absl::flat_hash_map<std::string, std::shared_ptr<const OAuthTenant>> tenants;
  // The distinct mailbox claim names in use, to find the tenant of a token when the client
  // names no user.
  std::vector<std::string> mailbox_claims;

  // `domain` in any case; null for a tenant without OAuth.
  const OAuthTenant* Find(std::string_view domain) const;
};

// The outcome of one bearer token login.
struct BearerVerdict {
  bool ok = false;
  SaslFailure failure = SaslFailure::kTokenInvalid;  // when !ok
  std::string mailbox;  // when ok: the address that logged in (the user named, else the token's)
  std::string detail;   // when !ok: why, for the log (never sent to the client)
  // For the error JSON: the tenant's settings, when the tenant was found.
  std::string scope;
  std::string openid_configuration;
};

// Verifies `token` for `user` (an address; empty when the client named none, then the tenant is
// the domain of the token's mailbox claim) at `now_unix_seconds`. Fails kTokenInvalid for an
// unknown tenant, a bad token, or a token whose mailbox differs from `user` (addresses compare
// ASCII case-insensitively, as the store keeps one mailbox per address whatever its case), and
// kTokenExpired for exp/nbf/iat outside the skew. Pure; thread-safe.
BearerVerdict VerifyBearerToken(const OAuthSnapshot& snapshot, std::string_view token,
                                std::string_view user, int64_t now_unix_seconds);

struct OAuthReloadReport {
  std::vector<std::string> reloaded;  // domains whose keys were replaced
  std::vector<std::string> errors;    // "example.com: ...": previous keys kept
};

class OAuthRegistry {
 public:
  static absl::StatusOr<std::unique_ptr<OAuthRegistry>> Create(
      std::vector<OAuthTenantConfig> tenants);

  // Re-reads each JWKS file whose identity or size or mtime changed since its last read.
  OAuthReloadReport ReloadChanged();
  // Re-reads one tenant's file now, changed or not. NotFound for a domain without OAuth; the
  // parse error (previous keys kept) otherwise.
  absl::Status ReloadTenant(std::string_view domain);

  std::shared_ptr<const OAuthSnapshot> Current() const;
  // Bumped after each publication.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  struct FileIdentity {
    uint64_t device = 0;
    uint64_t inode = 0;
    int64_t size = -1;
    int64_t mtime_ns = 0;
    bool operator==(const FileIdentity&) const = default;
  };
  struct TenantState {
    std::shared_ptr<const OAuthTenant> tenant;
    FileIdentity identity;  // of the last read, successful or not
  };

  OAuthRegistry() = default;
  // REQUIRES: load_mu_ held. Reads the tenant's file; on success replaces state->tenant.
  absl::Status LoadLocked(TenantState* state);
  // REQUIRES: load_mu_ held.
  void PublishLocked();

  std::mutex load_mu_;
  absl::flat_hash_map<std::string, TenantState> states_;  // by load_mu_
  std::atomic<std::shared_ptr<const OAuthSnapshot>> current_;
  std::atomic<uint64_t> generation_{0};
};

}  // namespace posthaste::auth

#endif  // POSTHASTE_SERVER_AUTH_OAUTH_TENANTS_H_
