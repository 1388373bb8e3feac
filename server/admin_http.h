// AdminHttp: the operations endpoint on --metrics_listen, served by civetweb on its own
// threads (never a reactor thread).
//   GET /healthz  200 while the process runs
//   GET /readyz   200 while listeners and store are up and not draining; 503 while draining
//   GET /metrics  Prometheus text: per-shard stats summed (posthaste_* names, unit suffixes)
// /metrics asks each shard for a copy of its stats by posting a closure to its Inbox and
// waiting (bounded) for the replies, so no shard writes a shared atomic for metrics.
//
// Threading: Start/Stop from the main thread; handlers on civetweb's threads.
// Ownership: the ServerContext must outlive Stop().
#ifndef POSTHASTE_SERVER_ADMIN_HTTP_H_
#define POSTHASTE_SERVER_ADMIN_HTTP_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/pop3_server.h"

namespace posthaste::server {

class AdminHttp {
 public:
  // Binds options.metrics_listen (port 0: the kernel picks). Unavailable when it cannot bind.
  static absl::StatusOr<std::unique_ptr<AdminHttp>> Start(ServerContext* ctx);
  ~AdminHttp();
  uint16_t port() const { return port_; }

  // Sums every shard's stats (posts to each shard; waits up to 2 s per scrape).
  static ShardStats CollectStats(ServerContext* ctx, uint32_t* shards_answered);
  static std::string MetricsText(ServerContext* ctx);

  struct Impl;

 private:
  AdminHttp() = default;
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_ADMIN_HTTP_H_
