// UTF-8 well-formedness (RFC 3629), for text a peer claims is UTF-8: user names and passwords
// after the POP3 UTF8 command (RFC 6856), and the session's reply catalog in its tests.
// Pure functions; thread-safe.
#ifndef POSTHASTE_BASE_UTF8_H_
#define POSTHASTE_BASE_UTF8_H_

#include <string_view>

namespace posthaste {

// True when `text` is well-formed UTF-8 (RFC 3629 section 4): no overlong forms, no surrogates
// (U+D800..U+DFFF), nothing above U+10FFFF, no truncated sequence. The empty string is valid.
bool IsValidUtf8(std::string_view text);

// True when every octet of `text` is below 0x80.
bool IsAscii(std::string_view text);

}  // namespace posthaste

#endif  // POSTHASTE_BASE_UTF8_H_
