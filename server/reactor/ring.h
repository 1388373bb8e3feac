// Ring: one io_uring per shard, its run loop, its timers and its counters.
//
// Setup tries IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, then
// IORING_SETUP_COOP_TASKRUN, then no task-run flags, and reports which it got (setup_mode()).
// Operations are prepared with Prep*() methods that take a Completion embedded in the caller;
// user_data is the Completion's address, so an operation allocates nothing. Operations whose
// result nobody needs (cancel requests, timeout updates, wake-up writes) carry user_data 0 and
// are counted but not dispatched.
//
// RunOnce(): submit, wait (unless work is already pending), copy out a bounded batch of CQEs,
// advance the CQ, and only then run their callbacks; then run due timers and deferred
// closures. A full SQ is handled by submitting and retrying. Callbacks may start new
// operations, arm timers and Defer() closures; they must not call RunOnce().
//
// Threading: everything except Current() runs on the thread that created the Ring
// (SINGLE_ISSUER holds us to that). Ownership: the Ring owns the io_uring and the timer queue;
// Completions and Timers are owned by their callers and must outlive their operations.
#ifndef POSTHASTE_SERVER_REACTOR_RING_H_
#define POSTHASTE_SERVER_REACTOR_RING_H_

#include <liburing.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "base/counter_fields.h"
#include "server/reactor/completion.h"
#include "server/reactor/timer.h"
#include "server/reactor/uring_compat.h"

namespace posthaste::reactor {

// Per-shard loop counters; plain integers, written only by the ring's thread.
// X(member, what it counts); the server exports them per shard (server/counters.h).
#define PH_RING_STATS(X)                                                    \
  X(loop_iterations, "loop iterations")                                     \
  X(sqes_prepared, "SQEs prepared")                                         \
  X(submissions, "SQEs the kernel accepted")                                \
  X(completions, "CQEs reaped")                                             \
  X(cq_overflows, "kernel's overflow count (CQEs that did not fit the CQ)") \
  X(sq_full_retries, "times the SQ was full and we submitted to make room") \
  X(busy_ns, "time outside the blocking wait")                              \
  X(timers_fired, "timers run")                                             \
  X(deferred_run, "deferred closures run")
struct RingStats {
  PH_RING_STATS(PH_COUNTER_MEMBER)
};

enum class SetupMode { kDeferTaskrun, kCoopTaskrun, kPlain };
std::string_view SetupModeName(SetupMode mode);

// The message Ring::Create returns when io_uring_setup fails with `setup_errno` (positive).
// ENOSYS and EPERM get the likely cause and the remedy: a seccomp profile that denies io_uring
// (the default of podman, Docker 25+ and containerd 2.0+; posthaste ships
// deploy/image/seccomp.json), or the host's sysctl kernel.io_uring_disabled, whose value is
// `io_uring_disabled` (-1: unknown, e.g. no such file on kernels before 6.6). Pure; for tests.
std::string IoUringSetupErrorMessage(int setup_errno, int io_uring_disabled);

class Ring {
 public:
  // Named limits of the ring's options.
  static constexpr uint32_t kSqEntriesMax = 32768;
  static constexpr uint32_t kCqEntriesMax = 65536;
  static constexpr uint32_t kCqeBatchMax = 4096;

  struct Options {
    uint32_t sq_entries = 256;   // power of two, 1..kSqEntriesMax
    uint32_t cq_entries = 4096;  // >= sq_entries, power of two, <= kCqEntriesMax
    uint32_t cqe_batch = 256;    // CQEs reaped per loop iteration, 1..kCqeBatchMax
    // The best setup mode to try (tests use this to exercise the fallbacks).
    SetupMode best_mode = SetupMode::kDeferTaskrun;
    // Direct-descriptor slots registered (sparse) at setup; 0 registers none. See
    // ClaimFileSlots().
    uint32_t file_slots = 64;
  };

  // Creates a ring on the calling thread. InvalidArgument for bad options; Unavailable when
  // io_uring cannot be set up at all, with IoUringSetupErrorMessage's text.
  static absl::StatusOr<std::unique_ptr<Ring>> Create(const Options& options);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // The ring whose RunOnce is executing on this thread, or null (wake-ups posted from inside
  // a loop iteration go through that ring instead of a write(2)).
  static Ring* Current();

  SetupMode setup_mode() const { return mode_; }
  std::string_view setup_mode_name() const { return SetupModeName(mode_); }
  int fd() const { return ring_.ring_fd; }
  io_uring* raw() { return &ring_; }

  // One loop iteration. When `may_block`, waits for at least one CQE unless deferred work or
  // due timers are pending. Returns the number of CQEs dispatched.
  int RunOnce(bool may_block);

  // Runs `fn` at the end of this (or the next) iteration on this thread; no locks.
  void Defer(absl::AnyInvocable<void()> fn);

