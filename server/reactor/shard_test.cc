#include "server/reactor/shard.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "server/reactor/buffer_ring.h"
#include "server/reactor/net.h"
#include "server/reactor/send.h"
#include "server/reactor/testing/loopback.h"
#include "server/reactor/timer.h"

namespace posthaste::reactor {
namespace {

// A one-shot latch for test threads.
class Latch {
 public:
  void Open() {
    std::lock_guard<std::mutex> l(mu_);
    open_ = true;
    cv_.notify_all();
  }
  bool WaitFor(int ms) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, std::chrono::milliseconds(ms), [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

TEST(InboxTest, FullQueuePushesBackAndCounts) {
  auto inbox = Inbox::Create(4).value();
  int ran = 0;
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(inbox->Post([&] { ++ran; }));
  Inbox::Closure extra = [&] { ran += 100; };
  EXPECT_FALSE(inbox->Post(extra));
  EXPECT_TRUE(static_cast<bool>(extra));  // left with the caller
  EXPECT_EQ(inbox->stats().rejected_full.load(), 1u);
  inbox->Drain();
  EXPECT_EQ(ran, 4);
  EXPECT_TRUE(inbox->Post(extra));  // room again
  inbox->Drain();
  EXPECT_EQ(ran, 104);
  inbox->Close();
  EXPECT_FALSE(inbox->Post([] {}));
  EXPECT_EQ(inbox->stats().rejected_closed.load(), 1u);
}

TEST(OffloadPoolTest, FullQueuePushesBackAndCounts) {
  auto pool = OffloadPool::Create({.threads = 1, .queue_capacity = 1}).value();
  Latch release;
  int accepted = 0;
  // At most one job runs and one waits: the third submission is refused.
  for (int i = 0; i < 3; ++i) {
    accepted += pool->Submit(nullptr, [&]() -> OffloadPool::Reply {
      release.WaitFor(10000);
      return nullptr;
    });
  }
  EXPECT_LE(accepted, 2);
  EXPECT_GE(pool->stats().rejected_full.load(), 1u);
  release.Open();
}


TEST(OffloadPoolTest, AJobTakenAfterItsDeadlineRunsItsExpiredPathInstead) {
  auto pool = OffloadPool::Create({.threads = 1, .queue_capacity = 8}).value();
  Latch release, busy;
  std::atomic<int> worked{0}, expired{0};
  Latch done;
  // The only worker is held until both deadlines below are behind us.
  ASSERT_TRUE(pool->Submit(nullptr, [&]() -> OffloadPool::Reply {
    busy.Open();
    release.WaitFor(10000);
    return nullptr;
  }));
  ASSERT_TRUE(busy.WaitFor(10000));
  const uint64_t now = MonotonicNowNs();
  ASSERT_TRUE(pool->Submit(nullptr, UnlessExpired(
                                        now + 1'000'000,  // 1 ms: passed while queued
                                        [&]() -> OffloadPool::Reply {
                                          ++worked;
                                          return nullptr;
                                        },
                                        [&]() -> OffloadPool::Reply {
                                          ++expired;
                                          return nullptr;
                                        })));
  ASSERT_TRUE(pool->Submit(nullptr, UnlessExpired(
                                        now + 3'600'000'000'000,  // an hour: still ahead
                                        [&]() -> OffloadPool::Reply {
                                          ++worked;
                                          done.Open();
                                          return nullptr;
                                        },
                                        [&]() -> OffloadPool::Reply {
                                          ++expired;
                                          done.Open();
                                          return nullptr;
                                        })));
  while (MonotonicNowNs() < now + 2'000'000) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  release.Open();
  ASSERT_TRUE(done.WaitFor(10000));
  EXPECT_EQ(expired.load(), 1);
  EXPECT_EQ(worked.load(), 1);
}
TEST(ReactorTest, ShardsStartPinnedOrNotAndReportTheirSetup) {
  auto reactor = Reactor::Create({.shards = 2}).value();
  std::atomic<int> started{0};
  ASSERT_TRUE(reactor
                  ->Start([&](Shard& s) {
                    EXPECT_FALSE(s.ring().setup_mode_name().empty());
                    started.fetch_add(1);
                  })
                  .ok());
  EXPECT_EQ(started.load(), 2);
  reactor->Stop();
  reactor->Wait();
  for (uint32_t i = 0; i < 2; ++i) {
    EXPECT_EQ(reactor->shard(i).setup_mode(), SetupMode::kDeferTaskrun);
    EXPECT_GT(reactor->shard(i).final_ring_stats().loop_iterations, 0u);
  }
}

TEST(ReactorTest, CrossShardPingPong) {
  auto reactor = Reactor::Create({.shards = 2}).value();
  constexpr int kRounds = 1000;
  std::atomic<int> pongs{0};
  std::atomic<bool> wrong_thread{false};
  std::thread::id thread_of[2];
  Latch done;
  ASSERT_TRUE(
      reactor->Start([&](Shard& s) { thread_of[s.index()] = std::this_thread::get_id(); }).ok());
  // Each ping runs on shard 1 and answers on shard 0, which sends the next one.
  std::function<void(int)> ping = [&](int round) {
    Shard& zero = reactor->shard(0);
    ASSERT_TRUE(zero.PostTo(1, [&, round] {
      if (std::this_thread::get_id() != thread_of[1]) wrong_thread = true;
      ASSERT_TRUE(reactor->shard(1).PostTo(0, [&, round] {
        if (std::this_thread::get_id() != thread_of[0]) wrong_thread = true;
        pongs.fetch_add(1);
        if (round + 1 < kRounds) {
          ping(round + 1);
        } else {
          done.Open();
        }
      }));
    }));
  };
  ASSERT_TRUE(reactor->shard(0).inbox().Post([&] { ping(0); }));
  ASSERT_TRUE(done.WaitFor(30000));
  reactor->Stop();
  reactor->Wait();
  EXPECT_EQ(pongs.load(), kRounds);
  EXPECT_FALSE(wrong_thread.load());
  // At most one wake-up per post (bursts coalesce), plus the stop notification.
  EXPECT_EQ(reactor->shard(1).inbox().stats().posted.load(), static_cast<uint64_t>(kRounds));
  EXPECT_LE(reactor->shard(1).inbox().stats().wakeups, kRounds + 1u);
}

TEST(ReactorTest, OffloadRoundTripComesBackToTheShard) {
  auto reactor = Reactor::Create({.shards = 1}).value();
  std::thread::id shard_thread, work_thread, reply_thread;
  Latch done;
  ASSERT_TRUE(reactor
                  ->Start([&](Shard& s) {
                    shard_thread = std::this_thread::get_id();
                    ASSERT_TRUE(s.Offload([&]() -> OffloadPool::Reply {
                      work_thread = std::this_thread::get_id();
                      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // "fsync"
                      return [&] {
                        reply_thread = std::this_thread::get_id();
                        done.Open();
                      };
                    }));
                  })
                  .ok());
  ASSERT_TRUE(done.WaitFor(30000));
  reactor->Stop();
  reactor->Wait();
  EXPECT_NE(work_thread, shard_thread);
  EXPECT_EQ(reply_thread, shard_thread);
  EXPECT_EQ(reactor->offload().stats().completed.load(), 1u);
}

// I/O jobs that block (a disk stuck in fdatasync) fill every thread of the I/O pool and as many
// as the CPU pool has; a password-hash-like CPU job must still run. Then stop must wait for the
// blocked jobs of both pools. With one shared pool the CPU job queues behind the I/O jobs.
TEST(ReactorTest, BlockedIoJobsDoNotDelayCpuJobsAndStopWaitsForBothPools) {
  constexpr int kThreads = 2;
  auto reactor =
      Reactor::Create(
          {.shards = 1, .offload = {.threads = kThreads}, .offload_io = {.threads = kThreads}})
          .value();
  Latch io_release, cpu_release, cpu_done;
  std::atomic<int> io_started{0}, io_replied{0};
  std::atomic<bool> held_cpu_started{false}, held_cpu_replied{false};
  ASSERT_TRUE(reactor
                  ->Start([&](Shard& s) {
                    for (int i = 0; i < kThreads; ++i) {
                      ASSERT_TRUE(s.OffloadIo([&]() -> OffloadPool::Reply {
                        ++io_started;
                        EXPECT_TRUE(io_release.WaitFor(60000));
                        return [&] { ++io_replied; };
                      }));
                    }
                  })
                  .ok());
  for (int i = 0; i < 10000 && io_started.load() < kThreads; ++i) usleep(1000);
  ASSERT_EQ(io_started.load(), kThreads);

  // A CPU job submitted while every I/O job is blocked comes back.
  ASSERT_TRUE(reactor->shard(0).inbox().Post([&] {
    Shard& s = reactor->shard(0);
    ASSERT_TRUE(s.Offload([&]() -> OffloadPool::Reply { return [&] { cpu_done.Open(); }; }));
    // A second CPU job that is still running when stop begins.
    ASSERT_TRUE(s.Offload([&]() -> OffloadPool::Reply {
      held_cpu_started = true;
      EXPECT_TRUE(cpu_release.WaitFor(60000));
      return [&] { held_cpu_replied = true; };
    }));
  }));
  EXPECT_TRUE(cpu_done.WaitFor(10000)) << "the CPU job waited behind blocked I/O jobs";
  for (int i = 0; i < 10000 && !held_cpu_started.load(); ++i) usleep(1000);

  // Stop drains both pools: Wait returns only after the blocked jobs of each came back.
  reactor->Stop();
  std::atomic<bool> stopped{false};
  std::thread waiter([&] {
    reactor->Wait();
    stopped = true;
  });
  usleep(100000);
  EXPECT_FALSE(stopped.load()) << "stop did not wait for the I/O pool";
  io_release.Open();
  for (int i = 0; i < 10000 && io_replied.load() < kThreads; ++i) usleep(1000);
  EXPECT_EQ(io_replied.load(), kThreads);
  usleep(100000);
  EXPECT_FALSE(stopped.load()) << "stop did not wait for the CPU pool";
  cpu_release.Open();
  waiter.join();
  EXPECT_TRUE(held_cpu_replied.load());
  EXPECT_EQ(reactor->offload_io().stats().completed.load(), static_cast<uint64_t>(kThreads));
  EXPECT_EQ(reactor->offload().stats().completed.load(), 2u);
}

// A shard full of in-flight work when Stop arrives: an armed multishot accept, a connection
// with a receive armed, a stream stalled on a reader that never reads, a pending timer and an
// offloaded job still running. Stop must wait for all of it, then free; ASan checks the rest.
struct BusyShard {
  Shard* shard = nullptr;
  int listen_fd = -1;
  std::unique_ptr<BufferRing> buffers;
  std::unique_ptr<Acceptor> acceptor;
  int conn_fd = -1;
  std::unique_ptr<Receiver> receiver;
  std::unique_ptr<FileStreamer> streamer;
  SendStats send_stats;
  Timer timer;
  int file_fd = -1;
  std::atomic<bool> receive_ended{false};
  absl::Status stream_status;
  std::atomic<bool> stream_ended{false};
  std::atomic<bool> offload_replied{false};
  std::atomic<bool> accepted{false};
  std::atomic<bool> stop_hook_ran{false};
  void Never() { ADD_FAILURE() << "timer fired after stop"; }
};

TEST(ReactorTest, StopWaitsForEveryOperationInFlight) {
  auto reactor = Reactor::Create({.shards = 1}).value();
  BusyShard busy;
  busy.timer.Bind<&BusyShard::Never>(&busy);
  const std::string path = testing::WriteTempFile("stop_body", testing::PatternBytes(8 << 20, 1));
  busy.file_fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(busy.file_fd, 0);
  busy.listen_fd = CreateListener({}).value();
  const uint16_t port = LocalPort(busy.listen_fd).value();

  ASSERT_TRUE(
      reactor
          ->Start([&](Shard& s) {
            busy.shard = &s;
            Ring& ring = s.ring();
            busy.buffers = BufferRing::Create(ring, {}).value();
            busy.acceptor = std::make_unique<Acceptor>(ring, busy.listen_fd, [&](int fd) {
              busy.conn_fd = fd;
              const int small = 64 * 1024;
              setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
              busy.receiver = std::make_unique<Receiver>(
                  ring, *busy.buffers, fd,
                  [&](uint16_t id, std::span<const char>) { busy.buffers->Release(id); },
                  [&](absl::Status) { busy.receive_ended = true; });
              busy.receiver->Start();
              busy.streamer = std::make_unique<FileStreamer>(
                  ring, busy.send_stats, FileStreamer::Options{}, [&](absl::Status st, uint64_t) {
                    busy.stream_status = st;
                    busy.stream_ended = true;
                  });
              ASSERT_TRUE(
                  busy.streamer->Start(fd, {busy.file_fd, 0, 8 << 20}, SendPath::kSplice).ok());
              busy.accepted = true;
            });
            busy.acceptor->Start();
            ring.timers().Start(&busy.timer, 3'600'000'000'000ull);  // an hour
            ASSERT_TRUE(s.Offload([&]() -> OffloadPool::Reply {
              std::this_thread::sleep_for(std::chrono::milliseconds(300));
              return [&] { busy.offload_replied = true; };
            }));
            s.OnStop([&] {
              busy.stop_hook_ran = true;
              busy.acceptor->Stop();
              busy.shard->ring().timers().Cancel(&busy.timer);
              if (busy.receiver) busy.receiver->Stop();
              if (busy.streamer) busy.streamer->Cancel();
            });
            s.OnDrained([&] {
              // Everything is idle: free it on the shard, before the ring goes.
              EXPECT_FALSE(busy.acceptor->active());
              EXPECT_EQ(s.ring().total_in_flight(), 0u);
              busy.streamer.reset();
              busy.receiver.reset();
              busy.acceptor.reset();
              busy.buffers.reset();
            });
          })
          .ok());
  const int client = testing::ConnectLoopback(port);
  ASSERT_GE(client, 0);
  for (int i = 0; i < 3000 && !busy.accepted; ++i) usleep(1000);
  ASSERT_TRUE(busy.accepted.load());
  usleep(20000);  // let the stream fill the socket and stall
  reactor->Stop();
  reactor->Wait();  // returns only after every operation above completed

  EXPECT_TRUE(busy.stop_hook_ran.load());
  EXPECT_TRUE(busy.offload_replied.load());  // the reply still ran on the shard
  EXPECT_TRUE(busy.receive_ended.load());
  EXPECT_TRUE(busy.stream_ended.load());
  EXPECT_EQ(busy.stream_status.code(), absl::StatusCode::kCancelled) << busy.stream_status;
  EXPECT_EQ(busy.acceptor, nullptr);  // freed on the shard once drained
  close(client);
  close(busy.conn_fd);
  close(busy.listen_fd);
  close(busy.file_fd);
}

}  // namespace
}  // namespace posthaste::reactor
