// libFuzzer target: any bytes as a passwd-file, read line by line and parsed. Checks that
// reading never loses or invents bytes (the lines and separators add up to the input), that no
// line is longer than its limit, and that an accepted line's hash is one ParseStoredHash takes.
// Single-threaded.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "server/auth/passwd_file.h"
#include "server/auth/password_hash.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  std::istringstream in(input);
  std::string line;
  bool too_long = false;
  bool any_too_long = false;
  size_t bytes = 0;
  while (posthaste::auth::ReadPasswdFileLine(in, &line, &too_long)) {
    if (line.size() > posthaste::auth::kPasswdFileLineBytesMax) __builtin_trap();
    bytes += line.size();
    any_too_long = any_too_long || too_long;
    if (too_long) continue;
    auto entry = posthaste::auth::ParsePasswdFileLine(line);
    if (entry.ok() && entry->has_value()) {
      if ((*entry)->user.empty()) __builtin_trap();
      if (!posthaste::auth::ParseStoredHash((*entry)->stored_hash).ok()) __builtin_trap();
    }
  }
  // Without an over-long line, every byte is either in a line or one of the separating LFs.
  size_t newlines = 0;
  for (char c : input) newlines += c == '\n' ? 1 : 0;
  if (!any_too_long && bytes + newlines != input.size()) __builtin_trap();
  return 0;
}
