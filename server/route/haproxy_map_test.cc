#include "server/route/haproxy_map.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "gtest/gtest.h"
#include "server/placement/testing/fixed_directory.h"

namespace posthaste::server::route {
namespace {

using placement::BackendEndpoint;
using placement::DirectorySnapshot;

DirectorySnapshot Directory(int64_t revision) {
  DirectorySnapshot s;
  s.revision = revision;
  s.backends["b1"] = BackendEndpoint{.name = "b1", .ip = "10.0.0.1", .pop3s_port = 995};
  s.backends["b2"] = BackendEndpoint{.name = "b2", .ip = "10.0.0.2", .pop3s_port = 1995};
  s.backends["plain"] = BackendEndpoint{.name = "plain", .ip = "10.0.0.3", .pop3_port = 110};
  s.tenants["zeta.example"] = {.backend = "b2"};
  s.tenants["alpha.example"] = {.backend = "b1", .moving_to = "b2"};
  s.tenants["down.example"] = {.backend = "b9"};
  s.tenants["notls.example"] = {.backend = "plain"};
  s.tenants["bad domain"] = {.backend = "b1"};
  return s;
}

TEST(HaproxyMapTest, OneSortedLinePerRoutableTenant) {
  EXPECT_EQ(HaproxyMapText(Directory(5)),
            "# written by posthaste route from directory revision 5\n"
            "alpha.example 10.0.0.1:995\n"
            "zeta.example 10.0.0.2:1995\n");
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(HaproxyMapTest, WriterRewritesWhenTheRevisionChanges) {
  const std::string dir = ::testing::TempDir();
  const std::string path = dir + "/tenants.map";
  placement::FixedDirectory directory(Directory(1));
  RouteCounters counters;
  auto writer = HaproxyMapWriter::Start(path, &directory, &counters, /*poll_interval_ms=*/20);
  ASSERT_TRUE(writer.ok()) << writer.status();
  EXPECT_NE(ReadAll(path).find("revision 1\n"), std::string::npos);
  DirectorySnapshot next = Directory(2);
  next.tenants["alpha.example"] = {.backend = "b2"};
  directory.Set(next);
  std::string text;
  for (int i = 0; i < 500 && text.find("revision 2") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    text = ReadAll(path);
  }
  EXPECT_NE(text.find("alpha.example 10.0.0.2:1995\n"), std::string::npos) << text;
  writer->reset();
  EXPECT_EQ(counters.haproxy_map_writes.load(), 2u);
  EXPECT_NE(access((path + ".tmp").c_str(), F_OK), 0);  // no temporary left behind
}

TEST(HaproxyMapTest, UnwritablePathFailsAtStart) {
  placement::FixedDirectory directory(Directory(1));
  RouteCounters counters;
  auto writer = HaproxyMapWriter::Start("/nonexistent-dir/x.map", &directory, &counters);
  EXPECT_FALSE(writer.ok());
  EXPECT_EQ(counters.haproxy_map_write_failures.load(), 1u);
}

}  // namespace
}  // namespace posthaste::server::route
