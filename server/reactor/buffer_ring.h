// BufferRing: a provided-buffer ring (one buffer group) for multishot receive.
//
// The kernel picks a free buffer for each received chunk and names it in the CQE. The buffer
// then belongs to the consumer until it calls Release(buffer_id) - after it has parsed the
// bytes - and only then goes back to the kernel. When every buffer is held, the kernel ends
// multishot receives with -ENOBUFS; those receivers wait here (AddWaiter) and are re-armed
// one per Release, never by spinning.
//
// Threading: one ring thread. Ownership: owns the buffer memory and the descriptor ring;
// destroy it only after every receive that selects from its group has completed.
#ifndef POSTHASTE_SERVER_REACTOR_BUFFER_RING_H_
#define POSTHASTE_SERVER_REACTOR_BUFFER_RING_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "server/reactor/ring.h"

namespace posthaste::reactor {

// Declared once (base/counter_fields.h); server/counters.h names them for /metrics.
#define PH_BUFFER_RING_STATS(X)                                     \
  X(buffers_taken, "CQEs that carried a buffer")                    \
  X(buffers_released, "buffers given back to the kernel")           \
  X(exhausted, "-ENOBUFS seen (ring empty)")                        \
  X(waiters_rearmed, "receives re-armed once buffers came back")    \
  X(in_use_max, "high-water mark of buffers held by consumers")
struct BufferRingStats {
  PH_BUFFER_RING_STATS(PH_COUNTER_MEMBER)
};

class BufferRing {
 public:
  // Named limits of the options.
  static constexpr uint32_t kBufferCountMax = 32768;  // kernel limit on ring entries
  static constexpr uint32_t kBufferBytesMin = 64;
  static constexpr uint32_t kBufferBytesMax = 1u << 20;

  struct Options {
    uint16_t group_id = 0;
    uint32_t buffer_count = 1024;  // power of two, 1..kBufferCountMax
    uint32_t buffer_bytes = 4096;  // kBufferBytesMin..kBufferBytesMax
  };

  // Allocates count * bytes of buffer memory and registers the group with `ring`.
  // InvalidArgument for bad options; the kernel's error otherwise.
  static absl::StatusOr<std::unique_ptr<BufferRing>> Create(Ring& ring, const Options& options);
  ~BufferRing();
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  uint16_t group_id() const { return options_.group_id; }
  uint32_t buffer_bytes() const { return options_.buffer_bytes; }
  uint32_t buffer_count() const { return options_.buffer_count; }
  uint32_t in_use() const { return in_use_; }
  uint32_t available() const { return options_.buffer_count - in_use_; }

  // Called by the receiver for a CQE carrying IORING_CQE_F_BUFFER: returns the `len` bytes
  // the kernel wrote into that buffer and marks it held. Valid until Release(buffer_id).
  std::span<const char> Take(uint16_t buffer_id, uint32_t len);
  // Gives a held buffer back to the kernel and re-arms one waiting receiver, if any.
  void Release(uint16_t buffer_id);

  // A receiver that hit -ENOBUFS registers its re-arm here; it runs (once) from a later
  // Release, or right away if buffers came back meanwhile. The returned token cancels it.
  using WaiterId = uint64_t;
  WaiterId AddWaiter(absl::AnyInvocable<void()> rearm);
  void RemoveWaiter(WaiterId id);

  BufferRingStats& stats() { return stats_; }

 private:
  BufferRing(Ring& ring, const Options& options) : ring_(ring), options_(options) {}
  void Recycle(uint16_t buffer_id);

  Ring& ring_;
  Options options_;
  io_uring_buf_ring* br_ = nullptr;
  std::unique_ptr<char[]> memory_;
  std::vector<bool> held_;
  uint32_t in_use_ = 0;
  struct Waiter {
    WaiterId id;
    absl::AnyInvocable<void()> rearm;
  };
  std::deque<Waiter> waiters_;
  WaiterId next_waiter_id_ = 1;
  BufferRingStats stats_;
};

}  // namespace posthaste::reactor

#endif  // POSTHASTE_SERVER_REACTOR_BUFFER_RING_H_
