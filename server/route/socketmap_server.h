// SocketmapServer: Postfix's socketmap lookups (socketmap_protocol.h) answered from the
// placement directory, for `transport_maps = socketmap:inet:HOST:PORT:transport`:
//   user@domain -> "OK lmtp:inet:IP:PORT" (the owning backend's LMTP listener)
//                  "TEMP ..." while the mailbox moves (deliveries wait: Postfix defers and
//                  retries) or while its backend is not registered (down or draining);
//                  "NOTFOUND " for an address no tenant or user entry places.
//   a bare domain -> the tenant's backend, with the same temporary failures.
//   user+ext@domain (recipient_delimiter set) without a user entry of its own -> "NOTFOUND ",
//                  so that Postfix goes on to user@domain (where a user's override is found)
//                  and then the domain: answering with the tenant's backend here would send
//                  mail for an overridden user's extension addresses to the wrong backend.
//   another map name -> "PERM unknown map".
//
// Shape: one thread, poll(2) over the listener and at most connections_max connections
// (Postfix keeps a socketmap connection open and reuses it). This is not the POP3 reactor: a
// few MTAs hold a few connections each, so one thread and poll are enough and keep it simple.
// Limits, each counted (route_counters.h): a request's size (request_bytes_max: a longer one
// closes the connection, as the framing cannot resynchronise); connections_max (one more is
// closed at once); idle_timeout_ms between requests; request_timeout_ms from a request's first
// byte to its last; while more than output_bytes_max answer bytes wait for the peer, nothing
// more is read from it.
//
// Threading: Start and the destructor from one owning thread; the server's thread reads the
// DirectorySource (thread-safe) and the counters (atomics). Ownership: `source` and
// `counters` must outlive the server; the destructor stops and joins the thread.
#ifndef POSTHASTE_SERVER_ROUTE_SOCKETMAP_SERVER_H_
#define POSTHASTE_SERVER_ROUTE_SOCKETMAP_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/placement/directory.h"
#include "server/route/route_counters.h"
#include "server/route/socketmap_protocol.h"

namespace posthaste::server::route {

struct SocketmapServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;                      // 0: the kernel picks
  std::string map_name = "transport";     // the one name answered
  std::string recipient_delimiter = "+";  // Postfix's recipient_delimiter; empty: none
  size_t request_bytes_max = 1024;        // an address is at most 320 bytes (RFC 5321)
  uint32_t connections_max = 64;
  uint32_t idle_timeout_ms = 300'000;    // between requests; Postfix reconnects when closed
  uint32_t request_timeout_ms = 10'000;  // first byte of a request -> its last
  size_t output_bytes_max = 64 * 1024;   // unsent answers beyond which reading pauses
};

// The answer (a netstring) to one request against `snapshot`; counts it in `counters`.
std::string SocketmapAnswer(const placement::DirectorySnapshot& snapshot,
                            const SocketmapRequest& request, const SocketmapServerOptions& options,
                            RouteCounters* counters);

class SocketmapServer {
 public:
  // Binds host:port and starts the thread. InvalidArgument for bad options; the errno's code
  // when it cannot bind.
  static absl::StatusOr<std::unique_ptr<SocketmapServer>> Start(
      SocketmapServerOptions options, const placement::DirectorySource* source,
      RouteCounters* counters);
  ~SocketmapServer();
  SocketmapServer(const SocketmapServer&) = delete;
  SocketmapServer& operator=(const SocketmapServer&) = delete;

  uint16_t port() const;

  struct Impl;

 private:
  explicit SocketmapServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace posthaste::server::route

#endif  // POSTHASTE_SERVER_ROUTE_SOCKETMAP_SERVER_H_
