// Pop3Session with SASL mechanisms beyond PLAIN and LOGIN (AuthMechanism::kSasl): the offer in
// CAPA and AUTH, the exchange's steps through kAuthenticate/kContinue at every fragment size,
// RFC 5034's cancel and base64 rules, the SASL line limit, and failures.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/pop3/session.h"
#include "server/pop3/testing/fake_mailbox.h"

namespace posthaste::pop3 {
namespace {

using ::testing::ElementsAre;
using testing::FakeDriver;
using testing::FakeMailbox;

constexpr size_t kFragmentSizes[] = {0, 1000, 100, 10, 5, 2, 1};
constexpr std::string_view kOffer = "SCRAM-SHA-256 SCRAM-SHA-1";

Pop3SessionOptions Options(std::string_view offer = kOffer, bool plaintext = true) {
  Pop3SessionOptions options;
  options.hostname = "pop.example";
  options.policy.plaintext_requires_tls = !plaintext;
  options.policy.loopback_exempt_from_tls = false;
  options.sasl_mechanisms = offer;
  return options;
}

// A two-step mechanism: the server says "ch1", expects "resp", then logs in "mrose".
Pop3AuthResult TwoSteps(std::string_view, bool start, std::optional<std::string_view> response) {
  if (start && !response.has_value()) return {Pop3AuthResult::Code::kContinue, {}, "ch1"};
  if (response == "resp") return {Pop3AuthResult::Code::kOk, "mrose", {}};
  if (start) return {Pop3AuthResult::Code::kContinue, {}, std::string("\0\xff", 2)};
  return {Pop3AuthResult::Code::kBadCredentials, {}, {}};
}

struct Fixture {
  FakeMailbox mailbox;
  FakeDriver driver;
  explicit Fixture(Pop3SessionOptions options = Options()) : driver(std::move(options)) {
    mailbox.AddOfSize(100, "u1");
    driver.accounts()["mrose"] = {.password = "secret", .mailbox = &mailbox};
    driver.sasl_answer = TwoSteps;
    driver.TakeOutput();  // greeting
  }
  Pop3Session& session() { return driver.session(); }
};

constexpr std::string_view kLoggedIn = "+OK mrose's maildrop has 1 message (100 octets)\r\n";

TEST(Pop3SessionSaslTest, ExchangeRunsThroughTheDriverAtEveryFragmentSize) {
  for (size_t fragment : kFragmentSizes) {
    Fixture f;
    f.driver.Feed("AUTH scram-sha-256\r\ncmVzcA==\r\nSTAT\r\n", fragment);
    EXPECT_EQ(f.driver.TakeOutput(), "+ Y2gx\r\n" + std::string(kLoggedIn) + "+OK 1 100\r\n")
        << fragment;
    EXPECT_THAT(f.driver.events(), ElementsAre("sasl SCRAM-SHA-256 start none",
                                               "sasl SCRAM-SHA-256 step [resp]", "open mrose"));
    EXPECT_EQ(f.session().user(), "mrose");
  }
}

TEST(Pop3SessionSaslTest, InitialResponseAndBinaryChallenges) {
  Fixture f;
  f.driver.Feed("AUTH SCRAM-SHA-1 cmVzcA==\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), kLoggedIn);
  EXPECT_THAT(f.driver.events(), ElementsAre("sasl SCRAM-SHA-1 start [resp]", "open mrose"));
  // "=" is an empty initial response; the challenge's bytes go out base64-encoded.
  Fixture empty;
  empty.driver.Feed("AUTH SCRAM-SHA-1 =\r\n\r\n");
  EXPECT_EQ(empty.driver.TakeOutput(), "+ AP8=\r\n-ERR [AUTH] Authentication failed\r\n");
  EXPECT_THAT(empty.driver.events(),
              ElementsAre("sasl SCRAM-SHA-1 start []", "sasl SCRAM-SHA-1 step []", "delay 2000"));
  EXPECT_EQ(empty.session().counters().auth_failures, 1u);
}

TEST(Pop3SessionSaslTest, OnlyOfferedMechanismsAreAccepted) {
  Fixture f(Options("SCRAM-SHA-256"));
  f.driver.Feed("AUTH SCRAM-SHA-1\r\nAUTH SCRAM-SHA-256-PLUS\r\nAUTH SCRAM\r\n");
  EXPECT_EQ(f.driver.TakeOutput(),
            "-ERR Unsupported authentication mechanism\r\n"
            "-ERR Unsupported authentication mechanism\r\n"
            "-ERR Unsupported authentication mechanism\r\n");
  EXPECT_TRUE(f.driver.events().empty());
  f.session().SetSaslMechanisms("SCRAM-SHA-256-PLUS SCRAM-SHA-256");
  f.driver.Feed("AUTH SCRAM-SHA-256-PLUS cmVzcA==\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), kLoggedIn);
}

TEST(Pop3SessionSaslTest, CancelAndBadBase64EndTheExchangeAndTellTheDriver) {
  for (size_t fragment : kFragmentSizes) {
    Fixture f;
    f.driver.Feed("AUTH SCRAM-SHA-256\r\n*\r\nAUTH SCRAM-SHA-256\r\n!!!\r\nAUTH SCRAM-SHA-1 !!\r\n",
                  fragment);
    EXPECT_EQ(f.driver.TakeOutput(),
              "+ Y2gx\r\n-ERR Authentication cancelled\r\n+ Y2gx\r\n-ERR Invalid base64 data\r\n"
              "-ERR Invalid base64 data\r\n");
    EXPECT_THAT(f.driver.events(),
                ElementsAre("sasl SCRAM-SHA-256 start none", "abandon-sasl cancelled",
                            "sasl SCRAM-SHA-256 start none", "abandon-sasl malformed"));
    EXPECT_EQ(f.session().counters().auth_failures, 0u);
    EXPECT_EQ(f.session().state(), Pop3State::kAuthorization);
  }
}

TEST(Pop3SessionSaslTest, OverlongResponseIsRefusedAndAbandoned) {
  Pop3SessionOptions options = Options();
  options.sasl_line_bytes_max = 1024;
  Fixture f(options);
  f.driver.Feed("AUTH SCRAM-SHA-256\r\n" + std::string(3000, 'A') + "\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), "+ Y2gx\r\n-ERR Authentication line too long\r\n");
  EXPECT_THAT(f.driver.events(),
              ElementsAre("sasl SCRAM-SHA-256 start none", "abandon-sasl malformed"));
  EXPECT_EQ(f.session().counters().sasl_line_too_long, 1u);
}

TEST(Pop3SessionSaslTest, CapaAndBareAuthListTheOffer) {
  Fixture plain(Options(kOffer, /*plaintext=*/true));
  plain.driver.Feed("CAPA\r\nAUTH\r\n");
  std::string out = plain.driver.TakeOutput();
  EXPECT_NE(out.find("\r\nUSER\r\nSASL PLAIN LOGIN SCRAM-SHA-256 SCRAM-SHA-1\r\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("+OK\r\nPLAIN\r\nLOGIN\r\nSCRAM-SHA-256\r\nSCRAM-SHA-1\r\n.\r\n"),
            std::string::npos)
      << out;
  // Without TLS where plaintext is refused: SCRAM only, no USER.
  Fixture no_plain(Options(kOffer, /*plaintext=*/false));
  no_plain.driver.Feed("CAPA\r\nAUTH\r\n");
  out = no_plain.driver.TakeOutput();
  EXPECT_NE(out.find("\r\nSASL SCRAM-SHA-256 SCRAM-SHA-1\r\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("USER"), std::string::npos) << out;
  EXPECT_NE(out.find("+OK\r\nSCRAM-SHA-256\r\nSCRAM-SHA-1\r\n.\r\n"), std::string::npos) << out;
  // No offer and no plaintext: no SASL line at all.
  Fixture none(Options("", /*plaintext=*/false));
  none.driver.Feed("CAPA\r\n");
  EXPECT_EQ(none.driver.TakeOutput().find("SASL"), std::string::npos);
}

TEST(Pop3SessionSaslTest, TempFailureAndSyntax) {
  Fixture f;
  f.driver.sasl_answer = [](std::string_view, bool, std::optional<std::string_view>) {
    return Pop3AuthResult{Pop3AuthResult::Code::kTempFailure, {}, {}};
  };
  f.driver.Feed("AUTH SCRAM-SHA-256 =\r\nAUTH SCRAM-SHA-256 a b\r\n");
  EXPECT_EQ(f.driver.TakeOutput(),
            "-ERR [SYS/TEMP] Temporary authentication failure, try again later\r\n"
            "-ERR Syntax: AUTH mechanism [initial-response]\r\n");
}

}  // namespace
}  // namespace posthaste::pop3
