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

// posthaste_http_responses_total: by listener and status code (codes seen so far). The other
// posthaste_http_* families come from the listeners' counter blocks (HttpListenerCounterTable).
prometheus::MetricFamily HttpResponseFamily(
    const std::vector<std::pair<std::string, const http::HttpServerStats*>>& listeners) {
  prometheus::MetricFamily responses{"posthaste_http_responses_total",
                                     "HTTP responses, by listener and status code",
                                     prometheus::MetricType::Counter,
                                     {}};
  for (const auto& [name, stats] : listeners) {
    for (size_t i = 0; i <= http::kCountedStatuses.size(); ++i) {
      const uint64_t value = stats->responses[i].load();
      if (value == 0) continue;
      prometheus::ClientMetric m;
      m.label = {
          {"listener", name},
          {"code", i < http::kCountedStatuses.size() ? std::to_string(http::kCountedStatuses[i])
                                                     : std::string("other")}};
      m.counter.value = static_cast<double>(value);
      responses.metric.push_back(std::move(m));
    }
  }
  return responses;
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

metrics::ShardCopy CopyShardMetrics(ShardContext& sc) {
  metrics::ShardCopy copy{.metrics = sc.metrics, .blocks = {}};
  copy.blocks.reserve(sc.counter_blocks.size());
  for (const metrics::CounterBlockRef& block : sc.counter_blocks) {
    copy.blocks.push_back(metrics::CounterBlockCopy::Of(block));
  }
  return copy;
}

struct AdminHttp::Impl {
  ServerContext* ctx = nullptr;
  std::unique_ptr<metrics::Exporter> exporter;
  std::unique_ptr<http::HttpServer> server;  // reset first: its threads call into the rest

  std::mutex listeners_mu;
  // by listeners_mu: the HTTP listeners whose counters /metrics exports
  std::vector<std::pair<std::string, const http::HttpServerStats*>> listeners;

  std::mutex mu;
  std::vector<metrics::ShardCopy> last;  // by mu: each shard's latest copy
  std::chrono::steady_clock::time_point store_read_at;
  metrics::StoreMetrics store_cached;  // by mu

  // Asks every shard for a copy (on its thread) and waits up to kScrapeWait for the replies.
  uint32_t CopyShards(std::vector<metrics::ShardCopy>* out) {
    struct Gather {
      std::mutex mu;
      std::condition_variable cv;
      std::vector<std::unique_ptr<metrics::ShardCopy>> copies;
      uint32_t replies = 0;
    };
    auto gather = std::make_shared<Gather>();
    gather->copies.resize(ctx->shards.size());
    uint32_t posted = 0;
    for (auto& sc : ctx->shards) {
      ShardContext* shard_ctx = sc.get();
      if (ctx->reactor->shard(shard_ctx->index).inbox().Post([gather, shard_ctx] {
            auto copy = std::make_unique<metrics::ShardCopy>(CopyShardMetrics(*shard_ctx));
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
      last.assign(ctx->shards.size(),
                  metrics::ShardCopy{metrics::ShardMetrics(ctx->tenant_labels->size()), {}});
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

  // The process-wide counters and each HTTP listener's (atomics: loaded here).
  std::vector<metrics::CounterBlockCopy> ProcessBlocks() {
    std::vector<metrics::CounterBlockCopy> blocks;
    blocks.push_back(metrics::CounterBlockCopy::OfAtomics(ProcessCounterTable(), ctx->process));
    std::lock_guard<std::mutex> lock(listeners_mu);
    for (const auto& [name, stats] : listeners) {
      blocks.push_back(metrics::CounterBlockCopy::OfAtomics(HttpListenerCounterTable(), *stats)
                           .WithLabel("listener", name));
    }
    return blocks;
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
      families.push_back(HttpResponseFamily(listeners));
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
          .shards = [impl](std::vector<metrics::ShardCopy>* out) { return impl->CopyShards(out); },
          .process = [impl] { return impl->ProcessBlocks(); },
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
