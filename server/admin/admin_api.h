// AdminApi: the JSON HTTP admin API for hosting control panels, off unless --admin_listen is
// given, on its own HTTP listener (server/http/http_server.h: an event-loop thread and four
// workers; never a reactor thread; separate from the metrics endpoint). Every request needs
// "Authorization: Bearer <token>", the token being the first line of --admin_token_file (at least
// 16 bytes), compared in constant time (SHA-256 of both, CRYPTO_memcmp).
//
//   GET    /api/v1/accounts[?domain=D]   {"accounts":[{address,disabled,messages,octets}]}
//   POST   /api/v1/accounts              {"address","password"[,"quota_messages","quota_octets"]}
//                                        -> 201 and the account
//   GET    /api/v1/accounts/ADDRESS      {address,disabled,held,messages,octets,quota_messages,
//                                         quota_octets,effective_quota_messages,
//                                         effective_quota_octets,max_message_bytes}
//   PATCH  /api/v1/accounts/ADDRESS      any of {"password","disabled","quota_messages",
//                                         "quota_octets"} -> 200 and the account
//   DELETE /api/v1/accounts/ADDRESS      204
//   GET    /api/v1/accounts/ADDRESS/mailbox[?after=N]
//                                        one page of the mailbox for a move (application/
//                                        octet-stream; storage/migration/mailbox_transfer.h)
//   PUT    /api/v1/accounts/ADDRESS/mailbox  stores such a page here, durably, idempotently ->
//                                        {imported,skipped,deleted,next_after_seq,complete}
//   PUT    /api/v1/accounts/ADDRESS/hold {"held":true|false}: hold deliveries (LMTP 451 4.2.0),
//                                        deletion commits and POP3 logins ([SYS/TEMP]) while the
//                                        account moves away, durably (kept across restarts).
//                                        Holding answers 200 only once the account's POP3
//                                        sessions have ended without committing (EndSessions);
//                                        503 when they did not in time (the hold stays: ask again)
//   POST   /api/v1/auth/verify           {"user","password"} -> 200 and {"result":"ok",
//                                        "address"}, {"result":"bad_credentials",
//                                        "failure_delay_ms"} or {"result":"temp_failure"}
//   GET    /api/v1/tenants               {"tenants":[TENANT...]}
//   POST   /api/v1/tenants               {"domain"[, limits and policy fields]} -> 201 TENANT
//                                        (Location, ETag); 409 when it exists
//   GET    /api/v1/tenants/DOMAIN        TENANT, with ETag: "REVISION" (the policy's revision)
//   PATCH  /api/v1/tenants/DOMAIN        any limits and policy fields; only those change; with
//                                        If-Match: "REVISION", 412 unless it is current -> 200
//   DELETE /api/v1/tenants/DOMAIN        204; 409 while the tenant has accounts
//     TENANT is flat: domain, revision, quota_messages, quota_octets, message_bytes_max, the
//     policy fields of server/tenant/policy_fields.h (numbers as JSON numbers, words such as
//     "default", "never", "allow" as strings), accounts, messages, octets.
//   GET    /api/v1/sessions[?tenant=D|?user=ADDRESS]
//                                        {"sessions":[{id,shard,user,tenant,peer,
//                                         started_unix_ms,state,tls,bytes_sent}],"truncated",
//                                         "shards_unanswered"} (SessionDirectory)
//   DELETE /api/v1/sessions/SHARD-CONN   ends the session without committing -> 204
//   GET    /api/v1/store/usage           totals per tenant and for the store
//   POST   /api/v1/store/check           starts `posthaste check` off the request -> 202 JOB
//   GET    /api/v1/store/check           JOB: state idle|running|done|failed, result
//   POST   /api/v1/store/compaction      starts a compaction -> 202 JOB (409 while one runs)
//   GET    /api/v1/store/compaction      JOB, with progress while running
// The whole API is described by docs/openapi.yaml (checked against this server by
// tests/openapi_test.py).
// auth/verify is what `posthaste route` asks before it lets nginx proxy a login
// (server/route/auth_http.h): it runs the server's own PasswordVerifier (the POP3 logins' auth
// service and its cache). It does not sleep the failure delay itself (that would hold one of
// the few workers): it reports it, and the router makes nginx wait it (Auth-Wait).
// ADDRESS in any case reaches the one account (the store compares addresses case-insensitively);
// "address" in answers is the spelling given at creation. The request target is decoded once,
// strictly, by ParseAdminPath (server/admin/admin_path.h): NUL, dot segments, empty segments, '/'
// inside ADDRESS, control characters and anything that is not an address get 400, never
// another account.
// The token, the target, the method and the announced body size are checked from the request
// head, before any of the body is read (http::HttpServerOptions::head_check): only an
// authenticated PUT .../mailbox may send more than a JSON object (kJsonBodyBytesMax).
// Quotas: 0 = the tenant default. Errors are {"error": "..."} with 400 (bad JSON, fields or path),
// 401 (token; with WWW-Authenticate: Bearer), 404, 405, 409 (exists, not empty, job running),
// 412 (If-Match), 413 (body over 64 KiB), 503 (shards not answering in time);
// the listener's own refusals (400, 408, 413, 414, 431, 501, 503, ...) carry the same JSON.
//
// Threading: Start/destructor on the main thread; handlers on the listener's workers, calling
// the thread-safe MailStore (and password hashing) directly.
#ifndef POSTHASTE_SERVER_ADMIN_ADMIN_API_H_
#define POSTHASTE_SERVER_ADMIN_ADMIN_API_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/admin/session_directory.h"
#include "server/http/http_server.h"
#include "server/serve_options.h"
#include "storage/mail_store.h"

