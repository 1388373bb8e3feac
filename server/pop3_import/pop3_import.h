// `posthaste import pop3`: copies a mailbox from another POP3 server into a posthaste account,
// keeping the source's UIDLs, so that clients that remember messages by UIDL (getmail,
// fetchmail, "leave on server" settings) download nothing again after the move.
//
// The source is read, never changed: UIDL and LIST first, then RETR of each message the account
// does not have yet; no DELE is ever sent. Each RETR body (wire form, storage/message_format.h)
// is stored as sent, so RETR from posthaste returns the same bytes; a body that is not in wire
// form (bare LFs) is unstuffed and stored as text. Messages go in all-or-nothing batches with
// their source UIDLs, and UIDLs already present (or once used) in the account are skipped: a
// rerun, also after the import was killed, adds only what is missing and never a duplicate.
//
// Limits: before any message is stored, the LIST sizes are checked against the tenant's
// maximum message size and the account's quota (ResourceExhausted naming the message or the
// quota); each RETR body is bounded by that maximum too, and every read has a deadline
// (pop3_source_client.h).
//
// Threading: blocks on the network and the store (the CLI, or an admin socket worker; never a
// reactor thread).
#ifndef POSTHASTE_SERVER_POP3_IMPORT_POP3_IMPORT_H_
#define POSTHASTE_SERVER_POP3_IMPORT_POP3_IMPORT_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/pop3_import/pop3_source_client.h"
#include "storage/mail_store.h"

namespace posthaste::server::pop3_import {

struct Pop3ImportOptions {
  SourceOptions source;
  // The login name at the source; empty: the local part of the account's address (as typed).
  // A master-user login (Dovecot's "user*master") goes here.
  std::string source_user;
  std::string password;
};

struct Pop3ImportProgress {
  uint64_t done = 0;    // messages handled (imported or skipped)
  uint64_t total = 0;   // messages at the source
  uint64_t octets = 0;  // octets imported so far
};

struct Pop3ImportResult {
  uint64_t total = 0;  // messages at the source
  uint64_t imported = 0;
  uint64_t skipped = 0;  // UIDL already present (or used before) in the account
  uint64_t octets = 0;   // POP3 octets imported
};

// Imports the source mailbox into the existing account `address`. Errors: NotFound (no such
// account), ResourceExhausted (size, quota), the source's (pop3_source_client.h), the store's;
// after messages were stored, the text says how many and that a rerun resumes. `progress`
// (optional) is called after each batch.
absl::StatusOr<Pop3ImportResult> ImportPop3(
    storage::MailStore& store, std::string_view address, const Pop3ImportOptions& options,
    const std::function<void(const Pop3ImportProgress&)>& progress);

}  // namespace posthaste::server::pop3_import

#endif  // POSTHASTE_SERVER_POP3_IMPORT_POP3_IMPORT_H_
