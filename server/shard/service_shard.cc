#include "server/shard/service_shard.h"

#include <utility>

#include "base/check.h"
#include "server/counters.h"

namespace posthaste::server {

ServiceShard::ServiceShard(ServiceShards& all, uint32_t index)
    : all_(all),
      index_(index),
      tenant_series_(all.options().tenant_labels, metrics_, all.options().tenant_series_max,
                     all.options().tenant_login_domains_max) {}

void ServiceShard::Start(reactor::Shard& shard) {
  PH_CHECK(shard.index() == index_);
  shard_ = &shard;
  if (all_.options().tls != nullptr) tls_ = std::make_unique<TlsShardContexts>(*all_.options().tls);
  AddCounterBlock(metrics::CounterBlockRef::Of(RingCounterTable(), shard.ring().stats()));
  AddCounterBlock(metrics::CounterBlockRef::OfAtomicRows(InboxCounterTable(), shard.inbox().stats()));
  AddCounterBlock(metrics::CounterBlockRef::Of(ShardOffloadCounterTable(), shard.offload_stats()));
  // Registered before any service's: the services stop and free their connections first, then
  // the buffer rings and TLS contexts those connections used go.
  shard.OnStop([this] {
    for (auto& hook : stop_hooks_) hook();
    stop_hooks_.clear();
  });
  shard.OnDrained([this] {
    for (auto& hook : drained_hooks_) hook();
    drained_hooks_.clear();
    buffer_rings_.clear();
    tls_.reset();
  });
}

reactor::BufferRing& ServiceShard::AddBufferRing(const reactor::BufferRing::Options& options,
                                                 std::string_view labels) {
  auto created = reactor::BufferRing::Create(ring(), options);
  PH_CHECK(created.ok());
  buffer_rings_.push_back(*std::move(created));
  reactor::BufferRing& buffers = *buffer_rings_.back();
  AddCounterBlock(
      metrics::CounterBlockRef::Of(BufferRingCounterTable(), buffers.stats()).WithLabels(labels));
  return buffers;
}

void ServiceShard::AddAcceptorCounters(const reactor::AcceptorStats& stats,
                                       std::string_view labels) {
  AddCounterBlock(metrics::CounterBlockRef::Of(AcceptorCounterTable(), stats).WithLabels(labels));
}

transport::TransportEnv ServiceShard::TransportEnvFor(reactor::BufferRing& buffers,
                                                      reactor::SendStats& send_stats) {
  transport::TransportEnv env;
  env.ring = &ring();
  env.buffers = &buffers;
  env.send_stats = &send_stats;
  env.tls = tls_.get();
  env.ktls = all_.options().ktls;
  env.tls_error_log = &tls_error_log_;
  return env;
}

bool ServiceShard::RunOn(uint32_t target, absl::AnyInvocable<void()> fn) {
  if (target == index_) {
    ring().Defer(std::move(fn));
    return true;
  }
  reactor::Inbox::Closure closure = std::move(fn);
  return shard_->PostTo(target, closure);
}

ServiceShard& ServiceShard::Peer(uint32_t target) { return all_[target]; }

uint32_t ServiceShard::shard_count() const { return all_.size(); }

ServiceShards::ServiceShards(ServiceShardOptions options, uint32_t count)
    : options_(std::move(options)) {
  shards_.reserve(count);
  for (uint32_t i = 0; i < count; ++i) shards_.push_back(std::make_unique<ServiceShard>(*this, i));
}

}  // namespace posthaste::server
