// MaildropRegistry: who holds each maildrop, kept by the user's owner shard.
//
// Every user has one owner shard (OwnerShard: a hash of the account's canonical address, as
// AuthVerdict::address gives it, so every spelling of a user meets one entry). Connections
// on any shard ask the owner, by Inbox message, to lock the user's maildrop when the session
// opens it and to unlock it when the connection ends. The registry also counts open,
// authenticated connections per (user, client IP) for the per-user-and-IP limit.
//
// Acquire() answers at once (granted, in use, over the user+IP limit) or, under the takeover
// policy, kAskHolder: the owner then asks the holder's shard to end the holder if it has been
// idle long enough, and calls FinishTakeover() with the answer. While that question is out,
// other requests for the user are answered kInUse.
//
// Threading: one registry per shard, touched only on that shard's thread (no locks).
#ifndef POSTHASTE_SERVER_POP3_SERVICE_MAILDROP_REGISTRY_H_
#define POSTHASTE_SERVER_POP3_SERVICE_MAILDROP_REGISTRY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "server/pop3/session.h"

namespace posthaste::server {

// A connection, named across shards.
struct ConnectionRef {
  uint32_t shard = 0;
  uint64_t id = 0;
  bool operator==(const ConnectionRef&) const = default;
};

// Who holds a maildrop for maintenance (the retention job, server/retention), not a
// connection: it is never taken over or ended (it holds the lock for one commit), so a login
// meanwhile is answered kInUse.
inline constexpr ConnectionRef kMaintenanceHolder{UINT32_MAX, 0};

// The shard that keeps `address`'s registry entry.
uint32_t OwnerShard(std::string_view address, uint32_t shards);

class MaildropRegistry {
 public:
  enum class Outcome : uint8_t {
    kGranted,
    kInUse,
    kAskHolder,
    kTooManyForUserIp,  // the (user, client IP) limit
    kTooManyForUser,    // the tenant's connections_per_user
    kTooSoon,           // the tenant's LOGIN-DELAY since the user's last login
  };
  // Whether a refused request was counted for (user, ip) all the same (only kInUse is: the
  // connection stays logged in and counted until it ends).
  static bool CountsConnection(Outcome outcome) {
    return outcome != Outcome::kTooManyForUserIp && outcome != Outcome::kTooManyForUser &&
           outcome != Outcome::kTooSoon;
  }

  struct Limits {
    uint32_t user_ip_limit = 0;  // connections per (user, IP); 0: none
    uint32_t user_limit = 0;     // connections per user; 0: none
    // RFC 2449 LOGIN-DELAY: a grant sooner than this after the user's last grant is kTooSoon.
    uint64_t login_delay_ns = 0;
    uint64_t now_ns = 0;
  };

  // `count_user_ip`: this connection is not yet counted for (user, ip); count it (refused with
  // kTooManyForUserIp or kTooManyForUser when a limit is already reached). On kAskHolder,
  // *holder names the current holder.
  Outcome Acquire(std::string_view user, std::string_view ip, bool count_user_ip,
                  const Limits& limits, pop3::InUsePolicy policy, ConnectionRef requester,
                  ConnectionRef* holder);
  // The holder's shard answered a kAskHolder: `released` when it ended the holder. Returns
  // true when the requester now holds the maildrop.
  bool FinishTakeover(std::string_view user, ConnectionRef requester, bool released);
  // The connection ended (or gave the maildrop up): unlocks if it holds the maildrop, and
  // uncounts it for (user, ip) when `counted`.
  void Release(std::string_view user, std::string_view ip, bool counted, ConnectionRef conn);

  // Who holds `user`'s maildrop now (nullopt: nobody). A takeover in progress still names the
  // old holder until FinishTakeover.
  std::optional<ConnectionRef> Holder(std::string_view user) const;

  size_t users() const { return entries_.size(); }
  // Users whose LOGIN-DELAY has not run out yet (older entries are dropped as the table grows).
  size_t delayed_users() const { return login_allowed_at_ns_.size(); }
  std::optional<ConnectionRef> HolderForTest(std::string_view user) const { return Holder(user); }

 private:
  struct Entry {
    std::optional<ConnectionRef> holder;
    bool takeover_pending = false;
    // The LOGIN-DELAY of the request a takeover is for, applied when it is granted.
    uint64_t pending_login_delay_ns = 0;
    uint64_t pending_now_ns = 0;
    // Connections per client IP; usually one IP, so a small vector, not a hash map.
    std::vector<std::pair<std::string, uint32_t>> ip_counts;
  };
  void MaybeErase(std::string_view user);
  void RecordLogin(std::string_view user, uint64_t login_delay_ns, uint64_t now_ns);

  absl::flat_hash_map<std::string, Entry> entries_;
  // User -> when the next login may be granted, for users of tenants with a LOGIN-DELAY. Kept
  // apart from entries_ (which go when the last connection does). Lost at a restart: the first
  // login after one is not delayed.
  absl::flat_hash_map<std::string, uint64_t> login_allowed_at_ns_;
  size_t login_sweep_at_ = 1024;  // sweep expired entries when the table reaches this size
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_POP3_SERVICE_MAILDROP_REGISTRY_H_
