// TenantPolicyTable: the per-tenant login rules (`posthaste tenant policy DOMAIN
// --plaintext_auth=... --apop=... --master_users=...`) as an immutable snapshot that POP3 sessions
// consult at USER time, and ShardTenantPolicies, one reactor shard's lock-free view of it.
//
// Only tenants whose setting is not `default` have entries, so a server without overrides keeps
// an empty map and a USER costs one relaxed-order counter load.
//
// Threading: TenantPolicyTable::Load and RefreshIfChanged read the store (blocking I/O): call
// them from the main thread or an admin thread, never a reactor thread; they are serialised by
// an internal mutex that the session path never takes. Publication is an
// std::atomic<std::shared_ptr> store plus a generation counter, as in tls/tls_context.h: a
// ShardTenantPolicies re-reads the shared pointer only when the generation moved, so the
// per-USER path touches nothing shared but that counter. Not thread-safe: one
// ShardTenantPolicies per shard, used on that shard's thread only; the table must outlive it.
#ifndef POSTHASTE_SERVER_POP3_SERVICE_TENANT_POLICIES_H_
#define POSTHASTE_SERVER_POP3_SERVICE_TENANT_POLICIES_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/pop3/session.h"
#include "storage/mail_store.h"

namespace posthaste::server {

struct TenantPolicySnapshot {
  // Lower-case domain -> its override (never kDefault).
  absl::flat_hash_map<std::string, pop3::TenantPlaintextAuth> plaintext_auth;
  bool any_allowed = false;
  size_t allowed = 0;      // tenants with kAllow
  size_t require_tls = 0;  // tenants with kRequireTls
  // Lower-case domains whose tenant allows APOP and CRAM-MD5 (`--apop=allow`).
  absl::flat_hash_set<std::string> apop_domains;
  // Canonical addresses of every tenant's master users (each in its own tenant's domain).
  absl::flat_hash_set<std::string> master_users;
  // Lower-case domain -> its service settings, for tenants that set any.
  absl::flat_hash_map<std::string, storage::TenantServiceSettings> service;
  // What CAPA says before login (RFC 2449 "USER": the value varies per user; it is the least any
  // tenant has, a tenant without the setting counting as LOGIN-DELAY 0 and EXPIRE NEVER).
  pop3::CapaPolicy before_login;
};

class TenantPolicyTable {
 public:
  // Starts with an empty snapshot (every tenant `default`).
  TenantPolicyTable();

  // Reads every tenant from `store` and publishes the overrides. On error (an undecodable
  // tenant record) the previous snapshot stays.
  absl::Status Load(storage::MailStore& store);
  // Load, but only when store.tenant_generation() moved since the last successful load (cheap
  // to call every second or after each admin command). True when it loaded.
  absl::StatusOr<bool> RefreshIfChanged(storage::MailStore& store);

  std::shared_ptr<const TenantPolicySnapshot> Current() const;
  // Bumped after each publication.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  std::mutex load_mu_;             // serialises loads; never taken on the session path
  bool loaded_ = false;            // by load_mu_
  uint64_t store_generation_ = 0;  // by load_mu_: the store's counter at the last load
  std::atomic<std::shared_ptr<const TenantPolicySnapshot>> current_;
  std::atomic<uint64_t> generation_{0};
};

// The lookup a shard's POP3 sessions get (Pop3TenantPolicy::tenant_plaintext_auth).
class ShardTenantPolicies : public pop3::TenantPlaintextAuthLookup {
 public:
  explicit ShardTenantPolicies(const TenantPolicyTable& table);
  pop3::TenantPlaintextAuth ForDomain(std::string_view domain) const override;
  bool AnyAllowed() const override;
  // Whether some tenant allows APOP: the greeting's timestamp is offered then (it precedes the
  // user name, so it cannot depend on the tenant).
  bool AnyApopAllowed() const;
  // Whether the tenant of `user` (the part after its last '@', any case) allows APOP and
  // CRAM-MD5.
  bool ApopAllowedFor(std::string_view user) const;
  // Whether `canonical_address` (storage::CanonicalAddress form) is a master user of its own
  // tenant: it may log in as that tenant's other users (the caller checks the domains match).
  bool IsMasterUser(std::string_view canonical_address) const;
  // The service settings of `user`'s tenant (the part after its last '@', any case); the
  // defaults for a tenant without any. Valid until the next call on this shard.
  const storage::TenantServiceSettings& ServiceFor(std::string_view user) const;
  pop3::CapaPolicy BeforeLogin() const override;

 private:
  const TenantPolicySnapshot& Fresh() const;
  const TenantPolicyTable& table_;
  mutable uint64_t generation_ = 0;
  mutable std::shared_ptr<const TenantPolicySnapshot> snapshot_;
};

// storage's setting as the session's.
pop3::TenantPlaintextAuth ToSessionSetting(storage::PlaintextAuth value);

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_POP3_SERVICE_TENANT_POLICIES_H_
