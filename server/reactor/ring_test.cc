#include "server/reactor/ring.h"

#include <liburing.h>

#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "server/reactor/testing/loopback.h"

namespace posthaste::reactor {
namespace {

// An owner with an embedded Completion that records what it saw.
struct NopOwner {
  Completion c;
  int calls = 0;
  int32_t last_res = -1;
  bool in_flight_during_callback = true;
  NopOwner() { c.Bind<&NopOwner::OnDone>(this); }
  void OnDone(int32_t res, uint32_t flags) {
    ++calls;
    last_res = res;
    in_flight_during_callback = c.in_flight();
  }
};

void SubmitNop(Ring& ring, Completion* c) {
  io_uring_sqe* sqe = ring.GetSqe();
  io_uring_prep_nop(sqe);
  ring.Arm(sqe, c);
}

std::unique_ptr<Ring> MakeRing(Ring::Options options = {}) {
  auto ring = Ring::Create(options);
  EXPECT_TRUE(ring.ok()) << ring.status();
  return ring.ok() ? std::move(ring).value() : nullptr;
}

TEST(RingTest, EverySetupModeWorksAndIsReported) {
  for (SetupMode mode : {SetupMode::kDeferTaskrun, SetupMode::kCoopTaskrun, SetupMode::kPlain}) {
    Ring::Options options;
    options.best_mode = mode;
    auto ring = MakeRing(options);
    ASSERT_NE(ring, nullptr);
    // This kernel has every flag, so the best requested mode is the one we get.
    EXPECT_EQ(ring->setup_mode(), mode);
    EXPECT_FALSE(ring->setup_mode_name().empty());
    NopOwner owner;
    SubmitNop(*ring, &owner.c);
    EXPECT_TRUE(owner.c.in_flight());
    EXPECT_EQ(ring->user_in_flight(), 1u);
    ASSERT_TRUE(testing::RunUntil(*ring, [&] { return owner.calls == 1; }));
    EXPECT_EQ(owner.last_res, 0);
    EXPECT_FALSE(owner.in_flight_during_callback);
    EXPECT_EQ(ring->user_in_flight(), 0u);
    EXPECT_GE(ring->stats().completions, 1u);
    EXPECT_GE(ring->stats().submissions, 1u);
    EXPECT_GE(ring->stats().loop_iterations, 1u);
  }
}

TEST(RingTest, RejectsBadOptions) {
  Ring::Options options;
  options.sq_entries = 100;
  EXPECT_EQ(Ring::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = {};
  options.cq_entries = 16;
  options.sq_entries = 64;
  EXPECT_EQ(Ring::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = {};
  options.cqe_batch = 0;
  EXPECT_EQ(Ring::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RingTest, ReapsABoundedBatchPerIteration) {
  Ring::Options options;
  options.cqe_batch = 4;
  auto ring = MakeRing(options);
  ASSERT_NE(ring, nullptr);
  std::vector<NopOwner> owners(10);
  for (auto& o : owners) SubmitNop(*ring, &o.c);
  int dispatched = ring->RunOnce(true);
  EXPECT_GE(dispatched, 1);
  EXPECT_LE(dispatched, 4);
  ASSERT_TRUE(testing::RunUntil(*ring, [&] { return ring->user_in_flight() == 0; }));
  for (auto& o : owners) EXPECT_EQ(o.calls, 1);
}

TEST(RingTest, FullSubmissionQueueIsSubmittedAndRetried) {
  Ring::Options options;
  options.sq_entries = 4;
  options.cq_entries = 64;
  auto ring = MakeRing(options);
  ASSERT_NE(ring, nullptr);
  std::vector<NopOwner> owners(20);
  for (auto& o : owners) SubmitNop(*ring, &o.c);  // more than the SQ holds, no loop between
  EXPECT_GT(ring->stats().sq_full_retries, 0u);
  ASSERT_TRUE(testing::RunUntil(*ring, [&] { return ring->user_in_flight() == 0; }));
  for (auto& o : owners) EXPECT_EQ(o.calls, 1);
}

// A callback that starts the next operation on its own Completion (the connection pattern).
struct Chain {
  Ring* ring;
  Completion c;
  int remaining;
  Chain(Ring* r, int n) : ring(r), remaining(n) { c.Bind<&Chain::OnDone>(this); }
  void OnDone(int32_t, uint32_t) {
    if (--remaining > 0) SubmitNop(*ring, &c);
  }
};

TEST(RingTest, CallbacksMayResubmitTheirOwnCompletion) {
  auto ring = MakeRing();
  ASSERT_NE(ring, nullptr);
  Chain chain(ring.get(), 100);
  SubmitNop(*ring, &chain.c);
  ASSERT_TRUE(testing::RunUntil(*ring, [&] { return chain.remaining == 0; }));
  EXPECT_FALSE(chain.c.in_flight());
}

TEST(RingTest, DeferredClosuresRunOnTheLoopWithoutBlocking) {
  auto ring = MakeRing();
  ASSERT_NE(ring, nullptr);
  int runs = 0;
  ring->Defer([&] {
    ++runs;
    ring->Defer([&] { ++runs; });  // queued for the next iteration, not run in this one
  });
  ring->RunOnce(true);  // must not block: work is pending
  EXPECT_EQ(runs, 1);
  ring->RunOnce(true);
  EXPECT_EQ(runs, 2);
}

TEST(RingDeathTest, DestroyingAnInFlightCompletionAborts) {
  EXPECT_DEATH(
      {
        auto ring = Ring::Create({}).value();
        auto owner = std::make_unique<NopOwner>();
        SubmitNop(*ring, &owner->c);
        owner.reset();
      },
      "in_flight");
}

}  // namespace
}  // namespace posthaste::reactor
