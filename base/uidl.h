// The one UIDL rule, shared by storage (which refuses a bad UIDL when mail is delivered or
// imported) and the sans-I/O POP3 engine (which refuses one when a snapshot is built, since it
// would corrupt the UIDL listing). It lives in //base because the engine may not depend on
// //storage (docs/ARCHITECTURE.md, "Module map"). Pure and thread-safe.
#ifndef POSTHASTE_BASE_UIDL_H_
#define POSTHASTE_BASE_UIDL_H_

#include <cstddef>
#include <string_view>

namespace posthaste {

// RFC 1939 section 7: a unique-id is 1 to 70 characters in the range 0x21 to 0x7E.
inline constexpr size_t kUidlBytesMax = 70;

// True when every octet of `uidl` is in 0x21..0x7E (true for the empty string).
bool IsUidlCharacters(std::string_view uidl);

// True when `uidl` is a valid RFC 1939 unique-id: 1 to kUidlBytesMax octets, each in 0x21..0x7E.
inline bool IsValidUidl(std::string_view uidl) {
  return !uidl.empty() && uidl.size() <= kUidlBytesMax && IsUidlCharacters(uidl);
}

}  // namespace posthaste

#endif  // POSTHASTE_BASE_UIDL_H_
