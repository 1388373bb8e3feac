// Storage adapter: turns a storage::MailboxSnapshot into the POP3 engine's MailboxSnapshot.
//
// The POP3 snapshot is a concrete struct of arrays with a private constructor (built only
// through its Builder), so the adapter copies sizes and UIDLs once into it: one reserve, one
// append per UIDL into a single string, no per-message allocation (about 0.3 ms for 10,000
// messages). A message's opaque ref is its 0-based index in the storage snapshot, which the
// driver uses to find {fd, offset, length} and header_length. Both snapshots travel together
// in an OpenMaildrop, which keeps the segment fds valid.
//
// The tenant's listing cap (`tenant policy --list_newest=N`) is applied here: the view holds
// only the newest N stored messages (the last N in arrival order), numbered 1..N, and each
// keeps its stored index as its ref, so RETR, TOP and the deletions committed at QUIT reach
// exactly the messages the client saw. Older messages stay stored and come into view as newer
// ones are deleted.
//
// Threading: pure functions; call from any thread (the driver calls it on the offload pool).
#ifndef POSTHASTE_SERVER_POP3_SERVICE_STORAGE_ADAPTER_H_
#define POSTHASTE_SERVER_POP3_SERVICE_STORAGE_ADAPTER_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "server/pop3/mailbox_snapshot.h"
#include "storage/mail_store.h"

namespace posthaste::server {

struct OpenMaildrop {
  std::shared_ptr<const storage::MailboxSnapshot> stored;  // keeps segment fds open
  std::shared_ptr<const pop3::MailboxSnapshot> view;       // what the session sees
};

// `list_newest`: show only the newest this many messages; 0 shows all of them.
// InvalidArgument when a stored UIDL is not a valid RFC 1939 unique-id (storage validates
// them, so this means corruption).
absl::StatusOr<OpenMaildrop> AdaptSnapshot(std::shared_ptr<const storage::MailboxSnapshot> stored,
                                           uint32_t list_newest = 0);

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_POP3_SERVICE_STORAGE_ADAPTER_H_
