#include "server/auth/jwt.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/auth/jwks.h"
#include "server/auth/testing/jwt_signer.h"

namespace posthaste::auth {
namespace {

using testing::JwtSigner;

// RFC 7515 appendix A: the example claims set, its RS256 (A.2) and ES256 (A.3) signatures and
// public keys. RFC 8037 appendix A: the Ed25519 public key and the JWS of A.4.
constexpr char kRfc7515Payload[] =
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlf"
    "Q";
constexpr char kRfc7515RsaN[] =
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-"
    "4qPCJrcS2mJPMEzP1Pt0Bm4d4Q"
    "lL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-"
    "bSf63kpaSHSXndS5z5rexMdbBY"
    "UsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-"
    "DWNmo"
    "udF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
constexpr char kRfc7515Rs256Signature[] =
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5ju"
    "jGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_"
    "nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe"
    "7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-"
    "eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8n"
    "p6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
constexpr char kRfc7515EcX[] = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
constexpr char kRfc7515EcY[] = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
constexpr char kRfc7515Es256Signature[] =
    "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
constexpr char kRfc8037X[] = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
constexpr char kRfc8037Jws[] =
    "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3"
    "AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

constexpr int64_t kNow = 1800000000;

std::vector<JwtPublicKey> KeysOf(const std::string& jwks) {
  auto set = ParseJwks(jwks);
  EXPECT_TRUE(set.ok()) << set.status();
  if (!set.ok()) return {};
  EXPECT_TRUE(set->skipped.empty()) << set->skipped[0];
  return std::move(set->keys);
}

JwtCheckOptions Options() {
  JwtCheckOptions options;
  options.issuer = "https://idp.t.test/";
  options.audiences = {"pop.t.test", "mail"};
  return options;
}

std::string Claims(const std::string& extra = "", int64_t exp = kNow + 3600) {
  return absl::StrCat(R"({"iss":"https://idp.t.test/","aud":"pop.t.test","email":"alice@t.test",)",
                      R"("sub":"u-1","iat":)", kNow - 10, ",\"exp\":", exp, extra, "}");
}

TEST(Base64UrlTest, RoundTripsAndRefusesOtherSpellings) {
  const std::vector<std::string> cases = {
      "", "f", "fo", "foo", "foob", "fooba", "foobar", std::string("\xff\xfe\x00", 3)};
  for (const auto& bytes : cases) {
    const std::string encoded = Base64UrlEncode(bytes);
    EXPECT_EQ(encoded.find('='), std::string::npos);
    EXPECT_EQ(Base64UrlDecode(encoded), bytes) << encoded;
  }
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
  EXPECT_FALSE(Base64UrlDecode("Zg==").has_value());  // padding
  EXPECT_FALSE(Base64UrlDecode("+/8").has_value());   // the standard alphabet
  EXPECT_FALSE(Base64UrlDecode("Zm9v\n").has_value());
  EXPECT_FALSE(Base64UrlDecode("Zm9vY").has_value());  // 1 mod 4
  EXPECT_FALSE(Base64UrlDecode("Zh").has_value());     // non-zero trailing bits
  EXPECT_TRUE(Base64UrlDecode("Zg").has_value());
}

TEST(JwsAlgorithmTest, OnlyTheThreeAsymmetricAlgorithms) {
  EXPECT_EQ(ParseJwsAlgorithm("RS256"), JwsAlgorithm::kRs256);
  EXPECT_EQ(ParseJwsAlgorithm("ES256"), JwsAlgorithm::kEs256);
  EXPECT_EQ(ParseJwsAlgorithm("EdDSA"), JwsAlgorithm::kEdDsa);
  for (const char* refused : {"none", "HS256", "HS512", "PS256", "RS384", "ES384", "rs256", ""}) {
    EXPECT_FALSE(ParseJwsAlgorithm(refused).has_value()) << refused;
  }
}

TEST(JwtRfcVectorsTest, Rfc7515A2Rs256) {
  auto keys =
      KeysOf(absl::StrCat(R"({"keys":[{"kty":"RSA","n":")", kRfc7515RsaN, R"(","e":"AQAB"}]})"));
  ASSERT_EQ(keys.size(), 1u);
  const std::string token =
      absl::StrCat("eyJhbGciOiJSUzI1NiJ9.", kRfc7515Payload, ".", kRfc7515Rs256Signature);
  auto jws = ParseCompactJws(token);
  ASSERT_TRUE(jws.ok()) << jws.status();
  EXPECT_EQ(jws->algorithm, JwsAlgorithm::kRs256);
  EXPECT_TRUE(VerifyJwsSignature(*jws, keys[0]).ok());
  ParsedJws tampered = *jws;
  tampered.signing_input.back() ^= 1;
  EXPECT_EQ(VerifyJwsSignature(tampered, keys[0]).code(), absl::StatusCode::kPermissionDenied);

  // The example claims (iss "joe", exp 1300819380, no aud) go through the claims check too.
  JwtCheckOptions options;
  options.issuer = "joe";
  options.audiences = {"anyone"};
  EXPECT_EQ(VerifyJwt(token, keys, options, 1300819380 - 100).status().code(),
            absl::StatusCode::kPermissionDenied);  // no aud
  EXPECT_EQ(CheckJwtClaims(jws->payload, options, 1300819380 + 100).status().code(),
            absl::StatusCode::kPermissionDenied);  // aud is checked before time
}

TEST(JwtRfcVectorsTest, Rfc7515A3Es256) {
  auto keys = KeysOf(absl::StrCat(R"({"keys":[{"kty":"EC","crv":"P-256","x":")", kRfc7515EcX,
                                  R"(","y":")", kRfc7515EcY, R"("}]})"));
  ASSERT_EQ(keys.size(), 1u);
  auto jws = ParseCompactJws(
      absl::StrCat("eyJhbGciOiJFUzI1NiJ9.", kRfc7515Payload, ".", kRfc7515Es256Signature));
  ASSERT_TRUE(jws.ok()) << jws.status();
  EXPECT_TRUE(VerifyJwsSignature(*jws, keys[0]).ok());
  ParsedJws tampered = *jws;
  tampered.signature[5] ^= 1;
  EXPECT_FALSE(VerifyJwsSignature(tampered, keys[0]).ok());
  tampered = *jws;
  tampered.signature.pop_back();  // R || S must be exactly 64 bytes
  EXPECT_FALSE(VerifyJwsSignature(tampered, keys[0]).ok());
}

