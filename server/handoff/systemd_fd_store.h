// Keeping a memory-only blob across a restart of the service, through systemd's file
// descriptor store (sd_notify(3) FDSTORE=1, sd_listen_fds(3)), without libsystemd.
//
// Why: the password verification cache (server/pop3_service/auth_service.h) must never reach a
// disk (its entries are fast hashes of passwords under a key kept beside them), yet a restart
// that empties it makes every user's next login a cold one. The old process puts the blob in a
// sealed memfd and hands the descriptor to systemd (PID 1, root only); systemd passes it to the
// next process of the same service, which reads it and asks systemd to forget it. Nothing is
// written to any file system.
//
// systemd keeps the store while the service restarts by itself (Restart=, including an exit
// status listed in RestartForceExitStatus=), and, from systemd 254, across `systemctl restart`
// with FileDescriptorStorePreserve=restart; the unit needs NotifyAccess= and
// FileDescriptorStoreMax= (deploy/systemd/posthaste.service).
//
// Threading: call from the main thread at start-up and at exit; reads and changes the
// environment (LISTEN_*).
#ifndef POSTHASTE_SERVER_HANDOFF_SYSTEMD_FD_STORE_H_
#define POSTHASTE_SERVER_HANDOFF_SYSTEMD_FD_STORE_H_

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace posthaste::server::handoff {

// Whether systemd listens for notifications ($NOTIFY_SOCKET is set).
bool NotifySocketPresent();

// Puts `blob` in a sealed memfd named `name` and stores it with systemd under FDNAME=`name`.
// FailedPrecondition without $NOTIFY_SOCKET; the errno text otherwise.
absl::Status StoreBlob(std::string_view name, std::string_view blob);

// The blob systemd handed this process under FDNAME=`name` (LISTEN_PID must be this
// process), read whole (at most `bytes_max`); nullopt when there is none. Closes the
// descriptor, tells systemd to drop its copy (FDSTOREREMOVE), and clears LISTEN_* so no child
// inherits them. An error when the descriptor cannot be read.
absl::StatusOr<std::optional<std::string>> TakeBlob(std::string_view name, size_t bytes_max);

}  // namespace posthaste::server::handoff

#endif  // POSTHASTE_SERVER_HANDOFF_SYSTEMD_FD_STORE_H_
