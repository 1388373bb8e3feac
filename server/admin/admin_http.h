// AdminHttp: the operations endpoint on --metrics_listen, served by our own HTTP listener
// (server/http/http_server.h: one event-loop thread, two workers; never a reactor thread).
//   GET /metrics  Prometheus text from one metrics::Exporter (a prometheus::Collectable) plus
//                 the HTTP listeners' own posthaste_http_* counters, serialised by
//                 prometheus-cpp's TextSerializer, on a worker. The shards' figures come from
//                 AdminHttpSources::shards (serve takes a copy of each shard's metric and
//                 counter blocks on the shard's own thread, server/metrics_gather.h), the
//                 process-wide counters from AdminHttpSources::process_counters, the HTTP
//                 listeners' from their HttpServerStats (HttpListenerCounterTable), the store's
//                 from MailStore::Stats() (cached for 5 s). This package knows nothing of shards,
//                 connections or the reactor.
//   GET /healthz  200 while the process runs
//   GET /readyz   200 while serving; 503 while draining or while the store's index is read-only
//                 after a write fault (MailStore::IndexReadOnly)
// /healthz and /readyz are answered by the listener's event loop itself, so they stay quick
// while scrapes run or slow clients hold connections. Other methods: 405; other paths: 404.
//
// Threading: Start/AddListenerStats/destructor from the main thread; handlers on the listener's
// threads. Ownership: everything AdminHttpSources points at must outlive the AdminHttp.
#ifndef POSTHASTE_SERVER_ADMIN_ADMIN_HTTP_H_
#define POSTHASTE_SERVER_ADMIN_ADMIN_HTTP_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "metrics/counter_table.h"
#include "metrics/exporter.h"
#include "metrics/shard_metrics.h"
#include "server/http/http_server.h"
#include "server/serve_options.h"
#include "storage/mail_store.h"

namespace posthaste::server::admin {

// What /metrics and /readyz read.
struct AdminHttpSources {
  // Called on a worker once per scrape: fills one copy per shard (index = shard number) and
  // returns how many shards answered this time (metrics::ExporterSources::shards). Must be
  // thread-safe and return within a bounded time.
  std::function<uint32_t(std::vector<metrics::ShardCopy>*)> shards;
  // Called on a worker once per scrape: copies of the process-wide counter blocks (atomics,
  // e.g. certificate reloads). Thread-safe. Null: none.
  std::function<std::vector<metrics::CounterBlockCopy>()> process_counters;
  storage::MailStore* store = nullptr;          // Stats() for the store families
  const std::atomic<bool>* draining = nullptr;  // true: /readyz answers 503
};

class AdminHttp {
 public:
  // Binds options.metrics_listen (port 0: the kernel picks). Unavailable when it cannot bind;
  // InvalidArgument when a source is missing.
  static absl::StatusOr<std::unique_ptr<AdminHttp>> Start(const ServeOptions& options,
                                                          AdminHttpSources sources);
  ~AdminHttp();
  uint16_t port() const { return port_; }

  // Exports another HTTP listener's counters (label listener="<listener>") on /metrics.
  // `stats` must outlive this AdminHttp.
  void AddListenerStats(std::string listener, const http::HttpServerStats* stats);

  struct Impl;

 private:
  AdminHttp() = default;
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
};

// The settings of an HTTP listener named `name` on `listen` from the --http_* flags (limits and
// deadlines); the caller sets routes, workers and the body limit.
http::HttpServerOptions HttpListenerOptions(const ServeOptions& options, std::string name,
                                            const HostPort& listen);

// How /metrics names an HTTP listener's counters (http::HttpServerStats, PH_HTTP_SERVER_STATS):
// one block per listener, each sample labelled listener="<name>". Immutable; any thread.
const metrics::CounterTable& HttpListenerCounterTable();

}  // namespace posthaste::server::admin

#endif  // POSTHASTE_SERVER_ADMIN_ADMIN_HTTP_H_
