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
//
// Threading: runs on the calling thread and blocks (etcd, HTTP); for the CLI only.
#ifndef POSTHASTE_SERVER_PLACEMENT_MAILBOX_MOVE_H_
#define POSTHASTE_SERVER_PLACEMENT_MAILBOX_MOVE_H_

#include <ostream>
#include <string>
#include <vector>

namespace posthaste::server::placement {

// Runs `user move ADDRESS --to=BACKEND --etcd_endpoints=URLS --admin_token_file=FILE
// [--directory_prefix=P]`. `args` start after "user move". Progress lines go to `out`, one
// error line to `err`. Exit status 0 (moved, or already there), 1 failure (run again), 2 usage.
int RunUserMove(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace posthaste::server::placement

#endif  // POSTHASTE_SERVER_PLACEMENT_MAILBOX_MOVE_H_
