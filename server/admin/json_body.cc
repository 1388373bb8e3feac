#include "server/admin/json_body.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "base/json.h"
#include "base/strings.h"

namespace posthaste::server::admin {
namespace {

absl::Status Refused(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("bad JSON: ", AbslView(what)));
}

}  // namespace

// The general reader (base/json.h) does the syntax; this keeps what the API takes: one flat
// object of strings, non-negative integers, booleans and null.
absl::StatusOr<JsonObject> ParseJsonObject(std::string_view text) {
  if (text.size() > kJsonBodyBytesMax) {
    return absl::InvalidArgumentError(absl::StrCat("JSON body over ", kJsonBodyBytesMax, " bytes"));
  }
  auto parsed = ParseJson(text, {.bytes_max = kJsonBodyBytesMax, .depth_max = 1});
  if (!parsed.ok()) return Refused(StdView(parsed.status().message()));
  if (!parsed->is_object()) return Refused("expected an object");
  JsonObject object;
  for (const auto& [name, value] : parsed->members()) {
    JsonScalar scalar;
    switch (value.type()) {
      case JsonValue::Type::kString:
        scalar.type = JsonScalar::Type::kString;
        scalar.string = std::string(value.text());
        break;
      case JsonValue::Type::kBool:
        scalar.type = JsonScalar::Type::kBool;
        scalar.boolean = value.boolean();
        break;
      case JsonValue::Type::kNull:
        scalar.type = JsonScalar::Type::kNull;
        break;
      case JsonValue::Type::kNumber: {
        // Digits only: no sign, fraction or exponent; within uint64.
        const std::optional<uint64_t> n = ParseDecimalU64(value.text());
        if (!IsDecimalDigits(value.text()) || !n.has_value()) {
          return Refused(absl::StrCat("member \"", name, "\" is not a non-negative integer"));
        }
        scalar.type = JsonScalar::Type::kInteger;
        scalar.integer = *n;
        break;
      }
      default:
        return Refused(absl::StrCat("member \"", name, "\" is not a string, number, bool or null"));
    }
    object.emplace(name, std::move(scalar));
  }
  return object;
}

std::string JsonString(std::string_view text) { return JsonQuote(text); }

}  // namespace posthaste::server::admin
