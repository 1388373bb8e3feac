#include "server/transport/tcp_progress.h"

#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>

namespace posthaste::server::transport {
namespace {

constexpr uint64_t kSampleIntervalMinNs = 100'000'000;
constexpr uint64_t kSampleIntervalMaxNs = 1'000'000'000;

}  // namespace

std::optional<TcpSendProgress> ReadTcpSendProgress(int fd) {
  struct tcp_info info {};
  socklen_t len = sizeof(info);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return std::nullopt;
  // tcpi_unacked counts segments in flight; tcpi_notsent_bytes what waits for the peer's
  // window (all of it once the peer's receive buffer is full).
  return TcpSendProgress{.bytes_acked = info.tcpi_bytes_acked,
                         .bytes_outstanding = info.tcpi_unacked > 0 || info.tcpi_notsent_bytes > 0};
}

uint64_t SendStallWatch::SampleIntervalNs(uint64_t timeout_ns) {
  return std::clamp<uint64_t>(timeout_ns / 20, kSampleIntervalMinNs, kSampleIntervalMaxNs);
}

SendStallWatch::SendStallWatch(uint64_t timeout_ns)
    : timeout_ns_(timeout_ns), interval_ns_(SampleIntervalNs(timeout_ns)) {}

void SendStallWatch::Start(uint64_t now_ns, std::optional<uint64_t> bytes_acked) {
  if (active_) return;
  active_ = true;
  bytes_acked_ = bytes_acked;
  last_progress_ns_ = last_sample_ns_ = now_ns;
}

bool SendStallWatch::Sample(uint64_t now_ns, std::optional<uint64_t> bytes_acked) {
  last_sample_ns_ = now_ns;
  if (bytes_acked.has_value()) {
    if (bytes_acked_.has_value() && *bytes_acked != *bytes_acked_) last_progress_ns_ = now_ns;
    bytes_acked_ = bytes_acked;
  }
  return now_ns >= last_progress_ns_ && now_ns - last_progress_ns_ >= timeout_ns_;
}

uint64_t SendStallWatch::next_sample_ns() const {
  return std::min(last_sample_ns_ + interval_ns_, last_progress_ns_ + timeout_ns_);
}

}  // namespace posthaste::server::transport
