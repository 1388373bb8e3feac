#include "server/transport/proxy_header_reader.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "base/check.h"
#include "base/log.h"

namespace posthaste::server::transport {

bool IsLoopbackAddress(const uint8_t addr16[16]) {
  static const uint8_t kV6Loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const bool v4_mapped = addr16[10] == 0xff && addr16[11] == 0xff &&
                         std::all_of(addr16, addr16 + 10, [](uint8_t b) { return b == 0; });
  return (v4_mapped && addr16[12] == 127) || std::memcmp(addr16, kV6Loopback, 16) == 0;
}

PeerInfo SocketPeer(int fd) {
  PeerInfo peer;
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return peer;
  ProxyAddress address;
  if (ss.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    address.addr16[10] = 0xff;
    address.addr16[11] = 0xff;
    std::memcpy(address.addr16 + 12, &sin->sin_addr, 4);
    address.ipv4 = true;
  } else if (ss.ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    std::memcpy(address.addr16, &sin6->sin6_addr, 16);
    address.ipv4 = IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr);
  } else {
    return peer;
  }
  peer.ip = address.ToText();
  std::memcpy(peer.addr16, address.addr16, sizeof(peer.addr16));
  peer.loopback = IsLoopbackAddress(peer.addr16);
  return peer;
}

PeerInfo PeerFromProxyHeader(const ProxyHeader& header, const PeerInfo& proxy) {
  PeerInfo peer;
  peer.ip = header.source.ToText();
  std::memcpy(peer.addr16, header.source.addr16, sizeof(peer.addr16));
  peer.loopback = IsLoopbackAddress(peer.addr16);
  peer.via_trusted_proxy = true;
  peer.proxy_ip = proxy.ip;
  return peer;
}

// One connection waiting for its header. Its poll completion and timer are its own; it is freed
// (deferred) once neither is outstanding.
class ProxyHeaderReaders::Reader {
 public:
  Reader(ProxyHeaderReaders& owner, uint64_t id, int fd, PeerInfo proxy, Admit admit)
      : owner_(owner), id_(id), fd_(fd), proxy_(std::move(proxy)), admit_(std::move(admit)) {
    poll_.Bind<&Reader::OnPollDone>(this);
    timer_.Bind<&Reader::OnTimer>(this);
  }
  ~Reader() {
    PH_CHECK(!poll_.in_flight());
    if (fd_ >= 0) close(fd_);
  }

  void Start() {
    deadline_ns_ = reactor::MonotonicNowNs() + owner_.timeout_ns_;
    owner_.ring_.timers().StartAt(&timer_, deadline_ns_);
    Poll();
  }

  // Stops waiting: the connection is closed once the poll (if any) has completed.
  void Stop() { End(Ending::kStopped); }

 private:
  enum class Ending : uint8_t { kAdmitted, kInvalid, kTimeout, kPeerClosed, kStopped };

  void Poll() {
    owner_.ring_.PrepPollAdd(&poll_, fd_, POLLIN);
    ++owner_.in_flight_;
  }

  void OnPollDone(int32_t res, uint32_t /*flags*/) {
    --owner_.in_flight_;
    if (ended_) {
      Release();
      return;
    }
    if (res < 0) {
      End(Ending::kPeerClosed);
      return;
    }
    Peek();
  }

  void OnTimer() {
    if (ended_) return;
    if (reactor::MonotonicNowNs() >= deadline_ns_) {
      End(Ending::kTimeout);
      return;
    }
    Peek();  // the back-off after a partial header
  }

