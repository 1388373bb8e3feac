#include "server/auth/jwt.h"

#include <cmath>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "openssl/bn.h"
#include "openssl/curve25519.h"
#include "openssl/ec_key.h"
#include "openssl/ecdsa.h"
#include "openssl/err.h"
#include "openssl/nid.h"
#include "openssl/rsa.h"
#include "openssl/sha.h"

namespace posthaste::auth {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int DecodeChar(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// JSON limits for a header or a claims set: a token is at most 64 KiB, so its parts are too.
constexpr JsonLimits kTokenJsonLimits{
    .bytes_max = kJwtBytesMax, .depth_max = 16, .values_max = 4096};

absl::Status Refused(std::string_view why) {
  return absl::PermissionDeniedError(absl::StrCat("token refused: ", AbslView(why)));
}
absl::Status Malformed(std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("malformed token: ", AbslView(why)));
}

// RFC 7519 NumericDate: a JSON number of seconds, possibly with a fraction (floored). nullopt
// for anything else or a value beyond +-1e15 (which no clock reaches).
std::optional<int64_t> NumericDate(const JsonValue* value) {
  if (value == nullptr || value->type() != JsonValue::Type::kNumber) return std::nullopt;
  if (auto whole = value->AsInt64()) return whole;
  const std::string text(value->text());
  char* end = nullptr;
  const double seconds = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(seconds) || std::fabs(seconds) > 1e15) {
    return std::nullopt;
  }
  return static_cast<int64_t>(std::floor(seconds));
}

bool VerifyRs256(const ParsedJws& jws, RSA* rsa) {
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(jws.signing_input.data()), jws.signing_input.size(),
         digest);
  return RSA_verify(NID_sha256, digest, sizeof(digest),
                    reinterpret_cast<const uint8_t*>(jws.signature.data()), jws.signature.size(),
                    rsa) == 1;
}

// JWS carries ECDSA signatures as R || S, 32 bytes each (RFC 7518 section 3.4), not DER.
bool VerifyEs256(const ParsedJws& jws, const EC_KEY* ec) {
  if (jws.signature.size() != 64) return false;
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(jws.signing_input.data()), jws.signing_input.size(),
         digest);
  bssl::UniquePtr<ECDSA_SIG> sig(ECDSA_SIG_new());
  if (sig == nullptr) return false;
  const auto* raw = reinterpret_cast<const uint8_t*>(jws.signature.data());
  BIGNUM* r = BN_bin2bn(raw, 32, nullptr);
  BIGNUM* s = BN_bin2bn(raw + 32, 32, nullptr);
  if (r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return false;
  }
  return ECDSA_do_verify(digest, sizeof(digest), sig.get(), ec) == 1;
}

bool VerifyEd25519(const ParsedJws& jws, const std::array<uint8_t, 32>& public_key) {
  if (jws.signature.size() != 64) return false;
  return ED25519_verify(
             reinterpret_cast<const uint8_t*>(jws.signing_input.data()), jws.signing_input.size(),
             reinterpret_cast<const uint8_t*>(jws.signature.data()), public_key.data()) == 1;
}

absl::Status CheckAudience(const JsonValue* aud, const std::vector<std::string>& audiences) {
  if (aud == nullptr) return Refused("no aud claim");
  auto wanted = [&](std::string_view value) {
    for (const auto& a : audiences) {
      if (a == value) return true;
    }
    return false;
  };
  if (aud->is_string()) {
    if (wanted(aud->text())) return absl::OkStatus();
    return Refused("audience not accepted");
  }
  if (!aud->is_array()) return Malformed("aud is neither a string nor an array");
  for (const auto& element : aud->elements()) {
    if (!element.is_string()) return Malformed("aud holds a non-string");
    if (wanted(element.text())) return absl::OkStatus();
  }
  return Refused("audience not accepted");
}

}  // namespace

