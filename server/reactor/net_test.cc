#include "server/reactor/net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/check.h"
#include "base/testing/descriptor_table.h"
#include "gtest/gtest.h"
#include "server/reactor/buffer_ring.h"
#include "server/reactor/send.h"
#include "server/reactor/testing/loopback.h"

namespace posthaste::reactor {
namespace {

// Echoes what it receives. A buffer goes back to the kernel only after its bytes were sent
// (the consumer is done with them); in hold mode it keeps every buffer until told to let go.
struct EchoConn {
  Ring& ring;
  BufferRing& buffers;
  int fd;
  SendStats send_stats;
  Receiver receiver;
  Sender sender;
  std::deque<std::pair<uint16_t, std::span<const char>>> pending;
  bool hold = false;
  std::string received;
  bool ended = false;
  absl::Status end_status;

  EchoConn(Ring& r, BufferRing& b, int f)
      : ring(r),
        buffers(b),
        fd(f),
        receiver(
            r, b, f, [this](uint16_t id, std::span<const char> data) { OnData(id, data); },
            [this](absl::Status s) {
              ended = true;
              end_status = std::move(s);
            }),
        sender(r, send_stats, [this](absl::Status s, uint64_t) { OnSent(std::move(s)); }) {}
  ~EchoConn() { close(fd); }

  void OnData(uint16_t id, std::span<const char> data) {
    received.append(data.data(), data.size());
    pending.emplace_back(id, data);
    if (!hold) MaybeSend();
  }
  void MaybeSend() {
    if (sender.busy() || pending.empty()) return;
    sender.Send(fd, pending.front().second, /*zero_copy=*/false);
  }
  void OnSent(absl::Status s) {
    ASSERT_TRUE(s.ok()) << s;
    buffers.Release(pending.front().first);
    pending.pop_front();
    MaybeSend();
  }
  void LetGo() {
    hold = false;
    MaybeSend();
  }
  bool idle() const { return !receiver.active() && !sender.busy(); }
};

struct Server {
  std::unique_ptr<Ring> ring = Ring::Create({}).value();
  std::unique_ptr<BufferRing> buffers;
  int listen_fd = -1;
  uint16_t port = 0;
  std::unique_ptr<Acceptor> acceptor;
  std::vector<std::unique_ptr<EchoConn>> conns;
  bool hold_new = false;

