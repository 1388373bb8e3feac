#include "server/admin/admin_reply.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/strings.h"
#include "storage/store_error.h"

namespace posthaste::server::admin {
namespace {

// "Name: value\r\n..." (as the handlers write them) as header fields.
std::vector<http::HttpHeader> HeaderFields(std::string_view lines) {
  std::vector<http::HttpHeader> fields;
  while (!lines.empty()) {
    const size_t end = lines.find("\r\n");
    const std::string_view line = lines.substr(0, end);
    lines = end == std::string_view::npos ? std::string_view() : lines.substr(end + 2);
    const size_t colon = line.find(": ");
    if (colon == std::string_view::npos) continue;
    fields.push_back({std::string(line.substr(0, colon)), std::string(line.substr(colon + 2))});
  }
  return fields;
}

}  // namespace

// `reason` is the standard phrase of `code` (the listener writes that one); kept so that each
// call reads like the status line it makes.
void Reply(AdminExchange* conn, int code, std::string_view reason, std::string_view body,
           std::string_view extra_headers) {
  conn->response.status = code;
  conn->response.content_type = "application/json";
  conn->response.body = std::string(body);
  conn->response.headers = HeaderFields(extra_headers);
}

bool ReplyError(AdminExchange* conn, int code, std::string_view reason, std::string_view message,
                std::string_view extra_headers) {
  Reply(conn, code, reason, absl::StrCat("{\"error\":", JsonString(message), "}\n"), extra_headers);
  return true;
}

// Maps an error to its HTTP status: a store error by its kind (storage/store_error.h), an error
// the API found in the request itself (target, body, fields) by its code.
bool ReplyStatus(AdminExchange* conn, const absl::Status& status) {
  const std::string message(StdView(status.message()));
  using storage::StoreError;
  switch (storage::ErrorOf(status)) {
    case StoreError::kNone:
      break;
    case StoreError::kUnknownAccount:
    case StoreError::kUnknownTenant:
      return ReplyError(conn, 404, "Not Found", message);
    case StoreError::kAccountHeld:
      return ReplyError(conn, 503, "Service Unavailable", message);
    case StoreError::kAccountExists:
    case StoreError::kUidlInUse:
    case StoreError::kTenantExists:
    case StoreError::kTenantNotEmpty:
      return ReplyError(conn, 409, "Conflict", message);
    case StoreError::kStaleRevision:
      return ReplyError(conn, 412, "Precondition Failed", message);
    case StoreError::kInvalidAddress:
    case StoreError::kInvalidUidl:
    case StoreError::kInvalidArgument:
    case StoreError::kNotWireForm:
      return ReplyError(conn, 400, "Bad Request", message);
    default:
      return ReplyError(conn, 500, "Internal Server Error", message);
  }
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
      return ReplyError(conn, 404, "Not Found", message);
    case absl::StatusCode::kAlreadyExists:
      return ReplyError(conn, 409, "Conflict", message);
    case absl::StatusCode::kInvalidArgument:
      return ReplyError(conn, 400, "Bad Request", message);
    case absl::StatusCode::kFailedPrecondition:
      return ReplyError(conn, 409, "Conflict", message);
    // The shards did not answer in time (live sessions): ask again.
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return ReplyError(conn, 503, "Service Unavailable", message, "Retry-After: 1\r\n");
    default:
      return ReplyError(conn, 500, "Internal Server Error", message);
  }
}

// The body (bounded); nullopt after replying 413. The listener already refuses a
// Content-Length over kJsonBodyBytesMax with 413 before any handler runs.
std::optional<std::string> ReadBody(AdminExchange* conn) {
  if (conn->request.body.size() > kJsonBodyBytesMax) {
    ReplyError(conn, 413, "Payload Too Large",
               absl::StrCat("body over ", kJsonBodyBytesMax, " bytes"));
    return std::nullopt;
  }
  return conn->request.body;
}

// Field accessors: absent is fine; a wrong type is a 400 message.
absl::StatusOr<std::optional<std::string>> StringField(const JsonObject& o, std::string_view n) {
  auto it = o.find(n);
  if (it == o.end() || it->second.type == JsonScalar::Type::kNull) {
    return std::optional<std::string>();
  }
  if (it->second.type != JsonScalar::Type::kString) {
    return absl::InvalidArgumentError(absl::StrCat("\"", AbslView(n), "\" must be a string"));
  }
  return std::optional<std::string>(it->second.string);
}

absl::StatusOr<std::optional<uint64_t>> IntegerField(const JsonObject& o, std::string_view n) {
  auto it = o.find(n);
  if (it == o.end() || it->second.type == JsonScalar::Type::kNull) {
    return std::optional<uint64_t>();
  }
  if (it->second.type != JsonScalar::Type::kInteger) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", AbslView(n), "\" must be a non-negative integer"));
  }
  return std::optional<uint64_t>(it->second.integer);
}

absl::StatusOr<std::optional<bool>> BoolField(const JsonObject& o, std::string_view n) {
  auto it = o.find(n);
  if (it == o.end() || it->second.type == JsonScalar::Type::kNull) return std::optional<bool>();
  if (it->second.type != JsonScalar::Type::kBool) {
    return absl::InvalidArgumentError(absl::StrCat("\"", AbslView(n), "\" must be a boolean"));
  }
  return std::optional<bool>(it->second.boolean);
}

absl::Status OnlyFields(const JsonObject& o, std::initializer_list<std::string_view> allowed) {
  for (const auto& [name, value] : o) {
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown member \"", name, "\""));
    }
  }
  return absl::OkStatus();
}

std::optional<JsonObject> ReadJsonObject(AdminExchange* conn,
                                         std::initializer_list<std::string_view> allowed) {
  std::optional<std::string> body = ReadBody(conn);
  if (!body.has_value()) return std::nullopt;
  absl::StatusOr<JsonObject> object = ParseJsonObject(*body);
  if (!object.ok()) {
    ReplyStatus(conn, object.status());
    return std::nullopt;
  }
  if (absl::Status known = OnlyFields(*object, allowed); !known.ok()) {
    ReplyStatus(conn, known);
    return std::nullopt;
  }
  return *std::move(object);
}

}  // namespace posthaste::server::admin
