#include "server/metrics_gather.h"

#include <condition_variable>
#include <utility>

namespace posthaste::server {

ShardMetricsGather::ShardMetricsGather(reactor::Reactor* reactor, size_t tenant_slots,
                                       CopyOnShard copy, std::chrono::milliseconds wait)
    : reactor_(reactor),
      copy_(std::make_shared<const CopyOnShard>(std::move(copy))),
      wait_(wait),
      last_(reactor->shard_count(),
            metrics::ShardCopy{.metrics = metrics::ShardMetrics(tenant_slots), .blocks = {}}) {}

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

metrics::ShardCopy CopyShardMetrics(ServiceShard& shard) {
  metrics::ShardCopy copy{.metrics = shard.metrics(), .blocks = {}};
  copy.blocks.reserve(shard.counter_blocks().size());
  for (const metrics::CounterBlockRef& block : shard.counter_blocks()) {
    copy.blocks.push_back(metrics::CounterBlockCopy::Of(block));
  }
  return copy;
}

}  // namespace posthaste::server
