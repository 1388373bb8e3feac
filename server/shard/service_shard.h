// ServiceShard: what every service on one reactor shard shares, whatever its protocol. One per
// reactor shard, built by `serve` before the reactor starts; each service (POP3, LMTP) keeps
// its own per-shard state beside it and reaches the common parts through it:
//   - the reactor shard (its ring, inbox and the offload pools), RunOn/Peer to other shards;
//   - the provided-buffer rings of the shard's services (owned here, freed once drained);
//   - what the transports of every service share: TLS shard contexts, the kTLS capability, the
//     TLS error-log limiter, and a TransportEnv with those filled in (TransportEnvFor);
//   - the shard's metric block and its counter blocks (the ring's, the inbox's, the offload
//     counts, each buffer ring's and listener's, and the services' own), copied at scrape time;
//   - the lifecycle: services register their stop and drained hooks here
//     (RegisterShardLifecycle), so they all stop first and their connections are freed before
//     the buffer rings and TLS contexts they use.
// It knows no protocol: server/shard depends on no service (tools/build:layering_test).
//
// Threading: built on the main thread; Start() and every other call on the shard's own thread
// (a scrape copies the metric and counter blocks there, through the shard's inbox). Peer() may
// be called from any shard, but the peer's state is then touched only by a closure sent to it
// with RunOn. Ownership: ServiceShards owns the shards and outlives the reactor; a shard owns
// its buffer rings and TLS contexts.
#ifndef POSTHASTE_SERVER_SHARD_SERVICE_SHARD_H_
#define POSTHASTE_SERVER_SHARD_SERVICE_SHARD_H_

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "metrics/counter_table.h"
#include "metrics/shard_metrics.h"
#include "metrics/tenant_series.h"
#include "server/reactor/buffer_ring.h"
#include "server/reactor/net.h"
#include "server/reactor/offload_pool.h"
#include "server/reactor/shard.h"
#include "server/transport/ring_transport.h"
#include "tls/ktls.h"
#include "tls/tls_context.h"

namespace posthaste::server {

class ServiceShards;

// What every shard is given (the same for all shards; read-only once the reactor runs).
struct ServiceShardOptions {
  TlsContextSet* tls = nullptr;  // null: no certificate, so no TLS on any service
  KtlsCapability ktls;           // probed once at start-up
  // The published tenant labels (null: every tenant "other") and each shard's bounds on them
  // (metrics::ShardTenantSeries).
  const metrics::TenantLabelTable* tenant_labels = nullptr;
  size_t tenant_series_max = 64;
  size_t tenant_login_domains_max = 65536;
};

class ServiceShard {
 public:
  ServiceShard(ServiceShards& all, uint32_t index);
  ServiceShard(const ServiceShard&) = delete;
  ServiceShard& operator=(const ServiceShard&) = delete;

  uint32_t index() const { return index_; }
  // Shard thread, after Start().
  reactor::Shard& reactor_shard() { return *shard_; }
  reactor::Ring& ring() { return shard_->ring(); }
  // This shard's labelled metrics (sessions, logins, commands, deliveries...): written on the
  // shard's thread by every service.
  metrics::ShardMetrics& metrics() { return metrics_; }
  // Which of metrics()'s tenant series a session counts under, and logins per tenant for the
  // label ranking (server/tenant_label_ranker.h).
  metrics::ShardTenantSeries& tenant_series() { return tenant_series_; }
  // Null when TLS is off.
  TlsShardContexts* tls() { return tls_.get(); }

  // Shard thread, first thing in the reactor's on_start: binds the reactor shard, makes the TLS
  // contexts, registers the ring, inbox and offload counter blocks and the reactor hooks that
  // run the services' hooks.
  void Start(reactor::Shard& shard);

  // Shard thread: a provided-buffer ring on this shard's ring, owned here (freed after every
  // service's connections), its counters registered with `labels` ("ring=pop3": a literal,
  // it must outlive the shard). Dies when the kernel refuses it.
  reactor::BufferRing& AddBufferRing(const reactor::BufferRing::Options& options,
                                     std::string_view labels);
  // Shard thread: registers a listener's acceptor counters with `labels` ("listener=pop3s", a
  // literal); the acceptor lives until the shard's drained hooks, after the last scrape.
  void AddAcceptorCounters(const reactor::AcceptorStats& stats, std::string_view labels);

  // A TransportEnv with this shard's common parts set: ring, `buffers`, `send_stats`, TLS
  // contexts, kTLS capability and the TLS error-log limiter. The service sets the rest (send
  // path, stall timeout, its TLS counters). Shard thread, after Start().
  transport::TransportEnv TransportEnvFor(reactor::BufferRing& buffers,
                                          reactor::SendStats& send_stats);

  // Adds a block a scrape copies with this shard's metrics. Shard thread; the block outlives
  // the reactor shard's drained hooks (no scrape runs after them).
  void AddCounterBlock(metrics::CounterBlockRef ref) { counter_blocks_.push_back(ref); }
  const std::vector<metrics::CounterBlockRef>& counter_blocks() const { return counter_blocks_; }

  // Runs `fn` on shard `target` (this shard: deferred on the ring; another: by its inbox).
  // False when the target's inbox refused it (full or closed); `fn` is then dropped.
  bool RunOn(uint32_t target, absl::AnyInvocable<void()> fn);
  ServiceShard& Peer(uint32_t target);
  uint32_t shard_count() const;
  // The offload pools (reactor/shard.h): false when the pool's queue is full.
  bool Offload(reactor::OffloadPool::Work work) { return shard_->Offload(std::move(work)); }
  bool OffloadIo(reactor::OffloadPool::Work work) { return shard_->OffloadIo(std::move(work)); }

  // Shard thread, from a service's start: hooks run when the reactor shard stops (in the order
  // added), and once it has drained (likewise), before this shard frees its own parts.
  void OnStop(absl::AnyInvocable<void()> hook) { stop_hooks_.push_back(std::move(hook)); }
  void OnDrained(absl::AnyInvocable<void()> hook) { drained_hooks_.push_back(std::move(hook)); }

 private:
  ServiceShards& all_;
  const uint32_t index_;
  reactor::Shard* shard_ = nullptr;
  metrics::ShardMetrics metrics_;
  metrics::ShardTenantSeries tenant_series_;  // counts into metrics_
  std::unique_ptr<TlsShardContexts> tls_;
  transport::TlsErrorLogLimiter tls_error_log_;
  std::vector<std::unique_ptr<reactor::BufferRing>> buffer_rings_;
  std::vector<metrics::CounterBlockRef> counter_blocks_;
  std::vector<absl::AnyInvocable<void()>> stop_hooks_;
  std::vector<absl::AnyInvocable<void()>> drained_hooks_;
};

// The shards of one `serve` run, index = reactor shard number.
class ServiceShards {
 public:
  // Main thread: `count` shards.
  ServiceShards(ServiceShardOptions options, uint32_t count);

  const ServiceShardOptions& options() const { return options_; }
  uint32_t size() const { return static_cast<uint32_t>(shards_.size()); }
  ServiceShard& operator[](uint32_t i) { return *shards_[i]; }

 private:
  const ServiceShardOptions options_;
  std::vector<std::unique_ptr<ServiceShard>> shards_;
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_SHARD_SERVICE_SHARD_H_
