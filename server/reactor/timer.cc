#include "server/reactor/timer.h"

#include <time.h>

#include "base/check.h"

namespace posthaste::reactor {

uint64_t MonotonicNowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

Timer::~Timer() {
  if (queue_ != nullptr) queue_->Cancel(this);
}

TimerQueue::~TimerQueue() {
  for (Timer* t : heap_) {
    t->queue_ = nullptr;
    t->heap_index_ = Timer::kNotInHeap;
  }
}

bool TimerQueue::Less(const Timer* a, const Timer* b) const {
  if (a->deadline_ns_ != b->deadline_ns_) return a->deadline_ns_ < b->deadline_ns_;
  return a->sequence_ < b->sequence_;
}

void TimerQueue::Place(Timer* timer, size_t index) {
  heap_[index] = timer;
  timer->heap_index_ = index;
}

void TimerQueue::SiftUp(size_t index) {
  Timer* t = heap_[index];
  while (index > 0) {
    const size_t parent = (index - 1) / 2;
    if (!Less(t, heap_[parent])) break;
    Place(heap_[parent], index);
    index = parent;
  }
  Place(t, index);
}

void TimerQueue::SiftDown(size_t index) {
  Timer* t = heap_[index];
  const size_t n = heap_.size();
  while (true) {
    size_t child = 2 * index + 1;
    if (child >= n) break;
    if (child + 1 < n && Less(heap_[child + 1], heap_[child])) ++child;
    if (!Less(heap_[child], t)) break;
    Place(heap_[child], index);
    index = child;
  }
  Place(t, index);
}

void TimerQueue::RemoveAt(size_t index) {
  Timer* removed = heap_[index];
  Timer* last = heap_.back();
  heap_.pop_back();
  removed->queue_ = nullptr;
  removed->heap_index_ = Timer::kNotInHeap;
  if (removed == last) return;
  Place(last, index);
  SiftDown(index);
  SiftUp(last->heap_index_);
}

void TimerQueue::Start(Timer* timer, uint64_t delay_ns) {
  StartAt(timer, MonotonicNowNs() + delay_ns);
}

void TimerQueue::StartAt(Timer* timer, uint64_t deadline_ns) {
  PH_DCHECK(timer->fn_ != nullptr);
  PH_DCHECK(timer->queue_ == nullptr || timer->queue_ == this);
  if (timer->queue_ == this) RemoveAt(timer->heap_index_);
  timer->deadline_ns_ = deadline_ns;
  timer->sequence_ = next_sequence_++;
  timer->queue_ = this;
  heap_.push_back(timer);
  timer->heap_index_ = heap_.size() - 1;
  SiftUp(timer->heap_index_);
}

void TimerQueue::Cancel(Timer* timer) {
  if (timer->queue_ != this) return;
  RemoveAt(timer->heap_index_);
}

size_t TimerQueue::RunExpired(uint64_t now_ns) {
  // Only timers armed before this call may fire now.
  const uint64_t sequence_limit = next_sequence_;
  size_t fired = 0;
  while (!heap_.empty()) {
    Timer* t = heap_.front();
    if (t->deadline_ns_ > now_ns || t->sequence_ >= sequence_limit) break;
    RemoveAt(0);
    ++fired;
    t->fn_(t->owner_);
  }
  return fired;
}

}  // namespace posthaste::reactor
