#include "server/transport/tcp_progress.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <string>

#include "gtest/gtest.h"

namespace posthaste::server::transport {
namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kS = 1'000'000'000;

TEST(SendStallWatchTest, SampleIntervalIsATwentiethWithinBounds) {
  EXPECT_EQ(SendStallWatch::SampleIntervalNs(120 * kS), 1 * kS);
  EXPECT_EQ(SendStallWatch::SampleIntervalNs(20 * kS), 1 * kS);
  EXPECT_EQ(SendStallWatch::SampleIntervalNs(5 * kS), 250 * kMs);
  EXPECT_EQ(SendStallWatch::SampleIntervalNs(1 * kS), 100 * kMs);
  EXPECT_EQ(SendStallWatch::SampleIntervalNs(0), 100 * kMs);
}

// Issue 12 item 3: bytes acknowledged before the send began are not progress, so a peer that
// takes nothing is cut at T, not 2T.
TEST(SendStallWatchTest, AcknowledgementsBeforeTheStartAreNotProgress) {
  SendStallWatch watch(5 * kS);
  watch.Start(10 * kS, /*bytes_acked=*/4000);
  uint64_t now = 10 * kS;
  int samples = 0;
  while (true) {
    now = watch.next_sample_ns();
    ++samples;
    if (watch.Sample(now, 4000)) break;
    ASSERT_LT(samples, 100);
  }
  EXPECT_EQ(now, 15 * kS);  // exactly T after the start: the last sample is at the deadline
  EXPECT_EQ(samples, 20);   // one every 250 ms
}

TEST(SendStallWatchTest, ProgressIsTimedAtTheSampleThatSawIt) {
  SendStallWatch watch(5 * kS);
  watch.Start(0, 100);
  EXPECT_EQ(watch.next_sample_ns(), 250 * kMs);
  EXPECT_FALSE(watch.Sample(250 * kMs, 900));  // the peer took bytes in (0, 250 ms]
  EXPECT_EQ(watch.last_progress_ns(), 250 * kMs);
  EXPECT_FALSE(watch.Sample(5 * kS, 900));
  EXPECT_FALSE(watch.Sample(5 * kS + 249 * kMs, 900));
  EXPECT_EQ(watch.next_sample_ns(), 5 * kS + 250 * kMs);  // capped at the stall deadline
  EXPECT_TRUE(watch.Sample(5 * kS + 250 * kMs, 900));
}

TEST(SendStallWatchTest, ASlowReaderIsNeverStalled) {
  SendStallWatch watch(5 * kS);
  watch.Start(0, 0);
  uint64_t acked = 0;
  for (uint64_t now = 250 * kMs; now < 60 * kS; now += 250 * kMs) {
    if (now % (4 * kS) == 0) acked += 1024;  // one KiB every 4 s
    EXPECT_FALSE(watch.Sample(now, acked)) << now;
  }
}

TEST(SendStallWatchTest, StartWhileActiveKeepsTheClock) {
  SendStallWatch watch(5 * kS);
  watch.Start(0, 10);
  watch.Start(3 * kS, 10);  // another send began: no progress by itself
  EXPECT_TRUE(watch.active());
  EXPECT_EQ(watch.last_progress_ns(), 0u);
  EXPECT_TRUE(watch.Sample(5 * kS, 10));

  watch.Stop();
  EXPECT_FALSE(watch.active());
  watch.Start(9 * kS, 10);  // a new watch: a new clock
  EXPECT_FALSE(watch.Sample(13 * kS, 10));
  EXPECT_TRUE(watch.Sample(14 * kS, 10));
}

TEST(SendStallWatchTest, AnUnknownBaselineIsSetByTheFirstKnownSample) {
  SendStallWatch watch(5 * kS);
  watch.Start(0, std::nullopt);
  EXPECT_FALSE(watch.Sample(1 * kS, 700));  // sets the baseline only
  EXPECT_EQ(watch.last_progress_ns(), 0u);
  EXPECT_FALSE(watch.Sample(2 * kS, std::nullopt));
  EXPECT_FALSE(watch.Sample(3 * kS, 701));
  EXPECT_EQ(watch.last_progress_ns(), 3 * kS);
}

// A connected loopback pair: {client, server}.
std::pair<int, int> LoopbackPair(int client_rcvbuf) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener, 1) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(listener);
    return {-1, -1};
  }
  const int client = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(client, SOL_SOCKET, SO_RCVBUF, &client_rcvbuf, sizeof(client_rcvbuf));
  if (connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(client);
    close(listener);
    return {-1, -1};
  }
  const int server = accept(listener, nullptr, nullptr);
  close(listener);
  return {client, server};
}

// The kernel's view of a peer that stops reading: the acknowledged count stops, bytes stay
// outstanding; once it reads, the count moves again and the queue empties.
TEST(ReadTcpSendProgressTest, SeesAPeerThatDoesNotRead) {
  auto [client, server] = LoopbackPair(/*client_rcvbuf=*/4096);
  ASSERT_GE(client, 0);
  ASSERT_GE(server, 0);
  std::optional<TcpSendProgress> start = ReadTcpSendProgress(server);
  ASSERT_TRUE(start.has_value());
  EXPECT_FALSE(start->bytes_outstanding);

  fcntl(server, F_SETFL, O_NONBLOCK);
  const std::string chunk(64 * 1024, 'x');
  uint64_t written = 0;
  for (int i = 0; i < 1000; ++i) {  // until the send buffer is full
    const ssize_t n = send(server, chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n <= 0) break;
    written += static_cast<uint64_t>(n);
  }
  usleep(50'000);  // let the window close
  std::optional<TcpSendProgress> full = ReadTcpSendProgress(server);
  ASSERT_TRUE(full.has_value());
  EXPECT_TRUE(full->bytes_outstanding);
  EXPECT_LT(full->bytes_acked, written);
  usleep(50'000);
  std::optional<TcpSendProgress> later = ReadTcpSendProgress(server);
  ASSERT_TRUE(later.has_value());
  EXPECT_EQ(later->bytes_acked, full->bytes_acked);  // nothing taken while nothing is read

  // The peer reads everything: acknowledgements move and the queue empties.
  std::string buf(64 * 1024, '\0');
  uint64_t read_total = 0;
  for (int i = 0; i < 100000 && read_total < written; ++i) {
    const ssize_t n = recv(client, buf.data(), buf.size(), 0);
    if (n <= 0) break;
    read_total += static_cast<uint64_t>(n);
  }
  EXPECT_EQ(read_total, written);
  std::optional<TcpSendProgress> done;
  for (int i = 0; i < 200; ++i) {  // the last ACK may trail the last read briefly
    done = ReadTcpSendProgress(server);
    if (done.has_value() && !done->bytes_outstanding) break;
    usleep(5'000);
  }
  ASSERT_TRUE(done.has_value());
  EXPECT_FALSE(done->bytes_outstanding);
  EXPECT_GE(done->bytes_acked, written);
  close(client);
  close(server);
}

TEST(ReadTcpSendProgressTest, NotATcpSocket) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  EXPECT_FALSE(ReadTcpSendProgress(fds[0]).has_value());
  close(fds[0]);
  close(fds[1]);
}

}  // namespace
}  // namespace posthaste::server::transport
