// AuthPenalties: how long a failed login waits before its "-ERR [AUTH]", per client address
// and per account. Each recent failure doubles the delay, from `delay_base_ms` up to
// `delay_max_ms`: with the defaults 2, 4, 8, 15, 15... seconds. The delay of a failure is the
// larger of its address's and its account's, so a botnet spreading guesses for one account over
// many addresses is slowed too. Only failures wait: a right password is answered at once.
//
//   address   an IPv4 address, or an IPv6 address's /64 (one customer's prefix is one client)
//   recent    failures decay: after each `window_s` without a failure the count halves (a
//             misremembered password costs a few seconds for a few minutes, a guessing run stays
//             at the cap while it runs); a count that reaches 0 is forgotten
//   reset     a successful login from an address clears that address's count (not the
//             account's: the failures may have come from elsewhere)
//   trusted   a client in --trusted_networks is exempt: counted nowhere, always the base delay
//   bounded   each table keeps at most `addresses_max` / `accounts_max` entries; a new entry
//             beyond that evicts the one whose last failure is oldest (counted)
//
// The tables are one shard's and are never shared: a failure seen on another shard arrives as a
// message and is counted with RecordPeerFailure (server/pop3_service/auth_penalty_shard.h sends
// them), so every shard slows the same client the same way without a lock.
//
// Threading: none inside; one owner thread (the shard's). Clock: the caller's monotonic
// nanoseconds, never decreasing between calls.
#ifndef POSTHASTE_SERVER_AUTH_AUTH_PENALTIES_H_
#define POSTHASTE_SERVER_AUTH_AUTH_PENALTIES_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "base/counter_fields.h"

namespace posthaste::auth {

struct AuthPenaltyOptions {
  uint32_t delay_base_ms = 2'000;  // the first failure's delay (--auth_failure_delay_ms)
  uint32_t delay_max_ms = 15'000;  // the cap (--auth_penalty_delay_max_ms)
  uint32_t window_s = 300;         // a quiet window halves a count (--auth_penalty_window_s)
  size_t addresses_max = 65'536;   // address table entries (--auth_penalty_addresses_max)
  size_t accounts_max = 65'536;    // account table entries (--auth_penalty_accounts_max)
};

// One shard's penalty counters, X(member, what it counts); exported by server/counters.h
// (PH_AUTH_PENALTY_ROWS).
#define PH_AUTH_PENALTY_STATS(X)                                                 \
  X(failures_recorded, "failures from untrusted clients seen on this shard")     \
  X(failures_penalised, "of those, answered after more than the base delay")     \
  X(failures_exempt, "failures from trusted networks (base delay, not counted)") \
  X(peer_failures, "failures other shards saw, counted here")                    \
  X(resets, "successful logins that cleared their address's count")              \
  X(address_evictions, "limit: addresses_max (oldest entry dropped)")            \
  X(account_evictions, "limit: accounts_max (oldest entry dropped)")             \
  X(addresses_tracked, "gauge: addresses with a recent failure")                 \
  X(accounts_tracked, "gauge: accounts with a recent failure")
struct AuthPenaltyStats {
  PH_AUTH_PENALTY_STATS(PH_COUNTER_MEMBER)
};

// An address as the penalty counts it: IPv4 as its v4-mapped IPv6 form, IPv6 cut to its /64.
using PenaltyAddress = std::array<uint8_t, 16>;
// Nullopt when `ip` is not an IPv4 or IPv6 address in text form.
std::optional<PenaltyAddress> PenaltyAddressOf(std::string_view ip);

// The account a failure counts against: the name as given, ASCII-lowercased and cut to
// kPenaltyAccountBytesMax bytes (the name is the client's text; an account that does not exist
// is counted too, or a guesser could probe for names that do).
inline constexpr size_t kPenaltyAccountBytesMax = 256;
std::string PenaltyAccountOf(std::string_view user);

class AuthPenalties {
 public:
  explicit AuthPenalties(const AuthPenaltyOptions& options);
  AuthPenalties(const AuthPenalties&) = delete;
  AuthPenalties& operator=(const AuthPenalties&) = delete;

  // A failed login on this shard from `address` (nullopt: none known, e.g. a Unix socket) for
  // `account` (PenaltyAccountOf; may be empty). Counts it and returns the delay to wait before
  // the answer. A trusted client gets delay_base_ms and is not counted.
  uint32_t RecordFailure(const std::optional<PenaltyAddress>& address, std::string_view account,
                         bool trusted, uint64_t now_ns);
  // The same failure seen by another shard: counted alike, no delay to return.
  void RecordPeerFailure(const std::optional<PenaltyAddress>& address, std::string_view account,
                         uint64_t now_ns);
  // A successful login from `address`: forgets the address's count. True when it had one.
  bool RecordSuccess(const PenaltyAddress& address);
  // The same success seen by another shard: forgets the count without counting a reset.
  void RecordPeerSuccess(const PenaltyAddress& address);

  // What the next failure from `address` for `account` would wait, without counting it.
  uint32_t NextDelayMsForTest(const std::optional<PenaltyAddress>& address,
                              std::string_view account, uint64_t now_ns);

  const AuthPenaltyStats& stats() const { return stats_; }
  const AuthPenaltyOptions& options() const { return options_; }

 private:
  // One table (addresses or accounts): counts with their last failure, least recently failed
  // first in `order_`.
  template <typename Key>
  class Table {
   public:
    explicit Table(size_t entries_max) : entries_max_(entries_max) {}
    // Counts a failure of `key` at `now_ns`; returns its recent failures including this one.
    // `evicted` is set when an entry had to go to make room.
    uint32_t Fail(const Key& key, uint64_t now_ns, uint64_t window_ns, bool* evicted);
    // Recent failures of `key` (0 when unknown or decayed away).
    uint32_t Recent(const Key& key, uint64_t now_ns, uint64_t window_ns) const;
    bool Erase(const Key& key);
    size_t size() const { return entries_.size(); }

   private:
    struct Entry {
      uint32_t failures = 0;
      uint64_t last_failure_ns = 0;
      typename std::list<Key>::iterator position;
    };
    const size_t entries_max_;
    absl::flat_hash_map<Key, Entry> entries_;
    std::list<Key> order_;
  };

  // Counts one failure in both tables; returns the delay its counts call for.
  uint32_t Count(const std::optional<PenaltyAddress>& address, std::string_view account,
                 uint64_t now_ns);
  uint32_t DelayMsFor(uint32_t failures) const;

  const AuthPenaltyOptions options_;
  const uint64_t window_ns_;
  Table<PenaltyAddress> addresses_;
  Table<std::string> accounts_;
  AuthPenaltyStats stats_;
};

}  // namespace posthaste::auth

#endif  // POSTHASTE_SERVER_AUTH_AUTH_PENALTIES_H_
