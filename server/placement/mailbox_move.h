// `posthaste user move ADDRESS --to BACKEND`: a live move of one mailbox between backends, as a
// resumable sequence of steps recorded in etcd (docs/ARCHITECTURE.md, "Live mailbox moves").
//
//   moves/<address>  {"from":"b1","to":"b2","step":"copy"|"hold"|"switched"}: the move in
//                    progress (under the directory prefix); gone once the move is done.
//
// Steps, each idempotent, so running the command again after a crash at any point finishes it:
//   copy      pages from the source's admin API to the target's (storage/migration/
//             mailbox_transfer.h) while the source still serves; then one transaction sets the
//             user's entry to {"backend":from,"moving_to":to} and the step to "hold".
//   hold      holds the account on the source (deliveries get LMTP 451 4.2.0, deletions are not
//             committed), copies again from the start (complete, deletions carried); then one
//             transaction sets the entry to {"backend":to} and the step to "switched".
//   switched  deletes the account on the source, releases the hold, removes the move record.
// Every transaction compares the mod_revision of the keys it read, so two movers never race.
// The move always ends with the user's own entry {"backend":to}; a tenant move
// (server/placement/tenant_move.h) removes that entry once its tenant points there too.
//
// Threading: runs on the calling thread and blocks (etcd, HTTP); for the CLI only.
#ifndef POSTHASTE_SERVER_PLACEMENT_MAILBOX_MOVE_H_
#define POSTHASTE_SERVER_PLACEMENT_MAILBOX_MOVE_H_

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/placement/directory_codec.h"
#include "server/placement/etcd_client.h"

namespace posthaste::server::placement {

// Runs `user move ADDRESS --to=BACKEND --etcd_endpoints=URLS --admin_token_file=FILE
// [--directory_prefix=P]`. `args` start after "user move". Progress lines go to `out`, one
// error line to `err`. Exit status 0 (moved, or already there), 1 failure (run again), 2 usage.
int RunUserMove(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

// --- shared with the tenant move ---

// The flags both move commands take. `name` is the one positional argument, lower-cased.
struct MoveCommand {
  std::string name;
  std::string to;
  std::string etcd_endpoints;
  std::vector<HttpEndpoint> endpoints;
  std::string token_file;
  std::string prefix = std::string(kDefaultDirectoryPrefix);
};
// InvalidArgument with a usage text naming `command` ("user move ADDRESS") on bad arguments.
absl::StatusOr<MoveCommand> ParseMoveCommand(std::string_view command,
                                             const std::vector<std::string>& args);

// The first line of the admin token file. NotFound / InvalidArgument.
absl::StatusOr<std::string> ReadAdminToken(const std::string& path);

// What a move needs: the directory (not owned; outlives the call) and the backends' admin token.
struct MoveContext {
  EtcdClient* etcd = nullptr;
  std::string prefix;
  std::string token;
};

// The key of `address`'s move record.
std::string MoveKey(std::string_view prefix, std::string_view address);

// Moves `address` to `to`, or finishes the move in progress; progress lines go to `progress`.
// OK once the user's entry is {"backend":to} and no move record is left (also when it was so
// already). Any error leaves one owner; calling again resumes.
absl::Status MoveMailbox(const MoveContext& context, std::string_view address, std::string_view to,
                         std::ostream& progress);

// The lower-cased addresses of `domain`'s accounts on the registered backend `backend`, from its
// admin API (GET /api/v1/accounts?domain=). Unavailable when the backend is not registered or
// does not answer.
absl::StatusOr<std::vector<std::string>> ListBackendAccounts(const MoveContext& context,
                                                             const std::string& backend,
                                                             std::string_view domain);

}  // namespace posthaste::server::placement

#endif  // POSTHASTE_SERVER_PLACEMENT_MAILBOX_MOVE_H_
