// Bridges between std:: and absl:: vocabulary types. Debian's abseil 20220623 is built with
// ABSL_OPTION_USE_STD_STRING_VIEW=0 (and likewise for optional/variant/any), so absl::string_view
// is a distinct type from std::string_view and absl::StrCat does not accept the latter.
// posthaste code uses std::string_view; convert at abseil call sites with these.
//
// Also the one decimal-number parser: every place that reads a number from text (protocol
// arguments, flags, headers, stored files) calls ParseDecimalU64 or ParseDecimalAtMost, so
// "what is a number" is decided once. Everything here is pure and thread-safe.
#ifndef POSTHASTE_BASE_STRINGS_H_
#define POSTHASTE_BASE_STRINGS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace posthaste {

inline absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }
inline std::string_view StdView(absl::string_view s) { return {s.data(), s.size()}; }

// True when `text` is one or more ASCII digits '0'-'9' and nothing else.
bool IsDecimalDigits(std::string_view text);

// A strict unsigned decimal: one or more ASCII digits and nothing else (no sign, space, prefix
// or separator; leading zeros are allowed). nullopt for anything else, and for values past
// UINT64_MAX.
std::optional<uint64_t> ParseDecimalU64(std::string_view text);

// ParseDecimalU64, and nullopt also when the value is greater than `max`.
std::optional<uint64_t> ParseDecimalAtMost(std::string_view text, uint64_t max);

// Command-line flags as every posthaste command takes them: `--name=value` or `--name value`.
// FlagName gives the name of args[i] (which starts with "--"); FlagValue its value, moving *i
// past a value given as the next argument ("flag --name needs a value" when there is none).
std::string_view FlagName(std::string_view arg);
absl::StatusOr<std::string> FlagValue(const std::vector<std::string>& args, size_t* i);

}  // namespace posthaste

#endif  // POSTHASTE_BASE_STRINGS_H_
