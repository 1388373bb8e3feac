// `posthaste serve`: runs the POP3 server until SIGTERM/SIGINT.
//
// Start-up: parse flags (serve_options.h), open the store, bind one SO_REUSEPORT listener per
// shard (the first on the requested port, possibly 0, the others on the port it got), start
// one reactor thread per shard (server/reactor Shard) with its acceptor, then the HTTP
// endpoint, then log one line "listening pop3=HOST:PORT metrics=HOST:PORT shards=N ring=MODE".
// SIGTERM/SIGINT: /readyz turns 503; after --drain_delay_s (0 by default; listeners keep
// accepting meanwhile, so a load balancer can stop sending first) every shard stops accepting
// and closes its listener, sessions may finish for up to --drain_timeout_s, then the rest are
// closed without committing, and the process exits 0.
// TLS (with --tls_cert/--tls_key): STLS on the plain listener and implicit TLS on one pop3s
// listener per shard; SIGHUP, or a change of the certificate files seen by the main thread's
// check every --tls_reload_check_s, reloads the certificates (docs/ARCHITECTURE.md, "TLS").
//
// Threading: RunServe blocks the calling (main) thread, which waits for signals and runs the
// certificate checks and reloads (never a reactor thread).
#ifndef POSTHASTE_SERVER_SERVE_H_
#define POSTHASTE_SERVER_SERVE_H_

#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "server/admin/admin_protocol.h"
#include "server/retention/retention_job.h"
#include "storage/mail_store.h"

namespace posthaste::server {

// `args` are the arguments after "serve". Returns the exit status (0 after a clean drain,
// 1 on a start-up failure, 2 on a usage error).
// `admin_commands` runs CLI commands that arrive on the admin socket (DIR/admin.sock) against
// the open store, on admin threads (server/cli/cli.h's RunAdminCommand); null: no admin socket.
// `retention` is the server's retention job (`store expire` runs a pass of it, so that it skips
// the mailboxes sessions hold and counts in its metrics).
using AdminCommandRunner = std::function<admin::AdminResponse(const admin::AdminRequest& request,
                                                              storage::MailStore& store,
                                                              retention::RetentionJob* retention)>;
int RunServe(const std::vector<std::string>& args, std::ostream& err,
             AdminCommandRunner admin_commands = nullptr);

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_SERVE_H_
