// The one place that papers over liburing 2.3 (Debian 12) gaps against the kernel we run on.
//
// liburing 2.3 lacks io_uring_setup_buf_ring / io_uring_free_buf_ring (added in 2.4) and its
// bundled <liburing/io_uring.h> lacks the SEND_ZC usage-report flags (kernel 6.2). Everything
// here is a small inline built on calls 2.3 does have (io_uring_register_buf_ring, mmap).
// When liburing is upgraded, these become renames. Thread-safe: pure functions.
#ifndef POSTHASTE_SERVER_REACTOR_URING_COMPAT_H_
#define POSTHASTE_SERVER_REACTOR_URING_COMPAT_H_

#include <liburing.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

// Kernel 6.2: ask the notification CQE to report whether the kernel copied after all.
#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#endif
#ifndef IORING_NOTIF_USAGE_ZC_COPIED
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

namespace posthaste::reactor::compat {

// Bytes of the shared ring of buffer descriptors for `entries` buffers.
inline size_t BufRingBytes(uint32_t entries) { return entries * sizeof(io_uring_buf); }

// Maps a buffer descriptor ring for `entries` buffers (a power of two) and registers it as
// buffer group `group_id`. On success *out points at an initialised, empty ring owned by the
// caller (free it with FreeBufRing). Returns 0 or a negative errno; on failure nothing leaks.
inline int SetupBufRing(io_uring* ring, uint32_t entries, uint16_t group_id,
                        io_uring_buf_ring** out) {
  void* mem = mmap(nullptr, BufRingBytes(entries), PROT_READ | PROT_WRITE,
                   MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) return -errno;
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uintptr_t>(mem);
  reg.ring_entries = entries;
  reg.bgid = group_id;
  const int rc = io_uring_register_buf_ring(ring, &reg, 0);
  if (rc < 0) {
    munmap(mem, BufRingBytes(entries));
    return rc;
  }
  auto* br = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_ring_init(br);
  *out = br;
  return 0;
}

// Unregisters group `group_id` and unmaps its descriptor ring. Only call once no operation
// that selects from the group is in flight.
inline void FreeBufRing(io_uring* ring, io_uring_buf_ring* br, uint32_t entries,
                        uint16_t group_id) {
  io_uring_unregister_buf_ring(ring, group_id);
  munmap(br, BufRingBytes(entries));
}

// io_uring_prep_send_zc plus the usage report (liburing 2.3 has no helper for the flag).
inline void PrepSendZcReportUsage(io_uring_sqe* sqe, int fd, const void* data, size_t len,
                                  int msg_flags) {
  io_uring_prep_send_zc(sqe, fd, data, len, msg_flags, 0);
  sqe->ioprio |= IORING_SEND_ZC_REPORT_USAGE;
}

}  // namespace posthaste::reactor::compat

#endif  // POSTHASTE_SERVER_REACTOR_URING_COMPAT_H_
