// AdminHttp: the operations endpoint on --metrics_listen, served by prometheus-cpp's Exposer
// (civetweb, on its own 2 threads, never a reactor thread).
//   GET /metrics  Prometheus text from one metrics::Exporter (a prometheus::Collectable): at
//                 each scrape every shard copies its metric block on its own thread (a closure
//                 posted to its Inbox; up to 1 s wait, a shard that does not answer shows its
//                 previous copy), so shards count with plain integers and nothing is read
//                 racily; store figures come from MailStore::Stats() (cached for 5 s).
//   GET /healthz  200 while the process runs
//   GET /readyz   200 while serving; 503 while draining
// The Exposer has no hook for other paths, so /healthz and /readyz are answered from civetweb's
// begin_request callback (looked up by the listening port) before the Exposer's handlers run.
//
// Threading: Start/destructor from the main thread; everything else on civetweb's threads.
// Ownership: the ServerContext (and its store) must outlive the AdminHttp.
#ifndef POSTHASTE_SERVER_ADMIN_HTTP_H_
#define POSTHASTE_SERVER_ADMIN_HTTP_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "metrics/shard_metrics.h"
#include "server/pop3_server.h"

namespace posthaste::server {

class AdminHttp {
 public:
  // Binds options.metrics_listen (port 0: the kernel picks). Unavailable when it cannot bind.
  static absl::StatusOr<std::unique_ptr<AdminHttp>> Start(ServerContext* ctx);
  ~AdminHttp();
  uint16_t port() const { return port_; }

  struct Impl;

 private:
  AdminHttp() = default;
  std::shared_ptr<Impl> impl_;
  uint16_t port_ = 0;
};

// Copies shard `sc`'s metrics, with the reactor's and the legacy ShardStats counters folded in.
// REQUIRES: on sc's shard thread.
metrics::ShardMetrics CopyShardMetrics(ShardContext& sc);

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_ADMIN_HTTP_H_
