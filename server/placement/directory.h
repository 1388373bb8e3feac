// The placement directory as the rest of the server sees it: which backend holds a tenant or a
// user, and which backends are alive. The directory itself lives in etcd (docs/ARCHITECTURE.md,
// "Beyond one machine"); this header is the read side every consumer shares: an immutable
// snapshot, and a cache that swaps in a new snapshot whenever etcd's watch reports a change.
//
// Keys under the configured prefix (default "/posthaste/"), values JSON objects:
//   backends/<name>   {"ip":"10.0.0.7","pop3":110,"pop3s":995,"lmtp":24,"admin":8080}
//                     written by the backend under a lease: present only while it is ready.
//   tenants/<domain>  {"backend":"b1"} or {"backend":"b1","moving_to":"b2"}
//   users/<address>   the same shape; a user's entry overrides its tenant's.
// Domains and addresses are lower-cased before they become keys.
#ifndef POSTHASTE_SERVER_PLACEMENT_DIRECTORY_H_
#define POSTHASTE_SERVER_PLACEMENT_DIRECTORY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace posthaste::server::placement {

struct BackendEndpoint {
  std::string name;
  std::string ip;  // an IP address literal (nginx's Auth-Server must be one)
  uint16_t pop3_port = 0;
  uint16_t pop3s_port = 0;
  uint16_t lmtp_port = 0;
  uint16_t admin_port = 0;  // the HTTP admin API (password verification endpoint)
};

struct PlacementEntry {
  std::string backend;    // the backend that holds the mailbox
  std::string moving_to;  // non-empty while a move switches it: deliveries wait
};

// Where one address goes, as resolved against a snapshot.
struct Route {
  const BackendEndpoint* backend = nullptr;  // never null in a returned Route
  bool moving = false;                       // a move is switching this mailbox right now
  bool from_user_override = false;
};

// One consistent view of the directory at an etcd revision. Immutable once built.
class DirectorySnapshot {
 public:
  int64_t revision = 0;
  absl::flat_hash_map<std::string, BackendEndpoint> backends;  // by name; live ones only
  absl::flat_hash_map<std::string, PlacementEntry> tenants;    // by domain
  absl::flat_hash_map<std::string, PlacementEntry> users;      // by address

  // The user's override, else its tenant's placement. NotFound when neither exists;
  // Unavailable when the placement names a backend that is not registered (down or draining).
  absl::StatusOr<Route> Resolve(std::string_view address) const;
};

// Anything that hands out the current snapshot (the etcd-backed cache; fixed ones in tests).
// Thread-safe: any thread may call Current() at any time.
class DirectorySource {
 public:
  virtual ~DirectorySource() = default;
  // Never null (an empty snapshot before the first load).
  virtual std::shared_ptr<const DirectorySnapshot> Current() const = 0;
  // True while the source cannot confirm its snapshot is current (etcd unreachable or without
  // quorum); answers keep coming from the last snapshot, and metrics say so.
  virtual bool stale() const = 0;
};

}  // namespace posthaste::server::placement

#endif  // POSTHASTE_SERVER_PLACEMENT_DIRECTORY_H_
