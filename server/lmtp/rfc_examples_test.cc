// The example dialogue of RFC 2033 section 4.2 ("The DATA command"), server side byte for byte
// except the greeting text, with the client's lines sent one at a time and all pipelined, at
// every fragment size. RFC 2033's example server offers neither ENHANCEDSTATUSCODES nor
// 8BITMIME and declares no fixed SIZE, so the options here say the same; with the defaults
// the same dialogue gets enhanced codes (second test).
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/lmtp/session.h"
#include "server/lmtp/testing/fake_driver.h"

namespace posthaste::lmtp {
namespace {

using testing::FakeLmtpDriver;

constexpr size_t kFragmentSizes[] = {0, 1000, 100, 10, 5, 2, 1};

// RFC 2033 section 4.2, client side.
const char* const kClientLines[] = {
    "LHLO foo.edu\r\n",
    "MAIL FROM:<chris@bar.com>\r\n",
    "RCPT TO:<pat@foo.edu>\r\n",
    "RCPT TO:<jones@foo.edu>\r\n",
    "RCPT TO:<green@foo.edu>\r\n",
    "DATA\r\n",
    "Blah blah blah...\r\n...etc. etc. etc.\r\n.\r\n",
    "QUIT\r\n",
};

// RFC 2033 section 4.2, server side after the greeting.
constexpr char kServerReplies[] =
    "250-foo.edu\r\n"
    "250-PIPELINING\r\n"
    "250 SIZE\r\n"
    "250 OK\r\n"
    "250 OK\r\n"
    "550 No such user here\r\n"
    "250 OK\r\n"
    "354 Start mail input; end with <CRLF>.<CRLF>\r\n"
    "250 OK\r\n"
    "452 <green@foo.edu> is temporarily over quota\r\n"
    "221 foo.edu closing connection\r\n";

LmtpSessionOptions Rfc2033Options() {
  LmtpSessionOptions options;
  options.hostname = "foo.edu";
  options.greeting_text = "server ready";
  options.enhanced_status_codes = false;
  options.eight_bit_mime = false;
  options.advertise_size_limit = false;
  return options;
}

void SetUpRecipients(FakeLmtpDriver* driver) {
  driver->AddRecipient("pat@foo.edu");
  driver->AddRecipient("green@foo.edu");
  // pat's copy is stored; green's mailbox turns out to be over quota when storing.
  driver->outcomes()["pat@foo.edu"] = {LmtpDeliveryResult::Code::kDelivered, "OK"};
  driver->outcomes()["green@foo.edu"] = {LmtpDeliveryResult::Code::kOverQuotaTemp, ""};
}

TEST(Rfc2033Example, Section42LineByLine) {
  for (size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(fragment);
    FakeLmtpDriver driver(Rfc2033Options());
    SetUpRecipients(&driver);
    EXPECT_EQ(driver.TakeOutput(), "220 foo.edu LMTP server ready\r\n");
    for (const char* line : kClientLines) driver.Feed(line, fragment);
    EXPECT_EQ(driver.output(), kServerReplies);
    EXPECT_TRUE(driver.closed());
    ASSERT_EQ(driver.deliveries().size(), 1u);
    EXPECT_EQ(driver.deliveries()[0].reverse_path, "chris@bar.com");
    EXPECT_EQ(driver.deliveries()[0].mailboxes,
              (std::vector<std::string>{"pat@foo.edu", "green@foo.edu"}));
    EXPECT_EQ(driver.stored().at("pat@foo.edu").at(0),
              "Return-Path: <chris@bar.com>\r\nBlah blah blah...\r\n...etc. etc. etc.\r\n");
    EXPECT_EQ(driver.stored().count("green@foo.edu"), 0u);
  }
}

TEST(Rfc2033Example, Section42Pipelined) {
  std::string all;
  for (const char* line : kClientLines) all += line;
  for (size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(fragment);
    FakeLmtpDriver driver(Rfc2033Options());
    SetUpRecipients(&driver);
    driver.TakeOutput();
    driver.Feed(all, fragment);
    EXPECT_EQ(driver.output(), kServerReplies);
  }
}

TEST(Rfc2033Example, Section42WithDefaultOptions) {
  LmtpSessionOptions options;
  options.hostname = "foo.edu";
  options.message_bytes_max = 10240000;
  FakeLmtpDriver driver(options);
  driver.AddRecipient("pat@foo.edu");
  driver.AddRecipient("green@foo.edu");
  driver.outcomes()["green@foo.edu"] = {LmtpDeliveryResult::Code::kOverQuotaTemp, ""};
  driver.TakeOutput();
  for (const char* line : kClientLines) driver.Feed(line);
  EXPECT_EQ(driver.output(),
            "250-foo.edu\r\n"
            "250-PIPELINING\r\n"
            "250-ENHANCEDSTATUSCODES\r\n"
            "250-8BITMIME\r\n"
            "250 SIZE 10240000\r\n"
            "250 2.1.0 OK\r\n"
            "250 2.1.5 OK\r\n"
            "550 5.1.1 No such user here\r\n"
            "250 2.1.5 OK\r\n"
            "354 Start mail input; end with <CRLF>.<CRLF>\r\n"
            "250 2.1.5 <pat@foo.edu> delivered\r\n"
            "452 4.2.2 <green@foo.edu> is temporarily over quota\r\n"
            "221 2.0.0 foo.edu closing connection\r\n");
}

}  // namespace
}  // namespace posthaste::lmtp
