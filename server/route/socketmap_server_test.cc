#include "server/route/socketmap_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "gtest/gtest.h"
#include "server/placement/testing/fixed_directory.h"

namespace posthaste::server::route {
namespace {

using placement::BackendEndpoint;
using placement::DirectorySnapshot;
using placement::FixedDirectory;

DirectorySnapshot TwoTenants() {
  DirectorySnapshot s;
  s.revision = 7;
  s.backends["b1"] = BackendEndpoint{.name = "b1", .ip = "10.0.0.1", .lmtp_port = 24};
  s.backends["b2"] = BackendEndpoint{.name = "b2", .ip = "fd00::2", .lmtp_port = 2424};
  s.tenants["one.example"] = {.backend = "b1"};
  s.tenants["two.example"] = {.backend = "b2"};
  s.tenants["moving.example"] = {.backend = "b1", .moving_to = "b2"};
  s.tenants["down.example"] = {.backend = "b9"};
  s.users["boss@one.example"] = {.backend = "b2"};
  return s;
}

std::string Answer(const DirectorySnapshot& s, std::string name, std::string key) {
  RouteCounters counters;
  return SocketmapAnswer(s, SocketmapRequest{std::move(name), std::move(key)},
                         SocketmapServerOptions{}, &counters);
}

TEST(SocketmapAnswerTest, EachPlacement) {
  const DirectorySnapshot s = TwoTenants();
  EXPECT_EQ(Answer(s, "transport", "alice@one.example"), SocketmapOk("lmtp:inet:10.0.0.1:24"));
  EXPECT_EQ(Answer(s, "transport", "ALICE@One.Example"), SocketmapOk("lmtp:inet:10.0.0.1:24"));
  EXPECT_EQ(Answer(s, "transport", "boss@one.example"), SocketmapOk("lmtp:inet:[fd00::2]:2424"));
  EXPECT_EQ(Answer(s, "transport", "x@two.example"), SocketmapOk("lmtp:inet:[fd00::2]:2424"));
  EXPECT_EQ(Answer(s, "transport", "one.example"), SocketmapOk("lmtp:inet:10.0.0.1:24"));
  EXPECT_EQ(Answer(s, "transport", "x@nowhere.example"), "9:NOTFOUND ,");
  EXPECT_EQ(Answer(s, "transport", "nowhere.example"), "9:NOTFOUND ,");
  EXPECT_EQ(Answer(s, "transport", ""), "9:NOTFOUND ,");
  EXPECT_EQ(Answer(s, "transport", "x@"), "9:NOTFOUND ,");
  EXPECT_EQ(Answer(s, "virtual", "alice@one.example").substr(0, 8), "24:PERM ");
  // Extension addresses: not found unless they have an entry of their own, so Postfix goes on
  // to boss@one.example (the override) rather than getting the tenant's backend here.
  EXPECT_EQ(Answer(s, "transport", "boss+lists@one.example"), "9:NOTFOUND ,");
  EXPECT_EQ(Answer(s, "transport", "alice+x@one.example"), "9:NOTFOUND ,");
  EXPECT_EQ(Answer(s, "transport", "x@moving.example").substr(0, 8), "39:TEMP ");
  EXPECT_NE(Answer(s, "transport", "x@down.example").find(":TEMP "), std::string::npos);
  EXPECT_NE(Answer(s, "transport", "down.example").find(":TEMP "), std::string::npos);
}

int Connect(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  return fd;
}

// Reads until `bytes` arrived, EOF or 10 s; returns what came ("" + closed on EOF).
std::string ReadSome(int fd, size_t bytes, bool* closed) {
  std::string out;
  *closed = false;
  while (out.size() < bytes) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 10'000) <= 0) break;
    char buffer[4096];
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n <= 0) {
      *closed = true;
      break;
    }
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

class SocketmapServerTest : public ::testing::Test {
 protected:
  void StartServer(SocketmapServerOptions options = {}) {
    auto server = SocketmapServer::Start(options, &directory_, &counters_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  FixedDirectory directory_{TwoTenants()};
  RouteCounters counters_;
  std::unique_ptr<SocketmapServer> server_;
};

TEST_F(SocketmapServerTest, AnswersPipelinedRequestsOnOneConnection) {
  StartServer();
  const int fd = Connect(server_->port());
  const std::string requests = Netstring("transport alice@one.example") +
                               Netstring("transport x@two.example") +
                               Netstring("transport x@moving.example");
  ASSERT_EQ(write(fd, requests.data(), requests.size()), static_cast<ssize_t>(requests.size()));
  const std::string expected =
      SocketmapOk("lmtp:inet:10.0.0.1:24") + SocketmapOk("lmtp:inet:[fd00::2]:2424");
  bool closed = false;
  std::string got = ReadSome(fd, expected.size() + 5, &closed);
  EXPECT_EQ(got.substr(0, expected.size()), expected);
  EXPECT_NE(got.find("TEMP"), std::string::npos);
  EXPECT_FALSE(closed);
  // A new snapshot is seen by the next request on the same connection.
  DirectorySnapshot moved = TwoTenants();
  moved.tenants["one.example"] = {.backend = "b2"};
  directory_.Set(moved);
  const std::string again = Netstring("transport alice@one.example");
  ASSERT_EQ(write(fd, again.data(), again.size()), static_cast<ssize_t>(again.size()));
  EXPECT_EQ(ReadSome(fd, 31, &closed), SocketmapOk("lmtp:inet:[fd00::2]:2424"));
  close(fd);
  EXPECT_EQ(counters_.socketmap_ok.load(), 3u);
  EXPECT_EQ(counters_.socketmap_temp_moving.load(), 1u);
}

TEST_F(SocketmapServerTest, BadFramingClosesTheConnection) {
  StartServer();
  const int fd = Connect(server_->port());
  ASSERT_EQ(write(fd, "zz:transport a,", 15), 15);
  bool closed = false;
  EXPECT_EQ(ReadSome(fd, 1, &closed), "");
  EXPECT_TRUE(closed);
  close(fd);
  EXPECT_EQ(counters_.socketmap_framing_errors.load(), 1u);
}

TEST_F(SocketmapServerTest, OverConnectionsMaxIsClosed) {
  StartServer({.connections_max = 1});
  const int first = Connect(server_->port());
  const std::string request = Netstring("transport alice@one.example");
  ASSERT_EQ(write(first, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  bool closed = false;
  ASSERT_EQ(ReadSome(first, 28, &closed), SocketmapOk("lmtp:inet:10.0.0.1:24"));
  const int second = Connect(server_->port());
  EXPECT_EQ(ReadSome(second, 1, &closed), "");
  EXPECT_TRUE(closed);
  EXPECT_EQ(counters_.socketmap_refused_full.load(), 1u);
  close(second);
  close(first);
}

TEST_F(SocketmapServerTest, IdleAndStalledConnectionsAreClosed) {
  StartServer({.idle_timeout_ms = 300, .request_timeout_ms = 300});
  const int idle = Connect(server_->port());
  const int stalled = Connect(server_->port());
  ASSERT_EQ(write(stalled, "27:transport al", 15), 15);
  bool closed = false;
  EXPECT_EQ(ReadSome(idle, 1, &closed), "");
  EXPECT_TRUE(closed);
  EXPECT_EQ(ReadSome(stalled, 1, &closed), "");
  EXPECT_TRUE(closed);
  close(idle);
  close(stalled);
  EXPECT_EQ(counters_.socketmap_idle_timeouts.load(), 1u);
  EXPECT_EQ(counters_.socketmap_request_timeouts.load(), 1u);
}

}  // namespace
}  // namespace posthaste::server::route
