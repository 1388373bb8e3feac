#include "server/admin/admin_http.h"

#include <chrono>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "metrics/counter_table.h"
#include "metrics/exporter.h"
#include "server/http/http_server.h"

namespace posthaste::server::admin {
namespace {

constexpr auto kStoreStatsMaxAge = std::chrono::seconds(5);
// A scrape waits on every shard (bounded by the shards source) and may read the store: two at once
// cover Prometheus plus a person with curl; more queue (bounded) or get 503.
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

// An HTTP listener's counters (http::HttpServerStats), one block per listener, label listener:
// X(member, kind, metric name, labels, help) as in metrics/counter_table.h.
#define PH_HTTP_LISTENER_ROWS(X)                                                                \
  X(connections_accepted, kCounter, "posthaste_http_connections_accepted_total", "",            \
    "HTTP connections accepted, by listener")                                                   \
  X(connections_open, kGauge, "posthaste_http_connections_open", "",                            \
    "HTTP connections open, by listener")                                                       \
  X(refused_per_ip, kCounter, "posthaste_http_connections_refused_total", "reason=per_ip",      \
    "HTTP connections refused (503 and close) or evicted to make room, by listener and reason") \
  X(refused_full, kCounter, "posthaste_http_connections_refused_total", "reason=full", "")      \
  X(refused_descriptors, kCounter, "posthaste_http_connections_refused_total",                  \
    "reason=descriptors", "")                                                                   \
  X(evicted, kCounter, "posthaste_http_connections_refused_total", "reason=evicted", "")        \
  X(worker_queue_full, kCounter, "posthaste_http_connections_refused_total",                    \
    "reason=worker_queue_full", "")                                                             \
  X(header_timeouts, kCounter, "posthaste_http_timeouts_total", "phase=header",                 \
    "HTTP requests cut off by a deadline, by listener and phase")                               \
  X(body_timeouts, kCounter, "posthaste_http_timeouts_total", "phase=body", "")                 \
  X(write_timeouts, kCounter, "posthaste_http_timeouts_total", "phase=write", "")

#define PH_HTTP_ROW(...) PH_COUNTER_ROW(http::HttpServerStats, __VA_ARGS__)
constexpr metrics::CounterRow kHttpRows[] = {PH_HTTP_LISTENER_ROWS(PH_HTTP_ROW)};
#undef PH_HTTP_ROW

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
  m.index_read_only = s.index_read_only ? 1 : 0;
  m.index_memtable_bytes = s.index_memtable_bytes;
  m.index_block_cache_bytes = s.index_block_cache_bytes;
  m.index_block_cache_capacity = s.index_block_cache_capacity;
  m.index_table_reader_bytes = s.index_table_reader_bytes;
  return m;
}

}  // namespace

const metrics::CounterTable& HttpListenerCounterTable() {
  static const metrics::CounterTable table = PH_COUNTER_TABLE(http::HttpServerStats, kHttpRows);
  return table;
}

struct AdminHttp::Impl {
  AdminHttpSources sources;
  std::unique_ptr<metrics::Exporter> exporter;
  std::unique_ptr<http::HttpServer> server;  // reset first: its threads call into the rest

  std::mutex listeners_mu;
  // by listeners_mu: the HTTP listeners whose counters /metrics exports
  std::vector<std::pair<std::string, const http::HttpServerStats*>> listeners;

  std::mutex mu;
  std::chrono::steady_clock::time_point store_read_at;
  metrics::StoreMetrics store_cached;  // by mu

  // The process-wide counter blocks (sources.process_counters) and each HTTP listener's: all
  // atomics, loaded here.
  std::vector<metrics::CounterBlockCopy> ProcessBlocks() {
    std::vector<metrics::CounterBlockCopy> blocks = sources.process_counters
                                                        ? sources.process_counters()
                                                        : std::vector<metrics::CounterBlockCopy>{};
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
    absl::StatusOr<storage::StoreStats> stats = sources.store->Stats();
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
    if (sources.draining->load()) return TextReply(503, "draining\n");
    // Deliveries cannot be stored: take the instance out of rotation until the index resumes
    // (storage/mail_store.h, IndexReadOnly; an atomic load, fine on the event loop).
    if (sources.store->IndexReadOnly()) return TextReply(503, "store read-only\n");
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

absl::StatusOr<std::unique_ptr<AdminHttp>> AdminHttp::Start(const ServeOptions& serve_options,
                                                            AdminHttpSources sources) {
  if (!sources.shards || sources.store == nullptr || sources.draining == nullptr) {
    return absl::InvalidArgumentError("AdminHttp: every source must be given");
  }
  auto admin = std::unique_ptr<AdminHttp>(new AdminHttp());
  admin->impl_ = std::make_unique<Impl>();
  Impl* impl = admin->impl_.get();
  impl->sources = std::move(sources);
  impl->exporter = std::make_unique<metrics::Exporter>(
      metrics::ExporterSources{.shards = impl->sources.shards,
                               .process = [impl] { return impl->ProcessBlocks(); },
                               .store = [impl] { return impl->StoreFigures(); },
                               .ready = [impl] { return !impl->sources.draining->load(); }});
  http::HttpServerOptions options =
      HttpListenerOptions(serve_options, "metrics", serve_options.metrics_listen);
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

}  // namespace posthaste::server::admin
