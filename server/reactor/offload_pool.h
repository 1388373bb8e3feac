// OffloadPool: worker threads for blocking work (password hashing, fsync, storage calls).
//
// A shard submits `work`, which runs on a worker and returns a closure; that closure is posted
// to the submitter's Inbox and runs back on the shard. The job queue is bounded: a full queue
// refuses the job (Submit returns false) and counts. If the reply inbox is full, the worker
// waits and retries (a worker may block; a shard may not), counting each retry; if the inbox
// is closed the reply is dropped on the worker and counted.
//
// Threading: Submit from any thread. Ownership: the pool owns its threads; destruction runs
// the jobs still queued, then joins. Reply inboxes must outlive the pool's use of them.
#ifndef POSTHASTE_SERVER_REACTOR_OFFLOAD_POOL_H_
#define POSTHASTE_SERVER_REACTOR_OFFLOAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "server/reactor/inbox.h"

namespace posthaste::reactor {

// One pool's counters (shared by every shard: atomics), declared once (base/counter_fields.h);
// server/counters.h names them for /metrics.
#define PH_OFFLOAD_STATS(X)                                              \
  X(submitted, "jobs queued")                                            \
  X(rejected_full, "jobs refused: the queue was full")                   \
  X(completed, "jobs run")                                               \
  X(reply_retries, "pauses before re-posting a reply to a full inbox")   \
  X(replies_dropped, "replies destroyed: the shard's inbox had closed")
struct OffloadStats {
  PH_OFFLOAD_STATS(PH_ATOMIC_COUNTER_MEMBER)
};

class OffloadPool {
 public:
  static constexpr uint32_t kThreadsMax = 256;
  static constexpr uint32_t kQueueCapacityMax = 1u << 20;
  // Pause between attempts to post a reply into a full inbox.
  static constexpr uint64_t kReplyRetryNs = 200'000;

  struct Options {
    uint32_t threads = 2;            // 1..kThreadsMax
    uint32_t queue_capacity = 4096;  // 1..kQueueCapacityMax
  };

  using Reply = Inbox::Closure;
  using Work = absl::AnyInvocable<Reply()>;

  static absl::StatusOr<std::unique_ptr<OffloadPool>> Create(const Options& options);
  ~OffloadPool();
  OffloadPool(const OffloadPool&) = delete;
  OffloadPool& operator=(const OffloadPool&) = delete;

  // Queues `work`; its returned closure runs on `reply_to`'s shard (a null closure means no
  // reply). Returns false (and leaves `work` untouched) when the queue is full.
  bool Submit(Inbox* reply_to, Work& work);
  bool Submit(Inbox* reply_to, Work&& work) { return Submit(reply_to, work); }

  OffloadStats& stats() { return stats_; }

 private:
  explicit OffloadPool(const Options& options) : options_(options) {}
  void WorkerLoop();

  struct Job {
    Inbox* reply_to;
    Work work;
  };

  const Options options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;  // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  std::vector<std::thread> threads_;
  OffloadStats stats_;
};

// `work`, unless the monotonic clock (MonotonicNowNs) has reached `deadline_ns` by the time a
// worker takes the job: then `expired` runs instead. For work done for a client that has a
// deadline of its own (a login's password check): a backlog of checks nobody waits for any
// more then drains at the cost of a clock read each, not a hash each.
OffloadPool::Work UnlessExpired(uint64_t deadline_ns, OffloadPool::Work work,
                                OffloadPool::Work expired);

}  // namespace posthaste::reactor

#endif  // POSTHASTE_SERVER_REACTOR_OFFLOAD_POOL_H_
