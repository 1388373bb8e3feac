// AdminHttp: the operations endpoint on --metrics_listen, served by our own HTTP listener
// (server/http/http_server.h: one event-loop thread, two workers; never a reactor thread).
//   GET /metrics  Prometheus text from one metrics::Exporter (a prometheus::Collectable) plus
//                 the HTTP listeners' own posthaste_http_* counters, serialised by
//                 prometheus-cpp's TextSerializer, on a worker: at each scrape every shard
//                 copies its metric block on its own thread (a closure posted to its Inbox; up
//                 to 1 s wait, a shard that does not answer shows its previous copy), so shards
//                 count with plain integers and nothing is read racily; store figures come from
//                 MailStore::Stats() (cached for 5 s).
//   GET /healthz  200 while the process runs
//   GET /readyz   200 while serving; 503 while draining
// /healthz and /readyz are answered by the listener's event loop itself, so they stay quick
// while scrapes run or slow clients hold connections. Other methods: 405; other paths: 404.
//
// Threading: Start/AddListenerStats/destructor from the main thread; handlers on the listener's
// threads. Ownership: the ServerContext (and its store) must outlive the AdminHttp.
#ifndef POSTHASTE_SERVER_ADMIN_HTTP_H_
#define POSTHASTE_SERVER_ADMIN_HTTP_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "metrics/exporter.h"
#include "metrics/shard_metrics.h"
#include "server/http/http_server.h"
#include "server/pop3_server.h"
#include "server/serve_options.h"

namespace posthaste::server {

class AdminHttp {
 public:
  // Binds options.metrics_listen (port 0: the kernel picks). Unavailable when it cannot bind.
  static absl::StatusOr<std::unique_ptr<AdminHttp>> Start(ServerContext* ctx);
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

// Copies shard `sc`'s metrics and every counter block registered on it.
// REQUIRES: on sc's shard thread.
metrics::ShardCopy CopyShardMetrics(ShardContext& sc);

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_ADMIN_HTTP_H_
