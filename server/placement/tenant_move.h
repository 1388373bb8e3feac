// `posthaste tenant move DOMAIN --to BACKEND`: moves every mailbox of a tenant to another
// backend and switches the tenant's placement, one user move (server/placement/mailbox_move.h)
// at a time, resumable like it (docs/ARCHITECTURE.md, "Tenant moves").
//
//   tenant_moves/<domain>  {"from":"b1","to":"b2","step":"pin"|"users"}: the tenant move in
//                          progress (under the directory prefix); gone once it is done.
//
// Steps, each idempotent, so running the command again after a crash at any point finishes it:
//   pin    gives every account of the tenant on the source a user entry {"backend":from}
//          (users with an entry of their own keep it), so the tenant's placement can change
//          without moving anyone; then one transaction sets the tenant to {"backend":to} and the
//          step to "users".
//   users  moves each user still on the source, or with a user move in progress, one by one
//          (each ends with the user's entry {"backend":to}), and removes every user entry of the
//          tenant that names the target (redundant now); then removes the tenant move record.
// At every moment each user has one owner: its own entry while it is pinned or moving, the
// tenant's once its entry is gone, and deliveries wait (451) only during its own switch.
//
// Threading: runs on the calling thread and blocks (etcd, HTTP); for the CLI only.
#ifndef POSTHASTE_SERVER_PLACEMENT_TENANT_MOVE_H_
#define POSTHASTE_SERVER_PLACEMENT_TENANT_MOVE_H_

#include <ostream>
#include <string>
#include <vector>

namespace posthaste::server::placement {

// Runs `tenant move DOMAIN --to=BACKEND --etcd_endpoints=URLS --admin_token_file=FILE
// [--directory_prefix=P]`. `args` start after "tenant move". Progress lines (the tenant's steps
// and each user move's) go to `err`, as does one error line; the final line to `out`. Exit
// status 0 (moved, or already there), 1 failure (run again), 2 usage.
int RunTenantMove(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace posthaste::server::placement

#endif  // POSTHASTE_SERVER_PLACEMENT_TENANT_MOVE_H_
