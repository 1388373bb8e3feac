#include "server/reactor/ring.h"

#include <poll.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/log.h"

namespace posthaste::reactor {
namespace {

thread_local Ring* tls_current_ring = nullptr;

// The value every wake-up write adds to an eventfd; static so it outlives any SQE.
const uint64_t kEventfdOne = 1;

bool IsPowerOfTwo(uint32_t v) { return v != 0 && (v & (v - 1)) == 0; }

__kernel_timespec ToKernelTimespec(uint64_t ns) {
  __kernel_timespec ts;
  ts.tv_sec = static_cast<int64_t>(ns / 1'000'000'000u);
  ts.tv_nsec = static_cast<long long>(ns % 1'000'000'000u);
  return ts;
}

uint32_t SetupFlags(SetupMode mode) {
  switch (mode) {
    case SetupMode::kDeferTaskrun:
      return IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    case SetupMode::kCoopTaskrun:
      return IORING_SETUP_COOP_TASKRUN;
    case SetupMode::kPlain:
      return 0;
  }
  return 0;
}

// The host's kernel.io_uring_disabled (0 allowed, 1 only for its group, 2 nobody), or -1.
int ReadIoUringDisabledSysctl() {
  std::ifstream in("/proc/sys/kernel/io_uring_disabled");
  int value = -1;
  if (!(in >> value)) return -1;
  return value;
}

}  // namespace

std::string IoUringSetupErrorMessage(int setup_errno, int io_uring_disabled) {
  const std::string failed =
      absl::StrCat("io_uring is unavailable (io_uring_setup: ", strerror(setup_errno), ")");
  if (setup_errno != ENOSYS && setup_errno != EPERM) return failed;
  // The sysctl makes io_uring_setup fail with EPERM; a seccomp profile with ENOSYS (podman)
  // or EPERM (Docker), so EPERM with the sysctl set points at the sysctl.
  if (setup_errno == EPERM && io_uring_disabled > 0) {
    return absl::StrCat(failed, ": the host's sysctl kernel.io_uring_disabled is ",
                        io_uring_disabled,
                        "; posthaste needs io_uring: set it to 0 on the host (or, when it is 1, "
                        "run posthaste in the group kernel.io_uring_group); see docs/DEPLOY.md");
  }
  return absl::StrCat(
      failed,
      ": posthaste needs io_uring, and the likely cause is a seccomp profile that blocks it, as "
      "the default profiles of podman, Docker 25+ and containerd 2.0+ do. Run posthaste with "
      "its own profile, deploy/image/seccomp.json in the source tree (podman or docker: "
      "--security-opt seccomp=seccomp.json; Kubernetes: securityContext.seccompProfile of type "
      "Localhost, the file installed on every node); see docs/DEPLOY.md. A kernel without "
      "io_uring, or the host's sysctl kernel.io_uring_disabled, fails the same way.");
}

std::string_view SetupModeName(SetupMode mode) {
  switch (mode) {
    case SetupMode::kDeferTaskrun:
      return "single_issuer+defer_taskrun";
    case SetupMode::kCoopTaskrun:
      return "coop_taskrun";
    case SetupMode::kPlain:
      return "none";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<Ring>> Ring::Create(const Options& options) {
  if (!IsPowerOfTwo(options.sq_entries) || options.sq_entries > kSqEntriesMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("sq_entries must be a power of two <= ", kSqEntriesMax));
  }
  if (!IsPowerOfTwo(options.cq_entries) || options.cq_entries < options.sq_entries ||
      options.cq_entries > kCqEntriesMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("cq_entries must be a power of two in [sq_entries, ", kCqEntriesMax, "]"));
  }
  if (options.cqe_batch == 0 || options.cqe_batch > kCqeBatchMax) {
    return absl::InvalidArgumentError(absl::StrCat("cqe_batch must be in [1, ", kCqeBatchMax, "]"));
  }
  std::unique_ptr<Ring> ring(new Ring());
  ring->options_ = options;
  int rc = -EINVAL;
  for (int m = static_cast<int>(options.best_mode); m <= static_cast<int>(SetupMode::kPlain); ++m) {
    const auto mode = static_cast<SetupMode>(m);
    io_uring_params params{};
    params.flags = SetupFlags(mode) | IORING_SETUP_CQSIZE;
    params.cq_entries = options.cq_entries;
    rc = io_uring_queue_init_params(options.sq_entries, &ring->ring_, &params);
    if (rc == 0) {
      ring->mode_ = mode;
      break;
    }
    if (rc != -EINVAL) break;  // only "flag unknown" is worth a weaker retry
  }
  if (rc != 0) {
    return absl::UnavailableError(IoUringSetupErrorMessage(-rc, ReadIoUringDisabledSysctl()));
  }
  ring->initialised_ = true;
  if (options.file_slots > 0 &&
      io_uring_register_files_sparse(&ring->ring_, options.file_slots) == 0) {
    ring->file_slots_ = options.file_slots;
  }
  ring->cqe_ptrs_.resize(options.cqe_batch);
  ring->batch_.resize(options.cqe_batch);
  ring->timer_wakeup_.Bind<&Ring::OnTimerWakeup>(ring.get());
  MarkInternal(&ring->timer_wakeup_);
  ring->busy_since_ns_ = MonotonicNowNs();
  return ring;
}

Ring::~Ring() {
  // Freeing with operations in flight would leave the kernel pointing at freed Completions.
  // The shard runner drains first; a timer wakeup is the only thing we may still cancel.
  if (timer_wakeup_.in_flight()) {
    QuiesceTimers();
    for (int i = 0; i < 1000 && timer_wakeup_.in_flight(); ++i) RunOnce(true);
  }
  PH_CHECK(in_flight_ == 0);
  if (initialised_) io_uring_queue_exit(&ring_);
}

Ring* Ring::Current() { return tls_current_ring; }

io_uring_sqe* Ring::GetSqe() {
  EnsureSqSpace(1);
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  PH_CHECK(sqe != nullptr);
  return sqe;
}

void Ring::EnsureSqSpace(unsigned entries) {
  // The SQ is full: hand what is queued to the kernel and retry. -EBUSY (CQ backlog) clears
  // as the kernel flushes overflowed CQEs, so a bounded number of attempts suffices.
  for (int attempt = 0; io_uring_sq_space_left(&ring_) < entries; ++attempt) {
    PH_CHECK(attempt < 10000);
    ++stats_.sq_full_retries;
    const int rc = io_uring_submit(&ring_);
    if (rc > 0) stats_.submissions += static_cast<uint64_t>(rc);
  }
}

void Ring::Arm(io_uring_sqe* sqe, Completion* c) {
  ++stats_.sqes_prepared;
  if (c == nullptr) {
    io_uring_sqe_set_data64(sqe, 0);
    ++untracked_in_flight_;
    return;
  }
  PH_DCHECK(!c->in_flight_);
  PH_DCHECK(c->fn_ != nullptr);
  c->in_flight_ = true;
  ++in_flight_;
  if (!c->internal_) ++user_in_flight_;
  io_uring_sqe_set_data(sqe, c);
}

void Ring::PrepMultishotAccept(Completion* c, int listen_fd, int accept_flags) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_multishot_accept(sqe, listen_fd, nullptr, nullptr, accept_flags);
  Arm(sqe, c);
}

void Ring::PrepRecvMultishot(Completion* c, int fd, uint16_t buffer_group) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = buffer_group;
  Arm(sqe, c);
}

void Ring::PrepSend(Completion* c, int fd, const void* data, size_t len, bool poll_first,
                    bool more) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_send(sqe, fd, data, len, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
  if (poll_first) sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
  Arm(sqe, c);
}

void Ring::PrepSendZc(Completion* c, int fd, const void* data, size_t len) {
  io_uring_sqe* sqe = GetSqe();
  compat::PrepSendZcReportUsage(sqe, fd, data, len, MSG_NOSIGNAL);
  Arm(sqe, c);
}

void Ring::PrepRead(Completion* c, int fd, void* data, size_t len, uint64_t offset) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_read(sqe, fd, data, static_cast<unsigned>(len), offset);
  Arm(sqe, c);
}