std::optional<std::string> Base64UrlDecode(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  uint32_t bits = 0;
  int bit_count = 0;
  for (const char c : text) {
    const int v = DecodeChar(c);
    if (v < 0) return std::nullopt;
    bits = (bits << 6) | static_cast<uint32_t>(v);
    bit_count += 6;
    if (bit_count >= 8) {
      bit_count -= 8;
      out.push_back(static_cast<char>((bits >> bit_count) & 0xff));
    }
  }
  // The leftover bits of a partial group must be zero, or two texts would decode alike.
  if ((bits & ((1u << bit_count) - 1)) != 0) return std::nullopt;
  return out;
}

std::string Base64UrlEncode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  uint32_t bits = 0;
  int bit_count = 0;
  for (const unsigned char c : bytes) {
    bits = (bits << 8) | c;
    bit_count += 8;
    while (bit_count >= 6) {
      bit_count -= 6;
      out.push_back(kAlphabet[(bits >> bit_count) & 0x3f]);
    }
  }
  if (bit_count > 0) out.push_back(kAlphabet[(bits << (6 - bit_count)) & 0x3f]);
  return out;
}

std::string_view JwsAlgorithmName(JwsAlgorithm algorithm) {
  switch (algorithm) {
    case JwsAlgorithm::kRs256:
      return "RS256";
    case JwsAlgorithm::kEs256:
      return "ES256";
    case JwsAlgorithm::kEdDsa:
      return "EdDSA";
  }
  return "?";
}

std::optional<JwsAlgorithm> ParseJwsAlgorithm(std::string_view name) {
  if (name == "RS256") return JwsAlgorithm::kRs256;
  if (name == "ES256") return JwsAlgorithm::kEs256;
  if (name == "EdDSA") return JwsAlgorithm::kEdDsa;
  return std::nullopt;
}

JwsAlgorithm JwtPublicKey::NativeAlgorithm() const {
  switch (type) {
    case Type::kRsa:
      return JwsAlgorithm::kRs256;
    case Type::kEcP256:
      return JwsAlgorithm::kEs256;
    case Type::kEd25519:
      return JwsAlgorithm::kEdDsa;
  }
  return JwsAlgorithm::kRs256;
}

absl::StatusOr<ParsedJws> ParseCompactJws(std::string_view token) {
  if (token.size() > kJwtBytesMax) {
    return Malformed(absl::StrCat("longer than ", kJwtBytesMax, " bytes"));
  }
  const size_t dot1 = token.find('.');
  if (dot1 == std::string_view::npos) return Malformed("not three dot-separated parts");
  const size_t dot2 = token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return Malformed("not three dot-separated parts");
  }
  auto header_bytes = Base64UrlDecode(token.substr(0, dot1));
  auto payload = Base64UrlDecode(token.substr(dot1 + 1, dot2 - dot1 - 1));
  auto signature = Base64UrlDecode(token.substr(dot2 + 1));
  if (!header_bytes || !payload || !signature) return Malformed("bad base64url");
  auto header = ParseJson(*header_bytes, kTokenJsonLimits);
  if (!header.ok() || !header->is_object()) return Malformed("header is not a JSON object");
  const JsonValue* alg = header->Find("alg");
  if (alg == nullptr || !alg->is_string()) return Malformed("header has no alg");
  const std::optional<JwsAlgorithm> algorithm = ParseJwsAlgorithm(alg->text());
  if (!algorithm) return Refused(absl::StrCat("algorithm ", JsonQuote(alg->text())));
  // RFC 7515 section 4.1.11: a recipient that does not understand a listed extension must
  // refuse the JWS; this verifier understands none.
  if (header->Find("crit") != nullptr) return Refused("crit header");
  ParsedJws jws;
  jws.algorithm = *algorithm;
  if (const JsonValue* kid = header->Find("kid")) {
    if (!kid->is_string()) return Malformed("kid is not a string");
    jws.kid = std::string(kid->text());
  }
  jws.signing_input = std::string(token.substr(0, dot2));
  jws.payload = std::move(*payload);
  jws.signature = std::move(*signature);
  return jws;
}