  explicit Server(BufferRing::Options buffer_options) {
    buffers = BufferRing::Create(*ring, buffer_options).value();
    listen_fd = CreateListener({}).value();
    port = LocalPort(listen_fd).value();
    acceptor = std::make_unique<Acceptor>(*ring, listen_fd, [this](int fd) {
      conns.push_back(std::make_unique<EchoConn>(*ring, *buffers, fd));
      conns.back()->hold = hold_new;
      conns.back()->receiver.Start();
    });
    acceptor->Start();
  }
  ~Server() {
    acceptor->Stop();
    testing::RunUntil(*ring, [&] {
      if (acceptor->active()) return false;
      for (auto& c : conns) {
        if (!c->idle()) return false;
      }
      return true;
    });
    conns.clear();
    acceptor.reset();
    close(listen_fd);
    buffers.reset();
  }
};

TEST(NetTest, MultishotAcceptAndMultishotReceiveEcho) {
  Server server({.group_id = 1, .buffer_count = 64, .buffer_bytes = 1024});
  constexpr int kClients = 3;
  std::atomic<int> clients_done{0};
  std::vector<std::string> got(kClients), sent(kClients);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    sent[i] = testing::PatternBytes(200'000 + i * 1234, i + 1);
    clients.emplace_back([&, i] {
      const int fd = testing::ConnectLoopback(server.port);
      ASSERT_GE(fd, 0);
      std::thread writer([&] { testing::WriteAll(fd, sent[i]); });
      got[i] = testing::ReadExactly(fd, sent[i].size());
      writer.join();
      close(fd);
      clients_done.fetch_add(1);
    });
  }
  ASSERT_TRUE(testing::RunUntil(*server.ring, [&] {
    if (clients_done.load() < kClients) return false;
    for (auto& c : server.conns) {
      if (!c->ended) return false;
    }
    return true;
  }));
  for (auto& t : clients) t.join();
  for (int i = 0; i < kClients; ++i) EXPECT_TRUE(got[i] == sent[i]) << "client " << i;
  ASSERT_EQ(server.conns.size(), static_cast<size_t>(kClients));
  EXPECT_EQ(server.acceptor->stats().accepted, static_cast<uint64_t>(kClients));
  for (auto& c : server.conns) EXPECT_TRUE(c->end_status.ok()) << c->end_status;  // EOF
  EXPECT_EQ(server.buffers->in_use(), 0u);
  // Far more chunks than one arm: the receive stayed armed (multishot).
  EXPECT_GT(server.buffers->stats().buffers_taken, 100u);
}

TEST(NetTest, BufferExhaustionWaitsForReleaseThenRecovers) {
  Server server({.group_id = 2, .buffer_count = 4, .buffer_bytes = 64});
  server.hold_new = true;
  const std::string payload = testing::PatternBytes(64 * 1024, 9);
  std::atomic<bool> written{false};
  std::thread client([&] {
    const int fd = testing::ConnectLoopback(server.port);
    ASSERT_GE(fd, 0);
    testing::WriteAll(fd, payload);
    written = true;
    // Drain the echo so the server's sends complete, then hang up.
    std::string echo = testing::ReadExactly(fd, payload.size());
    EXPECT_TRUE(echo == payload);
    close(fd);
  });
  // Holding every buffer: the kernel ends the receive with ENOBUFS and it waits (no spin).
  ASSERT_TRUE(testing::RunUntil(*server.ring, [&] {
    return !server.conns.empty() && server.conns[0]->receiver.enobufs() > 0;
  }));
  EchoConn& conn = *server.conns[0];
  EXPECT_EQ(server.buffers->in_use(), 4u);
  EXPECT_EQ(conn.received.size(), 4u * 64);
  const uint64_t iterations = server.ring->stats().loop_iterations;
  for (int i = 0; i < 20; ++i) server.ring->RunOnce(false);
  // Nothing was re-armed while every buffer is held.
  EXPECT_EQ(conn.receiver.enobufs(), 1u);
  EXPECT_EQ(server.buffers->stats().waiters_rearmed, 0u);
  EXPECT_GE(server.ring->stats().loop_iterations, iterations + 20);

  conn.LetGo();
  ASSERT_TRUE(testing::RunUntil(*server.ring, [&] { return conn.ended; }));
  client.join();
  EXPECT_TRUE(conn.received == payload);
  EXPECT_GE(server.buffers->stats().exhausted, 1u);
  EXPECT_GE(server.buffers->stats().waiters_rearmed, 1u);
  EXPECT_EQ(server.buffers->in_use(), 0u);
}

TEST(NetTest, ReusePortListenersShareAPort) {
  const int a = CreateListener({}).value();
  const uint16_t port = LocalPort(a).value();
  ListenerOptions second;
  second.port = port;
  second.join_existing_group = true;
  auto b = CreateListener(second);
  ASSERT_TRUE(b.ok()) << b.status();
  second.reuse_port = false;
  EXPECT_EQ(CreateListener(second).status().code(), absl::StatusCode::kUnavailable);
  close(a);
  close(*b);
}

TEST(NetTest, NewReusePortGroupRefusesAPortSomeoneListensOn) {
  // Another server (same user) already listens with SO_REUSEPORT: starting a second one on the
  // same address must fail instead of splitting the connections between them.
  const int other = CreateListener({}).value();
  ListenerOptions mine;
  mine.port = LocalPort(other).value();
  auto refused = CreateListener(mine);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  close(other);
  auto now_free = CreateListener(mine);
  ASSERT_TRUE(now_free.ok()) << now_free.status();
  close(*now_free);
}

TEST(NetTest, ListenerRejectsBadAddresses) {
  ListenerOptions options;
  options.host = "not-an-address";
  EXPECT_EQ(CreateListener(options).status().code(), absl::StatusCode::kInvalidArgument);
  options.host = "::1";
  auto v6 = CreateListener(options);
  if (v6.ok()) close(*v6);  // IPv6 may be absent in a container; only the parse matters
}

TEST(NetTest, StoppedAcceptorGoesIdle) {
  auto ring = Ring::Create({}).value();
  const int fd = CreateListener({}).value();
  Acceptor acceptor(*ring, fd, [](int c) { close(c); });
  acceptor.Start();
  ring->RunOnce(false);
  EXPECT_TRUE(acceptor.active());
  acceptor.Stop();
  ASSERT_TRUE(testing::RunUntil(*ring, [&] { return !acceptor.active(); }));
  EXPECT_EQ(ring->user_in_flight(), 0u);
  close(fd);
}

// At the descriptor limit the multishot accept ends with EMFILE and connections wait in the
// listen queue. The acceptor must back off (not spin), answer each queued client with its
// refusal line on the reserve descriptor, and accept again by itself once descriptors free up.
constexpr std::string_view kRefusal = "-ERR [SYS/TEMP] test limit\r\n";

// Client sockets made before the descriptor table is filled (the test cannot create any after).
std::vector<int> MakeClientSockets(int count) {
  std::vector<int> clients;
  for (int i = 0; i < count; ++i) {
    const int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    PH_CHECK(c >= 0);
    const timeval timeout{.tv_sec = 10, .tv_usec = 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    clients.push_back(c);
  }
  return clients;
}

sockaddr_in LoopbackAddress(uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

std::string ReadAll(int fd) {
  char buf[128];
  const ssize_t n = recv(fd, buf, sizeof(buf), MSG_WAITALL);
  return std::string(buf, n > 0 ? n : 0);
}

// The process runs out of descriptors with clients queued: each gets the refusal line, the
// acceptor waits out its back-off, and once descriptors free up it accepts again by itself.
void RefusesAtTheDescriptorLimitAndRecovers(uint32_t file_slots) {
  constexpr int kClients = 3;
  auto ring = Ring::Create({.file_slots = file_slots}).value();
  const int listen_fd = CreateListener({}).value();
  const sockaddr_in addr = LoopbackAddress(LocalPort(listen_fd).value());
  std::vector<int> accepted;
  auto acceptor = std::make_unique<Acceptor>(
      *ring, listen_fd, [&](int fd) { accepted.push_back(fd); }, std::string(kRefusal));
  EXPECT_EQ(acceptor->refuses_directly(), ring->file_slots() > 0);
  std::vector<int> clients = MakeClientSockets(kClients + 1);

  ::posthaste::testing::DescriptorTableFull table_full;
  ASSERT_TRUE(table_full.full());

  for (int i = 0; i < kClients; ++i) {
    ASSERT_EQ(connect(clients[i], reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
  }
  acceptor->Start();
  ASSERT_TRUE(
      testing::RunUntil(*ring, [&] { return acceptor->stats().refused_descriptors >= kClients; }));
  // Waiting out the back-off, not re-armed at once on the same error.
  EXPECT_TRUE(acceptor->backing_off());
  EXPECT_GE(acceptor->stats().errors_emfile, 1u);
  EXPECT_TRUE(accepted.empty());
  for (int i = 0; i < kClients; ++i) EXPECT_EQ(ReadAll(clients[i]), kRefusal) << "client " << i;

  // Descriptors free again: the next client is accepted without anyone restarting anything
  // (and no refusal left waiting on the empty queue takes it).
  table_full.Release();
  ASSERT_EQ(connect(clients[kClients], reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_TRUE(testing::RunUntil(*ring, [&] { return accepted.size() == 1; }));
  EXPECT_EQ(acceptor->stats().refused_descriptors, static_cast<uint64_t>(kClients));

  acceptor->Stop();
  ASSERT_TRUE(testing::RunUntil(*ring, [&] { return !acceptor->active(); }));
  acceptor.reset();
  for (int fd : accepted) close(fd);
  for (int c : clients) close(c);
  close(listen_fd);
}

TEST(NetTest, AcceptorAtDescriptorLimitRefusesQueuedClientsAndRecovers) {
  RefusesAtTheDescriptorLimitAndRecovers(Ring::Options{}.file_slots);
}

// Kernels without direct descriptors: the reserve descriptor does the refusing.
TEST(NetTest, AcceptorWithoutDirectDescriptorsRefusesThroughItsReserve) {
  RefusesAtTheDescriptorLimitAndRecovers(/*file_slots=*/0);
}

// Another shard can take the descriptor a reserve frees (they share the process's table), so
// refusing must not need one: with the table full before the acceptor even exists, queued
// clients still get the refusal line, one after another through the acceptor's one slot.
TEST(NetTest, AcceptorRefusesQueuedClientsWithNoDescriptorFreeAtAll) {
  constexpr int kClients = 9;
  auto ring = Ring::Create({}).value();
  if (ring->file_slots() == 0) GTEST_SKIP() << "the kernel has no direct descriptors";
  const int listen_fd = CreateListener({}).value();
  const sockaddr_in addr = LoopbackAddress(LocalPort(listen_fd).value());
  std::vector<int> clients = MakeClientSockets(kClients);
  int accepted = 0;
  std::unique_ptr<Acceptor> acceptor;
  {
    ::posthaste::testing::DescriptorTableFull table_full;
    ASSERT_TRUE(table_full.full());
    acceptor = std::make_unique<Acceptor>(
        *ring, listen_fd,
        [&](int fd) {
          ++accepted;
          close(fd);
        },
        std::string(kRefusal));
    for (int c : clients) {
      ASSERT_EQ(connect(c, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 0);
    }
    acceptor->Start();
    ASSERT_TRUE(testing::RunUntil(
        *ring, [&] { return acceptor->stats().refused_descriptors >= kClients; }));
    EXPECT_EQ(accepted, 0);
  }
  for (int i = 0; i < kClients; ++i) EXPECT_EQ(ReadAll(clients[i]), kRefusal) << "client " << i;
  acceptor->Stop();
  ASSERT_TRUE(testing::RunUntil(*ring, [&] { return !acceptor->active(); }));
  acceptor.reset();
  for (int c : clients) close(c);
  close(listen_fd);
}

}  // namespace
}  // namespace posthaste::reactor
