// What the HTTP admin API's handlers share (server/admin/admin_api.cc and the route files
// beside it): the request/reply pair, JSON error replies, the mapping of store errors to HTTP
// statuses, and typed access to the members of a JSON body. Internal to //server/admin:admin_api.
//
// Pure functions over the exchange; thread-safe as long as each exchange is used by one thread.
#ifndef POSTHASTE_SERVER_ADMIN_ADMIN_REPLY_H_
#define POSTHASTE_SERVER_ADMIN_ADMIN_REPLY_H_

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/admin/json_body.h"
#include "server/http/http_server.h"

namespace posthaste::server::admin {

// One request and the reply being built for it: what the handlers read and write. The HTTP
// listener's worker passes the request in and sends `response`.
struct AdminExchange {
  const http::HttpRequest& request;
  http::HttpResponse response;
};

// Sets a JSON reply. `reason` is the standard phrase of `code` (the listener writes that one);
// kept so that each call reads like the status line it makes. `extra_headers`: "Name: value\r\n"
// lines.
void Reply(AdminExchange* conn, int code, std::string_view reason, std::string_view body,
           std::string_view extra_headers = "");
// {"error": message}; returns true (handlers return it as "replied").
bool ReplyError(AdminExchange* conn, int code, std::string_view reason, std::string_view message,
                std::string_view extra_headers = "");
// Maps an error to its HTTP status: a store error by its kind (storage/store_error.h), an error
// the API found in the request itself (target, body, fields) by its code. Returns true.
bool ReplyStatus(AdminExchange* conn, const absl::Status& status);

// The body (bounded); nullopt after replying 413. The listener already refuses a
// Content-Length over kJsonBodyBytesMax with 413 before any handler runs.
std::optional<std::string> ReadBody(AdminExchange* conn);
// The body as a flat JSON object whose members are all in `allowed`; nullopt after replying
// (413, or 400 for bad JSON and unknown members).
std::optional<JsonObject> ReadJsonObject(AdminExchange* conn,
                                         std::initializer_list<std::string_view> allowed);

// Field accessors: absent (or null) is nullopt; a wrong type is InvalidArgument (a 400 message).
absl::StatusOr<std::optional<std::string>> StringField(const JsonObject& o, std::string_view n);
absl::StatusOr<std::optional<uint64_t>> IntegerField(const JsonObject& o, std::string_view n);
absl::StatusOr<std::optional<bool>> BoolField(const JsonObject& o, std::string_view n);
// InvalidArgument naming the first member not in `allowed`.
absl::Status OnlyFields(const JsonObject& o, std::initializer_list<std::string_view> allowed);

}  // namespace posthaste::server::admin

#endif  // POSTHASTE_SERVER_ADMIN_ADMIN_REPLY_H_
