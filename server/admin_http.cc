#include "server/admin_http.h"

#include <CivetServer.h>
#include <civetweb.h>

#include <chrono>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "metrics/exporter.h"
#include "prometheus/exposer.h"

namespace posthaste::server {
namespace {

constexpr auto kScrapeWait = std::chrono::seconds(1);
constexpr auto kStoreStatsMaxAge = std::chrono::seconds(5);

// Listening port -> server, for the begin_request callback (civetweb gives it no pointer of
// ours: the Exposer owns the CivetServer).
std::mutex health_mu;
std::map<int, ServerContext*>& HealthRegistry() {
  static auto* registry = new std::map<int, ServerContext*>();
  return *registry;
}

void Reply(mg_connection* conn, int code, const char* reason, const char* body) {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n%s",
            code, reason, strlen(body), body);
}

// Answers /healthz and /readyz; everything else goes on to the Exposer (return 0).
int BeginRequest(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  if (info == nullptr || info->local_uri == nullptr) return 0;
  const std::string_view uri = info->local_uri;
  if (uri != "/healthz" && uri != "/readyz") return 0;
  bool draining = false;
  {
    std::lock_guard<std::mutex> lock(health_mu);
    auto it = HealthRegistry().find(info->server_port);
    if (it == HealthRegistry().end()) return 0;
    draining = it->second->draining.load();
  }
  if (uri == "/healthz") {
    Reply(conn, 200, "OK", "ok\n");
  } else if (draining) {
    Reply(conn, 503, "Service Unavailable", "draining\n");
  } else {
    Reply(conn, 200, "OK", "ready\n");
  }
  return 200;  // handled (civetweb logs the status code)
}

metrics::StoreMetrics ToStoreMetrics(const storage::StoreStats& s) {
  metrics::StoreMetrics m;
  m.valid = true;
  m.accounts = s.accounts;
  m.messages = s.messages;
  m.octets = s.octets;
  m.segments = s.segments;
  m.segment_file_bytes = s.segment_file_bytes;
  m.live_bytes = s.live_bytes;
  m.dead_bytes = s.dead_bytes;
  m.compactions = s.compactions;
  m.compacted_segments = s.compacted_segments;
  m.deliveries = s.counters.deliveries;
  m.deletions = s.counters.deletions;
  m.block_cache_hits = s.block_cache_hits;
  m.block_cache_misses = s.block_cache_misses;
  m.write_stall_micros = s.write_stall_micros;
  m.write_stopped = s.write_stopped ? 1 : 0;
  return m;
}

}  // namespace

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

struct AdminHttp::Impl {
  ServerContext* ctx = nullptr;
  std::unique_ptr<prometheus::Exposer> exposer;
  std::shared_ptr<metrics::Exporter> exporter;
  int port = 0;

  std::mutex mu;
  std::vector<metrics::ShardMetrics> last;  // by mu: each shard's latest copy
  std::chrono::steady_clock::time_point store_read_at;
  metrics::StoreMetrics store_cached;  // by mu

  // Asks every shard for a copy (on its thread) and waits up to kScrapeWait for the replies.
  uint32_t CopyShards(std::vector<metrics::ShardMetrics>* out) {
    struct Gather {
      std::mutex mu;
      std::condition_variable cv;
      std::vector<std::unique_ptr<metrics::ShardMetrics>> copies;
      uint32_t replies = 0;
    };
    auto gather = std::make_shared<Gather>();
    gather->copies.resize(ctx->shards.size());
    uint32_t posted = 0;
    for (auto& sc : ctx->shards) {
      ShardContext* shard_ctx = sc.get();
      if (ctx->reactor->shard(shard_ctx->index).inbox().Post([gather, shard_ctx] {
            auto copy = std::make_unique<metrics::ShardMetrics>(CopyShardMetrics(*shard_ctx));
            std::lock_guard<std::mutex> lock(gather->mu);
            gather->copies[shard_ctx->index] = std::move(copy);
            ++gather->replies;
            gather->cv.notify_all();
          })) {
        ++posted;
      }
    }
    uint32_t answered = 0;
    std::lock_guard<std::mutex> last_lock(mu);
    if (last.size() != ctx->shards.size()) {
      last.assign(ctx->shards.size(), metrics::ShardMetrics(ctx->tenant_labels->size()));
    }
    {
      std::unique_lock<std::mutex> lock(gather->mu);
      gather->cv.wait_for(lock, kScrapeWait, [&] { return gather->replies == posted; });
      for (size_t i = 0; i < gather->copies.size(); ++i) {
        if (gather->copies[i] == nullptr) continue;
        last[i] = std::move(*gather->copies[i]);
        ++answered;
      }
    }
    *out = last;
    return answered;
  }

  metrics::StoreMetrics StoreFigures() {
    std::lock_guard<std::mutex> lock(mu);
    const auto now = std::chrono::steady_clock::now();
    if (store_cached.valid && now - store_read_at < kStoreStatsMaxAge) return store_cached;
    absl::StatusOr<storage::StoreStats> stats = ctx->store->Stats();
    if (!stats.ok()) {
      LogEvent(LogLevel::kWarning, "store stats failed", {{"error", stats.status().ToString()}});
      return metrics::StoreMetrics{};
    }
    store_cached = ToStoreMetrics(*stats);
    store_read_at = now;
    return store_cached;
  }
};

absl::StatusOr<std::unique_ptr<AdminHttp>> AdminHttp::Start(ServerContext* ctx) {
  auto admin = std::unique_ptr<AdminHttp>(new AdminHttp());
  auto impl = std::make_shared<Impl>();
  impl->ctx = ctx;
  const HostPort& listen = ctx->options.metrics_listen;
  const std::string host =
      listen.host.find(':') != std::string::npos ? "[" + listen.host + "]" : listen.host;
  CivetCallbacks callbacks;
  callbacks.begin_request = BeginRequest;
  try {
    impl->exposer = std::make_unique<prometheus::Exposer>(
        std::vector<std::string>{"listening_ports", absl::StrCat(host, ":", listen.port),
                                 "num_threads", "2"},
        &callbacks);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve HTTP on ", host, ":", listen.port, ": ", e.what()));
  }
  std::vector<int> ports = impl->exposer->GetListeningPorts();
  if (ports.empty() || ports[0] <= 0) {
    return absl::InternalError("HTTP server reports no listening port");
  }
  impl->port = ports[0];
  Impl* raw = impl.get();
  impl->exporter = std::make_shared<metrics::Exporter>(
      ctx->tenant_labels,
      metrics::ExporterSources{
          .shards = [raw](std::vector<metrics::ShardMetrics>* out) { return raw->CopyShards(out); },
          .store = [raw] { return raw->StoreFigures(); },
          .ready = [raw] { return !raw->ctx->draining.load(); }});
  impl->exposer->RegisterCollectable(impl->exporter);
  {
    std::lock_guard<std::mutex> lock(health_mu);
    HealthRegistry()[impl->port] = ctx;
  }
  admin->port_ = static_cast<uint16_t>(impl->port);
  admin->impl_ = std::move(impl);
  return admin;
}

AdminHttp::~AdminHttp() {
  if (impl_ == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(health_mu);
    HealthRegistry().erase(impl_->port);
  }
  impl_->exposer.reset();  // stops civetweb: no scrape runs after this
}

}  // namespace posthaste::server
