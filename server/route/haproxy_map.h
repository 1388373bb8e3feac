// The HAProxy tenant map: one line "<domain> <ip>:<pop3s port>" per tenant whose backend is
// registered, sorted, for HAProxy's SNI routing on 995 (TLS passes through HAProxy and ends at
// the backend, which picks the tenant's certificate by SNI). The keys are exact domains, for
// `map_str` (a tree: one lookup whatever the number of tenants). A client that asks for a host
// under the tenant's domain ("pop.example.com") is matched by a second lookup with the first
// label removed; docs/ARCHITECTURE.md ("The route service") shows the two HAProxy lines.
// `map_dom` would match such names in one lookup but scans the whole list and also matches
// "example.com.other.net", so it is not used. A tenant whose backend is down or unregistered is
// left out (HAProxy's default then refuses), as is one without a pop3s port.
//
// HaproxyMapWriter rewrites the file whenever the snapshot's revision changes: written to a
// temporary file in the same directory, fsync'd, then renamed over the old one, so HAProxy (or
// whatever reloads it) never reads a half-written map. With a runtime socket (HAProxy's runtime
// API, haproxy_runtime.h) the same map is also pushed into the running HAProxy; a failed push
// is counted, logged and tried again at the next poll.
//
// Threading: HaproxyMapText is pure. The writer owns one thread that polls the source every
// poll_interval_ms; Start and the destructor from one owning thread.
#ifndef POSTHASTE_SERVER_ROUTE_HAPROXY_MAP_H_
#define POSTHASTE_SERVER_ROUTE_HAPROXY_MAP_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/placement/directory.h"
#include "server/route/route_counters.h"

namespace posthaste::server::route {

std::string HaproxyMapText(const placement::DirectorySnapshot& snapshot);

// Writes `text` to `path` atomically (temporary file in the same directory, fsync, rename).
absl::Status WriteFileAtomically(const std::string& path, const std::string& text);

class HaproxyMapWriter {
 public:
  // Writes the map once now (an error is returned: a path that cannot be written is a
  // configuration mistake), then keeps it current on a thread.
  static absl::StatusOr<std::unique_ptr<HaproxyMapWriter>> Start(
      std::string path, const placement::DirectorySource* source, RouteCounters* counters,
      uint32_t poll_interval_ms = 200, std::string runtime_socket = "");
  ~HaproxyMapWriter();
  HaproxyMapWriter(const HaproxyMapWriter&) = delete;
  HaproxyMapWriter& operator=(const HaproxyMapWriter&) = delete;

  struct Impl;

 private:
  explicit HaproxyMapWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace posthaste::server::route

#endif  // POSTHASTE_SERVER_ROUTE_HAPROXY_MAP_H_
