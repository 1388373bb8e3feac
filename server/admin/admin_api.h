// AdminApi: the JSON HTTP admin API for hosting control panels, off unless --admin_listen is
// given, on its own HTTP listener (server/http/http_server.h: an event-loop thread and four
// workers; never a reactor thread; separate from the metrics endpoint). Every request needs
// "Authorization: Bearer <token>", the token being the first line of --admin_token_file (at least
// 16 bytes), compared in constant time (SHA-256 of both, CRYPTO_memcmp).
//
//   GET    /api/v1/accounts[?domain=D]   {"accounts":[{address,disabled,messages,octets}]}
//   POST   /api/v1/accounts              {"address","password"[,"quota_messages","quota_octets"]}
//                                        -> 201 and the account
//   GET    /api/v1/accounts/ADDRESS      {address,disabled,messages,octets,quota_messages,
//                                         quota_octets,effective_quota_messages,
//                                         effective_quota_octets,max_message_bytes}
//   PATCH  /api/v1/accounts/ADDRESS      any of {"password","disabled","quota_messages",
//                                         "quota_octets"} -> 200 and the account
//   DELETE /api/v1/accounts/ADDRESS      204
// ADDRESS in any case reaches the one account (the store compares addresses case-insensitively);
// "address" in answers is the spelling given at creation. The request target is decoded once,
// strictly, by ParseAdminPath (server/admin/admin_path.h): NUL, dot segments, empty segments, '/'
// inside ADDRESS, control characters and anything that is not an address get 400, never
// another account.
// Quotas: 0 = the tenant default. Errors are {"error": "..."} with 400 (bad JSON, fields or path),
// 401 (token; with WWW-Authenticate: Bearer), 404, 405, 409 (exists), 413 (body over 64 KiB);
// the listener's own refusals (400, 408, 413, 414, 431, 501, 503, ...) carry the same JSON.
//
// Threading: Start/destructor on the main thread; handlers on the listener's workers, calling
// the thread-safe MailStore (and password hashing) directly.
#ifndef POSTHASTE_SERVER_ADMIN_ADMIN_API_H_
#define POSTHASTE_SERVER_ADMIN_ADMIN_API_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/http/http_server.h"
#include "server/serve_options.h"
#include "storage/mail_store.h"

namespace posthaste::server::admin {

class AdminApi {
 public:
  // Reads the token file and binds options.admin_listen (port 0: the kernel picks).
  static absl::StatusOr<std::unique_ptr<AdminApi>> Start(const ServeOptions& options,
                                                         storage::MailStore* store);
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
