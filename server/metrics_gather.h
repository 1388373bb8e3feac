// Taking the shards' metrics for a /metrics scrape (server/admin/admin_http.h reads them through
// AdminHttpSources::shards).
//
// Each shard copies its own metric block and counter blocks on its own thread (a closure posted to
// its inbox), so shards count with plain integers and nothing is read racily. A scrape waits for
// the copies up to a bound; a shard that does not answer in time shows its previous copy. A request
// that a stopping shard destroys unrun ends the wait for it at once, so a scrape in flight at
// shutdown never holds the metrics listener (and with it the process) for the whole bound.
//
// Threading: ShardMetricsGather::Copy from any thread but a shard's (the metrics listener's
// workers), concurrently; CopyShardMetrics on the shard's own thread. Ownership: the Reactor
// must outlive the ShardMetricsGather; `copy` is called only while the reactor runs.
#ifndef POSTHASTE_SERVER_METRICS_GATHER_H_
#define POSTHASTE_SERVER_METRICS_GATHER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "metrics/exporter.h"
#include "metrics/shard_metrics.h"
#include "server/reactor/shard.h"
#include "server/shard/service_shard.h"

namespace posthaste::server {

class ShardMetricsGather {
 public:
  static constexpr std::chrono::milliseconds kWait{1000};
  // Runs on shard `index`'s thread and returns that shard's copy.
  using CopyOnShard = std::function<metrics::ShardCopy(uint32_t index)>;

  ShardMetricsGather(reactor::Reactor* reactor, CopyOnShard copy,
                     std::chrono::milliseconds wait = kWait);

  // Asks every shard for a copy and waits until each has answered, was refused or dropped its
  // request, or `wait` has passed. Fills `out` with one copy per shard (index = shard number;
  // the previous copy for a shard that did not answer) and returns how many answered.
  uint32_t Copy(std::vector<metrics::ShardCopy>* out);

 private:
  reactor::Reactor* const reactor_;
  const std::shared_ptr<const CopyOnShard> copy_;  // shared with requests that outlive a Copy
  const std::chrono::milliseconds wait_;
  std::mutex mu_;  // one Copy at a time updates last_
  std::vector<metrics::ShardCopy> last_;
};

// The shards' login counts per tenant for the tenant label ranking
// (metrics::TenantLabelRanking): each shard hands over what it counted (on its own thread,
// through its inbox) and starts again. Counts that arrive after a Take gave up waiting are kept
// for the next Take, so none is lost.
//
// Threading: Take from one thread at a time, never a shard's (it blocks up to `wait`).
// Ownership: the Reactor and the ServiceShards must outlive it; call Take only while the
// reactor runs.
class TenantLoginGather {
 public:
  TenantLoginGather(reactor::Reactor* reactor, ServiceShards* shards,
                    std::chrono::milliseconds wait = ShardMetricsGather::kWait);
  // Logins per lower-case domain since the previous Take, from every shard that answered.
  absl::flat_hash_map<std::string, uint64_t> Take();

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    absl::flat_hash_map<std::string, uint64_t> logins;  // by mu
    uint64_t answers = 0;                               // by mu
  };
  reactor::Reactor* const reactor_;
  ServiceShards* const shards_;
  const std::chrono::milliseconds wait_;
  const std::shared_ptr<State> state_ = std::make_shared<State>();
};

// Copies `shard`'s metric block (after taking up newly published tenant labels, so they show
// at 0 before their first session) and every counter block registered on it
// (ServiceShard::counter_blocks: the reactor's and every service's), each read later through its
// table. REQUIRES: on that shard's thread.
metrics::ShardCopy CopyShardMetrics(ServiceShard& shard);

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_METRICS_GATHER_H_
