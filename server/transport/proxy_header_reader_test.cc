// ProxyHeaderReaders on a real ring with real loopback TCP sockets: the header comes off the
// socket exactly (what follows it is left for the transport), in one piece or trickled; bad
// headers, silence, a partial header and a peer that leaves are closed and counted; LOCAL keeps
// the proxy's address; StopAll closes what waits. Every wait is bounded by RunUntil's guard.
#include "server/transport/proxy_header_reader.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>

#include "gtest/gtest.h"
#include "server/reactor/ring.h"
#include "server/reactor/testing/loopback.h"

namespace posthaste::server::transport {
namespace {

using reactor::testing::RunUntil;
using reactor::testing::WriteAll;

constexpr uint64_t kMs = 1'000'000;

const std::string kV2Inet4 =
    std::string("\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c", 16) +
    std::string("\xc0\x00\x02\x07\xc6\x33\x64\x01\xc7\x38\x00\x6e", 12);  // 192.0.2.7:51000

// A connected loopback TCP pair: `client` (blocking, the test's proxy) and `server` (what an
// accept would hand over).
struct TcpPair {
  int client = -1;
  int server = -1;
  TcpPair() {
    const int listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(listener, 1), 0);
    EXPECT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    client = reactor::testing::ConnectLoopback(ntohs(addr.sin_port));
    server = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    close(listener);
  }
  ~TcpPair() {
    if (client >= 0) close(client);
  }
};

struct Fixture {
  std::unique_ptr<reactor::Ring> ring = reactor::Ring::Create({}).value();
  ProxyHeaderCounters counters;
  std::unique_ptr<ProxyHeaderReaders> readers;
  std::optional<int> admitted_fd;
  PeerInfo admitted_peer;

