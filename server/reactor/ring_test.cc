#include "server/reactor/ring.h"

#include <liburing.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
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

TEST(RingTest, FileSlotsAreClaimedOnceEachAndNoneWhenNotRegistered) {
  auto ring = Ring::Create({.file_slots = 3}).value();
  if (ring->file_slots() == 0) GTEST_SKIP() << "the kernel has no sparse file tables";
  EXPECT_EQ(ring->file_slots(), 3u);
  EXPECT_EQ(ring->ClaimFileSlots(2), std::optional<uint32_t>(0));
  EXPECT_EQ(ring->ClaimFileSlots(2), std::nullopt);  // one left
  EXPECT_EQ(ring->ClaimFileSlots(1), std::optional<uint32_t>(2));
  EXPECT_EQ(ring->ClaimFileSlots(1), std::nullopt);

  auto without = Ring::Create({.file_slots = 0}).value();
  EXPECT_EQ(without->file_slots(), 0u);
  EXPECT_EQ(without->ClaimFileSlots(1), std::nullopt);
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

TEST(IoUringSetupErrorMessageTest, DeniedSetupNamesSeccompAndTheShippedProfile) {
  for (int setup_errno : {ENOSYS, EPERM}) {
    for (int sysctl : {-1, 0}) {
      const std::string message = IoUringSetupErrorMessage(setup_errno, sysctl);
      EXPECT_NE(message.find(strerror(setup_errno)), std::string::npos) << message;
      EXPECT_NE(message.find("seccomp profile"), std::string::npos) << message;
      EXPECT_NE(message.find("deploy/image/seccomp.json"), std::string::npos) << message;
      EXPECT_NE(message.find("Localhost"), std::string::npos) << message;
    }
  }
}

TEST(IoUringSetupErrorMessageTest, EpermWithTheSysctlSetNamesTheSysctl) {
  const std::string message = IoUringSetupErrorMessage(EPERM, 2);
  EXPECT_NE(message.find("kernel.io_uring_disabled is 2"), std::string::npos) << message;
  EXPECT_EQ(message.find("seccomp"), std::string::npos) << message;
  // ENOSYS is seccomp's answer (podman), never the sysctl's: the seccomp advice stays.
  EXPECT_NE(IoUringSetupErrorMessage(ENOSYS, 2).find("seccomp profile"), std::string::npos);
}

TEST(IoUringSetupErrorMessageTest, OtherErrorsAreReportedPlainly) {
  const std::string message = IoUringSetupErrorMessage(ENOMEM, 0);
  EXPECT_NE(message.find(strerror(ENOMEM)), std::string::npos) << message;
  EXPECT_EQ(message.find("seccomp"), std::string::npos) << message;
}

// Makes io_uring_setup fail with ENOSYS for this process, as podman's default profile does.
void DenyIoUringSetupWithSeccomp() {
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
      prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
    std::cerr << "cannot install the seccomp filter: " << strerror(errno) << "\n";
    _exit(2);
  }
}

// The real path: a seccomp filter in a child process, then Ring::Create.
TEST(RingDeathTest, SetupDeniedBySeccompSaysSoAndNamesTheProfile) {
  EXPECT_EXIT(
      {
        DenyIoUringSetupWithSeccomp();
        auto ring = Ring::Create({});
        std::cerr << ring.status().message() << "\n";
        _exit(ring.status().code() == absl::StatusCode::kUnavailable ? 0 : 1);
      },
      ::testing::ExitedWithCode(0),
      "io_uring is unavailable \\(io_uring_setup: .*\\): .*seccomp profile.*"
      "deploy/image/seccomp.json");
}

}  // namespace
}  // namespace posthaste::reactor
