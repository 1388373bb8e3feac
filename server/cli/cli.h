// The posthaste command line: subcommands that operate on a data directory.
//
//   posthaste user add    --data_dir=DIR ADDRESS     password: one line on stdin
//   posthaste user del    --data_dir=DIR ADDRESS
//   posthaste user passwd --data_dir=DIR ADDRESS     password: one line on stdin
//   posthaste user list   --data_dir=DIR [DOMAIN]    "address messages octets" per line
//   posthaste deliver     --data_dir=DIR ADDRESS < message    prints the UIDL
//   posthaste import maildir --data_dir=DIR ADDRESS MAILDIR
//   posthaste check       --data_dir=DIR
//   posthaste compact     --data_dir=DIR
//   posthaste route       --directory_file=FILE ...   the router (server/route/route_service.h)
//   posthaste user move ADDRESS --to=BACKEND --etcd_endpoints=URLS --admin_token_file=FILE
//                         a live move between backends (server/placement/mailbox_move.h)
//
// Flags are accepted as `--flag=value` and `--flag value`, anywhere after the subcommand.
// Exit status: 0 success, 1 failure (one line "posthaste: ..." on stderr, nothing changed),
// 2 usage error. While `posthaste serve` runs on the data directory, the commands (except
// check) are sent to it through DIR/admin.sock (admin_socket.h) and run there, with the same
// forms, output and exit status; another process holding the directory without a socket makes
// them fail with the store's one-line "in use" message.
//
// Threading: RunCli runs on the calling thread and blocks (disk I/O, password hashing); it
// is for the posthaste binary and tests, never a reactor thread. The streams must outlive it.
#ifndef POSTHASTE_SERVER_CLI_CLI_H_
#define POSTHASTE_SERVER_CLI_CLI_H_

#include <iosfwd>
#include <string>
#include <vector>

#include "server/admin/admin_protocol.h"
#include "server/retention/retention_job.h"
#include "storage/mail_store.h"

namespace posthaste::server::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct CliStreams {
  std::istream* in;
  std::ostream* out;
  std::ostream* err;
  // Progress is redrawn in place on a terminal and printed as lines otherwise.
  bool err_is_terminal = false;
  // When `in` is file descriptor 0 and a terminal, passwords are prompted for on `err` with
  // echo turned off.
  bool in_is_terminal = false;
};

// Runs one command. `args` excludes the program name (argv[1..]).
int RunCli(const std::vector<std::string>& args, const CliStreams& io);

// Runs a command that arrived on the running server's admin socket against its open `store`:
// the same table, parsing, output and exit status as RunCli, with stdin from the request.
// Commands that need the store to themselves (check) are refused. Thread-safe (MailStore is).
// `retention`: the server's retention job (null: `store expire` runs one of its own).
admin::AdminResponse RunAdminCommand(const admin::AdminRequest& request, storage::MailStore& store,
                                     retention::RetentionJob* retention = nullptr);

// The usage text printed for --help and unknown subcommands.
std::string CliUsage();

}  // namespace posthaste::server::cli

#endif  // POSTHASTE_SERVER_CLI_CLI_H_
