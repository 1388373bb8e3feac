#include "server/auth/jwks.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/auth/testing/jwt_signer.h"

namespace posthaste::auth {
namespace {

using testing::JwtSigner;

// RFC 8037 appendix A.2's Ed25519 public key; RFC 7515 appendix A.3's P-256 point.
constexpr char kEd25519X[] = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
constexpr char kP256X[] = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
constexpr char kP256Y[] = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

TEST(JwksTest, ReadsTheThreeKeyTypes) {
  JwtSigner rsa(JwsAlgorithm::kRs256, "r");
  JwtSigner ec(JwsAlgorithm::kEs256, "e");
  JwtSigner ed(JwsAlgorithm::kEdDsa, "d");
  auto set = ParseJwks(
      absl::StrCat("{\"keys\":[", rsa.PublicJwk(), ",", ec.PublicJwk(), ",", ed.PublicJwk(), "]}"));
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_TRUE(set->skipped.empty());
  ASSERT_EQ(set->keys.size(), 3u);
  EXPECT_EQ(set->keys[0].type, JwtPublicKey::Type::kRsa);
  EXPECT_EQ(set->keys[0].kid, "r");
  EXPECT_EQ(set->keys[1].type, JwtPublicKey::Type::kEcP256);
  EXPECT_EQ(set->keys[2].type, JwtPublicKey::Type::kEd25519);
  EXPECT_EQ(set->keys[2].NativeAlgorithm(), JwsAlgorithm::kEdDsa);
}

TEST(JwksTest, SkipsWhatItCannotUseAndSaysWhy) {
  JwtSigner ed(JwsAlgorithm::kEdDsa, "good");
  const std::string text = absl::StrCat(
      R"({"keys":[)", R"({"kty":"oct","kid":"h","k":"c2VjcmV0"},)",
      R"({"kty":"EC","crv":"P-384","kid":"p384","x":"AA","y":"AA"},)",
      R"({"kty":"OKP","crv":"X25519","kid":"x","x":")", kEd25519X, R"("},)",
      R"({"kty":"OKP","crv":"Ed25519","kid":"enc","use":"enc","x":")", kEd25519X, R"("},)",
      R"({"kty":"OKP","crv":"Ed25519","kid":"ops","key_ops":["sign"],"x":")", kEd25519X, R"("},)",
      R"({"kty":"OKP","crv":"Ed25519","kid":"priv","d":"AA","x":")", kEd25519X, R"("},)",
      R"({"kty":"OKP","crv":"Ed25519","kid":"short","x":"AAAA"},)",
      R"({"kty":"EC","crv":"P-256","kid":"offcurve","x":")", kP256X, R"(","y":")", kP256X, R"("},)",
      R"({"kty":"RSA","kid":"small","n":"AQAB","e":"AQAB"},)",
      R"({"kty":"OKP","crv":"Ed25519","kid":"ps","alg":"PS256","x":")", kEd25519X, R"("},)",
      R"({"crv":"Ed25519"},)", R"("not an object",)", ed.PublicJwk(), ",",
      R"({"kty":"OKP","crv":"Ed25519","kid":"good","x":")", kEd25519X, R"("},)",
      R"({"kty":"EC","crv":"P-256","kid":"ok-ec","use":"sig","key_ops":["verify"],"x":")", kP256X,
      R"(","y":")", kP256Y, R"("})", "]}");
  auto set = ParseJwks(text);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(set->keys.size(), 2u);
  EXPECT_EQ(set->keys[0].kid, "good");
  EXPECT_EQ(set->keys[1].kid, "ok-ec");
  ASSERT_EQ(set->skipped.size(), 13u);
  EXPECT_EQ(set->skipped[0], "key 0 (kid \"h\"): kty \"oct\" is not supported");
  EXPECT_NE(set->skipped[1].find("P-384"), std::string::npos);
  EXPECT_NE(set->skipped[3].find("use"), std::string::npos);
  EXPECT_NE(set->skipped[5].find("private"), std::string::npos);
  EXPECT_NE(set->skipped[7].find("curve"), std::string::npos);
  EXPECT_NE(set->skipped[8].find("bits"), std::string::npos);
  EXPECT_NE(set->skipped[12].find("repeats"), std::string::npos);
}

TEST(JwksTest, RefusesWhatIsNotASet) {
  for (const char* text : {"", "[]", "{}", R"({"keys":{}})", R"({"keys":[]} x)", "{\"keys\":["}) {
    EXPECT_EQ(ParseJwks(text).status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
  std::string many = "{\"keys\":[";
  for (size_t i = 0; i <= kJwksKeysMax; ++i) absl::StrAppend(&many, i ? "," : "", "{}");
  absl::StrAppend(&many, "]}");
  EXPECT_EQ(ParseJwks(many).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseJwks(std::string(kJwksBytesMax + 1, ' ')).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto empty = ParseJwks(R"({"keys":[]})");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->keys.empty());
}

}  // namespace
}  // namespace posthaste::auth
