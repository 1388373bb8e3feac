#include "server/auth/shared_secret.h"

#include <set>
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "server/auth/external_exchange.h"

namespace posthaste::auth {
namespace {

// RFC 1939 section 7's example.
constexpr std::string_view kRfc1939Timestamp = "<1896.697170952@dbc.mtview.ca.us>";
constexpr std::string_view kRfc1939Digest = "c4c9334bac560ecc979e58001b3e22fb";
// RFC 2195 section 2's example.
constexpr std::string_view kRfc2195Challenge = "<1896.697170952@postoffice.reston.mci.net>";
constexpr std::string_view kRfc2195Response = "tim b913a602c7eda7a495b4e6e7334d3890";

SaslAccount Account(std::string address, std::string secret) {
  SaslAccount account;
  account.address = std::move(address);
  account.shared_secret = std::move(secret);
  return account;
}

TEST(ApopTest, Rfc1939Example) {
  EXPECT_EQ(ApopDigestHex(kRfc1939Timestamp, "tanstaaf"), kRfc1939Digest);
  EXPECT_TRUE(ApopDigestMatches(kRfc1939Timestamp, "tanstaaf", kRfc1939Digest));
  EXPECT_TRUE(ApopDigestMatches(kRfc1939Timestamp, "tanstaaf", "C4C9334BAC560ECC979E58001B3E22FB"));
  EXPECT_FALSE(ApopDigestMatches(kRfc1939Timestamp, "tanstaaF", kRfc1939Digest));
  EXPECT_FALSE(ApopDigestMatches("<1896.697170953@dbc.mtview.ca.us>", "tanstaaf", kRfc1939Digest));
  EXPECT_FALSE(ApopDigestMatches(kRfc1939Timestamp, "", ApopDigestHex(kRfc1939Timestamp, "")));
  EXPECT_FALSE(ApopDigestMatches(kRfc1939Timestamp, "tanstaaf", kRfc1939Digest.substr(1)));
  EXPECT_FALSE(
      ApopDigestMatches(kRfc1939Timestamp, "tanstaaf", "g4c9334bac560ecc979e58001b3e22fb"));
}

TEST(ServerChallengeTest, FormAndUniqueness) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const std::string challenge = MakeServerChallenge("mail.example");
    ASSERT_GE(challenge.size(), 10u);
    EXPECT_EQ(challenge.front(), '<');
    EXPECT_EQ(challenge.back(), '>');
    EXPECT_NE(challenge.find('.'), std::string::npos);
    EXPECT_NE(challenge.find("@mail.example>"), std::string::npos);
    EXPECT_TRUE(seen.insert(challenge).second) << challenge;
  }
}

TEST(CramMd5Test, Rfc2195Example) {
  EXPECT_EQ(CramMd5DigestHex(kRfc2195Challenge, "tanstaaftanstaaf"),
            "b913a602c7eda7a495b4e6e7334d3890");
  CramMd5ServerExchange exchange(std::string(kRfc2195Challenge), nullptr);
  EXPECT_EQ(exchange.mechanism(), SaslMechanism::kCramMd5);
  SaslStep step = exchange.Start(std::nullopt);
  ASSERT_EQ(step.kind, SaslStep::Kind::kChallenge);
  EXPECT_EQ(step.challenge, kRfc2195Challenge);
  step = exchange.Continue(kRfc2195Response);
  ASSERT_EQ(step.kind, SaslStep::Kind::kNeedAccount);
  EXPECT_EQ(step.authcid, "tim");
  step = exchange.AccountFound(Account("tim@reston.example", "tanstaaftanstaaf"));
  ASSERT_EQ(step.kind, SaslStep::Kind::kSuccess);
  EXPECT_EQ(step.authcid, "tim@reston.example");
  EXPECT_TRUE(step.authzid.empty());
}

