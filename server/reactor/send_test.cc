#include "server/reactor/send.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "server/reactor/net.h"
#include "server/reactor/testing/loopback.h"

namespace posthaste::reactor {
namespace {

constexpr size_t kMiB = 1 << 20;

// A connected loopback pair: `server` is non-blocking (as accepted by Acceptor), `client`
// blocking, for a client thread.
struct Pair {
  int server = -1;
  int client = -1;
  Pair() {
    const int listener = CreateListener({}).value();
    client = testing::ConnectLoopback(LocalPort(listener).value());
    server = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    close(listener);
  }
  ~Pair() {
    if (server >= 0) close(server);
    if (client >= 0) close(client);
  }
  void SmallSendBuffer() {
    const int bytes = 64 * 1024;
    setsockopt(server, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
    setsockopt(client, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
  }
  void ResetClient() {  // hang up with RST, as a client that crashes
    linger l{1, 0};
    setsockopt(client, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    close(client);
    client = -1;
  }
};

struct Done {
  std::optional<absl::Status> status;
  uint64_t bytes = 0;
  int calls = 0;
  SendDoneFn Fn() {
    return [this](absl::Status s, uint64_t n) {
      status = std::move(s);
      bytes = n;
      ++calls;
    };
  }
};

TEST(SenderTest, PartialSendsToASlowReaderAreResubmitted) {
  auto ring = Ring::Create({}).value();
  Pair pair;
  pair.SmallSendBuffer();
  const std::string data = testing::PatternBytes(8 * kMiB, 3);
  SendStats stats;
  Done done;
  Sender sender(*ring, stats, done.Fn());
  std::string got;
  std::thread reader([&] { got = testing::ReadAll(pair.client, data.size(), 64 * 1024, 1000); });
  sender.Send(pair.server, data, /*zero_copy=*/false);
  ASSERT_TRUE(testing::RunUntil(*ring, [&] { return done.calls > 0; }));
  reader.join();
  ASSERT_TRUE(done.status->ok()) << *done.status;
  EXPECT_EQ(done.bytes, data.size());
  EXPECT_TRUE(got == data);
  EXPECT_GT(stats.partial_sends, 0u);
  EXPECT_EQ(stats.plain_bytes, data.size());
}

// Whether `fd` has bytes to read within `ms` milliseconds.
bool ReadableWithin(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, ms) == 1;
}

// `more` (MSG_MORE) keeps a short reply in the socket until the next send, even with
// TCP_NODELAY (as POP3 connections set it), so a reply line and the body after it share a
// segment; a send without it goes out at once.
TEST(SenderTest, MoreHoldsAShortSendForTheNextOne) {
  auto ring = Ring::Create({}).value();
  Pair pair;
  const int one = 1;
  ASSERT_EQ(setsockopt(pair.server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
  SendStats stats;
  Done done;
  Sender sender(*ring, stats, done.Fn());
  const std::string first = "+OK 5 octets\r\n";
  sender.Send(pair.server, first, /*zero_copy=*/false, /*more=*/true);
  ASSERT_TRUE(testing::RunUntil(*ring, [&] { return done.calls == 1; }));
  EXPECT_FALSE(ReadableWithin(pair.client, 100)) << "MSG_MORE bytes were sent on their own";
  const std::string second = "hello\r\n.\r\n";
  sender.Send(pair.server, second, /*zero_copy=*/false);
  ASSERT_TRUE(testing::RunUntil(*ring, [&] { return done.calls == 2; }));
  ASSERT_TRUE(ReadableWithin(pair.client, 5000));
  shutdown(pair.server, SHUT_WR);
  EXPECT_EQ(testing::ReadAll(pair.client, 1000), first + second);
  // Control: without `more` the bytes leave at once.
  Pair other;
  ASSERT_EQ(setsockopt(other.server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
  sender.Send(other.server, first, /*zero_copy=*/false);
  ASSERT_TRUE(testing::RunUntil(*ring, [&] { return done.calls == 3; }));
  EXPECT_TRUE(ReadableWithin(other.client, 5000));
}

TEST(SenderTest, ZeroCopySendCompletesOnlyAfterTheNotification) {
  auto ring = Ring::Create({}).value();
  Pair pair;
  const std::string data = testing::PatternBytes(4 * kMiB, 4);
  SendStats stats;
  uint64_t notifs_seen_at_done = 0;
  Done done;
  Sender sender(*ring, stats, [&](absl::Status s, uint64_t n) {
    notifs_seen_at_done = stats.zc_notifs;
    done.Fn()(std::move(s), n);
  });
  std::string got;
  std::thread reader([&] { got = testing::ReadAll(pair.client, data.size()); });
  sender.Send(pair.server, data, /*zero_copy=*/true);
  ASSERT_TRUE(testing::RunUntil(*ring, [&] { return done.calls > 0; }));
  reader.join();
  ASSERT_TRUE(done.status->ok()) << *done.status;
  EXPECT_TRUE(got == data);
  EXPECT_EQ(stats.zc_bytes + stats.plain_bytes, data.size());
  if (stats.zc_fallbacks == 0) {
    EXPECT_EQ(stats.zc_bytes, data.size());
  }
  // Every submission's notification had arrived before on_done: the memory was free to reuse.
  EXPECT_GE(notifs_seen_at_done, 1u);
  if (stats.zc_fallbacks == 0) {
    EXPECT_EQ(notifs_seen_at_done, stats.partial_sends + 1);
  }
  // On loopback the kernel copies zero-copy sends and says so in the notification.
  EXPECT_EQ(stats.zc_notifs_copied, stats.zc_notifs);
  EXPECT_EQ(ring->user_in_flight(), 0u);
}

TEST(SenderTest, PeerResetFailsTheSend) {
  auto ring = Ring::Create({}).value();
  Pair pair;
  pair.SmallSendBuffer();
  const std::string data = testing::PatternBytes(16 * kMiB, 5);
  SendStats stats;
  Done done;
  Sender sender(*ring, stats, done.Fn());
  sender.Send(pair.server, data, false);
  ring->RunOnce(false);
  pair.ResetClient();
  ASSERT_TRUE(testing::RunUntil(*ring, [&] { return done.calls > 0; }));
  EXPECT_EQ(done.status->code(), absl::StatusCode::kUnavailable) << *done.status;
  EXPECT_LT(done.bytes, data.size());
}

TEST(SendPathPolicyTest, PicksByMeasuredThresholds) {
  EXPECT_EQ(ChooseSendPath(1), SendPath::kCopy);
  EXPECT_EQ(ChooseSendPath(64 * 1024 - 1), SendPath::kCopy);
  EXPECT_EQ(ChooseSendPath(64 * 1024), SendPath::kSplice);
  EXPECT_EQ(ChooseSendPath(100 * kMiB), SendPath::kSplice);
  SendPathPolicy zc;
  zc.use_send_zc = true;
  EXPECT_EQ(ChooseSendPath(kMiB - 1, zc), SendPath::kSplice);
  EXPECT_EQ(ChooseSendPath(kMiB, zc), SendPath::kSendZc);
}

// --- FileStreamer ---------------------------------------------------------------------------

class StreamerTest : public ::testing::TestWithParam<SendPath> {
 protected:
  static void SetUpTestSuite() {
    file_data_ = new std::string(testing::PatternBytes(10 * kMiB + 8191, 11));
    path_ = new std::string(testing::WriteTempFile("segment", *file_data_));
  }
  static void TearDownTestSuite() {
    delete file_data_;
    delete path_;
  }
  void SetUp() override {
    file_fd_ = open(path_->c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(file_fd_, 0);
  }
  void TearDown() override { close(file_fd_); }

  static std::string* file_data_;
  static std::string* path_;
  int file_fd_ = -1;
  std::unique_ptr<Ring> ring_ = Ring::Create({}).value();
  SendStats stats_;
};
std::string* StreamerTest::file_data_ = nullptr;
std::string* StreamerTest::path_ = nullptr;

uint64_t BytesByPath(const SendStats& s, SendPath path) {
  switch (path) {
    case SendPath::kSplice:
      return s.splice_bytes;
    case SendPath::kSendZc:
      return s.zc_bytes + s.zc_fallback_bytes;  // fallback only if the kernel refused to pin
    case SendPath::kCopy:
      return s.copy_bytes;
  }
  return 0;
}

TEST_P(StreamerTest, StreamsRangesByteExact) {
  struct Case {
    uint64_t offset, length;
  };
  const Case cases[] = {{0, 1},          {0, 4096},         {0, 10 * kMiB},
                        {4097, 1000003}, {1, 65537},        {10 * kMiB + 8190, 1},
                        {12345, 0},      {3, 10 * kMiB - 7}};
  FileStreamer::Options options;
  options.copy_buffer_bytes = 100000;  // odd chunking on purpose
  Done done;
  FileStreamer streamer(*ring_, stats_, options, done.Fn());
  uint64_t total = 0;
  for (const Case& c : cases) {
    Pair pair;
    std::string got;
    std::thread reader([&] {
      got = testing::ReadAll(pair.client, c.length + 1);  // EOF ends it
    });
    done = Done();
    ASSERT_TRUE(streamer.Start(pair.server, {file_fd_, c.offset, c.length}, GetParam()).ok());
    ASSERT_TRUE(testing::RunUntil(*ring_, [&] { return done.calls > 0; }));
    shutdown(pair.server, SHUT_WR);
    reader.join();
    ASSERT_TRUE(done.status->ok()) << *done.status << " offset " << c.offset;
    EXPECT_EQ(done.bytes, c.length);
    EXPECT_TRUE(got == file_data_->substr(c.offset, c.length))
        << "offset " << c.offset << " length " << c.length << " got " << got.size();
    total += c.length;
  }
  EXPECT_EQ(BytesByPath(stats_, GetParam()), total);
  EXPECT_EQ(stats_.streams_ok, std::size(cases));
  EXPECT_EQ(ring_->user_in_flight(), 0u);
}

// With more_follows the body's last bytes may wait for the caller's next send; everything
// still arrives, in order, once that send is made.
TEST_P(StreamerTest, MoreFollowsKeepsTheBodyInOrderWithTheNextSend) {
  Pair pair;
  const int one = 1;
  ASSERT_EQ(setsockopt(pair.server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
  Done done;
  FileStreamer streamer(*ring_, stats_, FileStreamer::Options{}, done.Fn());
  ASSERT_TRUE(streamer.Start(pair.server, {file_fd_, 10, 20000}, GetParam(),
                             /*more_follows=*/true)
                  .ok());
  ASSERT_TRUE(testing::RunUntil(*ring_, [&] { return done.calls > 0; }));
  ASSERT_TRUE(done.status->ok()) << *done.status;
  Done sent;
  Sender sender(*ring_, stats_, sent.Fn());
  const std::string terminator = ".\r\n";
  sender.Send(pair.server, terminator, /*zero_copy=*/false);
  ASSERT_TRUE(testing::RunUntil(*ring_, [&] { return sent.calls > 0; }));
  shutdown(pair.server, SHUT_WR);
  EXPECT_TRUE(testing::ReadAll(pair.client, 30000) == file_data_->substr(10, 20000) + terminator);
}

TEST_P(StreamerTest, SlowReaderStallsTheStreamWithOneOperationInFlight) {
  Pair pair;
  pair.SmallSendBuffer();
  Done done;
  FileStreamer streamer(*ring_, stats_, {}, done.Fn());
  const uint64_t length = 4 * kMiB;
  std::string got;
  std::thread reader([&] { got = testing::ReadAll(pair.client, length, 32 * 1024, 500); });
  ASSERT_TRUE(streamer.Start(pair.server, {file_fd_, 777, length}, GetParam()).ok());
  uint64_t max_in_flight = 0;
  ASSERT_TRUE(testing::RunUntil(*ring_, [&] {
    max_in_flight = std::max(max_in_flight, ring_->user_in_flight());
    return done.calls > 0;
  }));
  reader.join();
  ASSERT_TRUE(done.status->ok()) << *done.status;
  EXPECT_TRUE(got == file_data_->substr(777, length));
  // Back-pressure: one send at a time whatever the reader's pace (SEND_ZC: plus chunks whose
  // notification is pending, bounded by kZcSlots); nothing queues up.
  if (GetParam() == SendPath::kSendZc) {
    EXPECT_LE(max_in_flight, static_cast<uint64_t>(FileStreamer::kZcSlots));
  } else {
    EXPECT_EQ(max_in_flight, 1u);
  }
  if (GetParam() == SendPath::kSplice) {
    EXPECT_GT(stats_.socket_full_waits, 0u);  // -EAGAIN answered by a POLLOUT wait
  }
}

TEST_P(StreamerTest, PeerDisconnectMidStreamIsReportedAndTheStreamerIsReusable) {
  Done done;
  FileStreamer streamer(*ring_, stats_, {}, done.Fn());
  {
    Pair pair;
    pair.SmallSendBuffer();
    ASSERT_TRUE(streamer.Start(pair.server, {file_fd_, 0, 10 * kMiB}, GetParam()).ok());
    std::thread reader([&] {
      testing::ReadExactly(pair.client, 256 * 1024);
      pair.ResetClient();
    });
    ASSERT_TRUE(testing::RunUntil(*ring_, [&] { return done.calls > 0; }));
    reader.join();
    EXPECT_EQ(done.status->code(), absl::StatusCode::kUnavailable) << *done.status;
    EXPECT_LT(done.bytes, 10 * kMiB);
    EXPECT_EQ(stats_.streams_failed, 1u);
  }
  // The same streamer serves the next connection correctly (no stale pipe contents).
  Pair pair;
  std::string got;
  std::thread reader([&] { got = testing::ReadAll(pair.client, 300000); });
  done = Done();
  ASSERT_TRUE(streamer.Start(pair.server, {file_fd_, 5, 300000}, GetParam()).ok());
  ASSERT_TRUE(testing::RunUntil(*ring_, [&] { return done.calls > 0; }));
  reader.join();
  ASSERT_TRUE(done.status->ok()) << *done.status;
  EXPECT_TRUE(got == file_data_->substr(5, 300000));
  EXPECT_EQ(ring_->user_in_flight(), 0u);
}

TEST_P(StreamerTest, CancelEndsAStalledStream) {
  Pair pair;
  pair.SmallSendBuffer();
  Done done;
  FileStreamer streamer(*ring_, stats_, {}, done.Fn());
  ASSERT_TRUE(streamer.Start(pair.server, {file_fd_, 0, 10 * kMiB}, GetParam()).ok());
  // The client never reads: let the socket fill, then cancel.
  for (int i = 0; i < 50; ++i) ring_->RunOnce(false);
  EXPECT_TRUE(streamer.busy());
  streamer.Cancel();
  // Give up on the peer, as the connection driver does; this also frees SEND_ZC's pages.
  AbortSocket(pair.server);
  pair.server = -1;
  ASSERT_TRUE(testing::RunUntil(*ring_, [&] { return done.calls > 0; }));
  EXPECT_EQ(done.status->code(), absl::StatusCode::kCancelled) << *done.status;
  EXPECT_FALSE(streamer.busy());
  EXPECT_EQ(ring_->user_in_flight(), 0u);
}

TEST_P(StreamerTest, RangeBeyondTheFileIsRejectedUpFront) {
  Pair pair;
  Done done;
  FileStreamer streamer(*ring_, stats_, {}, done.Fn());
  const uint64_t size = file_data_->size();
  EXPECT_EQ(streamer.Start(pair.server, {file_fd_, size - 10, 11}, GetParam()).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(streamer.Start(pair.server, {file_fd_, size + 1, 0}, GetParam()).code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(done.calls, 0);
  EXPECT_FALSE(streamer.busy());
}

INSTANTIATE_TEST_SUITE_P(AllPaths, StreamerTest,
                         ::testing::Values(SendPath::kSplice, SendPath::kSendZc, SendPath::kCopy),
                         [](const ::testing::TestParamInfo<SendPath>& info) {
                           return std::string(SendPathName(info.param));
                         });

}  // namespace
}  // namespace posthaste::reactor
