#include "server/route/route_service.h"

#include "gtest/gtest.h"

namespace posthaste::server::route {
namespace {

TEST(RouteOptionsTest, ParsesFlagsInBothForms) {
  auto options =
      ParseRouteOptions({"--directory_file=/d.json", "--socketmap_listen", "127.0.0.1:9121",
                         "--socketmap_connections_max=5", "--socketmap_recipient_delimiter="});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->directory_file, "/d.json");
  EXPECT_EQ(options->socketmap_listen, "127.0.0.1:9121");
  EXPECT_EQ(options->socketmap_connections_max, 5u);
  EXPECT_EQ(options->socketmap_recipient_delimiter, "");
  EXPECT_EQ(options->verify_timeout_ms, 3'000u);
}

TEST(RouteOptionsTest, EtcdInsteadOfAFile) {
  auto options = ParseRouteOptions({"--etcd_endpoints=http://127.0.0.1:2379",
                                    "--haproxy_map=/m.map", "--haproxy_socket=/run/h.sock"});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->etcd_endpoints, "http://127.0.0.1:2379");
  EXPECT_EQ(options->etcd_prefix, "/posthaste/");
  EXPECT_EQ(options->haproxy_socket, "/run/h.sock");
}

TEST(RouteOptionsTest, RefusesWhatCannotWork) {
  const std::vector<std::vector<std::string>> bad = {
      {},                                                                         // no directory
      {"--directory_file=/d.json"},                                               // nothing to do
      {"--directory_file=/d.json", "--auth_http_listen=127.0.0.1:1"},             // no admin token
      {"--directory_file=/d.json", "--haproxy_map=/m", "--verify_timeout_ms=5"},  // < min
      {"--directory_file=/d.json", "--haproxy_map=/m", "--socketmap_connections_max=x"},
      {"--directory_file=/d.json", "--haproxy_map=/m", "--no_such_flag=1"},
      {"--directory_file=/d.json", "--haproxy_map=/m", "stray"},
      {"--directory_file"},  // no value
      {"--directory_file=/d.json", "--etcd_endpoints=http://127.0.0.1:2379",
       "--haproxy_map=/m"},                                                      // two directories
      {"--etcd_endpoints=http://127.0.0.1:2379", "--etcd_prefix=x", "--haproxy_map=/m"},
      {"--directory_file=/d.json", "--haproxy_socket=/s"},  // a socket without a map
  };
  for (const auto& args : bad) {
    EXPECT_FALSE(ParseRouteOptions(args).ok()) << ::testing::PrintToString(args);
  }
}

}  // namespace
}  // namespace posthaste::server::route
