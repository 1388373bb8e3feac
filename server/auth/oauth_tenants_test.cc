#include "server/auth/oauth_tenants.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/auth/testing/jwt_signer.h"

namespace posthaste::auth {
namespace {

using testing::JwtSigner;

constexpr int64_t kNow = 1800000000;

std::string TempDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

void WriteFile(const std::string& path, const std::string& text) {
  // Written beside and renamed, as an operator's deploy would, so readers never see half.
  const std::string tmp = path + ".new";
  std::ofstream(tmp, std::ios::binary | std::ios::trunc) << text;
  ASSERT_EQ(std::rename(tmp.c_str(), path.c_str()), 0);
}

std::string TenantJson(std::string_view jwks_path, std::string_view extra = "") {
  return absl::StrCat(R"({"issuer":"https://idp.t.test/","audiences":["pop.t.test"],)",
                      R"("jwks_path":")", std::string(jwks_path), "\"", std::string(extra), "}");
}

std::string Token(const JwtSigner& signer, std::string_view mailbox,
                  std::string_view claim = "email", int64_t exp = kNow + 600) {
  return signer.Sign(absl::StrCat(R"({"iss":"https://idp.t.test/","aud":"pop.t.test",")",
                                  std::string(claim), R"(":")", std::string(mailbox), R"(","exp":)",
                                  exp, "}"));
}

