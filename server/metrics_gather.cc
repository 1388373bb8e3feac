#include "server/metrics_gather.h"

#include <algorithm>
#include <condition_variable>
#include <utility>

namespace posthaste::server {

ShardMetricsGather::ShardMetricsGather(reactor::Reactor* reactor, CopyOnShard copy,
                                       std::chrono::milliseconds wait)
    : reactor_(reactor),
      copy_(std::make_shared<const CopyOnShard>(std::move(copy))),
      wait_(wait),
      last_(reactor->shard_count(),
            metrics::ShardCopy{.metrics = metrics::ShardMetrics(), .blocks = {}}) {}

uint32_t ShardMetricsGather::Copy(std::vector<metrics::ShardCopy>* out) {
  struct Gather {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::unique_ptr<metrics::ShardCopy>> copies;  // by mu
    uint32_t settled = 0;  // by mu: requests run, refused, or destroyed unrun
  };
  // Settles its shard's request when the last closure holding it goes: after the closure ran,
  // when the post was refused, or when a closing inbox destroys it unrun.
  struct Request {
    explicit Request(std::shared_ptr<Gather> g) : gather(std::move(g)) {}
    ~Request() {
      std::lock_guard<std::mutex> lock(gather->mu);
      ++gather->settled;
      gather->cv.notify_all();
    }
    const std::shared_ptr<Gather> gather;
  };
  const uint32_t shards = reactor_->shard_count();
  auto gather = std::make_shared<Gather>();
  gather->copies.resize(shards);
  for (uint32_t i = 0; i < shards; ++i) {
    auto request = std::make_shared<Request>(gather);
    reactor_->shard(i).inbox().Post([i, request, copy = copy_] {
      auto copied = std::make_unique<metrics::ShardCopy>((*copy)(i));
      std::lock_guard<std::mutex> lock(request->gather->mu);
      request->gather->copies[i] = std::move(copied);
    });
  }
  std::lock_guard<std::mutex> last_lock(mu_);
  uint32_t answered = 0;
  {
    std::unique_lock<std::mutex> lock(gather->mu);
    gather->cv.wait_for(lock, wait_, [&] { return gather->settled == shards; });
    for (uint32_t i = 0; i < shards; ++i) {
      if (gather->copies[i] == nullptr) continue;
      last_[i] = std::move(*gather->copies[i]);
      ++answered;
    }
  }
  *out = last_;
  return answered;
}

TenantLoginGather::TenantLoginGather(reactor::Reactor* reactor, ServiceShards* shards,
                                     std::chrono::milliseconds wait)
    : reactor_(reactor), shards_(shards), wait_(wait) {}

absl::flat_hash_map<std::string, uint64_t> TenantLoginGather::Take() {
  uint64_t expected;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    expected = state_->answers;
  }
  const uint32_t count = std::min(reactor_->shard_count(), shards_->size());
  for (uint32_t i = 0; i < count; ++i) {
    ServiceShard* shard = &(*shards_)[i];
    if (reactor_->shard(i).inbox().Post([shard, state = state_] {
          absl::flat_hash_map<std::string, uint64_t> taken =
              shard->tenant_series().TakeLoginCounts();
          std::lock_guard<std::mutex> lock(state->mu);
          for (auto& [domain, n] : taken) state->logins[domain] += n;
          ++state->answers;
          state->cv.notify_all();
        })) {
      ++expected;
    }
  }
  std::unique_lock<std::mutex> lock(state_->mu);
  state_->cv.wait_for(lock, wait_, [&] { return state_->answers >= expected; });
  absl::flat_hash_map<std::string, uint64_t> logins;
  logins.swap(state_->logins);
  return logins;
}

metrics::ShardCopy CopyShardMetrics(ServiceShard& shard) {
  shard.tenant_series().Refresh();
  metrics::ShardCopy copy{.metrics = shard.metrics(), .blocks = {}};
  copy.blocks.reserve(shard.counter_blocks().size());
  for (const metrics::CounterBlockRef& block : shard.counter_blocks()) {
    copy.blocks.push_back(metrics::CounterBlockCopy::Of(block));
  }
  return copy;
}

}  // namespace posthaste::server
