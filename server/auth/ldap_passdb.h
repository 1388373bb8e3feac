// The LDAP passdb: checks a tenant's passwords against its directory (OpenLDAP's libldap).
//
// LdapPassdb serves one tenant (server/auth/ldap_config.h): a bounded pool of connections, a
// circuit breaker and a negative cache in front of them. Check() answers kOk (with the mailbox
// the directory names), kBadCredentials or kUnavailable:
//   - a wrong password seen for the same login within negative_cache_ttl_s is answered from
//     memory (key: login NUL HMAC-SHA256(password) under a random per-process key);
//   - while the breaker is open (breaker_failures_max transport failures in a row), the
//     directory is not asked: kUnavailable at once, so a dead or hung directory does not make
//     every login wait for a timeout; after breaker_open_ms one login probes it;
//   - otherwise a pooled connection binds (direct) or searches then binds (search), each step
//     under its deadline. An empty password is refused before any request: a simple bind with
//     an empty password is an unauthenticated bind (RFC 4513 section 5.1.2) that servers accept.
// Successes are not cached here: the caller's auth cache (server/pop3_service/auth_service.h)
// holds them.
//
// LdapDirectory maps domains to their LdapPassdb. ForLogin() picks by the login's domain.
//
// Threading: thread-safe. Check() blocks (network, up to the tenant's timeouts): call it on an
// offload pool, never on a reactor thread. Counters are atomics read by the metrics scraper.
// Ownership: an LdapDirectory owns its passdbs, each its connections.
#ifndef POSTHASTE_SERVER_AUTH_LDAP_PASSDB_H_
#define POSTHASTE_SERVER_AUTH_LDAP_PASSDB_H_

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/counter_fields.h"
#include "server/auth/ldap_config.h"

namespace posthaste::auth {

// One tenant's counters (server/counters.h names them for /metrics, label tenant=<domain>).
#define PH_LDAP_STATS(X)                                                              \
  X(requests_ok, "logins the directory accepted")                                     \
  X(requests_bad_credentials, "logins the directory refused (or no single entry)")    \
  X(requests_unavailable, "logins the directory could not answer (down, timeout)")    \
  X(breaker_refused, "logins answered kUnavailable because the breaker was open")     \
  X(breaker_opened, "times the breaker opened")                                       \
  X(pool_wait_timeouts, "logins that found no free connection before the deadline")   \
  X(connections_opened, "connections made")                                           \
  X(negative_cache_hits, "wrong passwords answered from the negative cache")          \
  X(positive_cache_hits, "logins answered by the auth cache (counted by the caller)") \
  X(connections_open, "gauge: connections open now")                                  \
  X(connections_in_use, "gauge: connections lent out now")                            \
  X(breaker_state, "gauge: 0 closed, 1 open, 2 half-open (one probe)")
struct LdapStats {
  PH_LDAP_STATS(PH_ATOMIC_COUNTER_MEMBER)
};

// Consecutive transport failures open it; it stays open for `open_for`, then lets one caller
// probe (half-open); the probe's success closes it, its failure reopens it.
// Thread-safe. Times are passed in, so tests drive it without sleeping.
class LdapCircuitBreaker {
 public:
  enum class State : uint8_t { kClosed = 0, kOpen = 1, kHalfOpen = 2 };

  LdapCircuitBreaker(uint32_t failures_max, absl::Duration open_for)
      : failures_max_(failures_max), open_for_(open_for) {}

  // Whether to ask the directory now. In kHalfOpen only the one probe is allowed.
  bool Allow(absl::Time now);
  void RecordSuccess();
  // Returns true when this failure opened the breaker.
  bool RecordFailure(absl::Time now);
  State state() const;

