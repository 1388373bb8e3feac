#include "server/auth/oauth_exchange.h"

#include <memory>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/json.h"
#include "gtest/gtest.h"
#include "server/auth/testing/jwt_signer.h"

namespace posthaste::auth {
namespace {

using testing::JwtSigner;
using Kind = SaslStep::Kind;

// RFC 7628 section 4.1: the client's initial response, as base64 on the wire and decoded.
constexpr char kRfc7628Example41Base64[] =
    "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOW"
    "Rm"
    "dDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB";
constexpr char kRfc7628Token[] = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==";

constexpr int64_t kNow = 1800000000;

std::string Message(std::string_view gs2, std::string_view token) {
  return absl::StrCat(std::string(gs2),
                      "\x01host=pop.t.test\x01port=995\x01"
                      "auth=Bearer ",
                      std::string(token), "\x01\x01");
}

TEST(OAuthBearerParseTest, TheRfc7628Examples) {
  std::string decoded;
  ASSERT_TRUE(absl::Base64Unescape(kRfc7628Example41Base64, &decoded));
  auto message = ParseOAuthBearerMessage(decoded);
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_EQ(message->authzid, "user@example.com");
  EXPECT_EQ(message->host, "server.example.com");
  EXPECT_EQ(message->port, "143");
  EXPECT_EQ(message->token, kRfc7628Token);
  // Section 4.3/4.4 (SMTP, port 587) and a client that names no authzid.
  message = ParseOAuthBearerMessage(
      absl::StrCat("n,a=user@example.com,\x01host=server.example.com\x01port=587\x01"
                   "auth=Bearer ",
                   kRfc7628Token, "\x01\x01"));
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_EQ(message->port, "587");
  message =
      ParseOAuthBearerMessage(absl::StrCat("y,,\x01"
                                           "auth=bearer  ",
                                           kRfc7628Token, "\x01\x01"));
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_EQ(message->authzid, "");
  EXPECT_EQ(message->token, kRfc7628Token);
  // The server's error of section 4.3 is JSON our reader takes, and ours has its shape.
  auto error = ParseJson(OAuthBearerErrorJson(
      "example_scope", "https://example.com/.well-known/openid-configuration"));
  ASSERT_TRUE(error.ok());
  EXPECT_EQ(error->Find("status")->text(), "invalid_token");
  EXPECT_EQ(error->Find("schemes")->text(), "bearer");
  EXPECT_EQ(error->Find("scope")->text(), "example_scope");
  EXPECT_EQ(error->Find("openid-configuration")->text(),
            "https://example.com/.well-known/openid-configuration");
  EXPECT_EQ(OAuthBearerErrorJson("", ""), R"({"status":"invalid_token","schemes":"bearer"})");
}

TEST(OAuthBearerParseTest, DecodesTheAuthzidEscapes) {
  auto message = ParseOAuthBearerMessage(Message("n,a=a=2Cb=3Dc@t.test,", "tok"));
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_EQ(message->authzid, "a,b=c@t.test");
}

TEST(OAuthBearerParseTest, RefusesBrokenMessages) {
  const std::string too_long(kOAuthMessageBytesMax, 'a');
  for (const std::string& bad : std::vector<std::string>{
           "",
           "\x01",                            // the error acknowledgement alone
           Message("p=tls-unique,,", "tok"),  // channel binding
           Message("n,", "tok"),              // one comma only
           Message("x,,", "tok"),             // unknown cbind flag
           Message("n,u=someone,", "tok"),    // not a=
           Message("n,a=,", "tok"),           // empty authzid
           Message("n,a=a=2Xb,", "tok"),      // bad escape
           "n,,\x01host=h\x01\x01",           // no auth
           "n,,\x01"
           "auth=Bearer tok\x01",  // no closing %x01
           "n,,\x01"
           "auth=Bearer tok\x01\x01x",    // bytes after it
           "n,,auth=Bearer tok\x01\x01",  // no %x01 after the gs2 header
           "n,,\x01"
           "auth=Basic dXNlcjpwYXNz\x01\x01",  // another scheme
           "n,,\x01"
           "auth=Bearer\x01\x01",  // no token
           "n,,\x01"
           "auth=Bearer to ken\x01\x01",  // not a b64token
           "n,,\x01"
           "auth=Bearer tok\x01"
           "auth=Bearer tok\x01\x01",  // repeated key
           "n,,\x01"
           "au-th=Bearer tok\x01\x01",  // key not ALPHA
           "n,,\x01"
           "auth=Bearer tok\x01host=a\x7f\x01\x01",  // control byte
           "n,,\x01=x\x01"
           "auth=Bearer tok\x01\x01",  // empty key
           Message("n,,", too_long),
       }) {
    EXPECT_EQ(ParseOAuthBearerMessage(bad).status().code(), absl::StatusCode::kInvalidArgument)
        << absl::CHexEscape(bad.substr(0, 80));
  }
}

TEST(XOAuth2ParseTest, GooglesFormat) {
  auto message = ParseXOAuth2Message(
      "user=someuser@example.com\x01"
      "auth=Bearer ya29.vF9dft4qmTc2"
      "Nvb3RlckBhbHRhdmlzdGEuY29tCg\x01\x01");
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_EQ(message->user, "someuser@example.com");
  EXPECT_EQ(message->token, "ya29.vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg");
  EXPECT_TRUE(ParseXOAuth2Message("auth=Bearer t\x01user=u@t.test\x01\x01").ok());
  for (const std::string& bad :
       std::vector<std::string>{"", "\x01", "user=u@t.test\x01\x01", "auth=Bearer t\x01\x01",
                                "user=\x01"
                                "auth=Bearer t\x01\x01",
                                "user=u@t.test\x01"
                                "auth=Bearer t\x01",
                                "user=u@t.test\x01"
                                "auth=Bearer t",
                                "n,,\x01user=u\x01"
                                "auth=Bearer t\x01\x01"}) {
    EXPECT_FALSE(ParseXOAuth2Message(bad).ok()) << absl::CHexEscape(bad);
  }
  EXPECT_EQ(XOAuth2ErrorJson("https://mail.t.test/"),
            R"({"status":"401","schemes":"bearer","scope":"https://mail.t.test/"})");
}

class OAuthExchangeTest : public ::testing::Test {
 protected:
  OAuthExchangeTest() {
    auto tenant = std::make_shared<OAuthTenant>();
    tenant->config.domain = "t.test";
    tenant->config.checks.issuer = "https://idp.t.test/";
    tenant->config.checks.audiences = {"pop.t.test"};
    tenant->config.scope = "pop";
    auto keys = ParseJwks(signer_.Jwks());
    EXPECT_TRUE(keys.ok());
    tenant->keys = std::make_shared<const JwkSet>(std::move(*keys));
    auto snapshot = std::make_shared<OAuthSnapshot>();
    snapshot->tenants.emplace("t.test", std::move(tenant));
    snapshot->mailbox_claims = {"email"};
    snapshot_ = std::move(snapshot);
  }

  std::string Token(std::string_view mailbox, int64_t exp = kNow + 600) const {
    return signer_.Sign(absl::StrCat(R"({"iss":"https://idp.t.test/","aud":"pop.t.test",)",
                                     R"("email":")", std::string(mailbox), R"(","exp":)", exp,
                                     "}"));
  }
  std::unique_ptr<SaslServerExchange> Bearer() {
    return NewOAuthBearerExchange(snapshot_, [this] { return now_; });
  }
  std::unique_ptr<SaslServerExchange> XOAuth2() {
    return NewXOAuth2Exchange(snapshot_, [this] { return now_; });
  }

  JwtSigner signer_{JwsAlgorithm::kEs256, "k"};
  std::shared_ptr<const OAuthSnapshot> snapshot_;
  int64_t now_ = kNow;
};

TEST_F(OAuthExchangeTest, OAuthBearerLogsInWithTheInitialResponse) {
  auto exchange = Bearer();
  EXPECT_EQ(exchange->mechanism(), SaslMechanism::kOAuthBearer);
  SaslStep step = exchange->Start(Message("n,a=alice@t.test,", Token("alice@t.test")));
  ASSERT_EQ(step.kind, Kind::kSuccess);
  EXPECT_EQ(step.authcid, "alice@t.test");
  EXPECT_EQ(step.authzid, "");
  // Without an authzid the token names the mailbox.
  step = Bearer()->Start(Message("n,,", Token("bob@t.test")));
  ASSERT_EQ(step.kind, Kind::kSuccess);
  EXPECT_EQ(step.authcid, "bob@t.test");
}

TEST_F(OAuthExchangeTest, OAuthBearerAsksForTheMessageWhenAuthHadNone) {
  auto exchange = Bearer();
  SaslStep step = exchange->Start(std::nullopt);
  ASSERT_EQ(step.kind, Kind::kChallenge);
  EXPECT_EQ(step.challenge, "");
  step = exchange->Continue(Message("n,a=alice@t.test,", Token("alice@t.test")));
  ASSERT_EQ(step.kind, Kind::kSuccess);
  EXPECT_EQ(step.authcid, "alice@t.test");
}

TEST_F(OAuthExchangeTest, ABadTokenGetsTheErrorJsonThenFails) {
  auto exchange = Bearer();
  SaslStep step = exchange->Start(Message("n,a=alice@t.test,", Token("mallory@t.test")));
  ASSERT_EQ(step.kind, Kind::kChallenge);
  EXPECT_EQ(step.challenge, R"({"status":"invalid_token","schemes":"bearer","scope":"pop"})");
  step = exchange->Continue("\x01");
  ASSERT_EQ(step.kind, Kind::kFailure);
  EXPECT_EQ(step.failure, SaslFailure::kTokenInvalid);

  // The injected clock decides expiry: the same token fails once time moved on.
  const std::string token = Token("alice@t.test", kNow + 30);
  EXPECT_EQ(Bearer()->Start(Message("n,,", token)).kind, Kind::kSuccess);
  now_ = kNow + 30 + 60;
  exchange = Bearer();
  ASSERT_EQ(exchange->Start(Message("n,,", token)).kind, Kind::kChallenge);
  step = exchange->Continue("anything");  // fails whatever the client answers
  EXPECT_EQ(step.failure, SaslFailure::kTokenExpired);
}

TEST_F(OAuthExchangeTest, UnknownTenantsAndNoConfigurationFailAsInvalidTokens) {
  auto exchange = Bearer();
  SaslStep step = exchange->Start(Message("n,a=alice@v.test,", Token("alice@v.test")));
  ASSERT_EQ(step.kind, Kind::kChallenge);
  EXPECT_EQ(step.challenge, R"({"status":"invalid_token","schemes":"bearer"})");
  EXPECT_EQ(exchange->Continue("\x01").failure, SaslFailure::kTokenInvalid);

  auto unconfigured = NewOAuthBearerExchange(nullptr, [] { return kNow; });
  ASSERT_EQ(unconfigured->Start(Message("n,,", Token("alice@t.test"))).kind, Kind::kChallenge);
  EXPECT_EQ(unconfigured->Continue("\x01").failure, SaslFailure::kTokenInvalid);
}

TEST_F(OAuthExchangeTest, MalformedMessagesFailAtOnce) {
  SaslStep step = Bearer()->Start(std::string_view("n,,auth=Bearer x"));
  ASSERT_EQ(step.kind, Kind::kFailure);
  EXPECT_EQ(step.failure, SaslFailure::kMalformed);
  auto exchange = Bearer();
  ASSERT_EQ(exchange->Start(std::nullopt).kind, Kind::kChallenge);
  step = exchange->Continue("\x01");
  ASSERT_EQ(step.kind, Kind::kFailure);
  EXPECT_EQ(step.failure, SaslFailure::kMalformed);
  // The store is never consulted.
  exchange = Bearer();
  EXPECT_EQ(exchange->AccountFound(absl::NotFoundError("x")).kind, Kind::kFailure);
}

TEST_F(OAuthExchangeTest, XOAuth2LogsInAndFailsWithItsOwnJson) {
  auto exchange = XOAuth2();
  EXPECT_EQ(exchange->mechanism(), SaslMechanism::kXOAuth2);
  SaslStep step =
      exchange->Start(absl::StrCat("user=Alice@T.TEST\x01"
                                   "auth=Bearer ",
                                   Token("alice@t.test"), "\x01\x01"));
  ASSERT_EQ(step.kind, Kind::kSuccess);
  EXPECT_EQ(step.authcid, "Alice@T.TEST");

  exchange = XOAuth2();
  ASSERT_EQ(exchange->Start(std::nullopt).kind, Kind::kChallenge);
  step =
      exchange->Continue(absl::StrCat("user=bob@t.test\x01"
                                      "auth=Bearer ",
                                      Token("alice@t.test"), "\x01\x01"));
  ASSERT_EQ(step.kind, Kind::kChallenge);
  EXPECT_EQ(step.challenge, R"({"status":"401","schemes":"bearer","scope":"pop"})");
  step = exchange->Continue("");
  ASSERT_EQ(step.kind, Kind::kFailure);
  EXPECT_EQ(step.failure, SaslFailure::kTokenInvalid);

  step = XOAuth2()->Start(std::string_view("user=bob@t.test\x01\x01"));
  EXPECT_EQ(step.failure, SaslFailure::kMalformed);
}

}  // namespace
}  // namespace posthaste::auth
