// nginx's mail auth_http protocol, answered from the placement directory. nginx's mail proxy
// sends one GET per login attempt with the credentials in headers (Auth-Method, Auth-User,
// Auth-Pass, Auth-Protocol, Auth-Login-Attempt, Client-IP, ...; nginx percent-encodes
// Auth-User and Auth-Pass) and reads only the answer's headers:
//   Auth-Status: OK, Auth-Server: <IP address>, Auth-Port: <port>   proxy to that backend
//   Auth-Status: <text>, Auth-Wait: <s>     refuse this attempt; the client may try again
//                                           after <s> seconds
//   Auth-Status: <text> (no Auth-Wait)      refuse and close the client's connection
// The password is checked by the owning backend (its /api/v1/auth/verify, through the
// BackendVerifier) before OK, so nginx never opens a backend connection for a bad login. What
// the client reads is "-ERR <Auth-Status text>", so the texts carry RFC 3206 codes.
//
// Answers (each counted in route_counters.h):
//   - a request that is not a plain or login POP3 attempt: refused, connection closed;
//   - an unknown user and a wrong password: the same text, with the backend's failure delay
//     as Auth-Wait, so nobody can tell them apart. A user the directory does not place (its
//     domain unknown) is still checked against a live backend, picked by domain, whose verify
//     endpoint runs a dummy hash for accounts it lacks: the answer takes as long as a wrong
//     password's and carries that backend's delay; it is never OK;
//   - a mailbox being moved, a backend not registered (down or draining) or not answering
//     within the deadline: "[SYS/TEMP]" with Auth-Wait;
//   - past login_attempts_max attempts on one connection: refused without Auth-Wait (nginx
//     keeps state per attempt until the connection ends).
//
// Threading: AnswerAuthHttp is thread-safe; it runs on the HTTP listener's workers and blocks
// for as long as the verifier does (bounded by its deadline).
#ifndef POSTHASTE_SERVER_ROUTE_AUTH_HTTP_H_
#define POSTHASTE_SERVER_ROUTE_AUTH_HTTP_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "server/http/http_message.h"
#include "server/placement/directory.h"
#include "server/route/route_counters.h"

namespace posthaste::server::route {

struct BackendVerdict {
  enum class Code : uint8_t { kOk, kBadCredentials, kUnavailable };
  Code code = Code::kUnavailable;
  uint32_t failure_delay_ms = 0;  // kBadCredentials: the backend's penalty
};

// Checks `user`/`password` against `backend`. Thread-safe; blocks at most its own deadline.
using BackendVerifier = std::function<BackendVerdict(
    const placement::BackendEndpoint& backend, std::string_view user, std::string_view password)>;

struct AuthHttpOptions {
  uint32_t login_attempts_max = 10;  // nginx advises answering without Auth-Wait after 10-20
  uint32_t unknown_user_wait_s = 2;  // unknown user and no backend registered to ask
  uint32_t temporary_wait_s = 3;     // Auth-Wait of temporary failures
};

// What nginx sent, decoded.
struct AuthHttpQuery {
  std::string method;    // lower-cased: plain, login, apop, cram-md5, external, none
  std::string protocol;  // lower-cased: pop3, imap, smtp
  std::string user;      // percent-decoded
  std::string password;  // percent-decoded
  uint32_t login_attempt = 1;
  std::string client_ip;
};

// The query in `request`; an empty `*error` on success, else why it is refused.
AuthHttpQuery ParseAuthHttpQuery(const http::HttpRequest& request, std::string* error);

// The answer to one auth_http request (always 200: nginx reads the headers).
http::HttpResponse AnswerAuthHttp(const http::HttpRequest& request,
                                  const placement::DirectorySnapshot& snapshot,
                                  const BackendVerifier& verifier, const AuthHttpOptions& options,
                                  RouteCounters* counters);

// The verifier that asks the backend's admin API (POST /api/v1/auth/verify with the bearer
// token), each call bounded by deadline_ms. The token must be the backends' admin token.
BackendVerifier HttpBackendVerifier(std::string admin_token, uint32_t deadline_ms);

}  // namespace posthaste::server::route

#endif  // POSTHASTE_SERVER_ROUTE_AUTH_HTTP_H_