TEST(JwtRfcVectorsTest, Rfc8037A4EdDsa) {
  auto keys =
      KeysOf(absl::StrCat(R"({"keys":[{"kty":"OKP","crv":"Ed25519","x":")", kRfc8037X, R"("}]})"));
  ASSERT_EQ(keys.size(), 1u);
  auto jws = ParseCompactJws(kRfc8037Jws);
  ASSERT_TRUE(jws.ok()) << jws.status();
  EXPECT_EQ(jws->payload, "Example of Ed25519 signing");
  EXPECT_TRUE(VerifyJwsSignature(*jws, keys[0]).ok());
  ParsedJws tampered = *jws;
  tampered.payload = "changed";
  tampered.signing_input[0] = 'f';
  EXPECT_FALSE(VerifyJwsSignature(tampered, keys[0]).ok());
}

class JwtAlgorithmTest : public ::testing::TestWithParam<JwsAlgorithm> {};

TEST_P(JwtAlgorithmTest, VerifiesAFreshKeysToken) {
  JwtSigner signer(GetParam(), "k1");
  auto keys = KeysOf(signer.Jwks());
  auto verified = VerifyJwt(signer.Sign(Claims()), keys, Options(), kNow);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->mailbox, "alice@t.test");
  EXPECT_EQ(verified->subject, "u-1");
  EXPECT_EQ(verified->expires_unix_seconds, kNow + 3600);

  // Another key of the same type, published under the same kid, does not verify it.
  JwtSigner other(GetParam(), "k1");
  EXPECT_EQ(VerifyJwt(other.Sign(Claims()), keys, Options(), kNow).status().code(),
            absl::StatusCode::kPermissionDenied);
}

