// NormalizeUtf8Credential: prepares a UTF-8 user name or password for comparison, as RFC 6856
// section 2 asks of a POP3 server that announces "UTF8 USER" and RFC 4616 of SASL PLAIN: the
// SASLprep profile (RFC 4013) of stringprep (RFC 3454), i.e. mapping (soft hyphen and the like
// to nothing, non-ASCII spaces to U+0020), NFKC, the prohibited-character and bidirectional
// checks. The tables are ICU's (libicu, Debian's libicu72), not our own.
//
// Whoever stores a password hash prepares the password with kStored first and whoever verifies
// one prepares the offered password with kQuery, so both sides hash the same string (docs/
// ARCHITECTURE.md, "LANG and UTF8").
//
// Thread-safe: the profile is loaded once and only read afterwards. Cheap for ASCII (a scan);
// otherwise a few microseconds, so it may run on a reactor thread.
#ifndef POSTHASTE_SERVER_AUTH_UTF8_CREDENTIAL_H_
#define POSTHASTE_SERVER_AUTH_UTF8_CREDENTIAL_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace posthaste::auth {

// RFC 3454 section 7: a string being stored must not contain unassigned code points; a string
// offered for comparison (a login) may.
enum class Utf8CredentialUse : uint8_t { kQuery, kStored };

// Longest non-ASCII credential prepared (UTF-8 octets); a longer one is refused. Printable
// ASCII of any length passes unchanged without this limit (SASLprep leaves it as it is).
inline constexpr size_t kUtf8CredentialBytesMax = 4096;

// On success: the prepared string, UTF-8. Printable ASCII comes back unchanged.
// On failure: InvalidArgument naming the rule that refused it (not UTF-8, a prohibited or
// unassigned character, the bidirectional rule, too long). The text itself is never in the
// message (it may be a password).
absl::StatusOr<std::string> NormalizeUtf8Credential(
    std::string_view text, Utf8CredentialUse use = Utf8CredentialUse::kQuery);

}  // namespace posthaste::auth

#endif  // POSTHASTE_SERVER_AUTH_UTF8_CREDENTIAL_H_
