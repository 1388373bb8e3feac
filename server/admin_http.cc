#include "server/admin_http.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "metrics/exporter.h"
#include "server/http/http_server.h"

namespace posthaste::server {
namespace {

constexpr auto kScrapeWait = std::chrono::seconds(1);
constexpr auto kStoreStatsMaxAge = std::chrono::seconds(5);
// A scrape waits on every shard (up to kScrapeWait) and may read the store: two at once cover
// Prometheus plus a person with curl; more queue (bounded) or get 503.
constexpr uint32_t kMetricsWorkers = 2;
constexpr uint32_t kMetricsQueueMax = 8;
// Nothing on this listener takes a body.
constexpr uint64_t kMetricsBodyBytesMax = 4096;
constexpr std::string_view kPrometheusTextType = "text/plain; version=0.0.4; charset=utf-8";

http::HttpResponse TextReply(int status, std::string body) {
  http::HttpResponse r;
  r.status = status;
  r.content_type = "text/plain";
  r.body = std::move(body);
  return r;
}

// Probes and scrapes read; anything else gets 405.
bool IsRead(const http::HttpRequest& request) {
  return request.method == "GET" || request.method == "HEAD";
}

http::HttpResponse MethodNotAllowed() {
  http::HttpResponse r = TextReply(405, "use GET\n");
  r.headers.push_back({"Allow", "GET, HEAD"});
  return r;
}

// posthaste_http_* families: one sample per listener (and reason or status code).
std::vector<prometheus::MetricFamily> HttpFamilies(
    const std::vector<std::pair<std::string, const http::HttpServerStats*>>& listeners) {
  using prometheus::ClientMetric;
  using prometheus::MetricFamily;
  using prometheus::MetricType;
  MetricFamily accepted{"posthaste_http_connections_accepted_total",
                        "HTTP connections accepted, by listener",
                        MetricType::Counter,
                        {}};
  MetricFamily open{"posthaste_http_connections_open",
                    "HTTP connections open, by listener",
                    MetricType::Gauge,
                    {}};
  MetricFamily refused{"posthaste_http_connections_refused_total",
                       "HTTP connections refused (503 and close) or evicted to make room, by "
                       "listener and reason",
                       MetricType::Counter,
                       {}};
  MetricFamily timeouts{"posthaste_http_timeouts_total",
                        "HTTP requests cut off by a deadline, by listener and phase",
                        MetricType::Counter,
                        {}};
  MetricFamily responses{"posthaste_http_responses_total",
                         "HTTP responses, by listener and status code",
                         MetricType::Counter,
                         {}};
  auto counter = [](MetricFamily& family, std::vector<ClientMetric::Label> labels, uint64_t value) {
    ClientMetric m;
    m.label = std::move(labels);
    m.counter.value = static_cast<double>(value);
    family.metric.push_back(std::move(m));
  };
  for (const auto& [name, stats] : listeners) {
    counter(accepted, {{"listener", name}}, stats->connections_accepted.load());
    ClientMetric gauge;
    gauge.label = {{"listener", name}};
    gauge.gauge.value = static_cast<double>(stats->connections_open.load());
    open.metric.push_back(std::move(gauge));
    counter(refused, {{"listener", name}, {"reason", "per_ip"}}, stats->refused_per_ip.load());
    counter(refused, {{"listener", name}, {"reason", "full"}}, stats->refused_full.load());
    counter(refused, {{"listener", name}, {"reason", "evicted"}}, stats->evicted.load());
    counter(refused, {{"listener", name}, {"reason", "worker_queue_full"}},
            stats->worker_queue_full.load());
    counter(timeouts, {{"listener", name}, {"phase", "header"}}, stats->header_timeouts.load());
    counter(timeouts, {{"listener", name}, {"phase", "body"}}, stats->body_timeouts.load());
    counter(timeouts, {{"listener", name}, {"phase", "write"}}, stats->write_timeouts.load());
    for (size_t i = 0; i <= http::kCountedStatuses.size(); ++i) {
      const uint64_t value = stats->responses[i].load();
      if (value == 0) continue;
      counter(
          responses,
          {{"listener", name},
           {"code", i < http::kCountedStatuses.size() ? std::to_string(http::kCountedStatuses[i])
                                                      : std::string("other")}},
          value);
    }
  }
  return {std::move(accepted), std::move(open), std::move(refused), std::move(timeouts),
          std::move(responses)};
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
  std::unique_ptr<metrics::Exporter> exporter;
  std::unique_ptr<http::HttpServer> server;  // reset first: its threads call into the rest

  std::mutex listeners_mu;
  // by listeners_mu: the HTTP listeners whose counters /metrics exports
  std::vector<std::pair<std::string, const http::HttpServerStats*>> listeners;

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

  http::HttpResponse Health(const http::HttpRequest& request) const {
    if (!IsRead(request)) return MethodNotAllowed();
    return TextReply(200, "ok\n");
  }

  http::HttpResponse Ready(const http::HttpRequest& request) const {
    if (!IsRead(request)) return MethodNotAllowed();
    if (ctx->draining.load()) return TextReply(503, "draining\n");
    return TextReply(200, "ready\n");
  }

  // On a worker: waits for the shards' copies (bounded), then serialises.
  http::HttpResponse Scrape(const http::HttpRequest& request) {
    if (!IsRead(request)) return MethodNotAllowed();
    std::vector<prometheus::MetricFamily> families = exporter->Collect();
    {
      std::lock_guard<std::mutex> lock(listeners_mu);
      for (prometheus::MetricFamily& f : HttpFamilies(listeners)) families.push_back(std::move(f));
    }
    http::HttpResponse r;
    r.content_type = std::string(kPrometheusTextType);
    r.body = metrics::SerializeText(families);
    return r;
  }
};

http::HttpServerOptions HttpListenerOptions(const ServeOptions& options, std::string name,
                                            const HostPort& listen) {
  http::HttpServerOptions o;
  o.name = std::move(name);
  o.host = listen.host;
  o.port = listen.port;
  o.header_timeout_ms = options.http_header_timeout_ms;
  o.body_timeout_ms = options.http_body_timeout_ms;
  o.connections_max = options.http_connections_max;
  o.connections_per_ip_max = options.http_connections_per_ip;
  return o;
}

absl::StatusOr<std::unique_ptr<AdminHttp>> AdminHttp::Start(ServerContext* ctx) {
  auto admin = std::unique_ptr<AdminHttp>(new AdminHttp());
  admin->impl_ = std::make_unique<Impl>();
  Impl* impl = admin->impl_.get();
  impl->ctx = ctx;
  impl->exporter = std::make_unique<metrics::Exporter>(
      ctx->tenant_labels,
      metrics::ExporterSources{
          .shards =
              [impl](std::vector<metrics::ShardMetrics>* out) { return impl->CopyShards(out); },
          .store = [impl] { return impl->StoreFigures(); },
          .ready = [impl] { return !impl->ctx->draining.load(); }});
  http::HttpServerOptions options =
      HttpListenerOptions(ctx->options, "metrics", ctx->options.metrics_listen);
  options.workers = kMetricsWorkers;
  options.worker_queue_max = kMetricsQueueMax;
  options.limits.body_bytes_max = kMetricsBodyBytesMax;
  // Probes are answered by the event loop itself: never queued behind a scrape.
  options.routes = {
      {"/healthz", false, http::RunOn::kEventLoop,
       [impl](const http::HttpRequest& r) { return impl->Health(r); }},
      {"/readyz", false, http::RunOn::kEventLoop,
       [impl](const http::HttpRequest& r) { return impl->Ready(r); }},
      {"/metrics", false, http::RunOn::kWorker,
       [impl](const http::HttpRequest& r) { return impl->Scrape(r); }},
  };
  auto server = http::HttpServer::Start(std::move(options));
  if (!server.ok()) return server.status();
  impl->server = *std::move(server);
  admin->port_ = impl->server->port();
  admin->AddListenerStats("metrics", &impl->server->stats());
  return admin;
}

void AdminHttp::AddListenerStats(std::string listener, const http::HttpServerStats* stats) {
  std::lock_guard<std::mutex> lock(impl_->listeners_mu);
  impl_->listeners.emplace_back(std::move(listener), stats);
}

AdminHttp::~AdminHttp() {
  if (impl_ == nullptr) return;
  impl_->server.reset();  // joins the listener's threads: no scrape runs after this
}

}  // namespace posthaste::server
