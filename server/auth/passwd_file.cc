#include "server/auth/passwd_file.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "server/auth/password_hash.h"

namespace posthaste::auth {

absl::StatusOr<std::optional<PasswdFileEntry>> ParsePasswdFileLine(
    std::string_view line, std::string_view default_scheme) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  size_t first = line.find_first_not_of(" \t");
  if (first == std::string_view::npos || line[first] == '#') return std::nullopt;
  if (line.size() > kPasswdFileLineBytesMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("line longer than ", kPasswdFileLineBytesMax, " bytes"));
  }
  const size_t user_end = line.find(':');
  if (user_end == std::string_view::npos) {
    return absl::InvalidArgumentError("no ':' after the user name");
  }
  std::string_view user = line.substr(0, user_end);
  if (user.empty()) return absl::InvalidArgumentError("empty user name");
  std::string_view rest = line.substr(user_end + 1);
  std::string_view password = rest.substr(0, rest.find(':'));
  if (password.empty()) {
    return absl::InvalidArgumentError("empty password field (no password to import)");
  }
  PasswdFileEntry entry;
  entry.user = std::string(user);
  if (password[0] == '{') {
    entry.stored_hash = std::string(password);
  } else {
    entry.stored_hash = absl::StrCat("{", AbslView(default_scheme), "}", AbslView(password));
  }
  absl::StatusOr<ParsedStoredHash> parsed = ParseStoredHash(entry.stored_hash);
  if (!parsed.ok()) return parsed.status();
  PH_RETURN_IF_ERROR(CheckHashCost(*parsed, HashCostLimits{}));
  return entry;
}

bool ReadPasswdFileLine(std::istream& in, std::string* line, bool* too_long) {
  line->clear();
  *too_long = false;
  bool any = false;
  char c;
  while (in.get(c)) {
    any = true;
    if (c == '\n') return true;
    if (line->size() < kPasswdFileLineBytesMax) {
      line->push_back(c);
    } else {
      *too_long = true;
    }
  }
  return any;
}

}  // namespace posthaste::auth
