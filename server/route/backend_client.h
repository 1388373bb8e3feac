// PostToBackend: one HTTP/1.1 POST to a backend's admin API, blocking, under one absolute
// deadline covering connect, send and the whole answer. The route service calls it on the
// auth_http listener's workers (never its event loop) to verify a password.
//
// The answer is read until the backend closes (the admin listener answers with
// `Connection: close`, server/http/http_server.h) and at most reply_bytes_max bytes.
//
// Threading: thread-safe (no shared state). Blocks up to deadline_ms.
#ifndef POSTHASTE_SERVER_ROUTE_BACKEND_CLIENT_H_
#define POSTHASTE_SERVER_ROUTE_BACKEND_CLIENT_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace posthaste::server::route {

struct BackendReply {
  int status = 0;
  std::string body;
};

struct BackendRequest {
  std::string ip;  // an IPv4 or IPv6 literal
  uint16_t port = 0;
  std::string path;          // "/api/v1/auth/verify"
  std::string bearer_token;  // sent as "Authorization: Bearer <token>"
  std::string json_body;
  uint32_t deadline_ms = 3'000;
  size_t reply_bytes_max = 16 * 1024;
};

// Unavailable when the backend cannot be reached, closes early or misses the deadline
// (DeadlineExceeded); InvalidArgument for a bad address; the reply's status and body otherwise
// (whatever the status).
absl::StatusOr<BackendReply> PostToBackend(const BackendRequest& request);

}  // namespace posthaste::server::route

#endif  // POSTHASTE_SERVER_ROUTE_BACKEND_CLIENT_H_
