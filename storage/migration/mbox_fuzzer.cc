// The mbox splitter on arbitrary bytes: never crashes, never hands out a message over the
// limit, and messages put back together read the same way again.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "storage/migration/mbox_import.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr uint64_t kLimit = 4096;
  std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
  std::vector<std::string> texts;
  const absl::Status status = posthaste::storage::migration::ForEachMboxMessage(
      in, kLimit, [&](posthaste::storage::migration::MboxMessage& m) {
        if (m.text.size() > kLimit) __builtin_trap();
        texts.push_back(m.text);
        return absl::OkStatus();
      });
  (void)posthaste::storage::migration::MboxSeparatorTime(
      std::string_view(reinterpret_cast<const char*>(data), size));
  if (!status.ok()) return 0;
  // Written back as mboxrd (every "From "-led line escaped, an empty line before each
  // separator), the file splits into the same messages.
  std::string again;
  for (const std::string& text : texts) {
    again += "From fuzz Thu Jan  1 00:00:00 2026\n";
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      std::string_view line(text.data() + start, end - start);
      const size_t quotes = line.find_first_not_of('>');
      if (quotes != std::string_view::npos && line.substr(quotes).substr(0, 5) == "From ") {
        again += '>';
      }
      again.append(line);
      again += '\n';
      start = end + 1;
    }
    again += '\n';
  }
  std::istringstream in_again(again);
  std::vector<std::string> texts_again;
  const absl::Status status_again = posthaste::storage::migration::ForEachMboxMessage(
      in_again, kLimit * 2, [&](posthaste::storage::migration::MboxMessage& m) {
        texts_again.push_back(m.text);
        return absl::OkStatus();
      });
  if (!status_again.ok() || texts_again != texts) __builtin_trap();
  return 0;
}
