// LmtpSession behaviour: a table of every command in every state, each run at every input
// fragment size, then focused tests of per-recipient replies, DATA reading (dot-unstuffing,
// bare LF, size limit), pipelining, limits and counters, and connection loss.
#include "server/lmtp/session.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/lmtp/testing/fake_driver.h"

namespace posthaste::lmtp {
namespace {

using ::testing::ElementsAre;
using testing::FakeLmtpDriver;
using ::testing::HasSubstr;

constexpr size_t kFragmentSizes[] = {0, 1000, 100, 10, 5, 2, 1};

LmtpSessionOptions TestOptions() {
  LmtpSessionOptions options;
  options.hostname = "lmtp.example";
  options.message_bytes_max = 1024 * 1024;
  return options;
}

void SetUpRecipients(FakeLmtpDriver* driver) {
  using Code = LmtpRecipientVerdict::Code;
  driver->AddRecipient("pat@foo.edu");
  driver->AddRecipient("green@foo.edu");
  driver->recipients()["dis@foo.edu"] = {Code::kDisabled, "", ""};
  driver->recipients()["full@foo.edu"] = {Code::kOverQuotaTemp, "", ""};
  driver->recipients()["fullp@foo.edu"] = {Code::kOverQuotaPerm, "", ""};
  driver->recipients()["temp@foo.edu"] = {Code::kTempFailure, "", ""};
  driver->recipients()["moving@foo.edu"] = {Code::kMoving, "", ""};
}

const std::string kLhloReply =
    "250-lmtp.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
    "250 SIZE 1048576\r\n";
const std::string kOk = "250 2.0.0 OK\r\n";
const std::string kMailOk = "250 2.1.0 OK\r\n";
const std::string kRcptOk = "250 2.1.5 OK\r\n";
const std::string kStartData = "354 Start mail input; end with <CRLF>.<CRLF>\r\n";
const std::string kQuitReply = "221 2.0.0 lmtp.example closing connection\r\n";
const std::string kHeloReply = "500 5.5.1 \"EHLO/HELO\" not allowed in LMTP, use LHLO\r\n";
const std::string kVrfyReply =
    "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n";
const std::string kNeedLhlo = "503 5.5.1 Send LHLO first\r\n";
const std::string kNeedMail = "503 5.5.1 Need MAIL command first\r\n";
const std::string kNested = "503 5.5.1 Nested MAIL command\r\n";
const std::string kUnknown = "500 5.5.1 Command unrecognized\r\n";
const std::string kNotImplemented = "502 5.5.1 Command not implemented\r\n";
const std::string kReturnPath = "Return-Path: <chris@bar.com>\r\n";

enum class Start {
  kGreeted,      // fresh connection
  kReady,        // after LHLO
  kMailOnly,     // after MAIL, no recipient yet
  kTransaction,  // after MAIL and an accepted RCPT for pat@foo.edu
  kData,         // after 354
  kChecking,     // RCPT check pending (driver has not answered)
  kDelivering,   // delivery pending (driver has not answered)
};

struct CommandCase {
  Start start;
  std::string input;
  std::string output;
  std::vector<std::string> events;
};

std::string Deliver(const std::string& mailboxes, const std::string& message) {
  return "deliver " + mailboxes + " " + std::to_string(message.size());
}

std::vector<CommandCase> CommandTable() {
  const std::string delivered = "250 2.1.5 <pat@foo.edu> delivered\r\n";
  std::vector<CommandCase> cases = {
      // Before LHLO.
      {Start::kGreeted, "LHLO client.example\r\n", kLhloReply, {}},
      {Start::kGreeted, "lhlo client.example\r\n", kLhloReply, {}},
      {Start::kGreeted, "LHLO\r\n", "501 5.5.4 Syntax: LHLO hostname\r\n", {}},
      {Start::kGreeted, "LHLO a b\r\n", "501 5.5.4 Syntax: LHLO hostname\r\n", {}},
      {Start::kGreeted, "HELO client.example\r\n", kHeloReply, {}},
      {Start::kGreeted, "EHLO client.example\r\n", kHeloReply, {}},
      {Start::kGreeted, "MAIL FROM:<chris@bar.com>\r\n", kNeedLhlo, {}},
      {Start::kGreeted, "RCPT TO:<pat@foo.edu>\r\n", kNeedLhlo, {}},
      {Start::kGreeted, "DATA\r\n", kNeedLhlo, {}},
      {Start::kGreeted, "RSET\r\n", kOk, {}},
      {Start::kGreeted, "NOOP\r\n", kOk, {}},
      {Start::kGreeted, "VRFY pat\r\n", kVrfyReply, {}},
      {Start::kGreeted, "QUIT\r\n", kQuitReply, {"close"}},
      {Start::kGreeted, "XYZZY\r\n", kUnknown, {}},
      {Start::kGreeted, "\r\n", "500 5.5.2 Syntax error, empty command\r\n", {}},
      {Start::kGreeted, "STARTTLS\r\n", kNotImplemented, {}},
      // After LHLO.
      {Start::kReady, "LHLO client.example\r\n", kLhloReply, {}},
      {Start::kReady, "HELO client.example\r\n", kHeloReply, {}},
      {Start::kReady, "MAIL FROM:<chris@bar.com>\r\n", kMailOk, {}},
      {Start::kReady, "mail from:<chris@bar.com>\r\n", kMailOk, {}},
      {Start::kReady, "MAIL FROM:<>\r\n", kMailOk, {}},
      {Start::kReady, "MAIL FROM: <chris@bar.com>\r\n", kMailOk, {}},
      {Start::kReady, "MAIL FROM:<chris@bar.com> SIZE=1000 BODY=8BITMIME\r\n", kMailOk, {}},
      {Start::kReady, "MAIL FROM:<chris@bar.com> body=7bit\r\n", kMailOk, {}},
      {Start::kReady, "MAIL FROM:<@relay.example,@b.example:chris@bar.com>\r\n", kMailOk, {}},
      {Start::kReady, "MAIL FROM:<\"chris x\"@bar.com>\r\n", kMailOk, {}},
      {Start::kReady, "MAIL FROM:<chris@[192.0.2.1]>\r\n", kMailOk, {}},
      {Start::kReady,
       "MAIL FROM:<chris@bar.com> SIZE=1048577\r\n",
       "552 5.3.4 Message size exceeds fixed maximum message size\r\n",
       {}},
      // 20 digits past UINT64_MAX saturate: "too large", not a syntax error.
      {Start::kReady,
       "MAIL FROM:<chris@bar.com> SIZE=99999999999999999999\r\n",
       "552 5.3.4 Message size exceeds fixed maximum message size\r\n",
       {}},
      {Start::kReady,
       "MAIL FROM:<chris@bar.com> SIZE=-1\r\n",
       "501 5.5.4 Bad SIZE parameter\r\n",
       {}},
      {Start::kReady,
       "MAIL FROM:<chris@bar.com> SIZE=99999999999999999999999\r\n",
       "501 5.5.4 Bad SIZE parameter\r\n",
       {}},
      {Start::kReady,
       "MAIL FROM:<chris@bar.com> SIZE=x\r\n",
       "501 5.5.4 Bad SIZE parameter\r\n",
       {}},
      {Start::kReady,
       "MAIL FROM:<chris@bar.com> SIZE=1 SIZE=2\r\n",
       "501 5.5.4 Bad SIZE parameter\r\n",
       {}},
      {Start::kReady,
       "MAIL FROM:<chris@bar.com> BODY=BINARYMIME\r\n",
       "501 5.5.4 Unsupported BODY type\r\n",
       {}},
      {Start::kReady,
       "MAIL FROM:<chris@bar.com> AUTH=<>\r\n",
       "555 5.5.4 Unsupported MAIL parameter\r\n",
       {}},
      {Start::kReady,
       "MAIL FROM:<chris@bar.com> =x\r\n",
       "501 5.5.4 Bad MAIL parameter syntax\r\n",
       {}},
      {Start::kReady, "MAIL FROM:chris@bar.com\r\n", "501 5.1.7 Bad sender address syntax\r\n", {}},
      {Start::kReady, "MAIL FROM:<chris@>\r\n", "501 5.1.7 Bad sender address syntax\r\n", {}},
      {Start::kReady, "MAIL FROM:<chris>\r\n", "501 5.1.7 Bad sender address syntax\r\n", {}},
      {Start::kReady,
       "MAIL FROM:<chris@bar..com>\r\n",
       "501 5.1.7 Bad sender address syntax\r\n",
       {}},
      {Start::kReady,
       "MAIL FROM:<chris@bar.com>x\r\n",
       "501 5.1.7 Bad sender address syntax\r\n",
       {}},
      {Start::kReady,
       "MAIL FROM:<" + std::string(300, 'a') + "@bar.com>\r\n",
       "501 5.1.7 Bad sender address syntax\r\n",
       {}},
      {Start::kReady,
       "MAIL TO:<chris@bar.com>\r\n",
       "501 5.5.4 Syntax: MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME]\r\n",
       {}},
      {Start::kReady, "RCPT TO:<pat@foo.edu>\r\n", kNeedMail, {}},
      {Start::kReady, "DATA\r\n", kNeedMail, {}},
      {Start::kReady, "RSET\r\n", kOk, {}},
      {Start::kReady, "RSET now\r\n", "501 5.5.4 Syntax: RSET\r\n", {}},
      {Start::kReady, "NOOP\r\n", kOk, {}},
      {Start::kReady, "NOOP anything\r\n", kOk, {}},
      {Start::kReady, "VRFY pat\r\n", kVrfyReply, {}},
      {Start::kReady, "VRFY\r\n", "501 5.5.4 Syntax: VRFY address\r\n", {}},
      {Start::kReady, "EXPN list\r\n", kNotImplemented, {}},
      {Start::kReady, "BDAT 10 LAST\r\n", kNotImplemented, {}},
      {Start::kReady, "QUIT\r\n", kQuitReply, {"close"}},
      {Start::kReady, "XYZZY\r\n", kUnknown, {}},
      // After MAIL, no recipient yet.
      {Start::kMailOnly, "RCPT TO:<pat@foo.edu>\r\n", kRcptOk, {"check pat@foo.edu"}},
      {Start::kMailOnly, "DATA\r\n", "503 5.5.1 No valid recipients\r\n", {}},
      {Start::kMailOnly, "MAIL FROM:<chris@bar.com>\r\n", kNested, {}},
      {Start::kMailOnly, "RSET\r\n", kOk, {}},
      {Start::kMailOnly, "QUIT\r\n", kQuitReply, {"close"}},
      // After MAIL and one accepted RCPT (pat).
      {Start::kTransaction, "RCPT TO:<pat@foo.edu>\r\n", kRcptOk, {"check pat@foo.edu"}},
      {Start::kTransaction, "rcpt to:<green@foo.edu>\r\n", kRcptOk, {"check green@foo.edu"}},
      {Start::kTransaction, "RCPT TO: <green@foo.edu>\r\n", kRcptOk, {"check green@foo.edu"}},
      {Start::kTransaction,
       "RCPT TO:<@hop.example:green@foo.edu>\r\n",
       kRcptOk,
       {"check green@foo.edu"}},
      {Start::kTransaction,
       "RCPT TO:<jones@foo.edu>\r\n",
       "550 5.1.1 No such user here\r\n",
       {"check jones@foo.edu"}},
      {Start::kTransaction,
       "RCPT TO:<dis@foo.edu>\r\n",
       "550 5.2.1 <dis@foo.edu> Mailbox disabled\r\n",
       {"check dis@foo.edu"}},
      {Start::kTransaction,
       "RCPT TO:<full@foo.edu>\r\n",
       "452 4.2.2 <full@foo.edu> is temporarily over quota\r\n",
       {"check full@foo.edu"}},
      {Start::kTransaction,
       "RCPT TO:<fullp@foo.edu>\r\n",
       "552 5.2.2 <fullp@foo.edu> is over quota\r\n",
       {"check fullp@foo.edu"}},
      {Start::kTransaction,
       "RCPT TO:<temp@foo.edu>\r\n",
       "451 4.3.0 <temp@foo.edu> Temporary internal error\r\n",
       {"check temp@foo.edu"}},
      {Start::kTransaction,
       "RCPT TO:<moving@foo.edu>\r\n",
       "451 4.2.0 <moving@foo.edu> Mailbox is moving, try again later\r\n",
       {"check moving@foo.edu"}},
      {Start::kTransaction,
       "RCPT TO:<Postmaster>\r\n",
       "550 5.1.1 No such user here\r\n",
       {"check Postmaster"}},
      {Start::kTransaction,
       "RCPT TO:<\"pat smith\"@foo.edu>\r\n",
       "550 5.1.1 No such user here\r\n",
       {"check \"pat smith\"@foo.edu"}},
      {Start::kTransaction,
       "RCPT TO:pat@foo.edu\r\n",
       "501 5.1.3 Bad recipient address syntax\r\n",
       {}},
      {Start::kTransaction, "RCPT TO:<>\r\n", "501 5.1.3 Bad recipient address syntax\r\n", {}},
      {Start::kTransaction,
       "RCPT TO:<pat@foo.edu\r\n",
       "501 5.1.3 Bad recipient address syntax\r\n",
       {}},
      {Start::kTransaction,
       "RCPT TO:<pat @foo.edu>\r\n",
       "501 5.1.3 Bad recipient address syntax\r\n",
       {}},
      {Start::kTransaction,
       "RCPT TO:<@hop:pat@foo.edu>x\r\n",
       "501 5.1.3 Bad recipient address syntax\r\n",
       {}},
      {Start::kTransaction,
       "RCPT TO:<pat@foo.edu> NOTIFY=NEVER\r\n",
       "555 5.5.4 Unsupported RCPT parameter\r\n",
       {}},
      {Start::kTransaction,
       "RCPT FROM:<pat@foo.edu>\r\n",
       "501 5.5.4 Syntax: RCPT TO:<address>\r\n",
       {}},
      {Start::kTransaction, "DATA\r\n", kStartData, {}},
      {Start::kTransaction, "DATA now\r\n", "501 5.5.4 Syntax: DATA\r\n", {}},
      {Start::kTransaction,
       "DATA\r\nHello\r\n.\r\n",
       kStartData + delivered,
       {Deliver("pat@foo.edu", kReturnPath + "Hello\r\n")}},
      {Start::kTransaction, "MAIL FROM:<chris@bar.com>\r\n", kNested, {}},
      {Start::kTransaction, "LHLO client.example\r\n", kLhloReply, {}},
      {Start::kTransaction, "HELO client.example\r\n", kHeloReply, {}},
      {Start::kTransaction, "RSET\r\n", kOk, {}},
      {Start::kTransaction, "NOOP\r\n", kOk, {}},
      {Start::kTransaction, "VRFY pat\r\n", kVrfyReply, {}},
      {Start::kTransaction, "QUIT\r\n", kQuitReply, {"close"}},
      {Start::kTransaction, "XYZZY\r\n", kUnknown, {}},
      // Reading the message: command words are message text.
      {Start::kData,
       "Hello\r\n.\r\n",
       delivered,
       {Deliver("pat@foo.edu", kReturnPath + "Hello\r\n")}},
      {Start::kData,
       "QUIT\r\n.\r\n",
       delivered,
       {Deliver("pat@foo.edu", kReturnPath + "QUIT\r\n")}},
      // Delivered in wire form: the stuffed line stays stuffed.
      {Start::kData, "..\r\n.\r\n", delivered, {Deliver("pat@foo.edu", kReturnPath + "..\r\n")}},
      {Start::kData, ".\r\n", delivered, {Deliver("pat@foo.edu", kReturnPath)}},
      {Start::kData, "QUIT\r\nRSET\r\n", "", {}},
      {Start::kData,
       "Hello\r\n.\r\nNOOP\r\n",
       delivered + kOk,
       {Deliver("pat@foo.edu", kReturnPath + "Hello\r\n")}},
  };
  // While a result is pending nothing is parsed: no reply, no action.
  for (const char* input :
       {"LHLO x\r\n", "MAIL FROM:<a@b.c>\r\n", "RCPT TO:<pat@foo.edu>\r\n", "DATA\r\n", "RSET\r\n",
        "NOOP\r\n", "VRFY x\r\n", "QUIT\r\n", "XYZZY\r\n", "\r\n"}) {
    cases.push_back({Start::kChecking, input, "", {}});
    cases.push_back({Start::kDelivering, input, "", {}});
  }
  return cases;
}

std::string StartName(Start start) {
  switch (start) {
    case Start::kGreeted:
      return "greeted";
    case Start::kReady:
      return "ready";
    case Start::kMailOnly:
      return "mail-only";
    case Start::kTransaction:
      return "transaction";
    case Start::kData:
      return "data";
    case Start::kChecking:
      return "checking";
    case Start::kDelivering:
      return "delivering";
  }
  return "?";
}

void Prepare(FakeLmtpDriver* driver, Start start) {
  driver->TakeOutput();
  switch (start) {
    case Start::kGreeted:
      break;
    case Start::kReady:
      driver->Feed("LHLO client.example\r\n");
      break;
    case Start::kMailOnly:
      driver->Feed("LHLO client.example\r\nMAIL FROM:<chris@bar.com>\r\n");
      break;
    case Start::kTransaction:
      driver->Feed("LHLO client.example\r\nMAIL FROM:<chris@bar.com>\r\nRCPT TO:<pat@foo.edu>\r\n");
      break;
    case Start::kData:
      driver->Feed(
          "LHLO client.example\r\nMAIL FROM:<chris@bar.com>\r\nRCPT TO:<pat@foo.edu>\r\n"
          "DATA\r\n");
      break;
    case Start::kChecking:
      driver->Feed("LHLO client.example\r\nMAIL FROM:<chris@bar.com>\r\n");
      driver->set_auto_answer(false);
      driver->Feed("RCPT TO:<pat@foo.edu>\r\n");
      ASSERT_TRUE(driver->pending());
      break;
    case Start::kDelivering:
      driver->Feed("LHLO client.example\r\nMAIL FROM:<chris@bar.com>\r\nRCPT TO:<pat@foo.edu>\r\n");
      driver->set_auto_answer(false);
      driver->Feed("DATA\r\nHello\r\n.\r\n");
      ASSERT_TRUE(driver->pending());
      break;
  }
  driver->TakeOutput();
}

TEST(LmtpSessionTable, EveryCommandInEveryStateAtEveryFragmentSize) {
  for (const CommandCase& c : CommandTable()) {
    for (size_t fragment : kFragmentSizes) {
      SCOPED_TRACE(StartName(c.start) + " | " + c.input + " | fragment " +
                   std::to_string(fragment));
      FakeLmtpDriver driver(TestOptions());
      SetUpRecipients(&driver);
      Prepare(&driver, c.start);
      const size_t events_before = driver.events().size();
      driver.Feed(c.input, fragment);
      EXPECT_EQ(driver.output(), c.output);
      const std::vector<std::string> events(driver.events().begin() + events_before,
                                            driver.events().end());
      EXPECT_EQ(events, c.events);
    }
  }
}

TEST(LmtpSession, Greeting) {
  FakeLmtpDriver driver(TestOptions());
  EXPECT_EQ(driver.output(), "220 lmtp.example LMTP posthaste ready\r\n");
  EXPECT_EQ(driver.session().state(), LmtpState::kGreeted);
}

struct Fixture {
  FakeLmtpDriver driver;
  explicit Fixture(LmtpSessionOptions options = TestOptions()) : driver(std::move(options)) {
    SetUpRecipients(&driver);
    driver.TakeOutput();
  }
};

TEST(LmtpSession, MultiRecipientWithUnknownAndOverQuotaDeliversOnlyTheGoodOne) {
  for (size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(fragment);
    Fixture f;
    f.driver.Feed(
        "LHLO c\r\nMAIL FROM:<chris@bar.com>\r\nRCPT TO:<jones@foo.edu>\r\n"
        "RCPT TO:<pat@foo.edu>\r\nRCPT TO:<full@foo.edu>\r\nDATA\r\nHi\r\n.\r\n",
        fragment);
    EXPECT_EQ(f.driver.output(), kLhloReply + kMailOk + "550 5.1.1 No such user here\r\n" +
                                     kRcptOk +
                                     "452 4.2.2 <full@foo.edu> is temporarily over quota\r\n" +
                                     kStartData + "250 2.1.5 <pat@foo.edu> delivered\r\n");
    ASSERT_EQ(f.driver.deliveries().size(), 1u);
    EXPECT_THAT(f.driver.deliveries()[0].mailboxes, ElementsAre("pat@foo.edu"));
    EXPECT_EQ(f.driver.stored().size(), 1u);
    EXPECT_EQ(f.driver.stored().at("pat@foo.edu").at(0), kReturnPath + "Hi\r\n");
  }
}

TEST(LmtpSession, PerRecipientDeliveryOutcomesInRcptOrder) {
  using Code = LmtpDeliveryResult::Code;
  Fixture f;
  for (const char* address : {"a@x.example", "b@x.example", "c@x.example", "d@x.example"}) {
    f.driver.AddRecipient(address);
  }
  f.driver.outcomes()["a@x.example"] = {Code::kOverQuotaPerm, ""};
  f.driver.outcomes()["b@x.example"] = {Code::kTempFailure, ""};
  f.driver.outcomes()["c@x.example"] = {Code::kPermFailure, "bad\r\ninjected"};  // not one line
  f.driver.outcomes()["d@x.example"] = {Code::kOverQuotaTemp, "Mailbox full, try later"};
  f.driver.outcomes()["e@x.example"] = {Code::kNoSpace, ""};
  f.driver.AddRecipient("e@x.example");
  f.driver.Feed(
      "LHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<a@x.example>\r\nRCPT TO:<b@x.example>\r\n"
      "RCPT TO:<c@x.example>\r\nRCPT TO:<pat@foo.edu>\r\nRCPT TO:<d@x.example>\r\n"
      "RCPT TO:<e@x.example>\r\nDATA\r\nx\r\n.\r\n");
  EXPECT_THAT(f.driver.output(),
              HasSubstr(kStartData + "552 5.2.2 <a@x.example> is over quota\r\n"
                                     "451 4.3.0 <b@x.example> Temporary internal error\r\n"
                                     "554 5.3.0 <c@x.example> Delivery failed\r\n"
                                     "250 2.1.5 <pat@foo.edu> delivered\r\n"
                                     "452 4.2.2 Mailbox full, try later\r\n"
                                     // A full disk: RFC 3463's 4.3.1, not 4.3.0.
                                     "452 4.3.1 <e@x.example> Insufficient system storage\r\n"));
  EXPECT_EQ(f.driver.deliveries().at(0).reverse_path, "");
  EXPECT_EQ(f.driver.stored().at("pat@foo.edu").at(0), "Return-Path: <>\r\nx\r\n");
  EXPECT_EQ(f.driver.session().counters().recipients_delivered, 1u);
  EXPECT_EQ(f.driver.session().state(), LmtpState::kReady);
}

TEST(LmtpSession, DuplicateRecipientsAreStoredOnceAndEachGetsAReply) {
  Fixture f;
  f.driver.recipients()["Pat@Foo.EDU"] = {LmtpRecipientVerdict::Code::kAccepted, "pat@foo.edu", ""};
  f.driver.Feed(
      "LHLO c\r\nMAIL FROM:<chris@bar.com>\r\nRCPT TO:<pat@foo.edu>\r\n"
      "RCPT TO:<Pat@Foo.EDU>\r\nRCPT TO:<green@foo.edu>\r\nDATA\r\nHi\r\n.\r\n");
  EXPECT_THAT(f.driver.events(),
              ElementsAre("check pat@foo.edu", "check Pat@Foo.EDU", "check green@foo.edu",
                          Deliver("pat@foo.edu,green@foo.edu", kReturnPath + "Hi\r\n")));
  EXPECT_THAT(f.driver.output(), HasSubstr(kStartData + "250 2.1.5 <pat@foo.edu> delivered\r\n"
                                                        "250 2.1.5 <pat@foo.edu> delivered\r\n"
                                                        "250 2.1.5 <green@foo.edu> delivered\r\n"));
}

// The message is handed over in wire form: a client's stuffed lines stay as sent, a lone
// stuffing dot before other text is dropped (RFC 5321 section 4.5.2).
TEST(LmtpSession, StuffedLinesStayStuffedALoneStuffingDotIsDropped) {
  for (size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(fragment);
    Fixture f;
    f.driver.Feed(
        "LHLO c\r\nMAIL FROM:<chris@bar.com>\r\nRCPT TO:<pat@foo.edu>\r\nDATA\r\n"
        "Subject: dots\r\n\r\n..\r\n..leading\r\n...\r\nmid.dle.\r\n. x\r\n.\r\n",
        fragment);
    EXPECT_EQ(f.driver.stored().at("pat@foo.edu").at(0),
              kReturnPath + "Subject: dots\r\n\r\n..\r\n..leading\r\n...\r\nmid.dle.\r\n x\r\n");
  }
}

TEST(LmtpSession, BareLineFeedsAndBareCrsBecomeCrlfNeitherIsABoundary) {
  for (size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(fragment);
    Fixture f;
    f.driver.Feed(
        "LHLO c\r\nMAIL FROM:<chris@bar.com>\r\nRCPT TO:<pat@foo.edu>\r\nDATA\r\n"
        "a\nb\r\nbare\rcr\r\n..\n.\r\n.\r\n",
        fragment);
    // "..\n.\r\n" is one CRLF-line: its stuffing dot is read and its bare LF normalised, and
    // the two lines it holds, ".\r\n" twice as content, are stuffed in the wire form. Only the
    // final ".\r\n", after a CRLF, ends the message.
    ASSERT_EQ(f.driver.stored().count("pat@foo.edu"), 1u);
    EXPECT_EQ(f.driver.stored().at("pat@foo.edu").at(0),
              kReturnPath + "a\r\nb\r\nbare\r\ncr\r\n..\r\n..\r\n");
    EXPECT_FALSE(f.driver.closed());
  }
}

// SMTP smuggling (2023): an end-of-data that only a lenient server honours, followed by a
// second transaction. Only <CRLF>.<CRLF> may end DATA: every variant below must arrive at pat
// as content, and the "smuggled" MAIL/RCPT/DATA must never run.
TEST(LmtpSession, SmuggledEndOfDataNeverEndsTheMessage) {
  using namespace std::string_literals;  // the variants hold NULs
  const std::string kFakeEnds[] = {
      "\n.\n"s,         "\n.\r\n"s,   "\r\n.\n"s,   "\r.\r\n"s,    "\r\n.\r"s,
      "\r\n\x00.\r\n"s, "\r.\r"s,     "\n.\r"s,     "\r\n .\r\n"s, "\r\n.\x00\r\n"s,
      "\n\n.\n\n"s,     "\r\r.\r\r"s, "\n\r.\r\n"s,
  };
  for (const std::string& fake_end : kFakeEnds) {
    for (size_t fragment : kFragmentSizes) {
      SCOPED_TRACE(::testing::PrintToString(fake_end) + " fragment " + std::to_string(fragment));
      Fixture f;
      const std::string smuggled =
          "MAIL FROM:<ceo@bank.test>\r\nRCPT TO:<green@foo.edu>\r\nDATA\r\n"
          "Subject: SMUGGLED\r\n\r\nevil\r\n";
      f.driver.Feed(
          "LHLO c\r\nMAIL FROM:<chris@bar.com>\r\nRCPT TO:<pat@foo.edu>\r\nDATA\r\n"
          "Subject: outer\r\n\r\nhello" +
              fake_end + smuggled + ".\r\n",
          fragment);
      EXPECT_EQ(f.driver.stored().count("green@foo.edu"), 0u);
      ASSERT_EQ(f.driver.stored().count("pat@foo.edu"), 1u);
      ASSERT_EQ(f.driver.stored().at("pat@foo.edu").size(), 1u);
      const std::string& stored = f.driver.stored().at("pat@foo.edu").at(0);
      EXPECT_THAT(stored, HasSubstr("MAIL FROM:<ceo@bank.test>\r\n"));
      EXPECT_THAT(stored, HasSubstr("evil\r\n"));
      // Wire form: every LF has its CR and every CR its LF.
      for (size_t i = 0; i < stored.size(); ++i) {
        if (stored[i] == '\n') {
          ASSERT_TRUE(i > 0 && stored[i - 1] == '\r') << i;
        }
        if (stored[i] == '\r') {
          ASSERT_TRUE(i + 1 < stored.size() && stored[i + 1] == '\n') << i;
        }
      }
      EXPECT_EQ(f.driver.session().counters().transactions, 1u);
      EXPECT_EQ(f.driver.session().counters().messages_received, 1u);
    }
  }
}

TEST(LmtpSession, CommandLineEndingInBareLfIsRefusedAndClosed) {
  for (size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(fragment);
    Fixture f;
    f.driver.Feed("LHLO c\r\nMAIL FROM:<chris@bar.com>\nRCPT TO:<pat@foo.edu>\r\n", fragment);
    EXPECT_THAT(f.driver.output(),
                HasSubstr("500 5.5.2 lmtp.example Bare LF received, lines must end with CRLF; "
                          "closing connection\r\n"));
    EXPECT_TRUE(f.driver.closed());
    EXPECT_EQ(f.driver.session().counters().transactions, 0u);
    EXPECT_EQ(f.driver.session().counters().recipients_checked, 0u);
    EXPECT_EQ(f.driver.session().counters().bare_line_feed_closes, 1u);
  }
}

TEST(LmtpSession, ProxyHeaderFromAnUntrustedPeerIsRefusedAndClosed) {
  for (size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(fragment);
    Fixture f;
    f.driver.TakeOutput();
    f.driver.Feed("PROXY TCP4 192.0.2.7 198.51.100.1 51000 24\r\nLHLO c\r\n", fragment);
    EXPECT_EQ(f.driver.TakeOutput(),
              "554 5.7.1 lmtp.example PROXY header not accepted from this address; "
              "closing connection\r\n");
    EXPECT_TRUE(f.driver.closed());
    EXPECT_EQ(f.driver.session().counters().proxy_header_refusals, 1u);
  }
  // Only as the first line: later, PROXY is just an unknown verb.
  Fixture later;
  later.driver.Feed("LHLO c\r\nPROXY TCP4 192.0.2.7 198.51.100.1 51000 24\r\n");
  EXPECT_THAT(later.driver.TakeOutput(), HasSubstr("500 5.5.1 Command unrecognized\r\n"));
  EXPECT_FALSE(later.driver.closed());
  EXPECT_EQ(later.driver.session().counters().proxy_header_refusals, 0u);
}

TEST(LmtpSession, ControlCharacterInCommandIsASyntaxError) {
  Fixture f;
  f.driver.Feed("LHLO c\r\n");
  f.driver.TakeOutput();
  using namespace std::string_literals;
  f.driver.Feed("NOOP\rRSET\r\nMAIL FROM:<a@b.c>\x00\r\nNOOP\r\n"s);
  EXPECT_EQ(f.driver.TakeOutput(),
            "500 5.5.2 Syntax error, control character in command\r\n"
            "500 5.5.2 Syntax error, control character in command\r\n" +
                kOk);
  EXPECT_EQ(f.driver.session().counters().transactions, 0u);
}

TEST(LmtpSession, OverlongCommandWithBareLfInsideIsOneLine) {
  // A CRLF-only splitter in front of us sees one over-long line; so do we.
  Fixture f;
  f.driver.Feed("LHLO c\r\n");
  f.driver.TakeOutput();
  f.driver.Feed(std::string(600, 'x') + "\nMAIL FROM:<ceo@bank.test>\n" + std::string(10, 'y') +
                "\r\nNOOP\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), "500 5.5.2 Line too long\r\n" + kOk);
  EXPECT_EQ(f.driver.session().counters().transactions, 0u);
  EXPECT_FALSE(f.driver.closed());
}

TEST(LmtpSession, OversizeMessageIsDiscardedAndRefusedForEachRecipient) {
  for (size_t fragment : {size_t{0}, size_t{1000}, size_t{100}, size_t{10}}) {
    SCOPED_TRACE(fragment);
    LmtpSessionOptions options = TestOptions();
    options.message_bytes_max = 1000;
    Fixture f(options);
    f.driver.Feed(
        "LHLO c\r\nMAIL FROM:<chris@bar.com>\r\nRCPT TO:<pat@foo.edu>\r\n"
        "RCPT TO:<jones@foo.edu>\r\nRCPT TO:<green@foo.edu>\r\nDATA\r\n",
        fragment);
    f.driver.TakeOutput();
    const std::string line(99, 'x');
    for (int i = 0; i < 1000; ++i) {
      f.driver.Feed(line + "\r\n", fragment);
      // Never more than the limit is buffered, and the input is consumed as it comes.
      ASSERT_LE(f.driver.session().MessageBufferCapacityForTest(), 4096u);
      ASSERT_TRUE(f.driver.session().WantsInput());
    }
    f.driver.Feed(".\r\nNOOP\r\n", fragment);
    EXPECT_EQ(f.driver.output(),
              "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
              "552 5.3.4 Message size exceeds fixed maximum message size\r\n" +
                  kOk);
    EXPECT_TRUE(f.driver.deliveries().empty());
    EXPECT_EQ(f.driver.session().counters().messages_too_large, 1u);
    EXPECT_EQ(f.driver.session().counters().message_bytes_received, 101000u);
    EXPECT_EQ(f.driver.session().state(), LmtpState::kReady);
  }
}

TEST(LmtpSession, DeclaredSizeReservesTheMessageBufferUpToTheLimit) {
  LmtpSessionOptions options = TestOptions();
  options.message_bytes_max = 200000;
  Fixture f(options);
  f.driver.Feed("LHLO c\r\nMAIL FROM:<a@b.c> SIZE=100000\r\nRCPT TO:<pat@foo.edu>\r\nDATA\r\n");
  EXPECT_GE(f.driver.session().MessageBufferCapacityForTest(), 100000u);
  f.driver.Feed(".\r\nMAIL FROM:<a@b.c> SIZE=200000\r\nRCPT TO:<pat@foo.edu>\r\nDATA\r\n");
  EXPECT_LT(f.driver.session().MessageBufferCapacityForTest(), 2 * 200000u);
  f.driver.Feed("x\r\n.\r\n");
  EXPECT_EQ(f.driver.stored().at("pat@foo.edu").size(), 2u);
  EXPECT_EQ(f.driver.stored().at("pat@foo.edu").at(1), "Return-Path: <a@b.c>\r\nx\r\n");
}

TEST(LmtpSession, MessageOfExactlyTheLimitIsAccepted) {
  LmtpSessionOptions options = TestOptions();
  options.message_bytes_max = 10;
  options.add_return_path = false;
  Fixture f(options);
  f.driver.Feed(
      "LHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<pat@foo.edu>\r\nDATA\r\n12345678\r\n.\r\n");
  EXPECT_EQ(f.driver.stored().at("pat@foo.edu").at(0), "12345678\r\n");
  f.driver.Feed("MAIL FROM:<a@b.c>\r\nRCPT TO:<pat@foo.edu>\r\nDATA\r\n123456789\r\n.\r\n");
  EXPECT_THAT(f.driver.output(), HasSubstr("552 5.3.4"));
  EXPECT_EQ(f.driver.stored().at("pat@foo.edu").size(), 1u);
}

// The limit counts the message unstuffed with a bare CR as one octet, as it did when storage
// turned bare CRs into CRLF: the wire form handed over may be longer than the limit.
TEST(LmtpSession, SizeLimitCountsTheUnstuffedMessageNotTheWireForm) {
  for (size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(fragment);
    LmtpSessionOptions options = TestOptions();
    options.message_bytes_max = 10;
    options.add_return_path = false;
    Fixture f(options);
    f.driver.Feed("LHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<pat@foo.edu>\r\nDATA\r\n" +
                      std::string(8, '\r') + "\r\n.\r\n",
                  fragment);
    f.driver.Feed("MAIL FROM:<a@b.c>\r\nRCPT TO:<pat@foo.edu>\r\nDATA\r\n..abcdefg\r\n.\r\n",
                  fragment);
    f.driver.Feed("MAIL FROM:<a@b.c>\r\nRCPT TO:<pat@foo.edu>\r\nDATA\r\n" + std::string(9, '\r') +
                      "\r\n.\r\n",
                  fragment);
    ASSERT_EQ(f.driver.stored().at("pat@foo.edu").size(), 2u);
    std::string empty_lines;  // 8 bare CRs and the CRLF
    for (int i = 0; i < 9; ++i) empty_lines += "\r\n";
    EXPECT_EQ(f.driver.stored().at("pat@foo.edu").at(0), empty_lines);
    EXPECT_EQ(f.driver.stored().at("pat@foo.edu").at(1), "..abcdefg\r\n");
    EXPECT_THAT(f.driver.output(),
                ::testing::EndsWith("552 5.3.4 " + std::string("Message size exceeds fixed maximum "
                                                               "message size\r\n")));
    EXPECT_EQ(f.driver.session().counters().message_bytes_received, 10u + 10u + 11u);
  }
}

TEST(LmtpSession, EmptyMessageIsOneEmptyLine) {
  LmtpSessionOptions options = TestOptions();
  options.add_return_path = false;
  Fixture f(options);
  f.driver.Feed("LHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<pat@foo.edu>\r\nDATA\r\n.\r\n");
  EXPECT_EQ(f.driver.stored().at("pat@foo.edu").at(0), "\r\n");
}

TEST(LmtpSession, PipelinedMailRcptRcptDataInOneFeed) {
  Fixture f;
  f.driver.Feed("LHLO c\r\n");
  f.driver.TakeOutput();
  f.driver.set_auto_answer(false);
  f.driver.Feed(
      "MAIL FROM:<chris@bar.com> SIZE=42\r\nRCPT TO:<pat@foo.edu>\r\nRCPT TO:<green@foo.edu>\r\n"
      "DATA\r\n");
  // The second RCPT is not parsed while the first check is pending.
  EXPECT_EQ(f.driver.output(), kMailOk);
  EXPECT_THAT(f.driver.events(), ElementsAre("check pat@foo.edu size=42"));
  f.driver.AnswerPending();
  EXPECT_EQ(f.driver.output(), kMailOk + kRcptOk);
  EXPECT_THAT(f.driver.events(),
              ElementsAre("check pat@foo.edu size=42", "check green@foo.edu size=42"));
  f.driver.AnswerPending();
  EXPECT_EQ(f.driver.output(), kMailOk + kRcptOk + kRcptOk + kStartData);
  EXPECT_EQ(f.driver.session().state(), LmtpState::kData);
  f.driver.Feed("Body\r\n.\r\nQUIT\r\n");
  EXPECT_EQ(f.driver.session().state(), LmtpState::kDelivering);
  EXPECT_FALSE(f.driver.closed());  // QUIT waits behind the delivery
  f.driver.AnswerPending();
  EXPECT_EQ(f.driver.output(), kMailOk + kRcptOk + kRcptOk + kStartData +
                                   "250 2.1.5 <pat@foo.edu> delivered\r\n"
                                   "250 2.1.5 <green@foo.edu> delivered\r\n" +
                                   kQuitReply);
  EXPECT_TRUE(f.driver.closed());
}

TEST(LmtpSession, RecipientLimit) {
  LmtpSessionOptions options = TestOptions();
  options.recipients_max = 2;
  Fixture f(options);
  f.driver.Feed(
      "LHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<jones@foo.edu>\r\nRCPT TO:<pat@foo.edu>\r\n"
      "RCPT TO:<green@foo.edu>\r\nRCPT TO:<dis@foo.edu>\r\n");
  EXPECT_EQ(f.driver.output(), kLhloReply + kMailOk + "550 5.1.1 No such user here\r\n" + kRcptOk +
                                   kRcptOk + "452 4.5.3 Too many recipients\r\n");
  EXPECT_EQ(f.driver.session().counters().recipients_over_limit, 1u);
  EXPECT_EQ(f.driver.session().accepted_rcpt_count(), 2u);
}

TEST(LmtpSession, OverlongCommandLineIsRefusedAndParsingResynchronises) {
  for (size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(fragment);
    Fixture f;
    f.driver.Feed("NOOP " + std::string(600, 'x') + "\r\nNOOP\r\n", fragment);
    EXPECT_EQ(f.driver.output(), "500 5.5.2 Line too long\r\n" + kOk);
    EXPECT_EQ(f.driver.session().counters().command_line_too_long, 1u);
  }
  // 512 octets including CRLF is allowed (RFC 5321 section 4.5.3.1.4).
  Fixture f;
  f.driver.Feed("NOOP " + std::string(505, 'x') + "\r\n");
  EXPECT_EQ(f.driver.output(), kOk);
}

TEST(LmtpSession, TooManyBadCommandsClose) {
  LmtpSessionOptions options = TestOptions();
  options.bad_commands_max = 3;
  Fixture f(options);
  f.driver.Feed("XA\r\nXB\r\nXC\r\nNOOP\r\n");
  EXPECT_EQ(f.driver.output(),
            kUnknown + kUnknown + "421 4.7.0 lmtp.example Too many errors, closing connection\r\n");
  EXPECT_TRUE(f.driver.closed());
  EXPECT_EQ(f.driver.session().counters().bad_command_limit_closes, 1u);
  EXPECT_FALSE(f.driver.session().WantsInput());
}

TEST(LmtpSession, NoParsingWhileOutputAboveTheLimitIsQueued) {
  LmtpSessionOptions options = TestOptions();
  options.output_queued_bytes_max = 30;
  Fixture f(options);
  f.driver.set_auto_flush(false);
  f.driver.Flush();
  f.driver.TakeOutput();
  std::string input;
  for (int i = 0; i < 10; ++i) input += "NOOP\r\n";
  f.driver.Feed(input);
  // 14 octets per reply: three replies exceed 30 octets, then parsing pauses.
  EXPECT_EQ(f.driver.TakeOutput(), kOk + kOk + kOk);
  EXPECT_EQ(f.driver.session().counters().output_blocked, 1u);
  f.driver.Flush();
  EXPECT_EQ(f.driver.TakeOutput(), kOk + kOk + kOk);
  f.driver.set_auto_flush(true);
  f.driver.Flush();
  EXPECT_EQ(f.driver.TakeOutput(), kOk + kOk + kOk + kOk);
}

TEST(LmtpSession, OptionsWithoutReturnPathOrEnhancedCodes) {
  LmtpSessionOptions options = TestOptions();
  options.add_return_path = false;
  options.enhanced_status_codes = false;
  options.eight_bit_mime = false;
  Fixture f(options);
  f.driver.Feed(
      "LHLO c\r\nMAIL FROM:<a@b.c> BODY=8BITMIME\r\nMAIL FROM:<a@b.c> BODY=7BIT\r\n"
      "RCPT TO:<pat@foo.edu>\r\nDATA\r\nexact\r\n.\r\n");
  EXPECT_EQ(f.driver.output(),
            "250-lmtp.example\r\n250-PIPELINING\r\n250 SIZE 1048576\r\n"
            "501 Unsupported BODY type\r\n250 OK\r\n250 OK\r\n" +
                kStartData + "250 <pat@foo.edu> delivered\r\n");
  EXPECT_EQ(f.driver.stored().at("pat@foo.edu").at(0), "exact\r\n");
  EXPECT_EQ(f.driver.deliveries().at(0).body, BodyType::k7Bit);
}

TEST(LmtpSession, RsetAndLhloEndTheTransaction) {
  Fixture f;
  f.driver.Feed("LHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<pat@foo.edu>\r\nRSET\r\nDATA\r\n");
  EXPECT_THAT(f.driver.output(), ::testing::EndsWith(kOk + kNeedMail));
  f.driver.Feed(
      "MAIL FROM:<a@b.c>\r\nRCPT TO:<pat@foo.edu>\r\nLHLO c\r\nRCPT TO:<pat@foo.edu>\r\n");
  EXPECT_THAT(f.driver.output(), ::testing::EndsWith(kLhloReply + kNeedMail));
  EXPECT_EQ(f.driver.session().accepted_rcpt_count(), 0u);
}

TEST(LmtpSession, ConnectionLostDuringDeliveryKeepsTheMessageUntilTheResult) {
  Fixture f;
  f.driver.set_auto_answer(false);
  f.driver.Feed("LHLO c\r\nMAIL FROM:<a@b.c>\r\n");
  f.driver.Feed("RCPT TO:<pat@foo.edu>\r\n");
  f.driver.AnswerPending();
  f.driver.Feed("DATA\r\nkeep me\r\n.\r\n");
  ASSERT_TRUE(f.driver.pending());
  LmtpSession& session = f.driver.session();
  session.OnConnectionLost();
  EXPECT_EQ(session.state(), LmtpState::kClosed);
  EXPECT_TRUE(session.AwaitingResult());
  // Storage finishes later: the fake driver copies the (still valid) views, then reports.
  f.driver.AnswerPending();
  EXPECT_EQ(f.driver.stored().at("pat@foo.edu").at(0), "Return-Path: <a@b.c>\r\nkeep me\r\n");
  EXPECT_FALSE(session.AwaitingResult());
  EXPECT_EQ(session.NextAction().kind, LmtpActionKind::kNone);
  session.Feed("NOOP\r\n");
  EXPECT_EQ(session.NextAction().kind, LmtpActionKind::kNone);
}

TEST(LmtpSession, ConnectionLostDuringRecipientCheckIgnoresTheLateResult) {
  Fixture f;
  f.driver.set_auto_answer(false);
  f.driver.Feed("LHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<pat@foo.edu>\r\n");
  f.driver.TakeOutput();
  f.driver.session().OnConnectionLost();
  f.driver.AnswerPending();
  EXPECT_EQ(f.driver.output(), "");
  EXPECT_FALSE(f.driver.session().AwaitingResult());
}

TEST(LmtpSession, InputAfterQuitIsIgnored) {
  Fixture f;
  f.driver.Feed("QUIT\r\nNOOP\r\n");
  EXPECT_EQ(f.driver.output(), kQuitReply);
  f.driver.Feed("NOOP\r\n");
  EXPECT_EQ(f.driver.output(), kQuitReply);
  EXPECT_EQ(f.driver.session().state(), LmtpState::kClosed);
}

const std::string kShutdownReply = "421 4.3.2 lmtp.example Service shutting down\r\n";

TEST(LmtpSession, ShutdownBetweenTransactionsAnswers421AndClosesAtOnce) {
  for (const std::string& before : {std::string(), std::string("LHLO c\r\n")}) {
    Fixture f;
    f.driver.Feed(before);
    f.driver.TakeOutput();
    f.driver.session().OnShutdown();
    f.driver.Pump();
    EXPECT_EQ(f.driver.TakeOutput(), kShutdownReply);
    EXPECT_TRUE(f.driver.closed());
    EXPECT_FALSE(f.driver.session().WantsInput());
    f.driver.session().OnShutdown();  // a second SIGTERM changes nothing
    f.driver.Pump();
    EXPECT_EQ(f.driver.TakeOutput(), "");
  }
}

TEST(LmtpSession, ShutdownDuringDataAnswersTheTransactionFirstThen421) {
  for (size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(fragment);
    Fixture f;
    f.driver.Feed("LHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<pat@foo.edu>\r\nDATA\r\nhalf", fragment);
    f.driver.TakeOutput();
    f.driver.session().OnShutdown();
    f.driver.Pump();
    EXPECT_EQ(f.driver.TakeOutput(), "");
    EXPECT_FALSE(f.driver.closed());
    // The rest of the message, and a pipelined command the shutdown leaves unparsed.
    f.driver.Feed(" done\r\n.\r\nNOOP\r\n", fragment);
    EXPECT_EQ(f.driver.TakeOutput(), "250 2.1.5 <pat@foo.edu> delivered\r\n" + kShutdownReply);
    EXPECT_TRUE(f.driver.closed());
    EXPECT_EQ(f.driver.stored().at("pat@foo.edu").size(), 1u);
  }
}

TEST(LmtpSession, ShutdownDuringDeliveryWaitsForTheResult) {
  Fixture f;
  f.driver.set_auto_answer(false);
  f.driver.Feed("LHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<pat@foo.edu>\r\n");
  f.driver.AnswerPending();
  f.driver.Feed("DATA\r\nx\r\n.\r\n");
  f.driver.TakeOutput();
  ASSERT_TRUE(f.driver.pending());
  f.driver.session().OnShutdown();
  f.driver.Pump();
  EXPECT_EQ(f.driver.TakeOutput(), "");
  f.driver.AnswerPending();
  EXPECT_EQ(f.driver.TakeOutput(), "250 2.1.5 <pat@foo.edu> delivered\r\n" + kShutdownReply);
  EXPECT_TRUE(f.driver.closed());
}

TEST(LmtpSession, ShutdownInATransactionWaitsForRset) {
  Fixture f;
  f.driver.Feed("LHLO c\r\nMAIL FROM:<a@b.c>\r\n");
  f.driver.TakeOutput();
  f.driver.session().OnShutdown();
  f.driver.Pump();
  EXPECT_FALSE(f.driver.closed());
  f.driver.Feed("RCPT TO:<pat@foo.edu>\r\nRSET\r\nNOOP\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), kRcptOk + kOk + kShutdownReply);
  EXPECT_TRUE(f.driver.closed());
}

TEST(LmtpSession, IdleTimeoutAnswers421AndCloses) {
  Fixture f;
  f.driver.Feed("LHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<pat@foo.edu>\r\nDATA\r\npartial");
  f.driver.TakeOutput();
  f.driver.session().OnIdleTimeout();
  f.driver.Pump();
  EXPECT_EQ(f.driver.TakeOutput(), "421 4.4.2 lmtp.example Idle timeout, closing connection\r\n");
  EXPECT_TRUE(f.driver.closed());
  EXPECT_EQ(f.driver.session().state(), LmtpState::kClosed);
  EXPECT_TRUE(f.driver.stored().empty());
  f.driver.session().OnIdleTimeout();  // once closed, nothing more
  f.driver.Pump();
  EXPECT_EQ(f.driver.TakeOutput(), "");
}

TEST(LmtpSession, OverCapacityReplacesTheGreeting) {
  LmtpSession session(TestOptions());
  session.OnOverCapacity();
  LmtpAction write = session.NextAction();
  ASSERT_EQ(write.kind, LmtpActionKind::kWrite);
  EXPECT_EQ(write.bytes, "421 4.3.2 Server at capacity, try again later\r\n");
  EXPECT_EQ(session.NextAction().kind, LmtpActionKind::kClose);
  EXPECT_EQ(session.NextAction().kind, LmtpActionKind::kNone);
  EXPECT_FALSE(session.WantsInput());
}

TEST(LmtpSession, Counters) {
  Fixture f;
  f.driver.Feed(
      "LHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<pat@foo.edu>\r\nRCPT TO:<jones@foo.edu>\r\n"
      "DATA\r\n12345\r\n.\r\nXYZZY\r\n");
  const LmtpSessionCounters& c = f.driver.session().counters();
  EXPECT_EQ(c.commands, 6u);
  EXPECT_EQ(c.bad_commands, 1u);
  EXPECT_EQ(c.transactions, 1u);
  EXPECT_EQ(c.recipients_checked, 2u);
  EXPECT_EQ(c.recipients_accepted, 1u);
  EXPECT_EQ(c.messages_received, 1u);
  EXPECT_EQ(c.message_bytes_received, 7u);
  EXPECT_EQ(c.deliveries, 1u);
  EXPECT_EQ(c.recipients_delivered, 1u);
}

}  // namespace
}  // namespace posthaste::lmtp
