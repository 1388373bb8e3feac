#include "server/route/route_counters.h"

#include "gtest/gtest.h"

namespace posthaste::server::route {
namespace {

TEST(RouteCountersTest, TextHasEveryFamilyAndTheStaleGauge) {
  RouteCounters counters;
  counters.auth_ok += 3;
  counters.socketmap_temp_moving += 2;
  counters.socketmap_idle_timeouts += 1;
  const std::string fresh = RouteMetricsText(counters, /*directory_stale=*/false, 42);
  EXPECT_NE(fresh.find("posthaste_route_auth_http_answers_total{answer=\"ok\"} 3\n"),
            std::string::npos);
  EXPECT_NE(fresh.find("posthaste_route_socketmap_answers_total{answer=\"temp_moving\"} 2\n"),
            std::string::npos);
  EXPECT_NE(
      fresh.find("posthaste_route_socketmap_connections_closed_total{reason=\"idle_timeout\"} 1\n"),
      std::string::npos);
  EXPECT_NE(fresh.find("posthaste_route_haproxy_map_writes_total{result=\"failed\"} 0\n"),
            std::string::npos);
  EXPECT_NE(fresh.find("posthaste_route_haproxy_runtime_pushes_total{result=\"ok\"} 0\n"),
            std::string::npos);
  EXPECT_NE(fresh.find("posthaste_route_directory_stale 0\n"), std::string::npos);
  EXPECT_NE(fresh.find("posthaste_route_directory_revision 42\n"), std::string::npos);
  // One TYPE line per family.
  size_t types = 0;
  for (size_t at = fresh.find("# TYPE"); at != std::string::npos;
       at = fresh.find("# TYPE", at + 1)) {
    ++types;
  }
  EXPECT_EQ(types, 5u + 2u);
  EXPECT_NE(RouteMetricsText(counters, true, 42).find("posthaste_route_directory_stale 1\n"),
            std::string::npos);
}

}  // namespace
}  // namespace posthaste::server::route
