// JSON Web Key Sets (RFC 7517): the public keys a tenant's identity provider signs tokens with,
// as a file the operator keeps up to date (most providers publish it at their jwks_uri).
//
// Understood: RSA (n, e; 2048 to 8192 bits), EC P-256 (x, y; the point is checked on the
// curve) and OKP Ed25519 (x). Anything else (another kty or curve, "use" other than "sig",
// "key_ops" without "verify", private key members, a repeated kid) is skipped with a reason
// rather than failing the set, so a provider adding a new key type does not lock everyone out.
//
// Pure functions; thread-safe. Fuzzed by //server/auth:jwks_fuzzer.
#ifndef POSTHASTE_SERVER_AUTH_JWKS_H_
#define POSTHASTE_SERVER_AUTH_JWKS_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/auth/jwt.h"

namespace posthaste::auth {

inline constexpr size_t kJwksBytesMax = 1 << 20;
inline constexpr size_t kJwksKeysMax = 64;

struct JwkSet {
  std::vector<JwtPublicKey> keys;
  // One line per key left out: "key 2 (kid \"x\"): kty \"oct\" is not supported".
  std::vector<std::string> skipped;
};

// `text` must be a JSON object with a "keys" array of at most kJwksKeysMax objects, and at most
// kJwksBytesMax bytes: InvalidArgument otherwise. A set where every key was skipped is still
// returned (the caller decides whether an empty set is an error).
absl::StatusOr<JwkSet> ParseJwks(std::string_view text);

}  // namespace posthaste::auth

#endif  // POSTHASTE_SERVER_AUTH_JWKS_H_
