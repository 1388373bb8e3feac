#include "server/auth/testing/jwt_signer.h"

#include <cstdlib>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/strings.h"
#include "openssl/bn.h"
#include "openssl/curve25519.h"
#include "openssl/ec.h"
#include "openssl/ec_key.h"
#include "openssl/ecdsa.h"
#include "openssl/nid.h"
#include "openssl/rsa.h"
#include "openssl/sha.h"

namespace posthaste::auth::testing {
namespace {

std::string BigNumberB64(const BIGNUM* n, size_t bytes) {
  std::vector<uint8_t> out(bytes == 0 ? BN_num_bytes(n) : bytes);
  if (BN_bn2bin_padded(out.data(), out.size(), n) != 1) abort();
  return Base64UrlEncode(std::string_view(reinterpret_cast<const char*>(out.data()), out.size()));
}

std::string Sha256(std::string_view input) {
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(input.data()), input.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof(digest));
}

}  // namespace

JwtSigner::JwtSigner(JwsAlgorithm algorithm, std::string kid)
    : algorithm_(algorithm), kid_(std::move(kid)) {
  switch (algorithm) {
    case JwsAlgorithm::kRs256: {
      rsa_.reset(RSA_new());
      bssl::UniquePtr<BIGNUM> e(BN_new());
      if (!BN_set_word(e.get(), RSA_F4) ||
          !RSA_generate_key_ex(rsa_.get(), 2048, e.get(), nullptr)) {
        abort();
      }
      break;
    }
    case JwsAlgorithm::kEs256:
      ec_.reset(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
      if (ec_ == nullptr || !EC_KEY_generate_key(ec_.get())) abort();
      break;
    case JwsAlgorithm::kEdDsa:
      ED25519_keypair(ed_public_.data(), ed_private_.data());
      break;
  }
}

std::string JwtSigner::PublicJwk() const {
  const std::string kid = kid_.empty() ? "" : absl::StrCat(",\"kid\":\"", kid_, "\"");
  switch (algorithm_) {
    case JwsAlgorithm::kRs256:
      return absl::StrCat("{\"kty\":\"RSA\"", kid, ",\"n\":\"",
                          BigNumberB64(RSA_get0_n(rsa_.get()), 0), "\",\"e\":\"",
                          BigNumberB64(RSA_get0_e(rsa_.get()), 0), "\"}");
    case JwsAlgorithm::kEs256: {
      bssl::UniquePtr<BIGNUM> x(BN_new()), y(BN_new());
      if (!EC_POINT_get_affine_coordinates_GFp(EC_KEY_get0_group(ec_.get()),
                                               EC_KEY_get0_public_key(ec_.get()), x.get(), y.get(),
                                               nullptr)) {
        abort();
      }
      return absl::StrCat("{\"kty\":\"EC\",\"crv\":\"P-256\"", kid, ",\"x\":\"",
                          BigNumberB64(x.get(), 32), "\",\"y\":\"", BigNumberB64(y.get(), 32),
                          "\"}");
    }
    case JwsAlgorithm::kEdDsa:
      return absl::StrCat(
          "{\"kty\":\"OKP\",\"crv\":\"Ed25519\"", kid, ",\"x\":\"",
          Base64UrlEncode(std::string_view(reinterpret_cast<const char*>(ed_public_.data()), 32)),
          "\"}");
  }
  return "";
}

std::string JwtSigner::Jwks() const { return absl::StrCat("{\"keys\":[", PublicJwk(), "]}"); }

std::string JwtSigner::SignatureOver(std::string_view signing_input) const {
  switch (algorithm_) {
    case JwsAlgorithm::kRs256: {
      const std::string digest = Sha256(signing_input);
      std::vector<uint8_t> sig(RSA_size(rsa_.get()));
      unsigned sig_len = 0;
      if (!RSA_sign(NID_sha256, reinterpret_cast<const uint8_t*>(digest.data()), digest.size(),
                    sig.data(), &sig_len, rsa_.get())) {
        abort();
      }
      return std::string(reinterpret_cast<const char*>(sig.data()), sig_len);
    }
    case JwsAlgorithm::kEs256: {
      const std::string digest = Sha256(signing_input);
      bssl::UniquePtr<ECDSA_SIG> sig(
          ECDSA_do_sign(reinterpret_cast<const uint8_t*>(digest.data()), digest.size(), ec_.get()));
      if (sig == nullptr) abort();
      const BIGNUM *r = nullptr, *s = nullptr;
      ECDSA_SIG_get0(sig.get(), &r, &s);
      uint8_t raw[64];
      if (!BN_bn2bin_padded(raw, 32, r) || !BN_bn2bin_padded(raw + 32, 32, s)) abort();
      return std::string(reinterpret_cast<const char*>(raw), sizeof(raw));
    }
    case JwsAlgorithm::kEdDsa: {
      uint8_t sig[64];
      if (!ED25519_sign(sig, reinterpret_cast<const uint8_t*>(signing_input.data()),
                        signing_input.size(), ed_private_.data())) {
        abort();
      }
      return std::string(reinterpret_cast<const char*>(sig), sizeof(sig));
    }
  }
  return "";
}

std::string JwtSigner::SignRaw(std::string_view header_json, std::string_view claims_json) const {
  const std::string input =
      absl::StrCat(Base64UrlEncode(header_json), ".", Base64UrlEncode(claims_json));
  return absl::StrCat(input, ".", Base64UrlEncode(SignatureOver(input)));
}

std::string JwtSigner::Sign(std::string_view claims_json) const {
  const std::string header =
      kid_.empty() ? absl::StrCat("{\"alg\":\"", AbslView(JwsAlgorithmName(algorithm_)), "\"}")
                   : absl::StrCat("{\"alg\":\"", AbslView(JwsAlgorithmName(algorithm_)),
                                  "\",\"kid\":\"", kid_, "\"}");
  return SignRaw(header, claims_json);
}

}  // namespace posthaste::auth::testing