void Ring::PrepSplice(Completion* c, int fd_in, int64_t off_in, int fd_out, int64_t off_out,
                      uint32_t len, uint32_t splice_flags) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_splice(sqe, fd_in, off_in, fd_out, off_out, len, splice_flags);
  Arm(sqe, c);
}

void Ring::PrepPollAdd(Completion* c, int fd, uint32_t poll_mask) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_poll_add(sqe, fd, poll_mask);
  Arm(sqe, c);
}

std::optional<uint32_t> Ring::ClaimFileSlots(uint32_t count) {
  if (count == 0 || file_slots_ - file_slots_claimed_ < count) return std::nullopt;
  const uint32_t first = file_slots_claimed_;
  file_slots_claimed_ += count;
  return first;
}

void Ring::PrepAcceptDirectAndRefuse(Completion* accepted, Completion* closed, int listen_fd,
                                     uint32_t slot, std::string_view line) {
  PH_DCHECK(slot < file_slots_claimed_);
  // A failed accept cancels the rest of the chain (nothing to close). The close is hard-linked
  // after the send, so a send the peer refused still frees the slot. A chain does not span
  // submissions: room for all of it first.
  EnsureSqSpace(3);
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_accept_direct(sqe, listen_fd, nullptr, nullptr, SOCK_NONBLOCK, slot);
  sqe->flags |= IOSQE_IO_LINK;
  Arm(sqe, accepted);
  if (!line.empty()) {
    sqe = GetSqe();
    io_uring_prep_send(sqe, static_cast<int>(slot), line.data(), line.size(),
                       MSG_DONTWAIT | MSG_NOSIGNAL);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_HARDLINK;
    Arm(sqe, nullptr);
  }
  sqe = GetSqe();
  io_uring_prep_close_direct(sqe, slot);
  Arm(sqe, closed);
}

