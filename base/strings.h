// Bridges between std:: and absl:: vocabulary types. Debian's abseil 20220623 is built with
// ABSL_OPTION_USE_STD_STRING_VIEW=0 (and likewise for optional/variant/any), so absl::string_view
// is a distinct type from std::string_view and absl::StrCat does not accept the latter.
// posthaste code uses std::string_view; convert at abseil call sites with these. Thread-safe.
#ifndef POSTHASTE_BASE_STRINGS_H_
#define POSTHASTE_BASE_STRINGS_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace posthaste {

inline absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }
inline std::string_view StdView(absl::string_view s) { return {s.data(), s.size()}; }

}  // namespace posthaste

#endif  // POSTHASTE_BASE_STRINGS_H_