  TimerQueue& timers() { return timers_; }
  RingStats& stats() { return stats_; }
  const RingStats& stats() const { return stats_; }

  // Operations with a caller's Completion still waiting for their final CQE.
  uint64_t user_in_flight() const { return user_in_flight_; }
  // All operations the kernel still owes a CQE for (including internal and untracked ones).
  uint64_t total_in_flight() const { return in_flight_ + untracked_in_flight_; }

  // --- Operation preparation. Each marks `c` in flight; the CQE runs c's handler. ---
  // A fresh SQE with user_data = c (or 0 when c is null, an untracked operation). The caller
  // fills in the opcode-specific fields (io_uring_prep_* must run before Arm).
  io_uring_sqe* GetSqe();
  void Arm(io_uring_sqe* sqe, Completion* c);

  void PrepMultishotAccept(Completion* c, int listen_fd, int accept_flags);
  void PrepRecvMultishot(Completion* c, int fd, uint16_t buffer_group);
  // more: MSG_MORE, the caller sends more right after (TCP holds a partial segment for it).
  void PrepSend(Completion* c, int fd, const void* data, size_t len, bool poll_first,
                bool more = false);
  void PrepSendZc(Completion* c, int fd, const void* data, size_t len);
  void PrepRead(Completion* c, int fd, void* data, size_t len, uint64_t offset);
  void PrepSplice(Completion* c, int fd_in, int64_t off_in, int fd_out, int64_t off_out,
                  uint32_t len, uint32_t splice_flags);
  void PrepPollAdd(Completion* c, int fd, uint32_t poll_mask);
  // Requests cancellation of c's operation (untracked request; c still gets its final CQE,
  // usually -ECANCELED). No-op when c is not in flight.
  void Cancel(Completion* c);
  // Untracked eventfd write of 1 (cross-shard wake-up without a syscall on this thread).
  void PrepWakeEventfd(int eventfd);

  // Direct descriptors: slots of the ring's registered file table. A socket there takes no
  // descriptor from the process's table, so these work at RLIMIT_NOFILE. The table is
  // registered at Create (Options::file_slots); file_slots() is 0 where the kernel refused it
  // (before 5.19 for the accept below). ClaimFileSlots hands `count` slots to one owner for the
  // ring's lifetime and returns the first, or nullopt when fewer are left.
  uint32_t file_slots() const { return file_slots_; }
  std::optional<uint32_t> ClaimFileSlots(uint32_t count);
  // Accepts one queued connection of `listen_fd` into direct-descriptor `slot`, sends it `line`
  // (skipped when empty; one non-blocking send, no retry) and closes it: linked operations.
  // `accepted` gets the accept's result (0 when a connection is in the slot); `closed` the
  // close's (-ECANCELED when nothing was accepted). An accept on an empty queue waits for a
  // connection; Cancel(accepted) ends it. `line` must outlive the operations.
  void PrepAcceptDirectAndRefuse(Completion* accepted, Completion* closed, int listen_fd,
                                 uint32_t slot, std::string_view line);

  // Marks a Completion as ring-internal: it does not count in user_in_flight().
  static void MarkInternal(Completion* c) { c->internal_ = true; }

  // Stops re-arming the kernel timeout and cancels the armed one (shutdown).
  void QuiesceTimers();

 private:
  Ring() = default;
  // Submits until the SQ has room for `entries` SQEs.
  void EnsureSqSpace(unsigned entries);
  void ArmTimerWakeup();
  void OnTimerWakeup(int32_t res, uint32_t flags);
  void Dispatch(uint64_t user_data, int32_t res, uint32_t flags);

  struct ReapedCqe {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
  };

  io_uring ring_{};
  bool initialised_ = false;
  SetupMode mode_ = SetupMode::kPlain;
  Options options_;
  RingStats stats_;
  std::vector<io_uring_cqe*> cqe_ptrs_;
  std::vector<ReapedCqe> batch_;
  uint64_t in_flight_ = 0;
  uint64_t user_in_flight_ = 0;
  uint64_t untracked_in_flight_ = 0;
  uint64_t busy_since_ns_ = 0;

  TimerQueue timers_;
  Completion timer_wakeup_;
  __kernel_timespec timer_ts_{};
  __kernel_timespec timer_update_ts_{};
  uint64_t armed_deadline_ns_ = 0;
  bool timers_quiesced_ = false;
  uint32_t file_slots_ = 0;
  uint32_t file_slots_claimed_ = 0;

  std::vector<absl::AnyInvocable<void()>> deferred_;
  std::vector<absl::AnyInvocable<void()>> deferred_running_;
};

}  // namespace posthaste::reactor

#endif  // POSTHASTE_SERVER_REACTOR_RING_H_
