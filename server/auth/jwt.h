// JSON Web Token verification (RFC 7519) over compact JWS (RFC 7515) with the public keys of a
// JWKS (server/auth/jwks.h): RS256, ES256 and EdDSA (Ed25519, RFC 8037) through BoringSSL.
//
// Three layers, each usable alone: ParseCompactJws (syntax: base64url, the JSON header, the
// algorithm), VerifyJwsSignature (one key), and VerifyJwt (key choice by `kid`, signature, then
// the claims: issuer, audience, exp, nbf, iat with a bounded clock skew, and the claim that
// names the mailbox). Time is an argument: nothing here reads a clock.
//
// Status codes, so a caller can tell a stale token from a bad one:
//   InvalidArgument   the token breaks JWS/JWT syntax, or is longer than jwt_bytes_max
//   PermissionDenied  algorithm, key, signature, issuer, audience or mailbox claim refused
//   OutOfRange        exp passed, or nbf/iat in the future, beyond the clock skew
//
// Pure functions; thread-safe (a JwtPublicKey is only read). Fuzzed by
// //server/auth:jwt_fuzzer.
#ifndef POSTHASTE_SERVER_AUTH_JWT_H_
#define POSTHASTE_SERVER_AUTH_JWT_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/json.h"
#include "openssl/base.h"
#include "openssl/ec_key.h"  // bssl::UniquePtr<EC_KEY>
#include "openssl/rsa.h"     // bssl::UniquePtr<RSA>

namespace posthaste::auth {

// Tokens longer than this are refused before any decoding (RFC 7628 gives no bound; providers'
// access tokens stay far below it).
inline constexpr size_t kJwtBytesMax = 64 * 1024;

// base64url without padding (RFC 7515 section 2). Decoding refuses '=', the '+' '/' alphabet,
// whitespace, a length of 1 mod 4 and non-zero trailing bits, so one token has one encoding.
std::optional<std::string> Base64UrlDecode(std::string_view text);
std::string Base64UrlEncode(std::string_view bytes);

enum class JwsAlgorithm : uint8_t { kRs256, kEs256, kEdDsa };
std::string_view JwsAlgorithmName(JwsAlgorithm algorithm);  // "RS256", "ES256", "EdDSA"
// Exact (case-sensitive) names; nullopt for "none", HS*, PS* and every other algorithm.
std::optional<JwsAlgorithm> ParseJwsAlgorithm(std::string_view name);

// One verification key. Move-only: it owns BoringSSL objects.
struct JwtPublicKey {
  enum class Type : uint8_t { kRsa, kEcP256, kEd25519 };
  Type type = Type::kRsa;
  std::string kid;                        // empty when the JWK had none
  std::optional<JwsAlgorithm> algorithm;  // the JWK's "alg", when it named one
  bssl::UniquePtr<RSA> rsa;               // kRsa
  bssl::UniquePtr<EC_KEY> ec;             // kEcP256
  std::array<uint8_t, 32> ed25519{};      // kEd25519

  // The algorithm this key verifies (RS256 for RSA, ES256 for P-256, EdDSA for Ed25519).
  JwsAlgorithm NativeAlgorithm() const;
};

// A compact JWS split and decoded. The payload is not interpreted (RFC 8037's example signs
// plain text); VerifyJwt parses it as the claims set.
struct ParsedJws {
  JwsAlgorithm algorithm = JwsAlgorithm::kRs256;
  std::string kid;            // the header's, empty when absent
  std::string signing_input;  // ASCII(header "." payload), as signed
  std::string payload;        // decoded
  std::string signature;      // decoded
};

// Refuses: more or fewer than three parts, bad base64url, a header that is not a JSON object,
// a missing or unsupported `alg` (PermissionDenied for "none", HS256 and the like), a
// non-string `kid`, any `crit` header (no extension is understood here), and tokens past
// kJwtBytesMax.
absl::StatusOr<ParsedJws> ParseCompactJws(std::string_view token);

// OK when `key` is of the type jws.algorithm needs (and its JWK "alg", if any, names the same
// algorithm) and the signature verifies; PermissionDenied otherwise.
absl::Status VerifyJwsSignature(const ParsedJws& jws, const JwtPublicKey& key);

struct JwtCheckOptions {
  std::string issuer;                   // `iss` must equal it exactly (required)
  std::vector<std::string> audiences;   // `aud` (string or array) must hold one of them
  std::string mailbox_claim = "email";  // the string claim that names the mailbox
  int64_t clock_skew_seconds = 60;      // tolerance for exp, nbf and iat
};

struct VerifiedJwt {
  std::string mailbox;  // the mailbox claim's value, as the token wrote it
  std::string subject;  // `sub`, empty when absent
  int64_t expires_unix_seconds = 0;
};

// The claims check alone, on a decoded payload: a JSON object with `iss`, `aud`, `exp` and the
// mailbox claim (a string holding '@'); `nbf` and `iat`, when present, must be numbers.
absl::StatusOr<VerifiedJwt> CheckJwtClaims(std::string_view payload, const JwtCheckOptions& options,
                                           int64_t now_unix_seconds);

// Everything: parse, choose the key (the one whose kid equals the header's; with no kid in the
// header, the only key of the set), verify the signature, check the claims at
// `now_unix_seconds`.
absl::StatusOr<VerifiedJwt> VerifyJwt(std::string_view token, const std::vector<JwtPublicKey>& keys,
                                      const JwtCheckOptions& options, int64_t now_unix_seconds);

}  // namespace posthaste::auth

#endif  // POSTHASTE_SERVER_AUTH_JWT_H_
