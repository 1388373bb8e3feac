// Arbitrary bytes as a JWKS: never a crash or an over-read; every key kept has the material its
// type needs, and every key left out has a reason.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/auth/jwks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto set =
      posthaste::auth::ParseJwks(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!set.ok()) return 0;
  if (set->keys.size() > posthaste::auth::kJwksKeysMax) abort();
  for (const auto& key : set->keys) {
    using Type = posthaste::auth::JwtPublicKey::Type;
    if (key.type == Type::kRsa && key.rsa == nullptr) abort();
    if (key.type == Type::kEcP256 && key.ec == nullptr) abort();
  }
  for (const auto& reason : set->skipped) {
    if (reason.empty()) abort();
  }
  return 0;
}
