#include "server/reactor/timer.h"

#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "server/reactor/ring.h"
#include "server/reactor/testing/loopback.h"

namespace posthaste::reactor {
namespace {

constexpr uint64_t kMs = 1'000'000;

struct Recorder {
  Timer timer;
  std::vector<int>* log;
  int id;
  int fired = 0;
  Recorder(std::vector<int>* l, int i) : log(l), id(i) { timer.Bind<&Recorder::Fire>(this); }
  void Fire() {
    ++fired;
    log->push_back(id);
  }
};

TEST(TimerQueueTest, FiresInDeadlineOrderAndSkipsCancelled) {
  TimerQueue q;
  std::vector<int> log;
  std::vector<std::unique_ptr<Recorder>> r;
  for (int i = 0; i < 6; ++i) r.push_back(std::make_unique<Recorder>(&log, i));
  const uint64_t base = 1000;
  q.StartAt(&r[0]->timer, base + 50);
  q.StartAt(&r[1]->timer, base + 10);
  q.StartAt(&r[2]->timer, base + 30);
  q.StartAt(&r[3]->timer, base + 20);
  q.StartAt(&r[4]->timer, base + 40);
  q.StartAt(&r[5]->timer, base + 5);
  q.Cancel(&r[3]->timer);
  q.StartAt(&r[5]->timer, base + 45);  // re-arm moves it
  EXPECT_FALSE(r[3]->timer.armed());
  EXPECT_EQ(q.size(), 5u);
  EXPECT_EQ(q.RunExpired(base + 35), 2u);
  EXPECT_EQ(q.RunExpired(base + 100), 3u);
  EXPECT_EQ(log, (std::vector<int>{1, 2, 4, 5, 0}));
  EXPECT_TRUE(q.empty());
}

TEST(TimerQueueTest, DestroyingAnArmedTimerDisarmsIt) {
  TimerQueue q;
  std::vector<int> log;
  auto r = std::make_unique<Recorder>(&log, 1);
  q.StartAt(&r->timer, 10);
  r.reset();
  EXPECT_TRUE(q.empty());
}

struct Rearmer {
  Timer timer;
  TimerQueue* q;
  int fired = 0;
  Rearmer() { timer.Bind<&Rearmer::Fire>(this); }
  void Fire() {
    ++fired;
    q->StartAt(&timer, 0);  // due immediately again
  }
};

TEST(TimerQueueTest, ZeroDelayRearmWaitsForTheNextRound) {
  TimerQueue q;
  Rearmer r;
  r.q = &q;
  q.StartAt(&r.timer, 0);
  EXPECT_EQ(q.RunExpired(100), 1u);
  EXPECT_EQ(q.RunExpired(100), 1u);
  EXPECT_EQ(r.fired, 2);
  q.Cancel(&r.timer);
}

TEST(RingTimerTest, TimersFireCancelAndRunOnTheRing) {
  auto ring = Ring::Create({}).value();
  std::vector<int> log;
  Recorder a(&log, 1), b(&log, 2), c(&log, 3);
  ring->timers().Start(&a.timer, 5 * kMs);
  ring->timers().Start(&b.timer, 1 * kMs);
  ring->timers().Start(&c.timer, 3 * kMs);
  ring->timers().Cancel(&c.timer);
  // No ticker here: only the ring's own kernel timeout can wake the loop.
  const uint64_t guard = MonotonicNowNs() + 10'000 * kMs;
  while (a.fired == 0 && MonotonicNowNs() < guard) ring->RunOnce(true);
  EXPECT_EQ(log, (std::vector<int>{2, 1}));
  EXPECT_EQ(c.fired, 0);
  EXPECT_GE(ring->stats().timers_fired, 2u);
}

TEST(RingTimerTest, AnEarlierTimerMovesTheArmedKernelTimeout) {
  auto ring = Ring::Create({}).value();
  std::vector<int> log;
  Recorder late(&log, 1), early(&log, 2);
  ring->timers().Start(&late.timer, 60'000 * kMs);
  ring->RunOnce(false);  // arms the kernel timeout for the late timer
  ring->timers().Start(&early.timer, 2 * kMs);
  // Without the update the loop would sleep for a minute; the guard would then fail us.
  const uint64_t guard = MonotonicNowNs() + 10'000 * kMs;
  while (early.fired == 0 && MonotonicNowNs() < guard) ring->RunOnce(true);
  EXPECT_EQ(early.fired, 1);
  EXPECT_EQ(late.fired, 0);
  ring->timers().Cancel(&late.timer);
}

TEST(RingTimerTest, ManyTimersShareOneKernelTimeout) {
  auto ring = Ring::Create({}).value();
  std::vector<int> log;
  std::vector<std::unique_ptr<Recorder>> timers;
  std::mt19937 rng(7);
  constexpr int kCount = 20000;
  for (int i = 0; i < kCount; ++i) {
    timers.push_back(std::make_unique<Recorder>(&log, i));
    ring->timers().Start(&timers.back()->timer, (1 + rng() % 50) * kMs);
  }
  // Cancel every tenth.
  for (int i = 0; i < kCount; i += 10) ring->timers().Cancel(&timers[i]->timer);
  ring->RunOnce(false);
  EXPECT_LE(ring->total_in_flight(), 1u);  // one armed kernel timeout for 18000 timers
  const uint64_t guard = MonotonicNowNs() + 20'000 * kMs;
  while (!ring->timers().empty() && MonotonicNowNs() < guard) {
    ring->RunOnce(true);
    EXPECT_LE(ring->total_in_flight(), 2u);  // the timeout, plus at most one update
  }
  for (int i = 0; i < kCount; ++i) EXPECT_EQ(timers[i]->fired, i % 10 == 0 ? 0 : 1) << i;
  EXPECT_EQ(log.size(), static_cast<size_t>(kCount - kCount / 10));
}

}  // namespace
}  // namespace posthaste::reactor
