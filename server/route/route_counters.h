// RouteCounters: what `posthaste route` counts, declared once (X-macro rows: member, metric
// name, label, help) and exported on /metrics by route_service.cc. Plain atomics: the route
// service has no shards; each answer is counted once by the thread that made it.
//
// Threading: any thread may increment and read.
#ifndef POSTHASTE_SERVER_ROUTE_ROUTE_COUNTERS_H_
#define POSTHASTE_SERVER_ROUTE_ROUTE_COUNTERS_H_

#include <atomic>
#include <cstdint>
#include <string>

namespace posthaste::server::route {

// X(member, metric, label value, help)
#define PH_ROUTE_COUNTERS(X)                                                                       \
  X(auth_ok, "posthaste_route_auth_http_answers_total", "ok", "nginx auth_http answers")           \
  X(auth_bad_credentials, "posthaste_route_auth_http_answers_total", "bad_credentials", "")        \
  X(auth_unknown_user, "posthaste_route_auth_http_answers_total", "unknown_user", "")              \
  X(auth_temp_moving, "posthaste_route_auth_http_answers_total", "temp_moving", "")                \
  X(auth_temp_backend_down, "posthaste_route_auth_http_answers_total", "temp_backend_down", "")    \
  X(auth_temp_verify_failed, "posthaste_route_auth_http_answers_total", "temp_verify_failed", "")  \
  X(auth_refused_request, "posthaste_route_auth_http_answers_total", "refused_request", "")        \
  X(auth_attempts_exhausted, "posthaste_route_auth_http_answers_total", "attempts_exhausted", "")  \
  X(socketmap_ok, "posthaste_route_socketmap_answers_total", "ok", "Postfix socketmap answers")    \
  X(socketmap_notfound, "posthaste_route_socketmap_answers_total", "notfound", "")                 \
  X(socketmap_temp_moving, "posthaste_route_socketmap_answers_total", "temp_moving", "")           \
  X(socketmap_temp_backend_down, "posthaste_route_socketmap_answers_total", "temp_backend_down",   \
    "")                                                                                            \
  X(socketmap_perm_unknown_map, "posthaste_route_socketmap_answers_total", "perm_unknown_map", "") \
  X(socketmap_refused_full, "posthaste_route_socketmap_connections_closed_total", "refused_full",  \
    "socketmap connections closed by the server, by reason")                                       \
  X(socketmap_framing_errors, "posthaste_route_socketmap_connections_closed_total",                \
    "framing_error", "")                                                                           \
  X(socketmap_idle_timeouts, "posthaste_route_socketmap_connections_closed_total", "idle_timeout", \
    "")                                                                                            \
  X(socketmap_request_timeouts, "posthaste_route_socketmap_connections_closed_total",              \
    "request_timeout", "")                                                                         \
  X(haproxy_map_writes, "posthaste_route_haproxy_map_writes_total", "ok",                          \
    "HAProxy tenant map rewrites")                                                                 \
  X(haproxy_map_write_failures, "posthaste_route_haproxy_map_writes_total", "failed", "")       \
  X(haproxy_runtime_pushes, "posthaste_route_haproxy_runtime_pushes_total", "ok",                  \
    "HAProxy tenant map replacements through the runtime API")                                     \
  X(haproxy_runtime_push_failures, "posthaste_route_haproxy_runtime_pushes_total", "failed", "")

struct RouteCounters {
#define PH_ROUTE_COUNTER_MEMBER(member, metric, label, help) std::atomic<uint64_t> member{0};
  PH_ROUTE_COUNTERS(PH_ROUTE_COUNTER_MEMBER)
#undef PH_ROUTE_COUNTER_MEMBER
};

// Prometheus text for every counter (label answer="..." / reason="..." / result="..."), plus
// the gauges `posthaste_route_directory_stale` (0/1) and `posthaste_route_directory_revision`.
std::string RouteMetricsText(const RouteCounters& counters, bool directory_stale,
                             int64_t directory_revision);

}  // namespace posthaste::server::route

#endif  // POSTHASTE_SERVER_ROUTE_ROUTE_COUNTERS_H_
