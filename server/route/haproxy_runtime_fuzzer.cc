// libFuzzer target: the parsers of HAProxy's runtime API replies and of map text. A prepare
// reply that parses must start with the text it was parsed from; a silent reply is accepted only
// when it holds nothing but line ends; map entries never hold a line end or an empty key, and
// the command lines built from them stay under the line limit unless one command alone is longer.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/check.h"
#include "server/route/haproxy_runtime.h"
#include "tools/build/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace posthaste::server::route;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto version = ParsePrepareMapReply(text);
  if (version.ok()) {
    PH_CHECK(*version >= 0);
    PH_CHECK(text.rfind("New version created: ", 0) == 0);
  }
  if (CheckSilentReply(text).ok()) {
    PH_CHECK(text.find_first_not_of("\r\n") == std::string_view::npos);
  }
  const auto entries = HaproxyMapEntries(text);
  size_t longest = 0;
  for (const auto& [key, value] : entries) {
    PH_CHECK(!key.empty() && !value.empty());
    PH_CHECK(key.find('\n') == std::string::npos && value.find('\n') == std::string::npos);
    longest = std::max(longest, key.size() + value.size() + 64);
  }
  const auto lines = HaproxyMapCommitLines("/m.map", 7, entries);
  PH_CHECK(!lines.empty());
  const std::string_view commit = "commit map @7 /m.map";
  PH_CHECK(lines.back().size() >= commit.size() &&
           lines.back().substr(lines.back().size() - commit.size()) == commit);
  for (const std::string& line : lines) {
    PH_CHECK(line.size() <= std::max(kHaproxyCommandLineBytesMax, longest));
    PH_CHECK(line.find('\n') == std::string::npos);
  }
  return 0;
}
