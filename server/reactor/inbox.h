// Inbox: a shard's bounded queue of closures posted from other threads.
//
// Any thread may Post(); the owning shard runs the closures on its own thread. The queue is a
// small mutex-protected bounded vector, not a lock-free MPSC: cross-thread posts are rare next
// to socket I/O (offload results, cross-shard messages), the lock is held for a push or a
// swap only, and a mutex is obviously correct. A shard talking to itself never touches it
// (it uses Ring::Defer). A full queue refuses the post (Post returns false) and counts.
//
// Wake-up: the owner keeps an eventfd read armed on its ring. A poster writes the eventfd
// only when the queue goes from "drained" to "has work", so a burst costs one wake-up. From a
// reactor thread the write itself goes through the poster's ring (no syscall there); from
// other threads it is a plain write(2) on a non-blocking eventfd.
//
// Threading: Post/closed from any thread; Start/Drain/Close on the owning ring thread.
// Ownership: the Inbox owns the eventfd and the queued closures. Closures still queued at
// Close() are destroyed unrun (and counted).
#ifndef POSTHASTE_SERVER_REACTOR_INBOX_H_
#define POSTHASTE_SERVER_REACTOR_INBOX_H_

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "server/reactor/completion.h"
#include "server/reactor/ring.h"

namespace posthaste::reactor {

// The inbox's counters, declared once (base/counter_fields.h); server/counters.h names them for
// /metrics. Senders count into the atomic rows, the owner thread into the plain ones.
#define PH_INBOX_SENDER_STATS(X)                    \
  X(posted, "closures queued by any thread")        \
  X(rejected_full, "Post refused: the queue was full") \
  X(rejected_closed, "Post refused: the inbox was closed")
#define PH_INBOX_OWNER_STATS(X)                              \
  X(wakeups, "eventfd reads that drained the queue")         \
  X(run, "closures run")                                     \
  X(dropped_at_close, "closures destroyed unrun at close")
struct InboxStats {
  PH_INBOX_SENDER_STATS(PH_ATOMIC_COUNTER_MEMBER)
  PH_INBOX_OWNER_STATS(PH_COUNTER_MEMBER)
};

class Inbox {
 public:
  static constexpr uint32_t kCapacityMax = 1u << 20;
  using Closure = absl::AnyInvocable<void()>;

  // capacity in 1..kCapacityMax. Errors: InvalidArgument, or eventfd creation failure.
  static absl::StatusOr<std::unique_ptr<Inbox>> Create(uint32_t capacity);
  ~Inbox();
  Inbox(const Inbox&) = delete;
  Inbox& operator=(const Inbox&) = delete;

  // Queues `closure` for the owner. On success moves from `closure` and returns true; when
  // the queue is full or closed returns false and leaves `closure` untouched (the caller keeps
  // it, so it can retry or destroy it on its own thread).
  bool Post(Closure& closure);
  bool Post(Closure&& closure) { return Post(closure); }
  // Any thread: wakes the owner even with nothing queued (the shard's stop request).
  void Notify() { Wake(); }
  // True once Close() ran: posts will never succeed again.
  bool closed();

  // Owner: arms the eventfd read on `ring`. `on_wake` runs on each wake-up after the queue
  // has been drained (the shard checks its stop flag there).
  void Start(Ring& ring, absl::AnyInvocable<void()> on_wake);
  // Owner: cancels the read, refuses new posts, destroys anything still queued.
  void Close();
  // Owner: runs every queued closure now (also done on each wake-up).
  void Drain();

  InboxStats& stats() { return stats_; }
  uint32_t capacity() const { return capacity_; }

 private:
  Inbox(uint32_t capacity, int efd) : capacity_(capacity), efd_(efd) {}
  void ArmRead();
  void OnReadDone(int32_t res, uint32_t flags);
  void Wake();

  const uint32_t capacity_;
  const int efd_;
  Ring* ring_ = nullptr;
  absl::AnyInvocable<void()> on_wake_;
  Completion read_;
  uint64_t read_value_ = 0;
  bool closing_ = false;

  std::mutex mu_;
  std::vector<Closure> queue_;    // guarded by mu_
  bool wake_pending_ = false;     // guarded by mu_: an eventfd write is on its way
  bool closed_ = false;           // guarded by mu_
  std::vector<Closure> running_;  // owner thread only
  InboxStats stats_;
};

}  // namespace posthaste::reactor

#endif  // POSTHASTE_SERVER_REACTOR_INBOX_H_
