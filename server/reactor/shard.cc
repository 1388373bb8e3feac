#include "server/reactor/shard.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>

#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/log.h"

namespace posthaste::reactor {
namespace {

std::vector<int> AllowedCpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

}  // namespace

bool Shard::PostTo(uint32_t target, Inbox::Closure& closure) {
  if (target >= reactor_.shard_count()) return false;
  return reactor_.shard(target).inbox().Post(closure);
}

bool Shard::Offload(OffloadPool::Work work) {
  return SubmitCounted(reactor_.offload(), std::move(work), offload_stats_.cpu_submitted,
                       offload_stats_.cpu_refused);
}

bool Shard::OffloadIo(OffloadPool::Work work) {
  return SubmitCounted(reactor_.offload_io(), std::move(work), offload_stats_.io_submitted,
                       offload_stats_.io_refused);
}

bool Shard::SubmitCounted(OffloadPool& pool, OffloadPool::Work work, uint64_t& submitted,
                          uint64_t& refused) {
  OffloadPool::Work job = [this, w = std::move(work)]() mutable -> OffloadPool::Reply {
    OffloadPool::Reply reply = w();
    return [this, r = std::move(reply)]() mutable {
      --offload_stats_.pending;
      ++offload_stats_.replies_run;
      if (r) r();
    };
  };
  if (!pool.Submit(inbox_.get(), job)) {
    ++refused;
    return false;
  }
  ++submitted;
  ++offload_stats_.pending;
  return true;
}

void Shard::Run(std::function<void(Shard&)> on_start, int cpu) {
  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    const int rc = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    if (rc == 0) {
      cpu_ = cpu;
    } else {
      LogEvent(LogLevel::kWarning, "cannot pin shard thread; running unpinned",
               {{"shard", std::to_string(index_)},
                {"cpu", std::to_string(cpu)},
                {"error", strerror(rc)}});
    }
  }
  auto ring = Ring::Create(reactor_.options_.ring);
  if (!ring.ok()) {
    reactor_.ReportStarted(ring.status());
    return;
  }
  ring_ = std::move(ring).value();
  mode_ = ring_->setup_mode();
  inbox_->Start(*ring_, [this] {
    if (stop_requested_.load(std::memory_order_acquire)) stopping_ = true;
  });
  LogEvent(LogLevel::kInfo, "shard started",
           {{"shard", std::to_string(index_)},
            {"io_uring_setup", std::string(ring_->setup_mode_name())},
            {"cpu", std::to_string(cpu_)}});
  on_start(*this);
  reactor_.ReportStarted(absl::OkStatus());

  while (!stopping_) ring_->RunOnce(true);

  // (1) Owners cancel their operations.
  for (auto& hook : stop_hooks_) hook();
  stop_hooks_.clear();
  // (2) Wait for every caller operation and offloaded job to finish.
  while (ring_->user_in_flight() > 0 || offload_stats_.pending > 0) ring_->RunOnce(true);
  // (3) Retire the ring's own operations, then free.
  inbox_->Close();
  ring_->QuiesceTimers();
  while (ring_->total_in_flight() > 0) ring_->RunOnce(true);
  ring_->RunOnce(false);  // deferred closures queued by the last callbacks
  // (4) Free what is tied to the ring, on this thread.
  for (auto& hook : drained_hooks_) hook();
  drained_hooks_.clear();
  PH_CHECK(ring_->total_in_flight() == 0);
  final_stats_ = ring_->stats();
  ring_.reset();
}

absl::StatusOr<std::unique_ptr<Reactor>> Reactor::Create(const ReactorOptions& options) {
  if (options.shards == 0 || options.shards > ReactorOptions::kShardsMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("shards must be in [1, ", ReactorOptions::kShardsMax, "]"));
  }
  std::unique_ptr<Reactor> reactor(new Reactor(options));
  auto pool = OffloadPool::Create(options.offload);
  if (!pool.ok()) return pool.status();
  reactor->offload_ = std::move(pool).value();
  auto io_pool = OffloadPool::Create(options.offload_io);
  if (!io_pool.ok()) return io_pool.status();
  reactor->offload_io_ = std::move(io_pool).value();
  for (uint32_t i = 0; i < options.shards; ++i) {
    auto inbox = Inbox::Create(options.inbox_capacity);
    if (!inbox.ok()) return inbox.status();
    reactor->shards_.push_back(
        std::unique_ptr<Shard>(new Shard(*reactor, i, std::move(inbox).value())));
  }
  return reactor;
}

Reactor::~Reactor() {
  Stop();
  Wait();
  // Joins workers; every shard already collected its replies.
  offload_.reset();
  offload_io_.reset();
}

void Reactor::ReportStarted(absl::Status status) {
  std::lock_guard<std::mutex> lock(start_mu_);
  ++started_;
  if (!status.ok() && start_status_.ok()) start_status_ = status;
  start_cv_.notify_all();
}

absl::Status Reactor::Start(std::function<void(Shard&)> on_start) {
  PH_CHECK(threads_.empty());
  // A peer that disconnects mid-send must not kill the process (sends use MSG_NOSIGNAL, but
  // splice into a socket has no such flag).
  signal(SIGPIPE, SIG_IGN);
  const std::vector<int> cpus = options_.pin_threads ? AllowedCpus() : std::vector<int>();
  for (uint32_t i = 0; i < shards_.size(); ++i) {
    const int cpu = cpus.empty() ? -1 : cpus[i % cpus.size()];
    threads_.emplace_back([this, i, on_start, cpu] { shards_[i]->Run(on_start, cpu); });
  }
  std::unique_lock<std::mutex> lock(start_mu_);
  start_cv_.wait(lock, [this] { return started_ == shards_.size(); });
  absl::Status status = start_status_;
  lock.unlock();
  if (!status.ok()) {
    Stop();
    Wait();
  }
  return status;
}

void Reactor::Stop() {
  for (auto& shard : shards_) {
    if (!shard->stop_requested_.exchange(true, std::memory_order_acq_rel)) {
      shard->inbox_->Notify();
    }
  }
}

void Reactor::Wait() {
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

}  // namespace posthaste::reactor