TEST(CramMd5Test, UppercaseDigestAndNamesWithSpaces) {
  CramMd5ServerExchange exchange("<1.2@h>", nullptr);
  exchange.Start(std::nullopt);
  const std::string response = "a b@c " + CramMd5DigestHex("<1.2@h>", "k");
  std::string upper = response;
  for (size_t i = response.size() - 32; i < response.size(); ++i) {
    upper[i] = static_cast<char>(toupper(static_cast<unsigned char>(upper[i])));
  }
  SaslStep step = exchange.Continue(upper);
  ASSERT_EQ(step.kind, SaslStep::Kind::kNeedAccount);
  EXPECT_EQ(step.authcid, "a b@c");
  EXPECT_EQ(exchange.AccountFound(Account("", "k")).kind, SaslStep::Kind::kSuccess);
}

SaslStep RunCram(std::string_view response, const absl::StatusOr<SaslAccount>& account,
                 std::function<bool(std::string_view)> allowed = nullptr) {
  CramMd5ServerExchange exchange(std::string(kRfc2195Challenge), std::move(allowed));
  exchange.Start(std::nullopt);
  SaslStep step = exchange.Continue(response);
  if (step.kind != SaslStep::Kind::kNeedAccount) return step;
  return exchange.AccountFound(account);
}

TEST(CramMd5Test, Failures) {
  const SaslAccount tim = Account("tim@x", "tanstaaftanstaaf");
  struct Case {
    std::string_view response;
    absl::StatusOr<SaslAccount> account;
    SaslFailure failure;
  };
  const Case cases[] = {
      {"tim b913a602c7eda7a495b4e6e7334d3891", tim, SaslFailure::kBadCredentials},
      {kRfc2195Response, Account("tim@x", "tanstaaf"), SaslFailure::kBadCredentials},
      {kRfc2195Response, Account("tim@x", ""), SaslFailure::kNotAllowed},
      {kRfc2195Response, absl::NotFoundError("no"), SaslFailure::kUnknownUser},
      {kRfc2195Response, absl::UnavailableError("io"), SaslFailure::kTempFailure},
      {"tim", tim, SaslFailure::kMalformed},
      {"", tim, SaslFailure::kMalformed},
      {" b913a602c7eda7a495b4e6e7334d3890", tim, SaslFailure::kMalformed},
      {"tim b913a602c7eda7a495b4e6e7334d389", tim, SaslFailure::kMalformed},
      {"tim b913a602c7eda7a495b4e6e7334d3890 ", tim, SaslFailure::kMalformed},
      {"tim z913a602c7eda7a495b4e6e7334d3890", tim, SaslFailure::kMalformed},
      {std::string_view("t\0m b913a602c7eda7a495b4e6e7334d3890", 36), tim, SaslFailure::kMalformed},
  };
  for (const Case& c : cases) {
    const SaslStep step = RunCram(c.response, c.account);
    EXPECT_EQ(step.kind, SaslStep::Kind::kFailure) << c.response;
    EXPECT_EQ(step.failure, c.failure) << c.response << " " << SaslFailureName(step.failure);
  }
  const std::string long_name(256, 'a');
  EXPECT_EQ(RunCram(long_name + " b913a602c7eda7a495b4e6e7334d3890", tim).failure,
            SaslFailure::kMalformed);
  // The tenant's rule is asked with the name, before any account lookup.
  std::string asked;
  const SaslStep refused = RunCram(kRfc2195Response, tim, [&asked](std::string_view user) {
    asked = std::string(user);
    return false;
  });
  EXPECT_EQ(refused.kind, SaslStep::Kind::kFailure);
  EXPECT_EQ(refused.failure, SaslFailure::kNotAllowed);
  EXPECT_EQ(asked, "tim");
  // An initial response breaks the server-first mechanism.
  CramMd5ServerExchange exchange("<1.2@h>", nullptr);
  EXPECT_EQ(exchange.Start(std::string_view("tim")).kind, SaslStep::Kind::kFailure);
}

