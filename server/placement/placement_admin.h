// `posthaste placement`: operators' writes to the placement directory in etcd (directory.h has
// the keys), each one etcd transaction guarded by the key's mod_revision as it was read, so two
// operators (or an operator and a move) never overwrite each other unseen: the second writer's
// transaction fails and it is told to look again.
//
//   posthaste placement --etcd_endpoints=URL,... [--etcd_prefix=/posthaste/] COMMAND
//     set-tenant DOMAIN BACKEND   place a tenant
//     set-user ADDRESS BACKEND    a user's override (wins over its tenant's placement)
//     clear-user ADDRESS          remove a user's override
//     list                        backends, tenants and overrides, one per line
//
// A placement naming a backend that is not registered right now is written with a warning:
// backends register under a lease only while they are ready, so a backend being restarted or
// not yet started is absent, and operators place tenants before bringing a backend up. Until
// it registers, the route service answers that tenant's logins and mail with temporary
// failures. A placement that is being moved (moving_to set) is refused: the move owns it.
//
// Threading: blocking; runs on the calling thread.
#ifndef POSTHASTE_SERVER_PLACEMENT_PLACEMENT_ADMIN_H_
#define POSTHASTE_SERVER_PLACEMENT_PLACEMENT_ADMIN_H_

#include <iosfwd>
#include <string>
#include <vector>

namespace posthaste::server::placement {

// `args` are the arguments after "placement". Returns the exit status: 0 done, 1 refused or
// failed (one line on `err`), 2 usage error. Warnings go to `err` with status 0.
int RunPlacementCommand(const std::vector<std::string>& args, std::ostream& out,
                        std::ostream& err);

std::string PlacementUsage();

}  // namespace posthaste::server::placement

#endif  // POSTHASTE_SERVER_PLACEMENT_PLACEMENT_ADMIN_H_
