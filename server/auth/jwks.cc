#include "server/auth/jwks.h"

#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/json.h"
#include "base/strings.h"
#include "openssl/bn.h"
#include "openssl/ec.h"
#include "openssl/ec_key.h"
#include "openssl/err.h"
#include "openssl/nid.h"
#include "openssl/rsa.h"

namespace posthaste::auth {
namespace {

constexpr unsigned kRsaBitsMin = 2048;
constexpr unsigned kRsaBitsMax = 8192;

// A key, or why it was left out.
struct KeyOrReason {
  std::optional<JwtPublicKey> key;
  std::string reason;
};

KeyOrReason Skip(std::string reason) { return KeyOrReason{std::nullopt, std::move(reason)}; }

std::optional<std::string> Member(const JsonValue& jwk, std::string_view name) {
  const JsonValue* value = jwk.Find(name);
  if (value == nullptr || !value->is_string()) return std::nullopt;
  return std::string(value->text());
}

std::optional<std::string> DecodedMember(const JsonValue& jwk, std::string_view name) {
  const auto text = Member(jwk, name);
  if (!text) return std::nullopt;
  return Base64UrlDecode(*text);
}

KeyOrReason RsaKey(const JsonValue& jwk) {
  const auto n = DecodedMember(jwk, "n");
  const auto e = DecodedMember(jwk, "e");
  if (!n || !e || n->empty() || e->empty()) return Skip("RSA key without base64url n and e");
  if (e->size() > 8) return Skip("RSA exponent too long");
  bssl::UniquePtr<RSA> rsa(RSA_new());
  BIGNUM* bn_n = BN_bin2bn(reinterpret_cast<const uint8_t*>(n->data()), n->size(), nullptr);
  BIGNUM* bn_e = BN_bin2bn(reinterpret_cast<const uint8_t*>(e->data()), e->size(), nullptr);
  if (rsa == nullptr || bn_n == nullptr || bn_e == nullptr ||
      RSA_set0_key(rsa.get(), bn_n, bn_e, nullptr) != 1) {
    BN_free(bn_n);
    BN_free(bn_e);
    return Skip("RSA key rejected by BoringSSL");
  }
  const unsigned bits = RSA_bits(rsa.get());
  if (bits < kRsaBitsMin || bits > kRsaBitsMax) {
    return Skip(absl::StrCat("RSA modulus of ", bits, " bits (", kRsaBitsMin, " to ", kRsaBitsMax,
                             " accepted)"));
  }
  if (!BN_is_odd(RSA_get0_e(rsa.get())) || BN_is_one(RSA_get0_e(rsa.get()))) {
    return Skip("RSA exponent is not an odd number above 1");
  }
  KeyOrReason out;
  out.key.emplace();
  out.key->type = JwtPublicKey::Type::kRsa;
  out.key->rsa = std::move(rsa);
  return out;
}

KeyOrReason EcKey(const JsonValue& jwk) {
  const auto crv = Member(jwk, "crv");
  if (crv != "P-256")
    return Skip(absl::StrCat("EC curve ", JsonQuote(crv.value_or("")), " is not supported"));
  const auto x = DecodedMember(jwk, "x");
  const auto y = DecodedMember(jwk, "y");
  if (!x || !y || x->size() != 32 || y->size() != 32) {
    return Skip("P-256 key without 32-byte base64url x and y");
  }
  bssl::UniquePtr<EC_KEY> ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  bssl::UniquePtr<BIGNUM> bx(BN_bin2bn(reinterpret_cast<const uint8_t*>(x->data()), 32, nullptr));
  bssl::UniquePtr<BIGNUM> by(BN_bin2bn(reinterpret_cast<const uint8_t*>(y->data()), 32, nullptr));
  // Checks that the point lies on the curve, which keeps invalid-curve points out.
  if (ec == nullptr || bx == nullptr || by == nullptr ||
      EC_KEY_set_public_key_affine_coordinates(ec.get(), bx.get(), by.get()) != 1) {
    return Skip("P-256 point is not on the curve");
  }
  KeyOrReason out;
  out.key.emplace();
  out.key->type = JwtPublicKey::Type::kEcP256;
  out.key->ec = std::move(ec);
  return out;
}

KeyOrReason OkpKey(const JsonValue& jwk) {
  const auto crv = Member(jwk, "crv");
  if (crv != "Ed25519")
    return Skip(absl::StrCat("OKP curve ", JsonQuote(crv.value_or("")), " is not supported"));
  const auto x = DecodedMember(jwk, "x");
  if (!x || x->size() != 32) return Skip("Ed25519 key without a 32-byte base64url x");
  KeyOrReason out;
  out.key.emplace();
  out.key->type = JwtPublicKey::Type::kEd25519;
  std::copy(x->begin(), x->end(), out.key->ed25519.begin());
  return out;
}

KeyOrReason ParseKey(const JsonValue& jwk) {
  if (!jwk.is_object()) return Skip("not a JSON object");
  const auto kty = Member(jwk, "kty");
  if (!kty) return Skip("no kty");
  if (*kty != "RSA" && *kty != "EC" && *kty != "OKP") {
    return Skip(absl::StrCat("kty ", JsonQuote(*kty), " is not supported"));
  }
  if (const JsonValue* use = jwk.Find("use"); use != nullptr && use->text() != "sig") {
    return Skip("use is not \"sig\"");
  }
  if (const JsonValue* ops = jwk.Find("key_ops")) {
    bool verify = false;
    for (const auto& op : ops->elements()) verify = verify || op.text() == "verify";
    if (!verify) return Skip("key_ops lacks \"verify\"");
  }
  // Private members mean the file was written from the wrong export: refuse to hold secrets.
  for (const char* secret : {"d", "p", "q", "dp", "dq", "qi", "k"}) {
    if (jwk.Find(secret) != nullptr) return Skip("holds private key members");
  }
  std::optional<JwsAlgorithm> algorithm;
  if (const JsonValue* alg = jwk.Find("alg")) {
    algorithm = ParseJwsAlgorithm(alg->text());
    if (!algorithm) return Skip(absl::StrCat("alg ", JsonQuote(alg->text()), " is not supported"));
  }
  KeyOrReason parsed;
  if (*kty == "RSA") {
    parsed = RsaKey(jwk);
  } else if (*kty == "EC") {
    parsed = EcKey(jwk);
  } else {
    parsed = OkpKey(jwk);
  }
  ERR_clear_error();
  if (!parsed.key) return parsed;
  if (algorithm && *algorithm != parsed.key->NativeAlgorithm()) {
    return Skip(
        absl::StrCat("alg ", AbslView(JwsAlgorithmName(*algorithm)), " does not fit kty ", *kty));
  }
  parsed.key->algorithm = algorithm;
  if (const JsonValue* kid = jwk.Find("kid")) {
    if (!kid->is_string()) return Skip("kid is not a string");
    parsed.key->kid = std::string(kid->text());
  }
  return parsed;
}

}  // namespace

absl::StatusOr<JwkSet> ParseJwks(std::string_view text) {
  if (text.size() > kJwksBytesMax) {
    return absl::InvalidArgumentError(absl::StrCat("JWKS longer than ", kJwksBytesMax, " bytes"));
  }
  auto root =
      ParseJson(text, JsonLimits{.bytes_max = kJwksBytesMax, .depth_max = 8, .values_max = 20000});
  if (!root.ok())
    return absl::InvalidArgumentError(absl::StrCat("JWKS: ", root.status().message()));
  const JsonValue* keys = root->is_object() ? root->Find("keys") : nullptr;
  if (keys == nullptr || !keys->is_array()) {
    return absl::InvalidArgumentError("JWKS: not an object with a \"keys\" array");
  }
  if (keys->elements().size() > kJwksKeysMax) {
    return absl::InvalidArgumentError(absl::StrCat("JWKS: more than ", kJwksKeysMax, " keys"));
  }
  JwkSet set;
  for (size_t i = 0; i < keys->elements().size(); ++i) {
    const JsonValue& jwk = keys->elements()[i];
    KeyOrReason parsed = ParseKey(jwk);
    const JsonValue* kid = jwk.Find("kid");
    const std::string where = kid != nullptr && kid->is_string()
                                  ? absl::StrCat("key ", i, " (kid ", JsonQuote(kid->text()), ")")
                                  : absl::StrCat("key ", i);
    if (parsed.key) {
      for (const auto& earlier : set.keys) {
        if (earlier.kid == parsed.key->kid) {
          parsed =
              Skip(parsed.key->kid.empty() ? "a second key without kid" : "repeats an earlier kid");
          break;
        }
      }
    }
    if (!parsed.key) {
      set.skipped.push_back(absl::StrCat(where, ": ", parsed.reason));
      continue;
    }
    set.keys.push_back(std::move(*parsed.key));
  }
  return set;
}

}  // namespace posthaste::auth
