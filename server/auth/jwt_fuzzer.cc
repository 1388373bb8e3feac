// Arbitrary bytes as a compact JWS and as a JWT checked against fixed keys: never a crash or an
// over-read; whatever parses re-encodes to the same signing input, and nothing verifies
// without a key that signed it (the fixed keys sign nothing here).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "server/auth/jwks.h"
#include "server/auth/jwt.h"

namespace {

const std::vector<posthaste::auth::JwtPublicKey>& Keys() {
  // RFC 8037 A.2's Ed25519 key and RFC 7515 A.3's P-256 key: public, and never signing the
  // fuzzer's bytes.
  static const auto* keys = [] {
    auto set = posthaste::auth::ParseJwks(
        R"({"keys":[{"kty":"OKP","crv":"Ed25519","kid":"d",)"
        R"("x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},)"
        R"({"kty":"EC","crv":"P-256","kid":"e","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",)"
        R"("y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]})");
    if (!set.ok() || set->keys.size() != 2) abort();
    return new std::vector<posthaste::auth::JwtPublicKey>(std::move(set->keys));
  }();
  return *keys;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view token(reinterpret_cast<const char*>(data), size);
  auto jws = posthaste::auth::ParseCompactJws(token);
  if (jws.ok()) {
    if (jws->signing_input != token.substr(0, token.rfind('.'))) abort();
    for (const auto& key : Keys()) (void)posthaste::auth::VerifyJwsSignature(*jws, key);
    posthaste::auth::JwtCheckOptions options;
    options.issuer = "i";
    options.audiences = {"a"};
    (void)posthaste::auth::CheckJwtClaims(jws->payload, options, 1800000000);
  }
  posthaste::auth::JwtCheckOptions options;
  options.issuer = "i";
  options.audiences = {"a"};
  if (posthaste::auth::VerifyJwt(token, Keys(), options, 1800000000).ok()) abort();
  // base64url both ways.
  auto decoded = posthaste::auth::Base64UrlDecode(token);
  if (decoded && posthaste::auth::Base64UrlEncode(*decoded) != token) abort();
  return 0;
}