INSTANTIATE_TEST_SUITE_P(All, JwtAlgorithmTest,
                         ::testing::Values(JwsAlgorithm::kRs256, JwsAlgorithm::kEs256,
                                           JwsAlgorithm::kEdDsa));

class JwtClaimsTest : public ::testing::Test {
 protected:
  absl::StatusCode Check(const std::string& claims, int64_t now = kNow,
                         const JwtCheckOptions& options = Options()) {
    return VerifyJwt(signer_.Sign(claims), keys_, options, now).status().code();
  }
  JwtSigner signer_{JwsAlgorithm::kEdDsa, "ed"};
  std::vector<JwtPublicKey> keys_ = KeysOf(signer_.Jwks());
};

TEST_F(JwtClaimsTest, ExpiryWithinTheClockSkew) {
  const int64_t exp = kNow + 100;
  EXPECT_EQ(Check(Claims("", exp), exp - 1), absl::StatusCode::kOk);
  EXPECT_EQ(Check(Claims("", exp), exp + 59), absl::StatusCode::kOk);
  EXPECT_EQ(Check(Claims("", exp), exp + 60), absl::StatusCode::kOutOfRange);
  JwtCheckOptions strict = Options();
  strict.clock_skew_seconds = 0;
  EXPECT_EQ(Check(Claims("", exp), exp, strict), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(Check(Claims("", exp), exp - 1, strict), absl::StatusCode::kOk);
}

TEST_F(JwtClaimsTest, NotBeforeAndIssuedAtWithinTheClockSkew) {
  EXPECT_EQ(Check(Claims(absl::StrCat(",\"nbf\":", kNow + 60))), absl::StatusCode::kOk);
  EXPECT_EQ(Check(Claims(absl::StrCat(",\"nbf\":", kNow + 61))), absl::StatusCode::kOutOfRange);
  const std::string future_iat =
      absl::StrCat(R"({"iss":"https://idp.t.test/","aud":"mail","email":"a@t.test","iat":)",
                   kNow + 61, ",\"exp\":", kNow + 3600, "}");
  EXPECT_EQ(Check(future_iat), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(Check(Claims(",\"nbf\":\"soon\"")), absl::StatusCode::kInvalidArgument);
}

TEST_F(JwtClaimsTest, ExpIsRequiredAndANumericDate) {
  EXPECT_EQ(Check(R"({"iss":"https://idp.t.test/","aud":"mail","email":"a@t.test"})"),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Check(R"({"iss":"https://idp.t.test/","aud":"mail","email":"a@t.test","exp":"1"})"),
            absl::StatusCode::kInvalidArgument);
  // A fractional NumericDate is floored.
  EXPECT_EQ(Check(absl::StrCat(R"({"iss":"https://idp.t.test/","aud":"mail","email":"a@t.test",)",
                               "\"exp\":", kNow + 10, ".5}")),
            absl::StatusCode::kOk);
}

TEST_F(JwtClaimsTest, IssuerAndAudience) {
  auto with = [](const std::string& iss, const std::string& aud) {
    return absl::StrCat("{\"iss\":", iss, ",\"aud\":", aud,
                        ",\"email\":\"a@t.test\",\"exp\":", kNow + 60, "}");
  };
  EXPECT_EQ(Check(with("\"https://idp.t.test/\"", "\"mail\"")), absl::StatusCode::kOk);
  EXPECT_EQ(Check(with("\"https://idp.t.test/\"", R"(["x","pop.t.test"])")), absl::StatusCode::kOk);
  EXPECT_EQ(Check(with("\"https://idp.t.test/\"", R"(["x","y"])")),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Check(with("\"https://idp.t.test/\"", "\"MAIL\"")),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Check(with("\"https://idp.t.test/\"", "[1]")), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Check(with("\"https://evil.test/\"", "\"mail\"")), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Check(with("\"https://idp.t.test\"", "\"mail\"")),  // no trailing slash
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Check(with("[\"https://idp.t.test/\"]", "\"mail\"")),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(JwtClaimsTest, TheMailboxClaimIsConfigurable) {
  JwtCheckOptions by_sub = Options();
  by_sub.mailbox_claim = "sub";
  EXPECT_EQ(Check(Claims(), kNow, by_sub), absl::StatusCode::kPermissionDenied);  // "u-1"
  auto verified = VerifyJwt(
      signer_.Sign(absl::StrCat(R"({"iss":"https://idp.t.test/","aud":"mail","sub":"b@t.test",)",
                                "\"exp\":", kNow + 60, "}")),
      keys_, by_sub, kNow);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->mailbox, "b@t.test");
  EXPECT_EQ(Check(R"({"iss":"https://idp.t.test/","aud":"mail","exp":1900000000})"),
            absl::StatusCode::kPermissionDenied);  // no email claim
  EXPECT_EQ(Check(absl::StrCat(R"({"iss":"https://idp.t.test/","aud":"mail","email":"nobody",)",
                               "\"exp\":", kNow + 60, "}")),
            absl::StatusCode::kPermissionDenied);
}

TEST(JwtKeyChoiceTest, KidChoosesTheKeyAndNoKidNeedsASingleKey) {
  JwtSigner rsa(JwsAlgorithm::kRs256, "r");
  JwtSigner ec(JwsAlgorithm::kEs256, "e");
  JwtSigner ed(JwsAlgorithm::kEdDsa, "");
  auto both = KeysOf(absl::StrCat("{\"keys\":[", rsa.PublicJwk(), ",", ec.PublicJwk(), "]}"));
  ASSERT_EQ(both.size(), 2u);
  EXPECT_TRUE(VerifyJwt(rsa.Sign(Claims()), both, Options(), kNow).ok());
  EXPECT_TRUE(VerifyJwt(ec.Sign(Claims()), both, Options(), kNow).ok());
  // Unknown kid.
  JwtSigner stranger(JwsAlgorithm::kEs256, "x");
  EXPECT_EQ(VerifyJwt(stranger.Sign(Claims()), both, Options(), kNow).status().code(),
            absl::StatusCode::kPermissionDenied);
  // No kid: refused when the set has two keys, accepted with the only key.
  const std::string no_kid = ed.Sign(Claims());
  EXPECT_FALSE(VerifyJwt(no_kid, both, Options(), kNow).ok());
  EXPECT_TRUE(VerifyJwt(no_kid, KeysOf(ed.Jwks()), Options(), kNow).ok());
}

TEST(JwtAlgorithmConfusionTest, TheHeaderCannotPickAnotherAlgorithmForAKey) {
  JwtSigner rsa(JwsAlgorithm::kRs256, "r");
  JwtSigner ec(JwsAlgorithm::kEs256, "e");
  auto keys = KeysOf(absl::StrCat("{\"keys\":[", rsa.PublicJwk(), ",", ec.PublicJwk(), "]}"));
  const std::string claims = Claims();
  // An ES256 signature presented under the RSA key's kid.
  const std::string es_for_rsa = ec.SignRaw(R"({"alg":"ES256","kid":"r"})", claims);
  EXPECT_EQ(VerifyJwt(es_for_rsa, keys, Options(), kNow).status().code(),
            absl::StatusCode::kPermissionDenied);
  // "RS256" header signed by the RSA key but naming the EC key.
  const std::string rs_for_ec = rsa.SignRaw(R"({"alg":"RS256","kid":"e"})", claims);
  EXPECT_EQ(VerifyJwt(rs_for_ec, keys, Options(), kNow).status().code(),
            absl::StatusCode::kPermissionDenied);
  // alg "none" with an empty signature, and HS256 keyed with the public JWK's text.
  const std::string body = absl::StrCat(".", Base64UrlEncode(claims), ".");
  EXPECT_EQ(VerifyJwt(absl::StrCat(Base64UrlEncode(R"({"alg":"none","kid":"r"})"), body), keys,
                      Options(), kNow)
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(VerifyJwt(absl::StrCat(Base64UrlEncode(R"({"alg":"HS256","kid":"r"})"), body,
                                   Base64UrlEncode(std::string(32, 'x'))),
                      keys, Options(), kNow)
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
  // A JWK that names its alg binds it: an EdDSA key marked "alg":"EdDSA" is fine, and the
  // parser refuses a key whose alg contradicts its type.
  auto marked = ParseJwks(R"({"keys":[{"kty":"OKP","crv":"Ed25519","alg":"ES256","x":")" +
                          std::string(kRfc8037X) + "\"}]}");
  ASSERT_TRUE(marked.ok());
  EXPECT_TRUE(marked->keys.empty());
  ASSERT_EQ(marked->skipped.size(), 1u);
}

TEST(JwtHeaderTest, RefusesCritAndBadShapes) {
  JwtSigner signer(JwsAlgorithm::kEdDsa, "k");
  auto keys = KeysOf(signer.Jwks());
  const std::string claims = Claims();
  EXPECT_EQ(VerifyJwt(signer.SignRaw(R"({"alg":"EdDSA","kid":"k","crit":["exp"],"exp":1})", claims),
                      keys, Options(), kNow)
                .status()
                .code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(VerifyJwt(signer.SignRaw(R"({"alg":"EdDSA","kid":"k","typ":"JWT"})", claims), keys,
                        Options(), kNow)
                  .ok());
  const std::vector<std::string> headers = {R"({"kid":"k"})", R"({"alg":1})", R"(["EdDSA"])",
                                            R"({"alg":"EdDSA","kid":7})",
                                            R"({"alg":"EdDSA","alg":"EdDSA"})"};
  for (const auto& header : headers) {
    EXPECT_EQ(VerifyJwt(signer.SignRaw(header, claims), keys, Options(), kNow).status().code(),
              absl::StatusCode::kInvalidArgument)
        << header;
  }
  const std::string good = signer.Sign(claims);
  for (const std::string& bad :
       {std::string(""), std::string("a.b"), good + ".x", good + "=", "!" + good}) {
    EXPECT_EQ(ParseCompactJws(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  // Claims that are not an object.
  EXPECT_EQ(VerifyJwt(signer.SignRaw(R"({"alg":"EdDSA","kid":"k"})", "[1]"), keys, Options(), kNow)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(JwtSizeTest, SixtyFourKibibytesAndNoMore) {
  JwtSigner signer(JwsAlgorithm::kEs256, "k");
  auto keys = KeysOf(signer.Jwks());
  // Grow a claim until the token is just under the limit; it verifies. One more byte of
  // claims (at most 2 more of token) over the limit is refused before any signature work.
  std::string filler(47000, 'a');
  std::string token = signer.Sign(Claims(absl::StrCat(",\"pad\":\"", filler, "\"")));
  while (token.size() + 4 < kJwtBytesMax) {
    filler.append(std::max<size_t>(1, (kJwtBytesMax - token.size() - 4) * 3 / 4), 'a');
    token = signer.Sign(Claims(absl::StrCat(",\"pad\":\"", filler, "\"")));
  }
  ASSERT_LE(token.size(), kJwtBytesMax);
  EXPECT_TRUE(VerifyJwt(token, keys, Options(), kNow).ok());
  filler.append(8, 'a');
  token = signer.Sign(Claims(absl::StrCat(",\"pad\":\"", filler, "\"")));
  ASSERT_GT(token.size(), kJwtBytesMax);
  EXPECT_EQ(VerifyJwt(token, keys, Options(), kNow).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace posthaste::auth
