// A small JSON (RFC 8259) reader: text in, an immutable tree of values out, with limits on
// size, nesting depth and value count so untrusted input (a peer's HTTP response) costs bounded
// memory and stack. Also JsonQuote, for the JSON posthaste writes.
//
// Strict: no comments, no trailing commas, no duplicate member names, no unpaired UTF-16
// surrogates, no raw control characters in strings, nothing but whitespace after the value
// (ParseJson; ParseJsonPrefix reads one value of a stream of concatenated values). Strings
// come out as UTF-8 with escapes decoded; raw bytes >= 0x80 are passed through unchecked.
// Numbers keep their text: AsInt64 reads integers, and also decimal strings, which is how
// protobuf's JSON mapping (etcd's HTTP gateway) writes 64-bit integers.
//
// Pure functions; thread-safe. Fuzzed by //base:json_fuzzer.
#ifndef POSTHASTE_BASE_JSON_H_
#define POSTHASTE_BASE_JSON_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace posthaste {

class JsonValue {
 public:
  enum class Type : uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };
  using Member = std::pair<std::string, JsonValue>;

  JsonValue() = default;

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::kNull; }
  bool is_object() const { return type_ == Type::kObject; }
  bool is_array() const { return type_ == Type::kArray; }
  bool is_string() const { return type_ == Type::kString; }

  // kBool: its value; false otherwise.
  bool boolean() const { return boolean_; }
  // kString: the decoded text; kNumber: the number as written. Empty otherwise.
  std::string_view text() const { return text_; }
  // kArray: the elements; kObject: the members in document order. Empty otherwise.
  const std::vector<JsonValue>& elements() const { return elements_; }
  const std::vector<Member>& members() const { return members_; }

  // kObject: the member named `name`, or null (missing, or this is not an object).
  const JsonValue* Find(std::string_view name) const;
  // A kNumber without fraction or exponent, or a kString of an optional '-' and decimal
  // digits, within int64; nullopt otherwise.
  std::optional<int64_t> AsInt64() const;

 private:
  friend class JsonParser;
  Type type_ = Type::kNull;
  bool boolean_ = false;
  std::string text_;
  std::vector<JsonValue> elements_;
  std::vector<Member> members_;
};

struct JsonLimits {
  size_t bytes_max = 1 << 20;    // of the text examined
  uint32_t depth_max = 32;       // nested arrays/objects
  uint32_t values_max = 100000;  // every value, members' and elements' included
};

// The one JSON value `text` holds (surrounding whitespace allowed). InvalidArgument naming the
// byte offset for bad syntax; ResourceExhausted when a limit is passed.
absl::StatusOr<JsonValue> ParseJson(std::string_view text, const JsonLimits& limits = {});

// The first JSON value in `text` (leading whitespace skipped); *consumed: the bytes it took.
// Unavailable (with *consumed untouched) when `text` ends before the value does, so a stream
// reader can wait for more bytes; other errors as ParseJson.
absl::StatusOr<JsonValue> ParseJsonPrefix(std::string_view text, size_t* consumed,
                                          const JsonLimits& limits = {});

// `text` as a JSON string literal, quotes included; control characters and bytes >= 0x80 are
// escaped as \u00XX, so the output is ASCII whatever the input.
std::string JsonQuote(std::string_view text);

}  // namespace posthaste

#endif  // POSTHASTE_BASE_JSON_H_