SaslConnectionFacts WithCertificate(std::string identity) {
  SaslConnectionFacts facts;
  facts.tls = true;
  facts.client_certificate_identity = std::move(identity);
  return facts;
}

TEST(ExternalTest, WithoutCertificateNotAllowed) {
  ExternalServerExchange exchange(SaslConnectionFacts{});
  EXPECT_EQ(exchange.mechanism(), SaslMechanism::kExternal);
  const SaslStep step = exchange.Start(std::nullopt);
  EXPECT_EQ(step.kind, SaslStep::Kind::kFailure);
  EXPECT_EQ(step.failure, SaslFailure::kNotAllowed);
}

TEST(ExternalTest, IdentityFromCertificate) {
  {
    ExternalServerExchange exchange(WithCertificate("ann@x.test"));
    SaslStep step = exchange.Start(std::nullopt);
    ASSERT_EQ(step.kind, SaslStep::Kind::kChallenge);
    EXPECT_TRUE(step.challenge.empty());
    step = exchange.Continue("");
    ASSERT_EQ(step.kind, SaslStep::Kind::kSuccess);
    EXPECT_EQ(step.authcid, "ann@x.test");
    EXPECT_TRUE(step.authzid.empty());
  }
  {  // RFC 5034's "=": an empty initial response.
    ExternalServerExchange exchange(WithCertificate("ann@x.test"));
    const SaslStep step = exchange.Start(std::string_view());
    ASSERT_EQ(step.kind, SaslStep::Kind::kSuccess);
    EXPECT_EQ(step.authcid, "ann@x.test");
  }
  {  // The same name in another case is no authorisation id.
    ExternalServerExchange exchange(WithCertificate("ann@x.test"));
    const SaslStep step = exchange.Start(std::string_view("Ann@X.test"));
    ASSERT_EQ(step.kind, SaslStep::Kind::kSuccess);
    EXPECT_TRUE(step.authzid.empty());
  }
}

TEST(ExternalTest, AuthzidIsPassedToTheDriver) {
  ExternalServerExchange exchange(WithCertificate("support@x.test"));
  const SaslStep step = exchange.Start(std::string_view("bob@x.test"));
  ASSERT_EQ(step.kind, SaslStep::Kind::kSuccess);
  EXPECT_EQ(step.authcid, "support@x.test");
  EXPECT_EQ(step.authzid, "bob@x.test");
}

TEST(ExternalTest, MalformedAuthzid) {
  ExternalServerExchange a(WithCertificate("ann@x.test"));
  EXPECT_EQ(a.Start(std::string_view("a\0b", 3)).failure, SaslFailure::kMalformed);
  ExternalServerExchange b(WithCertificate("ann@x.test"));
  b.Start(std::nullopt);
  const SaslStep step = b.Continue(std::string(256, 'a'));
  EXPECT_EQ(step.kind, SaslStep::Kind::kFailure);
  EXPECT_EQ(step.failure, SaslFailure::kMalformed);
}

TEST(ExternalTest, IdentityFitsOnlyItsOwnTenantsCertificateName) {
  EXPECT_TRUE(IdentityFitsCertificateName("bob@example.org", "example.org"));
  EXPECT_TRUE(IdentityFitsCertificateName("bob@Example.ORG", "pop.example.org"));
  EXPECT_FALSE(IdentityFitsCertificateName("bob@example.org", "example.net"));
  EXPECT_FALSE(IdentityFitsCertificateName("bob@example.org", "badexample.org"));
  EXPECT_FALSE(IdentityFitsCertificateName("bob@pop.example.org", "example.org"));
  EXPECT_FALSE(IdentityFitsCertificateName("bob", "example.org"));
  EXPECT_FALSE(IdentityFitsCertificateName("bob@", "example.org"));
  EXPECT_FALSE(IdentityFitsCertificateName("bob@example.org", ""));
}

}  // namespace
}  // namespace posthaste::auth
