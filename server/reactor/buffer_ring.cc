#include "server/reactor/buffer_ring.h"

#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace posthaste::reactor {

absl::StatusOr<std::unique_ptr<BufferRing>> BufferRing::Create(Ring& ring, const Options& options) {
  const uint32_t n = options.buffer_count;
  if (n == 0 || (n & (n - 1)) != 0 || n > kBufferCountMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("buffer_count must be a power of two <= ", kBufferCountMax));
  }
  if (options.buffer_bytes < kBufferBytesMin || options.buffer_bytes > kBufferBytesMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("buffer_bytes must be in [", kBufferBytesMin, ", ", kBufferBytesMax, "]"));
  }
  std::unique_ptr<BufferRing> br(new BufferRing(ring, options));
  const int rc = compat::SetupBufRing(ring.raw(), n, options.group_id, &br->br_);
  if (rc < 0) {
    return absl::UnavailableError(absl::StrCat("register buffer ring: ", strerror(-rc)));
  }
  br->memory_.reset(new char[static_cast<size_t>(n) * options.buffer_bytes]);
  br->held_.assign(n, false);
  const int mask = io_uring_buf_ring_mask(n);
  for (uint32_t i = 0; i < n; ++i) {
    io_uring_buf_ring_add(
        br->br_, br->memory_.get() + static_cast<size_t>(i) * options.buffer_bytes,
        options.buffer_bytes, static_cast<uint16_t>(i), mask, static_cast<int>(i));
  }
  io_uring_buf_ring_advance(br->br_, static_cast<int>(n));
  return br;
}

BufferRing::~BufferRing() {
  if (br_ != nullptr) {
    compat::FreeBufRing(ring_.raw(), br_, options_.buffer_count, options_.group_id);
  }
}

std::span<const char> BufferRing::Take(uint16_t buffer_id, uint32_t len) {
  PH_CHECK(buffer_id < options_.buffer_count);
  PH_DCHECK(!held_[buffer_id]);
  PH_DCHECK(len <= options_.buffer_bytes);
  held_[buffer_id] = true;
  ++in_use_;
  ++stats_.buffers_taken;
  if (in_use_ > stats_.in_use_max) stats_.in_use_max = in_use_;
  return {memory_.get() + static_cast<size_t>(buffer_id) * options_.buffer_bytes, len};
}

void BufferRing::Recycle(uint16_t buffer_id) {
  io_uring_buf_ring_add(br_, memory_.get() + static_cast<size_t>(buffer_id) * options_.buffer_bytes,
                        options_.buffer_bytes, buffer_id,
                        io_uring_buf_ring_mask(options_.buffer_count), 0);
  io_uring_buf_ring_advance(br_, 1);
}

void BufferRing::Release(uint16_t buffer_id) {
  PH_CHECK(buffer_id < options_.buffer_count);
  PH_CHECK(held_[buffer_id]);  // a double release would hand the kernel a buffer twice
  held_[buffer_id] = false;
  --in_use_;
  ++stats_.buffers_released;
  Recycle(buffer_id);
  if (!waiters_.empty()) {
    auto rearm = std::move(waiters_.front().rearm);
    waiters_.pop_front();
    ++stats_.waiters_rearmed;
    rearm();
  }
}

BufferRing::WaiterId BufferRing::AddWaiter(absl::AnyInvocable<void()> rearm) {
  ++stats_.exhausted;
  const WaiterId id = next_waiter_id_++;
  if (available() > 0) {
    // Buffers came back between the kernel's -ENOBUFS and now: nothing to wait for.
    ++stats_.waiters_rearmed;
    rearm();
    return id;
  }
  waiters_.push_back({id, std::move(rearm)});
  return id;
}

void BufferRing::RemoveWaiter(WaiterId id) {
  for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
    if (it->id == id) {
      waiters_.erase(it);
      return;
    }
  }
}

}  // namespace posthaste::reactor
