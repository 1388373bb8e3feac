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
  };
  for (const auto& args : bad) {
    EXPECT_FALSE(ParseRouteOptions(args).ok()) << ::testing::PrintToString(args);
  }
}

}  // namespace
}  // namespace posthaste::server::route
