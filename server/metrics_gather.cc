#include "server/metrics_gather.h"

#include <condition_variable>
#include <utility>

namespace posthaste::server {

ShardMetricsGather::ShardMetricsGather(reactor::Reactor* reactor, size_t tenant_slots,
                                       CopyOnShard copy, std::chrono::milliseconds wait)
    : reactor_(reactor),
      copy_(std::make_shared<const CopyOnShard>(std::move(copy))),
      wait_(wait),
      last_(reactor->shard_count(), metrics::ShardMetrics(tenant_slots)) {}

uint32_t ShardMetricsGather::Copy(std::vector<metrics::ShardMetrics>* out) {
  struct Gather {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::unique_ptr<metrics::ShardMetrics>> copies;  // by mu
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
      auto copied = std::make_unique<metrics::ShardMetrics>((*copy)(i));
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

metrics::ShardMetrics CopyShardMetrics(ShardContext& sc) {
  metrics::ShardMetrics m = sc.metrics;
  const ShardStats& s = sc.stats;
  m.connections_accepted = s.connections_accepted;
  m.connections_open = s.connections_open;
  m.sessions_authenticated = s.sessions_authenticated;
  m.auth_failures = s.auth_failures;
  m.auth_cache_hits = s.auth_cache_hits;
  m.maildrops_opened = s.maildrops_opened;
  m.commits_ok = s.commits_ok;
  m.commits_failed = s.commits_failed;
  m.in_use_refusals = s.in_use_refusals;
  m.takeovers = s.takeovers;
  m.limit_per_shard = s.limit_per_shard;
  m.limit_per_ip = s.limit_per_ip;
  m.limit_per_user_ip = s.limit_per_user_ip;
  m.timeouts_auth = s.timeouts_auth;
  m.timeouts_idle = s.timeouts_idle;
  m.timeouts_send_stall = s.timeouts_send_stall;
  m.offload_rejected = s.offload_rejected;
  m.post_rejected = s.post_rejected;
  m.lines_too_long = s.lines_too_long;
  // Refusals before the greeting, by the limit that refused them.
  using metrics::RefuseReason;
  m.connections_refused[static_cast<size_t>(RefuseReason::kPerShard)] = s.limit_per_shard;
  m.connections_refused[static_cast<size_t>(RefuseReason::kPerIp)] = s.limit_per_ip;
  m.connections_refused[static_cast<size_t>(RefuseReason::kPerUserIp)] = s.limit_per_user_ip;
  // Body bytes by the send path submitted; RETR/TOP bytes split into zero-copy and copied.
  m.body_splice_bytes = s.send.splice_bytes;
  m.body_send_zc_bytes = s.send.zc_bytes;
  m.body_copy_bytes = s.send.copy_bytes;
  m.body_zc_refused_bytes = s.send.zc_fallback_bytes;
  m.body_tls_bytes = s.tls_body_bytes;
  m.retrieved_zero_copy_bytes = s.send.splice_bytes + s.send.zc_bytes;
  // The userspace TLS engine seals from the mapped segment: the bytes pass through user memory.
  m.retrieved_copied_bytes = s.send.copy_bytes + s.send.zc_fallback_bytes + s.tls_body_bytes;
  m.reply_bytes = s.send.plain_bytes;
  m.streams_ok = s.send.streams_ok;
  m.streams_failed = s.send.streams_failed;
  m.zc_notifs_copied = s.send.zc_notifs_copied;
  m.tls_sessions_ktls = s.tls_path.kernel_tls_sessions;
  m.tls_sessions_userspace = s.tls_path.userspace_sessions;
  m.tls_ktls_errors = s.tls_path.kernel_tls_errors;
  m.tls_implicit_accepted = s.tls_implicit_accepted;
  m.tls_stls_started = s.tls_stls_started;
  m.tls_handshake_errors = s.tls.handshake_errors;
  m.tls_record_errors = s.tls.record_errors;
  m.tls_certificate_errors = s.tls.certificate_errors;
  m.tls_limit_errors = s.tls.limit_errors;
  m.tls_internal_errors = s.tls.internal_errors;
  m.tls_plaintext_bytes = s.tls.plaintext_bytes_encrypted;
  if (sc.index == 0 && sc.server != nullptr) {  // process-wide figures, counted once
    m.tls_reloads_ok = sc.server->tls_reloads_ok.load();
    m.tls_reloads_failed = sc.server->tls_reloads_failed.load();
  }
  if (sc.shard != nullptr) {
    const reactor::RingStats& r = sc.shard->ring().stats();
    m.reactor.loop_iterations = r.loop_iterations;
    m.reactor.sqes_prepared = r.sqes_prepared;
    m.reactor.submissions = r.submissions;
    m.reactor.completions = r.completions;
    m.reactor.cq_overflows = r.cq_overflows;
    m.reactor.sq_full_retries = r.sq_full_retries;
    m.reactor.busy_ns = r.busy_ns;
  }
  return m;
}

}  // namespace posthaste::server
