// RegisterShardLifecycle: the two hooks every service's shard (POP3, LMTP) registers with its
// ServiceShard, so each service stops and frees itself the same way:
//   OnStop     stop accepting, then abort every open connection (nothing is committed);
//   OnDrained  once the ring has returned every completion: free the connections, then the
//              service's other parts (`release_parts`: listeners, backends). The ServiceShard
//              frees the buffer rings and TLS contexts after every service's hook has run.
// `ServiceState` has StopAccepting() and a ShardConnections<...> member `connections`.
//
// Threading: the hooks run on the reactor shard's thread. Ownership: `service` outlives the
// reactor shard's hooks (the service owns its shards until the reactor has stopped).
#ifndef POSTHASTE_SERVER_SHARD_SHARD_LIFECYCLE_H_
#define POSTHASTE_SERVER_SHARD_SHARD_LIFECYCLE_H_

#include <utility>

#include "absl/functional/any_invocable.h"
#include "server/shard/service_shard.h"

namespace posthaste::server {

template <typename ServiceState>
void RegisterShardLifecycle(ServiceShard& shard, ServiceState* service,
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
