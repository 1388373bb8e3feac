// Arbitrary bytes into the JSON reader, whole and as a stream: never a crash, an over-read or
// unbounded recursion; a value read from a prefix parses again by itself, and quoted ASCII
// strings come back unchanged.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "base/json.h"

namespace {

void CheckStrings(const posthaste::JsonValue& v) {
  // JsonQuote escapes each byte >= 0x80 by itself (as U+0080..U+00FF): only ASCII comes back.
  bool ascii = true;
  for (const unsigned char c : v.text()) ascii = ascii && c < 0x80;
  if (v.is_string() && ascii) {
    auto back = posthaste::ParseJson(posthaste::JsonQuote(v.text()));
    if (!back.ok() || back->text() != v.text()) abort();
  }
  for (const auto& e : v.elements()) CheckStrings(e);
  for (const auto& m : v.members()) CheckStrings(m.second);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const posthaste::JsonLimits limits{.bytes_max = 1 << 16, .depth_max = 16, .values_max = 4096};
  auto whole = posthaste::ParseJson(text, limits);
  if (whole.ok()) CheckStrings(*whole);
  size_t consumed = 0;
  auto first = posthaste::ParseJsonPrefix(text, &consumed, limits);
  if (first.ok()) {
    if (consumed == 0 || consumed > text.size()) abort();
    if (!posthaste::ParseJson(text.substr(0, consumed), limits).ok()) abort();
  }
  return 0;
}
