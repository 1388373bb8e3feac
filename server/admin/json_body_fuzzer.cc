// Arbitrary bytes into the admin API's JSON body parser: never a crash or an over-read; what it
// accepts has only scalar members, and strings it returns survive JsonString (pure ASCII out).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/admin/json_body.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using posthaste::server::admin::JsonString;
  using posthaste::server::admin::ParseJsonObject;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto object = ParseJsonObject(text);
  if (object.ok()) {
    for (const auto& [name, value] : *object) {
      for (unsigned char c : JsonString(name) + JsonString(value.string)) {
        if (c >= 0x80 || c < 0x20) abort();
      }
    }
  }
  return 0;
}
