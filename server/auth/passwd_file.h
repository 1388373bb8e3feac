// Reading Dovecot passwd-files for `posthaste import passwd-file`.
//
// Defines ReadPasswdFileLine (one line of a file, bounded) and ParsePasswdFileLine (one line
// taken apart). The format is Dovecot's passwd-file: fields separated by ':',
//   user:password:uid:gid:gecos:home:shell:extra_fields
// of which posthaste uses the first two; the others (system ids, home, extra fields such as
// userdb quota rules) belong to Dovecot's userdb and are ignored. Empty lines and lines whose
// first non-blank character is '#' are skipped. The user may lack "@domain"; the caller decides
// which domain it gets. A password without a {SCHEME} prefix is read as `default_scheme`
// (Dovecot's passdb `scheme=` argument; CRYPT when not given, as in Dovecot).
//
// Threading: plain functions, thread-safe. A file is data from another system: every error is
// a Status naming what is wrong, never a crash.
#ifndef POSTHASTE_SERVER_AUTH_PASSWD_FILE_H_
#define POSTHASTE_SERVER_AUTH_PASSWD_FILE_H_

#include <istream>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace posthaste::auth {

// The longest line read; longer lines are refused (and skipped to their end).
inline constexpr size_t kPasswdFileLineBytesMax = 64 * 1024;

struct PasswdFileEntry {
  std::string user;         // as written: "name" or "name@domain"
  std::string stored_hash;  // with its {SCHEME} prefix, checked by ParseStoredHash
};

// Parses one line (without its LF; a trailing CR is dropped). nullopt for a blank line or a
// comment. InvalidArgument (with the reason) for a line without a user or a password, or whose
// password is not a hash ParseStoredHash accepts (malformed, or a scheme posthaste does not
// verify); ResourceExhausted for one CheckHashCost (default limits) refuses.
absl::StatusOr<std::optional<PasswdFileEntry>> ParsePasswdFileLine(
    std::string_view line, std::string_view default_scheme = "CRYPT");

// Reads the next line of `in` into `*line` (without the LF), at most kPasswdFileLineBytesMax
// bytes; a longer line is consumed to its end and reported with `*too_long`. False at the end
// of the input (nothing read).
bool ReadPasswdFileLine(std::istream& in, std::string* line, bool* too_long);

}  // namespace posthaste::auth

#endif  // POSTHASTE_SERVER_AUTH_PASSWD_FILE_H_
