#include "server/reactor/offload_pool.h"

#include <time.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/reactor/timer.h"

namespace posthaste::reactor {

absl::StatusOr<std::unique_ptr<OffloadPool>> OffloadPool::Create(const Options& options) {
  if (options.threads == 0 || options.threads > kThreadsMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("offload threads must be in [1, ", kThreadsMax, "]"));
  }
  if (options.queue_capacity == 0 || options.queue_capacity > kQueueCapacityMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("offload queue capacity must be in [1, ", kQueueCapacityMax, "]"));
  }
  std::unique_ptr<OffloadPool> pool(new OffloadPool(options));
  for (uint32_t i = 0; i < options.threads; ++i) {
    pool->threads_.emplace_back([p = pool.get()] { p->WorkerLoop(); });
  }
  return pool;
}

OffloadPool::~OffloadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

bool OffloadPool::Submit(Inbox* reply_to, Work& work) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || queue_.size() >= options_.queue_capacity) {
      stats_.rejected_full.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    queue_.push_back(Job{reply_to, std::move(work)});
  }
  stats_.submitted.fetch_add(1, std::memory_order_relaxed);
  cv_.notify_one();
  return true;
}

void OffloadPool::WorkerLoop() {
  while (true) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and every queued job has run
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    Reply reply = job.work();
    stats_.completed.fetch_add(1, std::memory_order_relaxed);
    if (!reply || job.reply_to == nullptr) continue;
    // The reply must not be lost: wait for room in the shard's inbox.
    while (!job.reply_to->Post(reply)) {
      if (!reply) break;  // moved out: cannot happen, Post leaves it on failure
      if (job.reply_to->closed()) {
        stats_.replies_dropped.fetch_add(1, std::memory_order_relaxed);
        break;
      }
      stats_.reply_retries.fetch_add(1, std::memory_order_relaxed);
      timespec ts{0, static_cast<long>(kReplyRetryNs)};
      nanosleep(&ts, nullptr);
    }
  }
}

OffloadPool::Work UnlessExpired(uint64_t deadline_ns, OffloadPool::Work work,
                                OffloadPool::Work expired) {
  return [deadline_ns, work = std::move(work),
          expired = std::move(expired)]() mutable -> OffloadPool::Reply {
    return MonotonicNowNs() >= deadline_ns ? expired() : work();
  };
}

}  // namespace posthaste::reactor
