// The JSON the HTTP admin API accepts: one flat object whose members are strings, non-negative
// integers, booleans or null (RFC 8259 syntax; nested objects/arrays, fractions, exponents,
// negative numbers, duplicate names and trailing bytes are refused with a message naming the
// offset). Plus escaping for the JSON the API writes.
//
// Pure functions; thread-safe. Input is untrusted (network): fuzzed by
// //server:json_body_fuzzer.
#ifndef POSTHASTE_SERVER_ADMIN_JSON_BODY_H_
#define POSTHASTE_SERVER_ADMIN_JSON_BODY_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace posthaste::server::admin {

struct JsonScalar {
  enum class Type : uint8_t { kString, kInteger, kBool, kNull };
  Type type = Type::kNull;
  std::string string;    // kString (UTF-8, escapes decoded)
  uint64_t integer = 0;  // kInteger
  bool boolean = false;  // kBool
};

using JsonObject = std::map<std::string, JsonScalar, std::less<>>;

inline constexpr size_t kJsonBodyBytesMax = 64 * 1024;

absl::StatusOr<JsonObject> ParseJsonObject(std::string_view text);

// `text` as a JSON string literal, quotes included (control characters and non-ASCII bytes
// escaped as \u00XX, so the output is ASCII whatever the input).
std::string JsonString(std::string_view text);

}  // namespace posthaste::server::admin

#endif  // POSTHASTE_SERVER_ADMIN_JSON_BODY_H_