 private:
  const uint32_t failures_max_;
  const absl::Duration open_for_;
  mutable std::mutex mu_;
  State state_ = State::kClosed;  // guarded by mu_
  uint32_t failures_ = 0;         // guarded by mu_: consecutive
  absl::Time open_until_;         // guarded by mu_
  bool probe_out_ = false;        // guarded by mu_: kHalfOpen's probe is running
};

// Recent wrong passwords per login, bounded: at entries_max, expired entries are dropped and,
// if none were, the oldest half goes. Thread-safe.
class LdapNegativeCache {
 public:
  LdapNegativeCache(absl::Duration ttl, size_t entries_max);
  bool Contains(std::string_view login, std::string_view password, absl::Time now);
  void Add(std::string_view login, std::string_view password, absl::Time now);
  size_t SizeForTest();

 private:
  std::string Key(std::string_view login, std::string_view password) const;

  const absl::Duration ttl_;
  const size_t entries_max_;
  std::array<uint8_t, 32> hmac_key_{};
  std::mutex mu_;
  absl::flat_hash_map<std::string, absl::Time> expires_;  // guarded by mu_
};

struct LdapCheckResult {
  enum class Code : uint8_t { kOk, kBadCredentials, kUnavailable };
  Code code = Code::kUnavailable;
  std::string mailbox;  // kOk: local@domain of this tenant, domain lower case
};

class LdapPassdb {
 public:
  explicit LdapPassdb(LdapTenantConfig config);
  ~LdapPassdb();
  LdapPassdb(const LdapPassdb&) = delete;
  LdapPassdb& operator=(const LdapPassdb&) = delete;

  // `login` as the client gave it (its domain is this tenant's). Blocking; see the file comment.
  LdapCheckResult Check(std::string_view login, std::string_view password);

  const LdapTenantConfig& config() const { return config_; }
  LdapStats& stats() { return stats_; }

 private:
  struct Connection;
  enum class Outcome : uint8_t { kOk, kRefused, kTransportFailure, kOtherFailure };

  // A connection to use: DeadlineExceeded when none came free before pool_wait_timeout_ms,
  // Unavailable when a new one could not be set up (StartTLS failed).
  absl::StatusOr<std::unique_ptr<Connection>> Acquire();
  // Returns a healthy connection to the pool, or closes a broken one (`broken`).
  void Release(std::unique_ptr<Connection> connection, bool broken);
  absl::StatusOr<std::unique_ptr<Connection>> Open();
  // One attempt on `connection`: kOk with *mailbox set, kRefused (bad password, no such user),
  // or a failure.
  Outcome Attempt(Connection& connection, std::string_view login, std::string_view password,
                  std::string* mailbox);
  Outcome Bind(Connection& connection, const std::string& dn, std::string_view password);
  // The DN of the single entry `filter` finds (or kRefused), and its mailbox attribute.
  Outcome Search(Connection& connection, const std::string& base, int scope,
                 const std::string& filter, std::string* dn, std::string* mailbox_value);
  Outcome MailboxFor(std::string_view login, const std::string& attribute_value,
                     std::string* mailbox) const;

  const LdapTenantConfig config_;
  LdapStats stats_;
  LdapCircuitBreaker breaker_;
  LdapNegativeCache negative_;
  std::mutex pool_mu_;
  std::condition_variable pool_cv_;
  std::vector<std::unique_ptr<Connection>> idle_;  // guarded by pool_mu_
  uint32_t open_ = 0;                              // guarded by pool_mu_: idle and lent
};

class LdapDirectory {
 public:
  explicit LdapDirectory(LdapConfig config);

  // The passdb of `login`'s domain (after its last '@', any case), or null.
  LdapPassdb* ForLogin(std::string_view login) const;
  const std::vector<std::unique_ptr<LdapPassdb>>& passdbs() const { return passdbs_; }

 private:
  std::vector<std::unique_ptr<LdapPassdb>> passdbs_;
  absl::flat_hash_map<std::string, LdapPassdb*> by_domain_;
};

}  // namespace posthaste::auth

#endif  // POSTHASTE_SERVER_AUTH_LDAP_PASSDB_H_
