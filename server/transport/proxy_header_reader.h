// ProxyHeaderReaders: the PROXY protocol header (server/transport/proxy_header.h) of connections
// from trusted proxies (--proxy_networks), read on the accept path before any protocol adapter
// or transport exists, so admission, the per-IP limits, auth penalties, logs and metrics all see
// the client's address, and for implicit TLS the header comes off before the ClientHello.
//
// How it reads: the socket is peeked (recv MSG_PEEK) whenever a ring poll says it is readable,
// and the peeked bytes are parsed; once a whole header is there exactly its bytes are taken off
// the socket, so what follows (a ClientHello, a command) is left for the transport's own
// receive untouched. A header that arrived in part is peeked again after a short back-off
// (a readable socket stays readable, so polling again would spin). The header must be whole
// within `timeout_ns` of the accept and within kProxyHeaderBytesMax bytes; otherwise, and on
// anything that is not a valid header, the connection is closed and the refusal counted.
//
// Threading: the owning shard's thread only. Ownership: the shard owns one ProxyHeaderReaders
// per service; it owns the sockets of connections whose header is being read until it hands a
// socket to `admit` (or closes it). StopAll() before the ring stops; the set must outlive the
// last completion of its operations (destroy it in the shard's drained hook).
#ifndef POSTHASTE_SERVER_TRANSPORT_PROXY_HEADER_READER_H_
#define POSTHASTE_SERVER_TRANSPORT_PROXY_HEADER_READER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "base/counter_fields.h"
#include "server/reactor/completion.h"
#include "server/reactor/ring.h"
#include "server/reactor/timer.h"
#include "server/transport/proxy_header.h"
#include "server/transport/transport.h"

namespace posthaste::server::transport {

// What the readers count, per shard (exported by each service's counter table).
#define PH_PROXY_HEADER_COUNTERS(X)                                            \
  X(headers_accepted, "headers read that named the client's address")          \
  X(headers_local, "LOCAL or UNKNOWN headers: the proxy's own address stands") \
  X(refused_invalid, "closed: not a valid PROXY header, or over its size")     \
  X(refused_timeout, "closed: no whole header within the deadline")            \
  X(refused_peer_closed, "closed: the peer left (or reset) before its header") \
  X(refused_untrusted, "closed: a PROXY header from outside --proxy_networks")
struct ProxyHeaderCounters {
  PH_PROXY_HEADER_COUNTERS(PH_COUNTER_MEMBER)
};

// The client's address as a PeerInfo: `ip`, `addr16` and `loopback` from the header's source;
// `trusted` is the caller's (the per-IP exemption is about the client, not the proxy).
// `proxy_ip` is the immediate peer's text form. REQUIRES: !header.local.
PeerInfo PeerFromProxyHeader(const ProxyHeader& header, const PeerInfo& proxy);

// The socket's remote address as a PeerInfo (ip, addr16, loopback); an empty PeerInfo when
// getpeername fails.
PeerInfo SocketPeer(int fd);

// The loopback test PeerInfo uses (127/8 or ::1), on an IPv6 or v4-mapped address.
bool IsLoopbackAddress(const uint8_t addr16[16]);

class ProxyHeaderReaders {
 public:
  // Called once per connection whose header was valid, with its socket (now the callee's) and
  // the peer it should be admitted as (the client's address, or the proxy's for LOCAL/UNKNOWN,
  // with via_trusted_proxy set either way). Runs from a ring completion or timer.
  using Admit = absl::AnyInvocable<void(int fd, PeerInfo peer)>;

  // `counters` belong to the shard and outlive this object. timeout_ns > 0.
  ProxyHeaderReaders(reactor::Ring& ring, ProxyHeaderCounters* counters, uint64_t timeout_ns);
  ~ProxyHeaderReaders();
  ProxyHeaderReaders(const ProxyHeaderReaders&) = delete;
  ProxyHeaderReaders& operator=(const ProxyHeaderReaders&) = delete;

  // Takes ownership of `fd` (an accepted socket from a trusted proxy, `proxy` its address) and
  // reads its header; `admit` gets the socket once the header is read. Never calls `admit` from
  // inside Read.
  void Read(int fd, PeerInfo proxy, Admit admit);
  // Closes every connection still waiting for its header (shutdown). Idempotent.
  void StopAll();
  // Connections whose header is being read.
  size_t pending() const { return by_id_.size(); }
  // True once no kernel operation of any reader is outstanding (after StopAll, when all came).
  bool idle() const { return in_flight_ == 0; }

  // How long a partial header waits before the socket is peeked again (doubles up to the max).
  static constexpr uint64_t kRepeekFirstNs = 1'000'000;
  static constexpr uint64_t kRepeekMaxNs = 64'000'000;

 private:
  class Reader;
  friend class Reader;

  void Finished(uint64_t id);  // deferred erase

  reactor::Ring& ring_;
  ProxyHeaderCounters* counters_;
  const uint64_t timeout_ns_;
  uint64_t next_id_ = 0;
  uint64_t in_flight_ = 0;
  bool stopping_ = false;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Reader>> by_id_;
};

}  // namespace posthaste::server::transport

#endif  // POSTHASTE_SERVER_TRANSPORT_PROXY_HEADER_READER_H_