namespace posthaste::server::admin {

// The outcome of checking one login's password, as the server's auth service decides it.
struct PasswordCheck {
  enum class Result : uint8_t { kOk, kBadCredentials, kTempFailure };
  Result result = Result::kBadCredentials;
  std::string address;  // kOk: the account's canonical address
};
// Checks a user name and password. Thread-safe; may block (store read, hashing).
using PasswordVerifier =
    std::function<PasswordCheck(std::string_view user, std::string_view password)>;
// Ends every POP3 session of `account` (canonical address, storage::AccountInfo::address)
// without committing, after the account was held for a move; returns once they have ended, or
// an error (Unavailable, DeadlineExceeded) within a bounded time. Thread-safe; blocks.
using SessionEnder = std::function<absl::Status(std::string_view account)>;

// What serve hands the admin API besides the store and the flags. Every member may be null
// (that part is then off: auth/verify 404, nothing to end on a hold, sessions 503, no hook);
// each must outlive the AdminApi.
struct AdminApiHooks {
  // Answers /api/v1/auth/verify.
  PasswordVerifier verify_password;
  // Called when an account is held.
  SessionEnder end_sessions;
  // The live sessions (/api/v1/sessions).
  SessionDirectory* sessions = nullptr;
  // Called after every tenant change, before its answer: the server re-reads tenant policies
  // so that new logins see the change at once (as after an admin socket command).
  std::function<void()> tenants_changed;
};

class AdminApi {
 public:
  // Reads the token file and binds options.admin_listen (port 0: the kernel picks).
  static absl::StatusOr<std::unique_ptr<AdminApi>> Start(const ServeOptions& options,
                                                         storage::MailStore* store,
                                                         AdminApiHooks hooks);
  ~AdminApi();
  uint16_t port() const { return port_; }
  // The listener's counters (exported on /metrics by AdminHttp); live as long as this.
  const http::HttpServerStats& http_stats() const;

  struct Impl;

 private:
  AdminApi() = default;
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
};

// True when `header` is "Bearer <token>" (scheme case-insensitive) for `token`; constant time
// in the token's contents and length.
bool BearerTokenMatches(std::string_view header, std::string_view token);

}  // namespace posthaste::server::admin

#endif  // POSTHASTE_SERVER_ADMIN_ADMIN_API_H_
