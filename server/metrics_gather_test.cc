// ShardMetricsGather on a real reactor: copies are taken on each shard's own thread, and a copy
// request that a stopping shard destroys unrun ends the scrape's wait at once.
#include "server/metrics_gather.h"

#include <chrono>
#include <future>
#include <thread>

#include "gtest/gtest.h"

namespace posthaste::server {
namespace {

using std::chrono::milliseconds;

// The copies carry a marker in one field of the shard's metric block.
uint64_t& Marker(metrics::ShardCopy& copy) {
  return copy.metrics.connections_refused[static_cast<size_t>(metrics::RefuseReason::kBusy)];
}

metrics::ShardCopy CopyMarked(uint64_t marker) {
  metrics::ShardCopy copy{.metrics = metrics::ShardMetrics(), .blocks = {}};
  Marker(copy) = marker;
  return copy;
}

TEST(ShardMetricsGatherTest, CopiesEachShardOnItsOwnThread) {
  auto reactor = reactor::Reactor::Create({.shards = 2}).value();
  std::thread::id thread_of[2];
  ASSERT_TRUE(
      reactor->Start([&](reactor::Shard& s) { thread_of[s.index()] = std::this_thread::get_id(); })
          .ok());
  ShardMetricsGather gather(reactor.get(), [&](uint32_t index) {
    return CopyMarked(std::this_thread::get_id() == thread_of[index] ? 100 + index : 0);
  });
  std::vector<metrics::ShardCopy> copies;
  EXPECT_EQ(gather.Copy(&copies), 2u);
  ASSERT_EQ(copies.size(), 2u);
  EXPECT_EQ(Marker(copies[0]), 100u);
  EXPECT_EQ(Marker(copies[1]), 101u);
  reactor->Stop();
  reactor->Wait();
}

// The shard is held inside a closure while stop is requested and a scrape posts its request
// behind it; when the shard goes on, it stops and its closing inbox destroys the request unrun.
// The scrape must return then, not after its (here 30 s) wait, and show the previous copy.
TEST(ShardMetricsGatherTest, ARequestDroppedByAStoppingShardEndsTheWait) {
  auto reactor = reactor::Reactor::Create({.shards = 1}).value();
  ASSERT_TRUE(reactor->Start([](reactor::Shard&) {}).ok());
  constexpr milliseconds kWait(30'000);
  uint64_t copies_taken = 0;
  ShardMetricsGather gather(
      reactor.get(), [&](uint32_t) { return CopyMarked(++copies_taken); }, kWait);
  std::vector<metrics::ShardCopy> copies;
  ASSERT_EQ(gather.Copy(&copies), 1u);
  ASSERT_EQ(Marker(copies[0]), 1u);

  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  reactor::Inbox& inbox = reactor->shard(0).inbox();
  const uint64_t posted_before = inbox.stats().posted.load();
  ASSERT_TRUE(inbox.Post([&entered, released] {
    entered.set_value();
    released.wait();
  }));
  // The shard is inside the closure: what is posted from now on waits in the queue.
  ASSERT_EQ(entered.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  reactor->Stop();
  // Lets the shard go on once the scrape's request is queued behind the blocking closure
  // (bounded: after 10 s it lets go anyway, and the test then fails on the count below).
  std::thread releaser([&] {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (inbox.stats().posted.load() < posted_before + 2 &&
           std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(milliseconds(1));
    }
    release.set_value();
  });
  const auto start = std::chrono::steady_clock::now();
  const uint32_t answered = gather.Copy(&copies);
  const auto took = std::chrono::steady_clock::now() - start;
  releaser.join();
  reactor->Wait();
  EXPECT_EQ(inbox.stats().posted.load(), posted_before + 2);
  EXPECT_EQ(inbox.stats().dropped_at_close, 1u);
  EXPECT_EQ(answered, 0u);
  EXPECT_EQ(Marker(copies[0]), 1u);  // the previous copy
  // A correctness bound, not a speed one: without the wake-up the scrape sleeps all of kWait.
  EXPECT_LT(took, kWait / 3);
}

}  // namespace
}  // namespace posthaste::server
