// SessionDirectory: the live POP3 sessions as the HTTP admin API sees them (GET and DELETE
// /api/v1/sessions...). The admin API knows no shards or connections (tools/build/BUILD.bazel,
// _ADMIN_FORBIDDEN): `serve` implements this by asking each reactor shard by message
// (server/live_sessions.h) and hands it to AdminApi::Start, as it hands the metrics gathering
// to AdminHttp.
//
// Threading: called from the admin listener's workers, concurrently; each call may block up to
// its implementation's deadline (never on a shard's thread).
#ifndef POSTHASTE_SERVER_ADMIN_SESSION_DIRECTORY_H_
#define POSTHASTE_SERVER_ADMIN_SESSION_DIRECTORY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace posthaste::server::admin {

// One live session, as a shard saw it when asked.
struct LiveSession {
  uint32_t shard = 0;
  uint64_t connection = 0;      // the id "SHARD-CONNECTION" names it
  std::string user;             // the account once logged in (canonical); empty before
  std::string tenant;           // the user's domain (also while logging in, once named)
  std::string peer;             // the client's address (the PROXY/XCLIENT one when given)
  int64_t started_unix_ms = 0;  // when the connection was accepted
  std::string state;            // "authorization", "transaction", "update" or "closing"
  bool tls = false;
  uint64_t bytes_sent = 0;  // replies and message bytes taken by the kernel so far
};

struct LiveSessionFilter {
  std::optional<std::string> tenant;  // lower-case domain
  std::optional<std::string> user;    // an address in any case (compared canonically)
};

struct LiveSessionList {
  std::vector<LiveSession> sessions;  // by shard, then connection
  bool truncated = false;             // more matched than the directory lists at once
  uint32_t shards_unanswered = 0;     // shards that did not answer within the deadline
};

class SessionDirectory {
 public:
  virtual ~SessionDirectory() = default;
  // The sessions matching `filter` on every shard. Unavailable when no shard answered.
  virtual absl::StatusOr<LiveSessionList> List(const LiveSessionFilter& filter) = 0;
  // Ends the session without committing its deletions (as the idle timeout does: POP3 has no
  // unsolicited replies, so the connection is closed). NotFound when no such session is open;
  // Unavailable / DeadlineExceeded when its shard did not answer in time.
  virtual absl::Status End(uint32_t shard, uint64_t connection) = 0;
};

}  // namespace posthaste::server::admin

#endif  // POSTHASTE_SERVER_ADMIN_SESSION_DIRECTORY_H_
