// JwtSigner: a freshly generated key (RSA 2048, P-256 or Ed25519) that signs JWTs the way an
// identity provider would, and writes its public JWK, so tests need no key files.
//
// Test-only. Not thread-safe; one per test.
#ifndef POSTHASTE_SERVER_AUTH_TESTING_JWT_SIGNER_H_
#define POSTHASTE_SERVER_AUTH_TESTING_JWT_SIGNER_H_

#include <array>
#include <string>
#include <string_view>

#include "openssl/base.h"
#include "openssl/ec_key.h"  // bssl::UniquePtr<EC_KEY>
#include "openssl/rsa.h"     // bssl::UniquePtr<RSA>
#include "server/auth/jwt.h"

namespace posthaste::auth::testing {

class JwtSigner {
 public:
  // A new random key for `algorithm`; `kid` goes in the JWK and in Sign()'s default header.
  JwtSigner(JwsAlgorithm algorithm, std::string kid);

  JwsAlgorithm algorithm() const { return algorithm_; }
  const std::string& kid() const { return kid_; }

  // The public key as a JWK object ({"kty":...,"kid":...,...}).
  std::string PublicJwk() const;
  // A JWKS holding only this key.
  std::string Jwks() const;

  // header.payload.signature over these exact JSON texts.
  std::string SignRaw(std::string_view header_json, std::string_view claims_json) const;
  // With the header {"alg":<this algorithm>,"kid":<kid>} (no kid when kid is empty).
  std::string Sign(std::string_view claims_json) const;
  // The signature alone over `signing_input`, for hand-built tokens.
  std::string SignatureOver(std::string_view signing_input) const;

 private:
  JwsAlgorithm algorithm_;
  std::string kid_;
  bssl::UniquePtr<RSA> rsa_;
  bssl::UniquePtr<EC_KEY> ec_;
  std::array<uint8_t, 32> ed_public_{};
  std::array<uint8_t, 64> ed_private_{};
};

}  // namespace posthaste::auth::testing

#endif  // POSTHASTE_SERVER_AUTH_TESTING_JWT_SIGNER_H_
