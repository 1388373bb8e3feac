// RegisterShardLifecycle: the two hooks every service's shard (POP3, LMTP) registers with its
// reactor shard, so each service stops and frees itself the same way:
//   OnStop     stop accepting, then abort every open connection (nothing is committed);
//   OnDrained  once the ring has returned every completion: free the connections, then the
//              service's other parts (`release_parts`: listeners, buffer rings, backends).
// `ServiceShard` has StopAccepting() and a ShardConnections<...> member `connections`.
//
// Threading: the hooks run on the reactor shard's thread. Ownership: `service` outlives the
// reactor shard's hooks (the service owns its shards until the reactor has stopped).
#ifndef POSTHASTE_SERVER_SHARD_SHARD_LIFECYCLE_H_
#define POSTHASTE_SERVER_SHARD_SHARD_LIFECYCLE_H_

#include <utility>

#include "absl/functional/any_invocable.h"
#include "server/reactor/shard.h"

namespace posthaste::server {

template <typename ServiceShard>
void RegisterShardLifecycle(reactor::Shard& shard, ServiceShard* service,
                            absl::AnyInvocable<void()> release_parts) {
  shard.OnStop([service] {
    service->StopAccepting();
    service->connections.AbortAll();
  });
  shard.OnDrained([service, release = std::move(release_parts)]() mutable {
    service->connections.Clear();
    release();
  });
}

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_SHARD_SHARD_LIFECYCLE_H_