absl::Status VerifyJwsSignature(const ParsedJws& jws, const JwtPublicKey& key) {
  // The algorithm comes from the token, so it must agree with the key: an RSA key never
  // verifies an ES256 token, whatever the header claims.
  if (key.NativeAlgorithm() != jws.algorithm) return Refused("algorithm does not match the key");
  if (key.algorithm.has_value() && *key.algorithm != jws.algorithm) {
    return Refused("algorithm differs from the key's alg");
  }
  bool ok = false;
  switch (key.type) {
    case JwtPublicKey::Type::kRsa:
      ok = key.rsa != nullptr && VerifyRs256(jws, key.rsa.get());
      break;
    case JwtPublicKey::Type::kEcP256:
      ok = key.ec != nullptr && VerifyEs256(jws, key.ec.get());
      break;
    case JwtPublicKey::Type::kEd25519:
      ok = VerifyEd25519(jws, key.ed25519);
      break;
  }
  // A failed verification leaves entries in this thread's BoringSSL error queue.
  ERR_clear_error();
  if (!ok) return Refused("bad signature");
  return absl::OkStatus();
}

absl::StatusOr<VerifiedJwt> CheckJwtClaims(std::string_view payload, const JwtCheckOptions& options,
                                           int64_t now_unix_seconds) {
  auto claims = ParseJson(payload, kTokenJsonLimits);
  if (!claims.ok() || !claims->is_object()) return Malformed("claims are not a JSON object");
  const JsonValue* iss = claims->Find("iss");
  if (iss == nullptr || !iss->is_string()) return Refused("no iss claim");
  if (options.issuer.empty() || iss->text() != options.issuer) return Refused("issuer");
  PH_RETURN_IF_ERROR(CheckAudience(claims->Find("aud"), options.audiences));

  const int64_t skew = options.clock_skew_seconds < 0 ? 0 : options.clock_skew_seconds;
  const JsonValue* exp_value = claims->Find("exp");
  if (exp_value == nullptr) return Refused("no exp claim");
  const std::optional<int64_t> exp = NumericDate(exp_value);
  if (!exp) return Malformed("exp is not a NumericDate");
  if (now_unix_seconds - skew >= *exp) return absl::OutOfRangeError("token expired");
  if (const JsonValue* nbf_value = claims->Find("nbf")) {
    const std::optional<int64_t> nbf = NumericDate(nbf_value);
    if (!nbf) return Malformed("nbf is not a NumericDate");
    if (now_unix_seconds + skew < *nbf) return absl::OutOfRangeError("token not yet valid");
  }
  if (const JsonValue* iat_value = claims->Find("iat")) {
    const std::optional<int64_t> iat = NumericDate(iat_value);
    if (!iat) return Malformed("iat is not a NumericDate");
    if (now_unix_seconds + skew < *iat) return absl::OutOfRangeError("token issued in the future");
  }

  const JsonValue* mailbox = claims->Find(options.mailbox_claim);
  if (mailbox == nullptr || !mailbox->is_string()) {
    return Refused(absl::StrCat("no string claim ", JsonQuote(options.mailbox_claim)));
  }
  const size_t at = mailbox->text().rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == mailbox->text().size()) {
    return Refused("the mailbox claim is not an address");
  }
  VerifiedJwt verified;
  verified.mailbox = std::string(mailbox->text());
  if (const JsonValue* sub = claims->Find("sub"); sub != nullptr && sub->is_string()) {
    verified.subject = std::string(sub->text());
  }
  verified.expires_unix_seconds = *exp;
  return verified;
}

absl::StatusOr<VerifiedJwt> VerifyJwt(std::string_view token, const std::vector<JwtPublicKey>& keys,
                                      const JwtCheckOptions& options, int64_t now_unix_seconds) {
  PH_ASSIGN_OR_RETURN(const ParsedJws jws, ParseCompactJws(token));
  const JwtPublicKey* key = nullptr;
  if (jws.kid.empty()) {
    if (keys.size() != 1) return Refused("no kid and not exactly one key");
    key = &keys[0];
  } else {
    for (const auto& candidate : keys) {
      if (candidate.kid == jws.kid) {
        key = &candidate;
        break;
      }
    }
    if (key == nullptr) return Refused("unknown kid");
  }
  PH_RETURN_IF_ERROR(VerifyJwsSignature(jws, *key));
  return CheckJwtClaims(jws.payload, options, now_unix_seconds);
}

}  // namespace posthaste::auth