  explicit Fixture(uint64_t timeout_ns = 5'000 * kMs) {
    readers = std::make_unique<ProxyHeaderReaders>(*ring, &counters, timeout_ns);
  }
  ~Fixture() {
    readers->StopAll();
    RunUntil(*ring, [&] { return readers->idle() && readers->pending() == 0; });
    readers.reset();
    if (admitted_fd) close(*admitted_fd);
  }
  void Read(int fd) {
    PeerInfo proxy;
    proxy.ip = "127.0.0.1";
    proxy.loopback = true;
    readers->Read(fd, proxy, [this](int fd, PeerInfo peer) {
      admitted_fd = fd;
      admitted_peer = std::move(peer);
    });
  }
  bool WaitAdmitted() {
    return RunUntil(
        *ring, [&] { return admitted_fd.has_value(); }, 10'000);
  }
  bool WaitGone() {
    return RunUntil(
        *ring, [&] { return readers->pending() == 0; }, 10'000);
  }
};

// The bytes after the header, as the transport's first receive would see them.
std::string ReadRest(int fd, size_t n) {
  std::string out(n, '\0');
  size_t got = 0;
  for (int i = 0; i < 1000 && got < n; ++i) {
    const ssize_t r = recv(fd, out.data() + got, n - got, MSG_DONTWAIT);
    if (r > 0) {
      got += static_cast<size_t>(r);
    } else {
      usleep(1000);
    }
  }
  out.resize(got);
  return out;
}

// True when the peer sees the connection closed (EOF or reset) within a bounded wait.
bool ClientSeesClose(int fd) {
  char byte;
  const ssize_t r = recv(fd, &byte, 1, 0);  // blocking: the reader closes or the test hangs
  return r <= 0;
}

TEST(ProxyHeaderReader, V2HeaderComesOffAndTheClientHelloStays) {
  Fixture f;
  TcpPair pair;
  const std::string tail("\x16\x03\x01\x00\x05hello", 10);
  ASSERT_TRUE(WriteAll(pair.client, kV2Inet4 + tail));
  f.Read(pair.server);
  ASSERT_TRUE(f.WaitAdmitted());
  EXPECT_EQ(f.admitted_peer.ip, "192.0.2.7");
  EXPECT_FALSE(f.admitted_peer.loopback);
  EXPECT_TRUE(f.admitted_peer.via_trusted_proxy);
  EXPECT_EQ(f.admitted_peer.proxy_ip, "127.0.0.1");
  EXPECT_EQ(f.counters.headers_accepted, 1u);
  EXPECT_EQ(ReadRest(*f.admitted_fd, tail.size()), tail);
  EXPECT_TRUE(f.WaitGone());
}

TEST(ProxyHeaderReader, TrickledV1HeaderIsWaitedFor) {
  Fixture f;
  TcpPair pair;
  f.Read(pair.server);
  const std::string header = "PROXY TCP6 2001:db8::7 2001:db8::1 51000 110\r\n";
  // One byte at a time, with the ring running in between: every peek sees a partial header.
  for (char c : header) {
    ASSERT_TRUE(WriteAll(pair.client, std::string(1, c)));
    RunUntil(
        *f.ring, [] { return false; }, 3);
    ASSERT_FALSE(f.admitted_fd.has_value() && &c != &header.back());
  }
  ASSERT_TRUE(WriteAll(pair.client, "CAPA\r\n"));
  ASSERT_TRUE(f.WaitAdmitted());
  EXPECT_EQ(f.admitted_peer.ip, "2001:db8::7");
  EXPECT_EQ(ReadRest(*f.admitted_fd, 6), "CAPA\r\n");
}

TEST(ProxyHeaderReader, LocalKeepsTheProxyAddress) {
  Fixture f;
  TcpPair pair;
  ASSERT_TRUE(WriteAll(pair.client, std::string("\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00", 16)));
  f.Read(pair.server);
  ASSERT_TRUE(f.WaitAdmitted());
  EXPECT_EQ(f.admitted_peer.ip, "127.0.0.1");
  EXPECT_TRUE(f.admitted_peer.via_trusted_proxy);
  EXPECT_EQ(f.counters.headers_local, 1u);
}

TEST(ProxyHeaderReader, GarbageIsClosedAndCounted) {
  Fixture f;
  TcpPair pair;
  ASSERT_TRUE(WriteAll(pair.client, "USER alice\r\n"));
  f.Read(pair.server);
  ASSERT_TRUE(f.WaitGone());
  EXPECT_FALSE(f.admitted_fd.has_value());
  EXPECT_EQ(f.counters.refused_invalid, 1u);
  EXPECT_TRUE(ClientSeesClose(pair.client));
}

TEST(ProxyHeaderReader, SilenceAndPartialHeadersEndAtTheDeadline) {
  Fixture f(50 * kMs);
  TcpPair silent;
  TcpPair partial;
  ASSERT_TRUE(WriteAll(partial.client, "PROXY TCP4 192.0.2.7 "));
  f.Read(silent.server);
  f.Read(partial.server);
  ASSERT_TRUE(f.WaitGone());
  EXPECT_FALSE(f.admitted_fd.has_value());
  EXPECT_EQ(f.counters.refused_timeout, 2u);
  EXPECT_TRUE(ClientSeesClose(silent.client));
  EXPECT_TRUE(ClientSeesClose(partial.client));
}

TEST(ProxyHeaderReader, PeerThatLeavesIsCounted) {
  Fixture f;
  TcpPair pair;
  ASSERT_TRUE(WriteAll(pair.client, "PROXY TCP4"));
  shutdown(pair.client, SHUT_WR);
  f.Read(pair.server);
  // The partial header is peeked until the back-off finds the FIN behind it... or the deadline.
  ASSERT_TRUE(f.WaitGone());
  EXPECT_EQ(f.counters.refused_timeout + f.counters.refused_peer_closed, 1u);
  TcpPair gone;
  close(gone.client);
  gone.client = -1;
  f.Read(gone.server);
  ASSERT_TRUE(f.WaitGone());
  EXPECT_GE(f.counters.refused_peer_closed, 1u);
}

TEST(ProxyHeaderReader, StopAllClosesWhatWaits) {
  Fixture f;
  TcpPair pair;
  f.Read(pair.server);
  RunUntil(
      *f.ring, [] { return false; }, 5);
  EXPECT_EQ(f.readers->pending(), 1u);
  f.readers->StopAll();
  ASSERT_TRUE(RunUntil(*f.ring, [&] { return f.readers->pending() == 0 && f.readers->idle(); }));
  EXPECT_TRUE(ClientSeesClose(pair.client));
  TcpPair late;
  f.Read(late.server);  // after StopAll: closed at once
  EXPECT_TRUE(ClientSeesClose(late.client));
}

}  // namespace
}  // namespace posthaste::server::transport
