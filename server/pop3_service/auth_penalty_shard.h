// AuthPenaltyShard: one shard's failed-login penalties (auth::AuthPenalties, server/auth/
// auth_penalties.h) and what keeps the shards' tables in step. The backend tells it each
// verdict: a failure is counted here, logged once (the fail2ban line, below) and sent to every
// other shard, which counts it too; a success clears the address here and on every other shard.
//
// Why every shard keeps every client (a broadcast), not one owner shard per address: the delay
// is needed when the verdict comes back, and a local table answers at once, where an owner would
// cost a round trip per failure; a failure already costs a password hash (tens of milliseconds
// of CPU), against which N - 1 inbox messages are cheap; and the tables are bounded (the
// options' *_max), so keeping each client on every shard costs a bounded N times the memory. A
// message a full inbox refuses is lost (counted by the sender as post_rejected): that shard then
// slows the client a little less for a while, which is safe.
//
// The log line, one per failure (docs/DEPLOY.md has the fail2ban filter for it):
//   <ts> warning "auth failed" rhost=<ip> user=<name> mechanism=<USER|PLAIN|...> shard=<n>
//   delay_ms=<ms>
// rhost comes first, so a user name cannot put text where the filter looks for the address.
//
// Threading: the shard's thread only; another shard's tables are reached by `post`.
// Ownership: one per POP3 shard, alive as long as the shard (peers' messages find it by index).
#ifndef POSTHASTE_SERVER_POP3_SERVICE_AUTH_PENALTY_SHARD_H_
#define POSTHASTE_SERVER_POP3_SERVICE_AUTH_PENALTY_SHARD_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "metrics/counter_table.h"
#include "server/auth/auth_penalties.h"

namespace posthaste::server::pop3_service {

// How /metrics names the penalty counters (auth::AuthPenaltyStats), one row per counter,
// X(member, kind, metric name, labels, help) (metrics/counter_table.h). Every shard counts every
// failure (its own and its peers'), so the tables' sizes are per shard, not summed.

#define PH_AUTH_PENALTY_ROWS(X)                                                                 \
  X(failures_recorded, kCounter, "posthaste_auth_penalty_failures_total", "origin=local",       \
    "Failed logins counted into the penalty tables: seen on the shard (local) or told by "      \
    "another shard (peer).")                                                                    \
  X(peer_failures, kCounter, "posthaste_auth_penalty_failures_total", "origin=peer", "")        \
  X(failures_penalised, kCounter, "posthaste_auth_penalised_failures_total", "",                \
    "Failed logins answered after more than the base delay (recent failures of the address or " \
    "account).")                                                                                \
  X(failures_exempt, kCounter, "posthaste_auth_penalty_exempt_failures_total", "",              \
    "Failed logins from --trusted_networks: the base delay, not counted.")                      \
  X(resets, kCounter, "posthaste_auth_penalty_resets_total", "",                                \
    "Successful logins that cleared their address's recent failures.")                          \
  X(address_evictions, kCounter, "posthaste_auth_penalty_evictions_total", "table=address",     \
    "Entries dropped from a full penalty table (--auth_penalty_*_max), by table.")              \
  X(account_evictions, kCounter, "posthaste_auth_penalty_evictions_total", "table=account", "") \
  X(addresses_tracked, kGaugePerShard, "posthaste_auth_penalty_entries", "table=address",       \
    "Addresses and accounts with recent failed logins in a shard's penalty tables, by table.")  \
  X(accounts_tracked, kGaugePerShard, "posthaste_auth_penalty_entries", "table=account", "")

// The table the exporter reads an AuthPenaltyStats through (ValidateCounterTable holds for it).
const metrics::CounterTable& AuthPenaltyCounterTable();

// A login attempt as the penalty sees it, kept by value until its verdict (the connection may
// be gone by then: a client that hangs up before its answer is still counted).
struct PenalisedLogin {
  std::string ip;        // the client's address in text form (socket, PROXY header or XCLIENT)
  bool trusted = false;  // ip is in --trusted_networks
  std::string user;      // the name given, cut to auth::kPenaltyAccountBytesMax
  std::string_view mechanism = "USER";  // a static name: USER, APOP, PLAIN, SCRAM-SHA-256...
};

class AuthPenaltyShard {
 public:
  // Runs a closure on shard `target`'s AuthPenaltyShard; false when that shard refused it.
  using Post =
      absl::AnyInvocable<bool(uint32_t target, absl::AnyInvocable<void(AuthPenaltyShard&)> fn)>;

  AuthPenaltyShard(const auth::AuthPenaltyOptions& options, uint32_t index, uint32_t shard_count,
                   Post post);
  AuthPenaltyShard(const AuthPenaltyShard&) = delete;
  AuthPenaltyShard& operator=(const AuthPenaltyShard&) = delete;

  // A failed login: counts it, writes the log line, tells the other shards. Returns the delay
  // before the "-ERR [AUTH]" answer.
  uint32_t Failed(const PenalisedLogin& login);
  // A successful login: clears its address's count here and on the other shards (an untrusted
  // client only; trusted ones are never counted).
  void Succeeded(const PenalisedLogin& login);

  const auth::AuthPenaltyStats& stats() const { return penalties_.stats(); }
  auth::AuthPenalties& penalties_for_test() { return penalties_; }

 private:
  auth::AuthPenalties penalties_;
  const uint32_t index_;
  const uint32_t shard_count_;
  Post post_;
};

}  // namespace posthaste::server::pop3_service

#endif  // POSTHASTE_SERVER_POP3_SERVICE_AUTH_PENALTY_SHARD_H_