TEST(OAuthConfigTest, ParsesTenantsWithDefaultsAndResolvesPaths) {
  auto tenants = ParseOAuthConfig(
      absl::StrCat(
          R"({"tenants":{"T.Test":)", TenantJson("t.jwks"), R"(,"u.test":)",
          TenantJson("/etc/u.jwks", R"(,"mailbox_claim":"sub","clock_skew_seconds":5,)"
                                    R"("scope":"mail","openid_configuration":"https://x/")"),
          "}}"),
      "/etc/posthaste");
  ASSERT_TRUE(tenants.ok()) << tenants.status();
  ASSERT_EQ(tenants->size(), 2u);
  const OAuthTenantConfig& t = (*tenants)[0];
  EXPECT_EQ(t.domain, "t.test");
  EXPECT_EQ(t.jwks_path, "/etc/posthaste/t.jwks");
  EXPECT_EQ(t.checks.issuer, "https://idp.t.test/");
  EXPECT_EQ(t.checks.audiences, std::vector<std::string>{"pop.t.test"});
  EXPECT_EQ(t.checks.mailbox_claim, "email");
  EXPECT_EQ(t.checks.clock_skew_seconds, 60);
  const OAuthTenantConfig& u = (*tenants)[1];
  EXPECT_EQ(u.jwks_path, "/etc/u.jwks");
  EXPECT_EQ(u.checks.mailbox_claim, "sub");
  EXPECT_EQ(u.checks.clock_skew_seconds, 5);
  EXPECT_EQ(u.scope, "mail");
  EXPECT_EQ(u.openid_configuration, "https://x/");
}

TEST(OAuthConfigTest, RefusesMistakesNamingTheTenant) {
  const std::string ok = TenantJson("k");
  for (const std::string& text : std::vector<std::string>{
           "",
           "[]",
           "{}",
           R"({"tenants":[]})",
           R"({"tenants":{},"other":1})",
           R"({"tenants":{"t.test":1}})",
           R"({"tenants":{"t.test":{"audiences":["a"],"jwks_path":"k"}}})",
           R"({"tenants":{"t.test":{"issuer":"i","audiences":[],"jwks_path":"k"}}})",
           R"({"tenants":{"t.test":{"issuer":"i","audiences":"a","jwks_path":"k"}}})",
           R"({"tenants":{"t.test":{"issuer":"i","audiences":["a"]}}})",
           absl::StrCat(R"({"tenants":{"t.test":)", TenantJson("k", R"(,"clock_skew":5)"), "}}"),
           absl::StrCat(R"({"tenants":{"t.test":)", TenantJson("k", R"(,"clock_skew_seconds":601)"),
                        "}}"),
           absl::StrCat(R"({"tenants":{"t.test":)", TenantJson("k", R"(,"clock_skew_seconds":-1)"),
                        "}}"),
           absl::StrCat(R"({"tenants":{"t.test":)", ok, R"(,"T.TEST":)", ok, "}}"),
           absl::StrCat(R"({"tenants":{"a@t.test":)", ok, "}}"),
       }) {
    auto parsed = ParseOAuthConfig(text, "/etc");
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
  auto typo = ParseOAuthConfig(
      absl::StrCat(R"({"tenants":{"t.test":)", TenantJson("k", R"(,"audience":"x")"), "}}"), "");
  EXPECT_NE(typo.status().message().find("\"t.test\""), absl::string_view::npos);
  EXPECT_NE(typo.status().message().find("\"audience\""), absl::string_view::npos);
}

class OAuthRegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(TempDir(), "/oauth_registry_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_EQ(std::system(absl::StrCat("rm -rf ", dir_, " && mkdir -p ", dir_).c_str()), 0);
    WriteFile(dir_ + "/t.jwks", first_.Jwks());
    WriteFile(dir_ + "/config.json", absl::StrCat(R"({"tenants":{"t.test":)",
                                                  TenantJson("t.jwks", R"(,"scope":"pop")"), "}}"));
  }

  absl::StatusOr<std::unique_ptr<OAuthRegistry>> Create() {
    auto config = LoadOAuthConfigFile(dir_ + "/config.json");
    if (!config.ok()) return config.status();
    return OAuthRegistry::Create(std::move(*config));
  }

  std::string dir_;
  JwtSigner first_{JwsAlgorithm::kEs256, "first"};
  JwtSigner second_{JwsAlgorithm::kEdDsa, "second"};
};

TEST_F(OAuthRegistryTest, ReloadsAChangedFileAndKeepsOldSnapshotsValid) {
  auto registry = Create();
  ASSERT_TRUE(registry.ok()) << registry.status();
  auto before = (*registry)->Current();
  const uint64_t generation = (*registry)->generation();
  EXPECT_TRUE(VerifyBearerToken(*before, Token(first_, "a@t.test"), "a@t.test", kNow).ok);

  // Unchanged: nothing is re-read or republished.
  auto report = (*registry)->ReloadChanged();
  EXPECT_TRUE(report.reloaded.empty());
  EXPECT_TRUE(report.errors.empty());
  EXPECT_EQ((*registry)->generation(), generation);

  // Key rotation: the new file holds only the second key.
  WriteFile(dir_ + "/t.jwks", second_.Jwks());
  report = (*registry)->ReloadChanged();
  EXPECT_EQ(report.reloaded, std::vector<std::string>{"t.test"});
  EXPECT_GT((*registry)->generation(), generation);
  auto after = (*registry)->Current();
  EXPECT_TRUE(VerifyBearerToken(*after, Token(second_, "a@t.test"), "a@t.test", kNow).ok);
  EXPECT_FALSE(VerifyBearerToken(*after, Token(first_, "a@t.test"), "a@t.test", kNow).ok);
  // A reader that took the old snapshot keeps verifying with it.
  EXPECT_TRUE(VerifyBearerToken(*before, Token(first_, "a@t.test"), "a@t.test", kNow).ok);
}

TEST_F(OAuthRegistryTest, ABrokenFileKeepsThePreviousKeys) {
  auto registry = Create();
  ASSERT_TRUE(registry.ok()) << registry.status();
  const uint64_t generation = (*registry)->generation();
  WriteFile(dir_ + "/t.jwks", "{\"keys\":[");
  auto report = (*registry)->ReloadChanged();
  EXPECT_TRUE(report.reloaded.empty());
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_NE(report.errors[0].find("t.test"), std::string::npos);
  EXPECT_EQ((*registry)->generation(), generation);
  EXPECT_TRUE(
      VerifyBearerToken(*(*registry)->Current(), Token(first_, "a@t.test"), "a@t.test", kNow).ok);
  // The same broken file is not re-read at every interval.
  EXPECT_TRUE((*registry)->ReloadChanged().errors.empty());
  // No usable key is an error too (an unsupported key type only).
  WriteFile(dir_ + "/t.jwks", R"({"keys":[{"kty":"oct","k":"AA"}]})");
  report = (*registry)->ReloadChanged();
  ASSERT_EQ(report.errors.size(), 1u);
  EXPECT_NE(report.errors[0].find("no usable key"), std::string::npos);
  // A missing file too.
  ASSERT_EQ(std::remove((dir_ + "/t.jwks").c_str()), 0);
  EXPECT_EQ((*registry)->ReloadChanged().errors.size(), 1u);
  EXPECT_EQ((*registry)->ReloadTenant("T.test").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ((*registry)->ReloadTenant("other.test").code(), absl::StatusCode::kNotFound);
  // Back: on demand.
  WriteFile(dir_ + "/t.jwks", second_.Jwks());
  EXPECT_TRUE((*registry)->ReloadTenant("t.test").ok());
  EXPECT_TRUE(
      VerifyBearerToken(*(*registry)->Current(), Token(second_, "a@t.test"), "a@t.test", kNow).ok);
}

TEST_F(OAuthRegistryTest, CreateFailsForATenantItCannotVerify) {
  WriteFile(dir_ + "/t.jwks", R"({"keys":[]})");
  EXPECT_EQ(Create().status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_EQ(std::remove((dir_ + "/t.jwks").c_str()), 0);
  EXPECT_EQ(Create().status().code(), absl::StatusCode::kNotFound);
}

class BearerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (auto [domain, claim, signer] :
         {std::tuple{"t.test", "email", &t_}, std::tuple{"u.test", "sub", &u_}}) {
      auto tenant = std::make_shared<OAuthTenant>();
      tenant->config.domain = domain;
      tenant->config.checks.issuer = "https://idp.t.test/";
      tenant->config.checks.audiences = {"pop.t.test"};
      tenant->config.checks.mailbox_claim = claim;
      tenant->config.scope = "pop";
      auto keys = ParseJwks(signer->Jwks());
      ASSERT_TRUE(keys.ok());
      tenant->keys = std::make_shared<const JwkSet>(std::move(*keys));
      snapshot_.tenants.emplace(domain, std::move(tenant));
      snapshot_.mailbox_claims.push_back(claim);
    }
  }
  JwtSigner t_{JwsAlgorithm::kRs256, "t"};
  JwtSigner u_{JwsAlgorithm::kEdDsa, "u"};
  OAuthSnapshot snapshot_;
};

TEST_F(BearerTest, TheNamedUserMustBeTheTokensMailbox) {
  auto verdict = VerifyBearerToken(snapshot_, Token(t_, "Alice@T.test"), "alice@t.TEST", kNow);
  EXPECT_TRUE(verdict.ok) << verdict.detail;
  EXPECT_EQ(verdict.mailbox, "alice@t.TEST");
  verdict = VerifyBearerToken(snapshot_, Token(t_, "bob@t.test"), "alice@t.test", kNow);
  EXPECT_FALSE(verdict.ok);
  EXPECT_EQ(verdict.failure, SaslFailure::kTokenInvalid);
  EXPECT_EQ(verdict.scope, "pop");
  // Another tenant's key does not sign for this one.
  EXPECT_FALSE(VerifyBearerToken(snapshot_, Token(u_, "a@t.test"), "a@t.test", kNow).ok);
}

TEST_F(BearerTest, UnknownTenantsAndExpiredTokens) {
  auto verdict = VerifyBearerToken(snapshot_, Token(t_, "a@v.test"), "a@v.test", kNow);
  EXPECT_FALSE(verdict.ok);
  EXPECT_EQ(verdict.failure, SaslFailure::kTokenInvalid);
  EXPECT_TRUE(verdict.scope.empty());
  EXPECT_FALSE(VerifyBearerToken(snapshot_, Token(t_, "a@t.test"), "no-domain", kNow).ok);
  verdict =
      VerifyBearerToken(snapshot_, Token(t_, "a@t.test", "email", kNow - 61), "a@t.test", kNow);
  EXPECT_FALSE(verdict.ok);
  EXPECT_EQ(verdict.failure, SaslFailure::kTokenExpired);
  EXPECT_FALSE(VerifyBearerToken(snapshot_, "not a token", "a@t.test", kNow).ok);
}

TEST_F(BearerTest, WithoutAUserTheTokenNamesItsTenant) {
  auto verdict = VerifyBearerToken(snapshot_, Token(t_, "a@t.test"), "", kNow);
  EXPECT_TRUE(verdict.ok) << verdict.detail;
  EXPECT_EQ(verdict.mailbox, "a@t.test");
  verdict = VerifyBearerToken(snapshot_, Token(u_, "b@u.test", "sub"), "", kNow);
  EXPECT_TRUE(verdict.ok) << verdict.detail;
  EXPECT_EQ(verdict.mailbox, "b@u.test");
  // u.test trusts `sub`, not `email`: a token naming u.test through email finds no tenant.
  EXPECT_FALSE(VerifyBearerToken(snapshot_, Token(u_, "b@u.test", "email"), "", kNow).ok);
  EXPECT_FALSE(VerifyBearerToken(snapshot_, Token(t_, "a@v.test"), "", kNow).ok);
}

}  // namespace
}  // namespace posthaste::auth
