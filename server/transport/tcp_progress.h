// Telling a stalled peer from a slow one by what it acknowledged.
//   ReadTcpSendProgress  what the kernel says about a TCP socket's outgoing bytes (TCP_INFO:
//                        tcpi_bytes_acked, Linux 4.1+; tcpi_notsent_bytes, 4.6+). Kept apart
//                        because <linux/tcp.h> (which has the fields) clashes with glibc's
//                        <netinet/tcp.h>.
//   SendStallWatch       the send-stall timeout of one connection (--send_stall_timeout_s),
//                        used by the connection layer (RingTransport; until the adapters
//                        land, also Pop3Connection and LmtpConnection).
// Threading: ReadTcpSendProgress on any thread (one non-blocking getsockopt); a SendStallWatch
// belongs to its connection's thread.
#ifndef POSTHASTE_SERVER_TRANSPORT_TCP_PROGRESS_H_
#define POSTHASTE_SERVER_TRANSPORT_TCP_PROGRESS_H_

#include <cstdint>
#include <optional>

namespace posthaste::server::transport {

struct TcpSendProgress {
  uint64_t bytes_acked = 0;        // bytes the peer has acknowledged since connect
  bool bytes_outstanding = false;  // the send queue holds bytes not sent or not acknowledged
};

// nullopt when the socket has no TCP_INFO (not TCP, or closed).
std::optional<TcpSendProgress> ReadTcpSendProgress(int fd);

// SendStallWatch: is the peer still taking our bytes? Progress is a change in the bytes the
// peer acknowledged, never the bytes the kernel took from us (a send buffer absorbs megabytes
// from a peer that reads nothing).
//
// The owner Start()s the watch when a send begins while it is inactive (the baseline: what
// was acknowledged before is not progress), samples the socket at next_sample_ns() while it is
// active, and Stop()s it once its own output is idle and the kernel holds nothing
// unacknowledged. Sample() reports a stall when no sample has seen the acknowledged count move
// for timeout_ns. Progress is timed at the sample that saw it, and samples come at least every
// SampleIntervalNs(), so a stall is reported at least timeout_ns and less than
// timeout_ns + SampleIntervalNs() (plus timer latency) after the peer's last acknowledgement:
// never early, at most an interval late.
//
// Bookkeeping only: times and samples are given (no clock, no syscalls).
class SendStallWatch {
 public:
  // The sampling interval: timeout/20, within [100 ms, 1 s]. Bounds how late a stall is seen
  // against one getsockopt per interval per connection that waits on its peer.
  static uint64_t SampleIntervalNs(uint64_t timeout_ns);

  explicit SendStallWatch(uint64_t timeout_ns);

  bool active() const { return active_; }
  uint64_t timeout_ns() const { return timeout_ns_; }

  // Starts watching at now_ns with `bytes_acked` acknowledged so far (nullopt: unknown, the
  // first sample that has it sets the baseline). A no-op while active.
  void Start(uint64_t now_ns, std::optional<uint64_t> bytes_acked);
  void Stop() { active_ = false; }

  // Records a sample taken at now_ns. Returns true when the peer has stalled: nothing
  // acknowledged for timeout_ns. REQUIRES: active().
  bool Sample(uint64_t now_ns, std::optional<uint64_t> bytes_acked);

  // When the next sample is due: one interval after the last, at the latest when a stall would
  // be reached. REQUIRES: active().
  uint64_t next_sample_ns() const;
  // When the peer last took a byte (or the watch started). REQUIRES: active().
  uint64_t last_progress_ns() const { return last_progress_ns_; }

 private:
  const uint64_t timeout_ns_;
  const uint64_t interval_ns_;
  bool active_ = false;
  std::optional<uint64_t> bytes_acked_;
  uint64_t last_progress_ns_ = 0;
  uint64_t last_sample_ns_ = 0;
};

}  // namespace posthaste::server::transport

#endif  // POSTHASTE_SERVER_TRANSPORT_TCP_PROGRESS_H_