  void Peek() {
    char bytes[kProxyHeaderBytesMax];
    const ssize_t n = recv(fd_, bytes, sizeof(bytes), MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      owner_.ring_.timers().StartAt(&timer_, deadline_ns_);
      Poll();
      return;
    }
    if (n <= 0) {
      End(Ending::kPeerClosed);
      return;
    }
    const ProxyParseResult parsed =
        ParseProxyHeader(std::string_view(bytes, static_cast<size_t>(n)));
    switch (parsed.status) {
      case ProxyParseResult::Status::kNeedMore: {
        // Part of a header: the socket stays readable, so look again after a back-off.
        const uint64_t now = reactor::MonotonicNowNs();
        owner_.ring_.timers().StartAt(&timer_, std::min(now + repeek_ns_, deadline_ns_));
        repeek_ns_ = std::min(repeek_ns_ * 2, kRepeekMaxNs);
        return;
      }
      case ProxyParseResult::Status::kInvalid:
        error_ = parsed.error;
        End(Ending::kInvalid);
        return;
      case ProxyParseResult::Status::kComplete:
        break;
    }
    // Take exactly the header off the socket: the peek showed its bytes are there.
    const size_t header_bytes = parsed.header.header_bytes;
    if (recv(fd_, bytes, header_bytes, MSG_DONTWAIT) != static_cast<ssize_t>(header_bytes)) {
      End(Ending::kPeerClosed);
      return;
    }
    if (parsed.header.local) {
      ++owner_.counters_->headers_local;
      peer_ = proxy_;
      peer_.via_trusted_proxy = true;
      peer_.proxy_ip = proxy_.ip;
    } else {
      ++owner_.counters_->headers_accepted;
      peer_ = PeerFromProxyHeader(parsed.header, proxy_);
    }
    End(Ending::kAdmitted);
  }

  void End(Ending ending) {
    if (ended_) return;
    ended_ = true;
    owner_.ring_.timers().Cancel(&timer_);
    ProxyHeaderCounters& counters = *owner_.counters_;
    switch (ending) {
      case Ending::kAdmitted:
        break;
      case Ending::kInvalid:
        ++counters.refused_invalid;
        break;
      case Ending::kTimeout:
        ++counters.refused_timeout;
        error_ = "no whole header within the deadline";
        break;
      case Ending::kPeerClosed:
        ++counters.refused_peer_closed;
        break;
      case Ending::kStopped:
        break;
    }
    if (ending == Ending::kInvalid || ending == Ending::kTimeout) {
      LogEvent(LogLevel::kWarning, "PROXY header refused",
               {{"peer", proxy_.ip}, {"error", std::string(error_)}});
    }
    if (ending == Ending::kAdmitted) {
      const int fd = fd_;
      fd_ = -1;
      // Deferred: Admit never runs inside a completion that the shard may be iterating over.
      owner_.ring_.Defer([admit = std::move(admit_), fd, peer = std::move(peer_)]() mutable {
        admit(fd, std::move(peer));
      });
    }
    if (poll_.in_flight()) {
      owner_.ring_.Cancel(&poll_);  // Release once its completion comes
      return;
    }
    Release();
  }

  void Release() { owner_.Finished(id_); }

  ProxyHeaderReaders& owner_;
  const uint64_t id_;
  int fd_;
  const PeerInfo proxy_;
  Admit admit_;
  PeerInfo peer_;
  reactor::Completion poll_;
  reactor::Timer timer_;
  uint64_t deadline_ns_ = 0;
  uint64_t repeek_ns_ = kRepeekFirstNs;
  std::string_view error_;
  bool ended_ = false;
};

ProxyHeaderReaders::ProxyHeaderReaders(reactor::Ring& ring, ProxyHeaderCounters* counters,
                                       uint64_t timeout_ns)
    : ring_(ring), counters_(counters), timeout_ns_(timeout_ns) {
  PH_CHECK(timeout_ns_ > 0);
}

ProxyHeaderReaders::~ProxyHeaderReaders() { PH_CHECK(in_flight_ == 0); }

void ProxyHeaderReaders::Read(int fd, PeerInfo proxy, Admit admit) {
  if (stopping_) {
    close(fd);
    return;
  }
  const uint64_t id = next_id_++;
  auto reader = std::make_unique<Reader>(*this, id, fd, std::move(proxy), std::move(admit));
  Reader* raw = reader.get();
  by_id_.emplace(id, std::move(reader));
  raw->Start();
}

void ProxyHeaderReaders::StopAll() {
  stopping_ = true;
  std::vector<Reader*> readers;
  readers.reserve(by_id_.size());
  for (auto& [id, reader] : by_id_) readers.push_back(reader.get());
  for (Reader* reader : readers) reader->Stop();
}

void ProxyHeaderReaders::Finished(uint64_t id) {
  ring_.Defer([this, id] { by_id_.erase(id); });
}

}  // namespace posthaste::server::transport
