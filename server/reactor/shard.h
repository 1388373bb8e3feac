// Reactor and Shard: N reactor threads, one per core, each with its own Ring and Inbox, plus
// two shared OffloadPools for work a shard must not do itself: a CPU pool (password hashing;
// about one thread per core) and an I/O pool (store calls that mostly sleep in pread or in the
// store's group-commit fdatasync; many threads, so many callers share one sync). Separate pools
// keep jobs stuck behind a slow disk from delaying logins, and vice versa.
//
// Each shard thread pins itself to one CPU of the process's allowed set (pthread_setaffinity_np;
// a refusal, as in a container with a restricted cpuset, is logged and tolerated), creates its
// ring on its own thread (SINGLE_ISSUER), arms its inbox, runs the caller's on_start, then
// loops until stopped.
//
// Stop (Reactor::Stop, any thread) raises a flag and writes the shard's eventfd. The shard
// then: (1) runs its OnStop hooks, which cancel their operations and close their sockets;
// (2) keeps looping until no caller operation is in flight and every offloaded job (either
// pool) has come back; (3) closes its inbox, removes its timer timeout and waits for the kernel to
// return every remaining CQE; (4) runs its OnDrained hooks; only then frees the ring. So nothing is
// freed while the kernel may still write to it.
//
// Threading: Shard methods marked "shard thread" only on that shard's thread; PostTo and the
// Reactor's methods from any thread. Ownership: the Reactor owns shards, inboxes, threads and
// the pools; the Ring is created and destroyed on its shard's thread.
#ifndef POSTHASTE_SERVER_REACTOR_SHARD_H_
#define POSTHASTE_SERVER_REACTOR_SHARD_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/reactor/inbox.h"
#include "server/reactor/offload_pool.h"
#include "server/reactor/ring.h"

namespace posthaste::reactor {

class Reactor;

// What one shard sent to the offload pools, counted on its thread (declared once,
// base/counter_fields.h; server/counters.h names them for /metrics). `pending` is a level, not
// a count: jobs accepted by either pool whose reply has not run yet (stop waits for it to be 0).
#define PH_SHARD_OFFLOAD_STATS(X)                                 \
  X(cpu_submitted, "jobs the CPU pool accepted")                  \
  X(cpu_refused, "jobs the CPU pool refused (queue full)")        \
  X(io_submitted, "jobs the I/O pool accepted")                   \
  X(io_refused, "jobs the I/O pool refused (queue full)")         \
  X(replies_run, "offloaded jobs' replies run on this shard")     \
  X(pending, "jobs accepted whose reply has not run yet")
struct ShardOffloadStats {
  PH_SHARD_OFFLOAD_STATS(PH_COUNTER_MEMBER)
};

struct ReactorOptions {
  static constexpr uint32_t kShardsMax = 1024;
  uint32_t shards = 1;  // 1..kShardsMax
  bool pin_threads = true;
  Ring::Options ring;
  uint32_t inbox_capacity = 4096;
  OffloadPool::Options offload;     // CPU-bound jobs (Shard::Offload)
  OffloadPool::Options offload_io;  // blocking-I/O jobs (Shard::OffloadIo)
};

class Shard {
 public:
  uint32_t index() const { return index_; }
  Reactor& reactor() { return reactor_; }
  Inbox& inbox() { return *inbox_; }
  // Shard thread.
  Ring& ring() { return *ring_; }
  // Shard thread: stop has begun (hooks ran or are running).
  bool stopping() const { return stopping_; }
  // Whether pinning to a CPU succeeded (-1 when not pinned).
  int cpu() const { return cpu_; }

  // Any thread: posts `closure` to shard `target`'s inbox. False when full or closed (the
  // closure is left with the caller).
  bool PostTo(uint32_t target, Inbox::Closure& closure);
  bool PostTo(uint32_t target, Inbox::Closure&& closure) { return PostTo(target, closure); }

  // Shard thread: runs CPU-bound `work` (password hashing) on the CPU offload pool; its
  // returned closure runs back on this shard. False (and `work` destroyed) when the pool's
  // queue is full. Stop waits for every accepted job to come back.
  bool Offload(OffloadPool::Work work);
  // Shard thread: as Offload, on the I/O pool: for work that mostly waits on the disk (store
  // reads, deliveries and commits that wait for fdatasync).
  bool OffloadIo(OffloadPool::Work work);
  // Shard thread: what this shard sent to the offload pools.
  const ShardOffloadStats& offload_stats() const { return offload_stats_; }

  // Shard thread: runs `hook` when stop begins (cancel operations, close listeners).
  void OnStop(absl::AnyInvocable<void()> hook) { stop_hooks_.push_back(std::move(hook)); }
  // Shard thread: runs `hook` once nothing is in flight any more, just before the ring is
  // freed: the place to free per-shard objects tied to the ring (buffer rings, connections).
  void OnDrained(absl::AnyInvocable<void()> hook) { drained_hooks_.push_back(std::move(hook)); }

  // After Reactor::Wait(): the ring's counters at exit, and its setup mode.
  const RingStats& final_ring_stats() const { return final_stats_; }
  SetupMode setup_mode() const { return mode_; }

 private:
  friend class Reactor;
  Shard(Reactor& reactor, uint32_t index, std::unique_ptr<Inbox> inbox)
      : reactor_(reactor), index_(index), inbox_(std::move(inbox)) {}
  void Run(std::function<void(Shard&)> on_start, int cpu);
  bool SubmitCounted(OffloadPool& pool, OffloadPool::Work work, uint64_t& submitted,
                     uint64_t& refused);

  Reactor& reactor_;
  const uint32_t index_;
  std::unique_ptr<Inbox> inbox_;
  std::unique_ptr<Ring> ring_;
  std::atomic<bool> stop_requested_{false};
  bool stopping_ = false;
  int cpu_ = -1;
  ShardOffloadStats offload_stats_;
  std::vector<absl::AnyInvocable<void()>> stop_hooks_;
  std::vector<absl::AnyInvocable<void()>> drained_hooks_;
  RingStats final_stats_;
  SetupMode mode_ = SetupMode::kPlain;
};

class Reactor {
 public:
  static absl::StatusOr<std::unique_ptr<Reactor>> Create(const ReactorOptions& options);
  // Stops and joins.
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // Starts every shard; each runs on_start(shard) on its own thread, then loops. Returns once
  // all rings are up, or the first setup error (the shards that did start are stopped).
  absl::Status Start(std::function<void(Shard&)> on_start);
  // Any thread; idempotent. Returns at once; Wait() joins.
  void Stop();
  void Wait();

  uint32_t shard_count() const { return static_cast<uint32_t>(shards_.size()); }
  Shard& shard(uint32_t i) { return *shards_[i]; }
  OffloadPool& offload() { return *offload_; }
  OffloadPool& offload_io() { return *offload_io_; }

 private:
  friend class Shard;
  explicit Reactor(const ReactorOptions& options) : options_(options) {}
  void ReportStarted(absl::Status status);

  const ReactorOptions options_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unique_ptr<OffloadPool> offload_;
  std::unique_ptr<OffloadPool> offload_io_;
  std::vector<std::thread> threads_;

  std::mutex start_mu_;
  std::condition_variable start_cv_;
  uint32_t started_ = 0;       // guarded by start_mu_
  absl::Status start_status_;  // guarded by start_mu_
};

}  // namespace posthaste::reactor

#endif  // POSTHASTE_SERVER_REACTOR_SHARD_H_
