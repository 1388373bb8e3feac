// `posthaste route`: the stateless router in front of the backends, run until SIGTERM/SIGINT
// (docs/ARCHITECTURE.md, "The route service").
//
//   posthaste route (--directory_file=FILE | --etcd_endpoints=URL,... [--etcd_prefix=/P/])
//       [--auth_http_listen=HOST:PORT
//       --admin_token_file=FILE] [--socketmap_listen=HOST:PORT] [--haproxy_map=FILE]
//       [--haproxy_socket=PATH] [--metrics_listen=HOST:PORT] [limits...]
//
// The directory comes from a JSON file (directory_file.h) or from etcd through a
// DirectoryCache (server/placement/directory_cache.h), which follows etcd's watch and keeps
// answering from its last snapshot, marked stale, while etcd has no quorum. It starts what its
// flags ask for, from one DirectorySource: the nginx auth_http endpoint
// (auth_http.h; also serving /metrics, /healthz and /readyz), the Postfix socketmap server
// (socketmap_server.h), the HAProxy tenant map writer (haproxy_map.h) and, with
// --metrics_listen, a separate listener for /metrics, /healthz, /readyz. Then it logs one line
// "route listening auth_http=HOST:PORT socketmap=HOST:PORT metrics=HOST:PORT ..." (tests read
// the ports from it) and waits for a signal: SIGHUP reads --directory_file again (the next
// revision; a bad file is logged and the current snapshot kept), SIGTERM/SIGINT stop.
//
// Threading: RunRoute blocks the calling (main) thread, which waits for signals.
#ifndef POSTHASTE_SERVER_ROUTE_ROUTE_SERVICE_H_
#define POSTHASTE_SERVER_ROUTE_ROUTE_SERVICE_H_

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace posthaste::server::route {

struct RouteOptions {
  std::string directory_file;   // one of directory_file and etcd_endpoints
  std::string etcd_endpoints;   // comma-separated http:// client URLs
  std::string etcd_prefix = "/posthaste/";
  std::string haproxy_socket;  // HAProxy's runtime API (a stats socket); empty: off
  std::string auth_http_listen;  // HOST:PORT; empty: off
  std::string admin_token_file;  // the backends' admin API token (auth_http needs it)
  std::string socketmap_listen;  // HOST:PORT; empty: off
  std::string socketmap_map_name = "transport";
  std::string socketmap_recipient_delimiter = "+";  // as Postfix's recipient_delimiter
  std::string haproxy_map;                          // FILE; empty: off
  std::string metrics_listen;  // HOST:PORT; empty: only on the auth_http listener
  uint32_t verify_timeout_ms = 3'000;
  uint32_t auth_login_attempts_max = 10;
  uint32_t auth_http_workers = 8;
  uint32_t socketmap_connections_max = 64;
  uint32_t socketmap_idle_timeout_s = 300;
};

// The options in `args` (the arguments after "route"). InvalidArgument with a one-line message.
absl::StatusOr<RouteOptions> ParseRouteOptions(const std::vector<std::string>& args);

// The flags, one per line, for `posthaste route --help`.
std::string RouteUsage();

// `args` are the arguments after "route". Returns the exit status: 0 after SIGTERM/SIGINT,
// 1 when start-up fails, 2 for a usage error (messages on `err`).
int RunRoute(const std::vector<std::string>& args, std::ostream& err);

}  // namespace posthaste::server::route

#endif  // POSTHASTE_SERVER_ROUTE_ROUTE_SERVICE_H_
