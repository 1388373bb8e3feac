// AskShards on a real reactor: each question runs on its shard's own thread, a shard that is
// busy past the deadline gives no answer (and the call returns at the deadline), and a question
// a stopping shard drops unrun ends the wait at once.
#include "server/shard_query.h"

#include <chrono>
#include <future>
#include <thread>

#include "gtest/gtest.h"

namespace posthaste::server {
namespace {

using std::chrono::milliseconds;

TEST(AskShardsTest, EachShardAnswersOnItsOwnThread) {
  auto reactor = reactor::Reactor::Create({.shards = 2}).value();
  std::thread::id thread_of[2];
  ASSERT_TRUE(
      reactor->Start([&](reactor::Shard& s) { thread_of[s.index()] = std::this_thread::get_id(); })
          .ok());
  ShardAnswers<int> answers = AskShards<int>(
      *reactor, {1, 0},
      [&](uint32_t shard) {
        return std::this_thread::get_id() == thread_of[shard] ? 100 + static_cast<int>(shard) : 0;
      },
      milliseconds(10'000));
  EXPECT_TRUE(answers.all_settled);
  ASSERT_EQ(answers.answers.size(), 2u);
  EXPECT_EQ(answers.answers[0], 101);  // in the order asked
  EXPECT_EQ(answers.answers[1], 100);
  reactor->Stop();
  reactor->Wait();
}

// One shard is held inside a closure: its answer is missing at the deadline, the other's is
// there, and the late answer, when it comes, lands nowhere harmful.
TEST(AskShardsTest, ABusyShardIsLeftOutAtTheDeadline) {
  auto reactor = reactor::Reactor::Create({.shards = 2}).value();
  ASSERT_TRUE(reactor->Start([](reactor::Shard&) {}).ok());
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  ASSERT_TRUE(reactor->shard(1).inbox().Post([&entered, released] {
    entered.set_value();
    released.wait();
  }));
  ASSERT_EQ(entered.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  ShardAnswers<int> answers = AskShards<int>(
      *reactor, {0, 1}, [](uint32_t shard) { return static_cast<int>(shard) + 1; },
      milliseconds(100));
  EXPECT_FALSE(answers.all_settled);
  EXPECT_EQ(answers.answers[0], 1);
  EXPECT_EQ(answers.answers[1], std::nullopt);
  release.set_value();
  reactor->Stop();
  reactor->Wait();
}

// As in metrics_gather_test: a question queued behind a blocking closure on a stopping shard is
// destroyed unrun; the call must return then, not after its (30 s) wait.
TEST(AskShardsTest, AQuestionDroppedByAStoppingShardEndsTheWait) {
  auto reactor = reactor::Reactor::Create({.shards = 1}).value();
  ASSERT_TRUE(reactor->Start([](reactor::Shard&) {}).ok());
  std::promise<void> entered;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  reactor::Inbox& inbox = reactor->shard(0).inbox();
  const uint64_t posted_before = inbox.stats().posted.load();
  ASSERT_TRUE(inbox.Post([&entered, released] {
    entered.set_value();
    released.wait();
  }));
  ASSERT_EQ(entered.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  reactor->Stop();
  std::thread releaser([&] {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (inbox.stats().posted.load() < posted_before + 2 &&
           std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(milliseconds(1));
    }
    release.set_value();
  });
  const auto started = std::chrono::steady_clock::now();
  ShardAnswers<int> answers = AskShards<int>(
      *reactor, {0}, [](uint32_t) { return 1; }, milliseconds(30'000));
  const auto waited = std::chrono::steady_clock::now() - started;
  releaser.join();
  reactor->Wait();
  EXPECT_TRUE(answers.all_settled);
  EXPECT_EQ(answers.answers[0], std::nullopt);
  EXPECT_LT(waited, std::chrono::seconds(20));  // far below the 30 s wait
}

}  // namespace
}  // namespace posthaste::server
