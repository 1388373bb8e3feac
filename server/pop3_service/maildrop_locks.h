// MaildropLocks: the requesting side of the maildrop lock, one per shard. A connection asks
// for its user's maildrop with Acquire(); the request travels to the user's owner shard
// (MaildropRegistry), on to the holder's shard when the takeover policy lets an idle holder
// be ended, and back; the outcome is handed to the caller on this shard. Release() gives back
// whatever the connection holds: the lock and its (user, client IP) count, at once, or when a
// request still out comes back (so a lock granted to a connection that has gone is freed).
//
// It keeps one Lease per connection that has asked: the user, whether it is counted for
// (user, IP), and whether a request is out. This replaces the boolean flags the connection
// driver used to keep for it.
//
// Threading: each MaildropLocks on its own shard's thread; the closures it sends run on the
// owner's and the holder's threads and touch only their registries (through MaildropShards).
#ifndef POSTHASTE_SERVER_POP3_SERVICE_MAILDROP_LOCKS_H_
#define POSTHASTE_SERVER_POP3_SERVICE_MAILDROP_LOCKS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/container/node_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "server/pop3/session.h"
#include "server/pop3_service/maildrop_registry.h"

namespace posthaste::server {

// What the lock protocol needs of the shards it runs on. The serving shards implement it; a
// test runs every shard on one thread.
class MaildropShards {
 public:
  virtual ~MaildropShards() = default;
  virtual uint32_t shard_count() const = 0;
  // Runs `fn` on shard `target`, sent from shard `from` (which is the calling thread). False
  // when it could not be sent (a full queue): `fn` is dropped.
  virtual bool RunOn(uint32_t from, uint32_t target, absl::AnyInvocable<void()> fn) = 0;
  // Shard `shard`'s registry. Only on that shard's thread.
  virtual MaildropRegistry& RegistryOf(uint32_t shard) = 0;
  // On the holder's shard: ends `holder` (of `user`'s maildrop) if it has been idle in
  // TRANSACTION for `idle_ns`. True when the holder is gone (ended now, or earlier).
  virtual bool EndIfIdle(ConnectionRef holder, std::string_view user, uint64_t idle_ns) = 0;
  // On the holder's shard: ends `holder` (of `user`'s maildrop) whatever it is doing, without
  // committing: `user`'s account is held for a move (EndMaildropHolderForMove). Nothing when it
  // is gone already.
  virtual void EndForMove(ConnectionRef holder, std::string_view user) = 0;
};

// On `owner`, the owner shard of `user` (OwnerShard): ends whoever holds `user`'s maildrop, by
// the takeover's path (a message to the holder's shard, MaildropShards::EndForMove), for a live
// move that has just held the account (storage::MailStore::HoldAccount). Every session that
// can read or commit the maildrop holds its lock, so ending the holder ends them all; a login
// that gets the lock afterwards finds the account held when it opens the maildrop and is
// refused. `done` runs once nobody holds the lock any more or the holder has been ended (on
// the owner's or the holder's thread); it is dropped unrun when the message to the holder's
// shard cannot be sent (a full queue).
void EndMaildropHolderForMove(MaildropShards& shards, uint32_t owner, const std::string& user,
                              absl::AnyInvocable<void()> done);

class MaildropLocks {
 public:
  using Outcome = MaildropRegistry::Outcome;  // never kAskHolder when handed to the caller

  struct Request {
    std::string user;  // the canonical account name
    std::string ip;    // the client's
    // 0: no (user, IP) limit. Also 0 for trusted peers (a proxy), which are not counted.
    uint32_t user_ip_limit = 0;
    pop3::InUsePolicy policy = pop3::InUsePolicy::kTakeover;
    uint64_t takeover_idle_ns = 0;  // a holder idle this long may be ended (kTakeover)
    uint32_t user_limit = 0;        // connections per user (the tenant's); 0: none
    uint64_t login_delay_ns = 0;    // the tenant's LOGIN-DELAY; 0: none
    uint64_t now_ns = 0;            // the requester's clock (CLOCK_MONOTONIC) for the delay
  };

  MaildropLocks(MaildropShards& shards, uint32_t shard) : shards_(shards), shard_(shard) {}
  MaildropLocks(const MaildropLocks&) = delete;
  MaildropLocks& operator=(const MaildropLocks&) = delete;

  // Asks for `request.user`'s maildrop for connection `id` of this shard. `done` runs later on
  // this shard with the outcome (kGranted, kInUse or kTooManyForUserIp), unless Release(id)
  // comes first. A connection that asks again for another user gives the first one back.
  // False when the request could not be sent: `done` is dropped and nothing is held.
  bool Acquire(uint64_t id, Request request, absl::AnyInvocable<void(Outcome)> done);
  // Gives the lock back but stays counted for (user, IP) (the maildrop could not be opened).
  void Unlock(uint64_t id);
  // The connection has ended: gives back everything it holds (once a request still out has
  // come back). `done` of a request still out is not run.
  void Release(uint64_t id);

  size_t leases() const { return leases_.size(); }

 private:
  struct Lease {
    std::string user;
    std::string ip;
    bool counted = false;   // counted for (user, ip) at the owner
    bool asking = false;    // a request is out
    bool released = false;  // Release() came while asking
    absl::AnyInvocable<void(Outcome)> done;
  };

  void OnOutcome(uint64_t id, Outcome outcome);
  // Tells the owner to forget `lease` (its lock; its count when `uncount`).
  void SendRelease(uint64_t id, const Lease& lease, bool uncount);
  ConnectionRef ref(uint64_t id) const { return ConnectionRef{shard_, id}; }

  MaildropShards& shards_;
  const uint32_t shard_;
  // One lease per logged-in connection, so most of them idle: node-based, as a flat table's
  // empty slots (up to half of it past each doubling) would each cost a whole Lease.
  absl::node_hash_map<uint64_t, Lease> leases_;
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_POP3_SERVICE_MAILDROP_LOCKS_H_
