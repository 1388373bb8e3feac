// Timers for one shard: an intrusive min-heap of Timer objects, driven by a single armed
// IORING_OP_TIMEOUT on the shard's ring (see Ring). 100k idle sessions cost 100k heap slots
// and one kernel timeout, not 100k kernel timeouts. Start and Cancel are O(log n) and
// allocate only when the heap's backing vector grows.
//
// Threading: a TimerQueue and its Timers belong to one ring thread.
// Ownership: a Timer is embedded in its owner; destroying an armed Timer cancels it. The
// queue must outlive its armed timers, and disarms any that remain when it is destroyed.
#ifndef POSTHASTE_SERVER_REACTOR_TIMER_H_
#define POSTHASTE_SERVER_REACTOR_TIMER_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace posthaste::reactor {

class TimerQueue;

// CLOCK_MONOTONIC in nanoseconds (vDSO, no syscall); the clock IORING_TIMEOUT_ABS uses.
uint64_t MonotonicNowNs();

class Timer {
 public:
  using Fn = void (*)(void* owner);

  Timer() = default;
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Binds the handler: Method is `void Owner::M()`. It runs on the ring thread, outside any
  // CQE processing, once per Start.
  template <auto Method, typename Owner>
  void Bind(Owner* owner) {
    owner_ = owner;
    fn_ = [](void* o) { (static_cast<Owner*>(o)->*Method)(); };
  }

  bool armed() const { return queue_ != nullptr; }
  uint64_t deadline_ns() const { return deadline_ns_; }

 private:
  friend class TimerQueue;
  static constexpr size_t kNotInHeap = ~size_t{0};

  void* owner_ = nullptr;
  Fn fn_ = nullptr;
  TimerQueue* queue_ = nullptr;
  uint64_t deadline_ns_ = 0;
  uint64_t sequence_ = 0;  // FIFO among equal deadlines
  size_t heap_index_ = kNotInHeap;
};

class TimerQueue {
 public:
  TimerQueue() = default;
  ~TimerQueue();
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  // Arms `timer` to fire `delay_ns` from now (re-arming moves an armed timer).
  void Start(Timer* timer, uint64_t delay_ns);
  void StartAt(Timer* timer, uint64_t deadline_ns);
  // Disarms `timer`; a no-op when it is not armed. Its handler will not run.
  void Cancel(Timer* timer);

  // Runs handlers of timers due at `now_ns`, earliest first. Timers armed by those handlers
  // for `now_ns` or earlier wait for the next call, so a handler that re-arms with zero delay
  // cannot starve the loop. Returns how many fired.
  size_t RunExpired(uint64_t now_ns);

  bool empty() const { return heap_.empty(); }
  size_t size() const { return heap_.size(); }
  // Earliest deadline; only when !empty().
  uint64_t next_deadline_ns() const { return heap_.front()->deadline_ns_; }

 private:
  bool Less(const Timer* a, const Timer* b) const;
  void Place(Timer* timer, size_t index);
  void SiftUp(size_t index);
  void SiftDown(size_t index);
  void RemoveAt(size_t index);

  std::vector<Timer*> heap_;
  uint64_t next_sequence_ = 0;
};

}  // namespace posthaste::reactor

#endif  // POSTHASTE_SERVER_REACTOR_TIMER_H_