void Ring::Cancel(Completion* c) {
  if (!c->in_flight_) return;
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_cancel64(sqe, reinterpret_cast<uint64_t>(c), 0);
  Arm(sqe, nullptr);
}

void Ring::PrepWakeEventfd(int eventfd) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_write(sqe, eventfd, &kEventfdOne, sizeof(kEventfdOne), 0);
  Arm(sqe, nullptr);
}

void Ring::Defer(absl::AnyInvocable<void()> fn) { deferred_.push_back(std::move(fn)); }

void Ring::QuiesceTimers() {
  timers_quiesced_ = true;
  if (timer_wakeup_.in_flight()) {
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_timeout_remove(sqe, reinterpret_cast<uint64_t>(&timer_wakeup_), 0);
    Arm(sqe, nullptr);
  }
}

void Ring::ArmTimerWakeup() {
  if (timers_quiesced_ || timers_.empty()) return;
  const uint64_t next = timers_.next_deadline_ns();
  if (timer_wakeup_.in_flight()) {
    if (next >= armed_deadline_ns_) return;
    // One kernel timeout per shard: move it earlier instead of adding another.
    timer_update_ts_ = ToKernelTimespec(next);
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_timeout_update(sqe, &timer_update_ts_, reinterpret_cast<uint64_t>(&timer_wakeup_),
                                 IORING_TIMEOUT_ABS);
    Arm(sqe, nullptr);
  } else {
    timer_ts_ = ToKernelTimespec(next);
    io_uring_sqe* sqe = GetSqe();
    io_uring_prep_timeout(sqe, &timer_ts_, 0, IORING_TIMEOUT_ABS);
    Arm(sqe, &timer_wakeup_);
  }
  armed_deadline_ns_ = next;
}

void Ring::OnTimerWakeup(int32_t res, uint32_t flags) {
  // -ETIME is the normal expiry; due timers run after the CQE batch in RunOnce. Anything
  // else (-ECANCELED on quiesce) needs no action: the next iteration re-arms if needed.
}

void Ring::Dispatch(uint64_t user_data, int32_t res, uint32_t flags) {
  if (user_data == 0) {
    PH_DCHECK(untracked_in_flight_ > 0);
    --untracked_in_flight_;
    return;
  }
  auto* c = reinterpret_cast<Completion*>(user_data);
  PH_DCHECK(c->in_flight_);
  if ((flags & IORING_CQE_F_MORE) == 0) {
    c->in_flight_ = false;
    --in_flight_;
    if (!c->internal_) --user_in_flight_;
  }
  c->fn_(c->owner_, res, flags);
}

int Ring::RunOnce(bool may_block) {
  // Code running inside this iteration (callbacks, timers, deferred closures) may route
  // cross-shard wake-ups through this ring: they are submitted with the next iteration.
  Ring* const outer = tls_current_ring;
  tls_current_ring = this;
  ++stats_.loop_iterations;
  ArmTimerWakeup();
  uint64_t now = MonotonicNowNs();
  const bool work_pending =
      !deferred_.empty() || (!timers_.empty() && timers_.next_deadline_ns() <= now);
  stats_.busy_ns += now - busy_since_ns_;
  int rc;
  if (may_block && !work_pending) {
    rc = io_uring_submit_and_wait(&ring_, 1);
    busy_since_ns_ = MonotonicNowNs();
  } else {
    // Also runs deferred task work under DEFER_TASKRUN.
    rc = io_uring_submit_and_get_events(&ring_);
    busy_since_ns_ = now;
  }
  if (rc > 0) {
    stats_.submissions += static_cast<uint64_t>(rc);
  } else if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY && rc != -ETIME) {
    PH_BUG(true, "io_uring_enter failed");
    LogEvent(LogLevel::kError, "io_uring_enter failed", {{"error", strerror(-rc)}});
  }

  // Reap a bounded batch, hand the CQ slots back, then run callbacks outside the reap.
  const unsigned n = io_uring_peek_batch_cqe(&ring_, cqe_ptrs_.data(), options_.cqe_batch);
  for (unsigned i = 0; i < n; ++i) {
    batch_[i] = {cqe_ptrs_[i]->user_data, cqe_ptrs_[i]->res, cqe_ptrs_[i]->flags};
  }
  io_uring_cq_advance(&ring_, n);
  stats_.completions += n;
  stats_.cq_overflows = IO_URING_READ_ONCE(*ring_.cq.koverflow);
  for (unsigned i = 0; i < n; ++i) Dispatch(batch_[i].user_data, batch_[i].res, batch_[i].flags);

  if (!timers_.empty()) stats_.timers_fired += timers_.RunExpired(MonotonicNowNs());

  if (!deferred_.empty()) {
    deferred_running_.swap(deferred_);
    for (auto& fn : deferred_running_) {
      fn();
      ++stats_.deferred_run;
    }
    deferred_running_.clear();
  }
  tls_current_ring = outer;
  return static_cast<int>(n);
}

}  // namespace posthaste::reactor
