#include "server/pop3_service/maildrop_locks.h"

#include <optional>
#include <utility>

#include "base/check.h"

namespace posthaste::server {

bool MaildropLocks::Acquire(uint64_t id, Request request, absl::AnyInvocable<void(Outcome)> done) {
  Lease& lease = leases_[id];
  PH_CHECK(!lease.asking);
  if (!lease.user.empty() && lease.user != request.user) {
    SendRelease(id, lease, lease.counted);  // authenticated again, as someone else
    lease.counted = false;
  }
  const bool count = !lease.counted && (request.user_ip_limit > 0 || request.user_limit > 0);
  lease.user = request.user;
  lease.ip = request.ip;
  if (count) lease.counted = true;
  lease.asking = true;
  lease.released = false;
  lease.done = std::move(done);

  MaildropShards* shards = &shards_;
  MaildropLocks* self = this;  // lives as long as its shard
  const ConnectionRef me = ref(id);
  const uint32_t owner = OwnerShard(request.user, shards_.shard_count());
  // Runs on the owner with the final outcome and sends it home. When it cannot be sent, the
  // owner forgets the request at once: the requester then waits for nothing it could hold.
  auto reply = [shards, self, owner, me, user = request.user, ip = request.ip,
                count](Outcome outcome) {
    if (shards->RunOn(owner, me.shard, [self, me, outcome] { self->OnOutcome(me.id, outcome); })) {
      return;
    }
    shards->RegistryOf(owner).Release(user, ip, count && MaildropRegistry::CountsConnection(outcome),
                                      me);
  };
  const bool sent = shards_.RunOn(shard_, owner, [shards, owner, me, request, count, reply] {
    MaildropRegistry& registry = shards->RegistryOf(owner);
    ConnectionRef holder;
    const MaildropRegistry::Limits limits{.user_ip_limit = request.user_ip_limit,
                                          .user_limit = request.user_limit,
                                          .login_delay_ns = request.login_delay_ns,
                                          .now_ns = request.now_ns};
    const Outcome outcome =
        registry.Acquire(request.user, request.ip, count, limits, request.policy, me, &holder);
    if (outcome != Outcome::kAskHolder) {
      reply(outcome);
      return;
    }
    // Takeover: the holder's shard ends the holder if it has been idle long enough.
    const bool asked =
        shards->RunOn(owner, holder.shard, [shards, owner, holder, me, request, reply] {
          const bool released = shards->EndIfIdle(holder, request.user, request.takeover_idle_ns);
          shards->RunOn(holder.shard, owner, [shards, owner, me, request, released, reply] {
            const bool granted =
                shards->RegistryOf(owner).FinishTakeover(request.user, me, released);
            reply(granted ? Outcome::kGranted : Outcome::kInUse);
          });
        });
    if (!asked) {
      registry.FinishTakeover(request.user, me, /*released=*/false);
      reply(Outcome::kInUse);
    }
  });
  if (!sent) {
    if (count) lease.counted = false;
    lease.asking = false;
    lease.done = nullptr;
    if (!lease.counted) leases_.erase(id);  // else kept: the count is given back at Release
  }
  return sent;
}

void EndMaildropHolderForMove(MaildropShards& shards, uint32_t owner, const std::string& user,
                              absl::AnyInvocable<void()> done) {
  const std::optional<ConnectionRef> holder = shards.RegistryOf(owner).Holder(user);
  // The retention job holds no session and commits nothing on a held account (kAccountHeld).
  if (!holder.has_value() || *holder == kMaintenanceHolder) {
    done();
    return;
  }
  MaildropShards* all = &shards;
  shards.RunOn(owner, holder->shard,
               [all, holder = *holder, user, done = std::move(done)]() mutable {
                 all->EndForMove(holder, user);
                 done();
               });
}

void MaildropLocks::OnOutcome(uint64_t id, Outcome outcome) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return;  // a lease that is asking stays until its answer
  Lease& lease = it->second;
  lease.asking = false;
  if (!MaildropRegistry::CountsConnection(outcome)) lease.counted = false;  // the owner did not
  if (lease.released) {  // the connection ended meanwhile: give back what it was granted
    SendRelease(id, lease, lease.counted);
    leases_.erase(it);
    return;
  }
  absl::AnyInvocable<void(Outcome)> done = std::move(lease.done);
  if (outcome != Outcome::kGranted && !lease.counted) leases_.erase(it);  // nothing is held
  done(outcome);  // may call back into this object: `lease` is not touched after it
}

void MaildropLocks::Unlock(uint64_t id) {
  auto it = leases_.find(id);
  if (it == leases_.end() || it->second.asking) return;
  SendRelease(id, it->second, /*uncount=*/false);
  if (!it->second.counted) leases_.erase(it);
}

void MaildropLocks::Release(uint64_t id) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  if (it->second.asking) {  // undone when the answer comes
    it->second.released = true;
    it->second.done = nullptr;
    return;
  }
  SendRelease(id, it->second, it->second.counted);
  leases_.erase(it);
}

void MaildropLocks::SendRelease(uint64_t id, const Lease& lease, bool uncount) {
  MaildropShards* shards = &shards_;
  const uint32_t owner = OwnerShard(lease.user, shards_.shard_count());
  shards_.RunOn(shard_, owner,
                [shards, owner, user = lease.user, ip = lease.ip, uncount, me = ref(id)] {
                  shards->RegistryOf(owner).Release(user, ip, uncount, me);
                });
}

}  // namespace posthaste::server
