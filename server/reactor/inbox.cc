#include "server/reactor/inbox.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace posthaste::reactor {

absl::StatusOr<std::unique_ptr<Inbox>> Inbox::Create(uint32_t capacity) {
  if (capacity == 0 || capacity > kCapacityMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("inbox capacity must be in [1, ", kCapacityMax, "]"));
  }
  const int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (efd < 0) return absl::ResourceExhaustedError(absl::StrCat("eventfd: ", strerror(errno)));
  std::unique_ptr<Inbox> inbox(new Inbox(capacity, efd));
  inbox->queue_.reserve(capacity);
  inbox->running_.reserve(capacity);
  inbox->read_.Bind<&Inbox::OnReadDone>(inbox.get());
  Ring::MarkInternal(&inbox->read_);
  return inbox;
}

Inbox::~Inbox() {
  PH_CHECK(!read_.in_flight());
  close(efd_);
}

bool Inbox::Post(Closure& closure) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) {
      stats_.rejected_closed.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    if (queue_.size() >= capacity_) {
      stats_.rejected_full.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    queue_.push_back(std::move(closure));
    if (!wake_pending_) wake = wake_pending_ = true;
  }
  stats_.posted.fetch_add(1, std::memory_order_relaxed);
  if (wake) Wake();
  return true;
}

bool Inbox::closed() {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

void Inbox::Wake() {
  if (Ring* current = Ring::Current(); current != nullptr) {
    current->PrepWakeEventfd(efd_);  // submitted with the poster's next loop iteration
    return;
  }
  const uint64_t one = 1;
  // Non-blocking eventfd: EAGAIN only if the counter is saturated, which still wakes.
  [[maybe_unused]] ssize_t n = write(efd_, &one, sizeof(one));
}

void Inbox::Start(Ring& ring, absl::AnyInvocable<void()> on_wake) {
  ring_ = &ring;
  on_wake_ = std::move(on_wake);
  ArmRead();
}

void Inbox::ArmRead() { ring_->PrepRead(&read_, efd_, &read_value_, sizeof(read_value_), 0); }

void Inbox::OnReadDone(int32_t res, uint32_t flags) {
  if (closing_) return;
  ++stats_.wakeups;
  Drain();
  if (on_wake_) on_wake_();
  if (!closing_) ArmRead();
}

void Inbox::Drain() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    running_.swap(queue_);
    // Posts from now on wake us again; anything already queued is in running_.
    wake_pending_ = false;
  }
  for (Closure& c : running_) {
    c();
    ++stats_.run;
  }
  running_.clear();
}

void Inbox::Close() {
  closing_ = true;
  if (ring_ != nullptr) ring_->Cancel(&read_);
  std::vector<Closure> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    left.swap(queue_);
  }
  stats_.dropped_at_close += left.size();
}

}  // namespace posthaste::reactor
