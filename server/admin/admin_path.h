// ParseAdminPath: the request target of an HTTP admin API request, decoded once and strictly.
//
// Takes the raw request target exactly as it came on the request line (origin form: path and
// optional query, nothing decoded or cleaned by the HTTP server), so percent-decoding happens
// here and only here, once. Names one of:
//   /api/v1/accounts[?domain=D]     the collection (D: a domain, decoded once)
//   /api/v1/accounts/ADDRESS        one account (ADDRESS: decoded once; "%40" for '@' is fine)
//   /api/v1/accounts/ADDRESS/mailbox[?after=N]
//                                   the account's mailbox as pages for a move (N: decimal,
//                                   at most 20 digits; see storage/migration/mailbox_transfer.h)
//   /api/v1/accounts/ADDRESS/hold   whether the account is held for a move
//   /api/v1/tenants                 the tenants (no query)
//   /api/v1/tenants/DOMAIN          one tenant (DOMAIN: decoded once, lowercased)
//   /api/v1/sessions[?tenant=D|?user=ADDRESS]
//                                   the live POP3 sessions (at most one filter)
//   /api/v1/sessions/ID             one live session (ID: SHARD-CONNECTION, decimal)
//   /api/v1/store/usage             totals per tenant
//   /api/v1/store/check             the consistency check job
//   /api/v1/store/compaction        the compaction job
// Refused with InvalidArgument (the API answers 400 with a JSON error), never normalised into
// another resource: a target not starting with '/'; raw bytes outside 0x21-0x7E, '\' or '#';
// a '%' not followed by two hex digits; a decoded NUL, control character, byte >= 0x80, '\' or
// '/' inside a segment (so "%2F" never splits one); any "." or ".." segment, raw or encoded
// ("%2e%2e"); an empty segment ("//", or a trailing '/'); an account segment that is not a
// valid address (storage::ParseAddress), a tenant segment that is not a domain, a session id
// that is not SHARD-CONNECTION; a query where the resource takes none, a parameter it does not
// take, or one given twice; a target over kAdminTargetBytesMax. A well-formed path naming
// nothing is NotFound (404).
//
// Pure function, no I/O, thread-safe; fuzzed by //server:admin_path_fuzzer.
#ifndef POSTHASTE_SERVER_ADMIN_ADMIN_PATH_H_
#define POSTHASTE_SERVER_ADMIN_ADMIN_PATH_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace posthaste::server::admin {

inline constexpr size_t kAdminTargetBytesMax = 2048;

struct AdminPath {
  enum class Resource : uint8_t {
    kAccounts,
    kAccount,
    kMailbox,
    kHold,
    kTenants,
    kTenant,
    kSessions,
    kSession,
    kStoreUsage,
    kStoreCheck,
    kStoreCompaction,
  };
  Resource resource = Resource::kAccounts;
  // kAccount: the address as the client spelled it (decoded; a valid address). The store
  // finds the account whatever its case.
  std::string address;
  // kAccounts: the ?domain= filter; kTenant: the tenant's domain; kSessions: the ?tenant=
  // filter. Lowercased (storage::NormalizeDomain).
  std::optional<std::string> domain;
  // kSessions: the ?user= filter (a valid address, decoded once, as given).
  std::optional<std::string> user;
  // kSession: the session's id, SHARD-CONNECTION.
  uint32_t session_shard = 0;
  uint64_t session_connection = 0;
  // kMailbox: the ?after= cursor (0 when absent).
  uint64_t after_seq = 0;
};

absl::StatusOr<AdminPath> ParseAdminPath(std::string_view raw_target);

}  // namespace posthaste::server::admin

#endif  // POSTHASTE_SERVER_ADMIN_ADMIN_PATH_H_
