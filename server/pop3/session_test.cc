// Pop3Session behaviour: a table of every command in every state, each run at every input
// fragment size, then focused tests of pipelining, limits and counters, SASL, APOP, STLS,
// UTF8, CAPA, deletions, QUIT's commit and connection loss.
#include "server/pop3/session.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/pop3/testing/fake_mailbox.h"

namespace posthaste::pop3 {
namespace {

using ::testing::ElementsAre;
using testing::FakeDriver;
using testing::FakeMailbox;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr size_t kFragmentSizes[] = {0, 1000, 100, 10, 5, 2, 1};

Pop3SessionOptions PlainOptions() {
  Pop3SessionOptions options;
  options.hostname = "pop.example";
  options.policy.plaintext_requires_tls = false;
  return options;
}

// Three messages of 100, 200 and 300 octets with UIDLs u1, u2, u3.
void FillMailbox(FakeMailbox* mailbox) {
  mailbox->AddOfSize(100, "u1");
  mailbox->AddOfSize(200, "u2");
  mailbox->AddOfSize(300, "u3");
}

struct Fixture {
  FakeMailbox mailbox;
  FakeDriver driver;
  explicit Fixture(Pop3SessionOptions options = PlainOptions()) : driver(std::move(options)) {
    FillMailbox(&mailbox);
    driver.accounts()["mrose"] = {.password = "secret", .mailbox = &mailbox};
    driver.TakeOutput();  // greeting
  }
  Pop3Session& session() { return driver.session(); }
  void Login() {
    driver.Feed("USER mrose\r\nPASS secret\r\n");
    EXPECT_EQ(driver.TakeOutput(), "+OK\r\n+OK mrose's maildrop has 3 messages (600 octets)\r\n");
    EXPECT_EQ(driver.session().state(), Pop3State::kTransaction);
  }
};

const char kCapaPlain[] =
    "+OK Capability list follows\r\nTOP\r\nUSER\r\nSASL PLAIN LOGIN\r\nRESP-CODES\r\n"
    "PIPELINING\r\nUIDL\r\nIMPLEMENTATION posthaste\r\nAUTH-RESP-CODE\r\nUTF8\r\nLANG\r\n.\r\n";
const char kWrongState[] = "-ERR Command not valid in this state\r\n";

enum class Start { kAuthorization, kTransaction, kUpdate };

struct CommandCase {
  Start start;
  std::string input;
  std::string output;  // "" with kUpdate: nothing may be answered
  std::vector<std::string> events;
};

std::vector<CommandCase> CommandTable() {
  FakeMailbox m;
  FillMailbox(&m);
  const std::string wrong = kWrongState;
  return {
      // AUTHORIZATION.
      {Start::kAuthorization, "USER mrose\r\n", "+OK\r\n", {}},
      {Start::kAuthorization, "USER nosuchuser\r\n", "+OK\r\n", {}},  // no enumeration
      {Start::kAuthorization,
       "PASS secret\r\n",
       "-ERR No user name given, send USER first\r\n",
       {}},
      {Start::kAuthorization,
       "APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n",
       "-ERR APOP is not available\r\n",
       {}},
      {Start::kAuthorization, "AUTH\r\n", "+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n", {}},
      {Start::kAuthorization, "AUTH PLAIN\r\n", "+ \r\n", {}},
      {Start::kAuthorization, "STAT\r\n", wrong, {}},
      {Start::kAuthorization, "LIST\r\n", wrong, {}},
      {Start::kAuthorization, "RETR 1\r\n", wrong, {}},
      {Start::kAuthorization, "DELE 1\r\n", wrong, {}},
      {Start::kAuthorization, "NOOP\r\n", wrong, {}},
      {Start::kAuthorization, "RSET\r\n", wrong, {}},
      {Start::kAuthorization, "TOP 1 1\r\n", wrong, {}},
      {Start::kAuthorization, "UIDL\r\n", wrong, {}},
      {Start::kAuthorization, "CAPA\r\n", kCapaPlain, {}},
      {Start::kAuthorization, "STLS\r\n", "-ERR STLS not available\r\n", {}},
      {Start::kAuthorization, "UTF8\r\n", "+OK UTF8 enabled\r\n", {}},
      {Start::kAuthorization, "QUIT\r\n", "+OK pop.example POP3 server signing off\r\n", {"close"}},
      {Start::kAuthorization, "XTND\r\n", "-ERR Unknown command\r\n", {}},
      {Start::kAuthorization, "\r\n", "-ERR Empty command\r\n", {}},
      // TRANSACTION, with message 2 marked deleted.
      {Start::kTransaction, "USER mrose\r\n", wrong, {}},
      {Start::kTransaction, "PASS secret\r\n", wrong, {}},
      {Start::kTransaction, "APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n", wrong, {}},
      {Start::kTransaction, "AUTH PLAIN\r\n", wrong, {}},
      {Start::kTransaction, "STLS\r\n", wrong, {}},
      {Start::kTransaction, "STAT\r\n", "+OK 2 400\r\n", {}},
      {Start::kTransaction,
       "LIST\r\n",
       "+OK 2 messages (400 octets)\r\n1 100\r\n3 300\r\n.\r\n",
       {}},
      {Start::kTransaction, "LIST 1\r\n", "+OK 1 100\r\n", {}},
      {Start::kTransaction, "LIST 2\r\n", "-ERR message 2 already deleted\r\n", {}},
      {Start::kTransaction,
       "LIST 4\r\n",
       "-ERR no such message, only 3 messages in maildrop\r\n",
       {}},
      {Start::kTransaction,
       "LIST 0\r\n",
       "-ERR no such message, only 3 messages in maildrop\r\n",
       {}},
      {Start::kTransaction, "LIST x\r\n", "-ERR Invalid message number\r\n", {}},
      {Start::kTransaction,
       "RETR 1\r\n",
       "+OK 100 octets\r\n" + m.Render(MessageIndex(0), {}),
       {"stream 0"}},
      {Start::kTransaction, "RETR 2\r\n", "-ERR message 2 already deleted\r\n", {}},
      {Start::kTransaction, "RETR 99999999999999999999\r\n", "-ERR Invalid message number\r\n", {}},
      {Start::kTransaction, "RETR 18446744073709551615\r\n", "-ERR no such message\r\n", {}},
      {Start::kTransaction,
       "RETR 1\t\r\n",
       "-ERR Syntax error: control character in command\r\n",
       {}},
      {Start::kTransaction,
       "RETR  1\r\n",
       "-ERR Syntax error: arguments are separated by a single space\r\n",
       {}},
      {Start::kTransaction,
       "RETR 1 \r\n",
       "-ERR Syntax error: arguments are separated by a single space\r\n",
       {}},
      {Start::kTransaction, "RETR 1 2\r\n", "-ERR Syntax: RETR msg\r\n", {}},
      {Start::kTransaction, "RETR +1\r\n", "-ERR Invalid message number\r\n", {}},
      {Start::kTransaction,
       "NOOP\t\r\n",
       "-ERR Syntax error: control character in command\r\n",
       {}},
      {Start::kTransaction, "STAT \xc3\xa9\r\n", "-ERR Syntax: STAT takes no arguments\r\n", {}},
      {Start::kTransaction,
       "TOP 1 99999999999999999999999\r\n",
       "-ERR Invalid number of lines\r\n",
       {}},
      {Start::kTransaction, "TOP 1\r\n", "-ERR Syntax: TOP msg lines\r\n", {}},
      {Start::kTransaction, "RETR\r\n", "-ERR Syntax: RETR msg\r\n", {}},
      {Start::kTransaction, "DELE 3\r\n", "+OK message 3 deleted\r\n", {}},
      {Start::kTransaction, "DELE 2\r\n", "-ERR message 2 already deleted\r\n", {}},
      {Start::kTransaction, "NOOP\r\n", "+OK\r\n", {}},
      {Start::kTransaction, "RSET\r\n", "+OK maildrop has 3 messages (600 octets)\r\n", {}},
      {Start::kTransaction, "TOP 3 0\r\n", "+OK\r\n" + m.Render(MessageIndex(2), 0), {"top 2 0"}},
      {Start::kTransaction, "TOP 1 2\r\n", "+OK\r\n" + m.Render(MessageIndex(0), 2), {"top 0 2"}},
      {Start::kTransaction, "TOP 2 1\r\n", "-ERR message 2 already deleted\r\n", {}},
      {Start::kTransaction, "TOP 1\r\n", "-ERR Syntax: TOP msg lines\r\n", {}},
      {Start::kTransaction, "TOP 1 -1\r\n", "-ERR Invalid number of lines\r\n", {}},
      {Start::kTransaction, "UIDL\r\n", "+OK\r\n1 u1\r\n3 u3\r\n.\r\n", {}},
      {Start::kTransaction, "UIDL 3\r\n", "+OK 3 u3\r\n", {}},
      {Start::kTransaction, "UIDL 2\r\n", "-ERR message 2 already deleted\r\n", {}},
      {Start::kTransaction, "CAPA\r\n", kCapaPlain, {}},
      {Start::kTransaction, "UTF8\r\n", "+OK UTF8 enabled\r\n", {}},
      {Start::kTransaction,
       "QUIT\r\n",
       "+OK pop.example POP3 server signing off (2 messages left)\r\n",
       {"commit 1", "close"}},
      {Start::kTransaction, "XTND\r\n", "-ERR Unknown command\r\n", {}},
      // UPDATE (commit pending): no command is even parsed.
      {Start::kUpdate, "USER mrose\r\n", "", {}},
      {Start::kUpdate, "PASS secret\r\n", "", {}},
      {Start::kUpdate, "APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n", "", {}},
      {Start::kUpdate, "AUTH PLAIN\r\n", "", {}},
      {Start::kUpdate, "STAT\r\n", "", {}},
      {Start::kUpdate, "LIST\r\n", "", {}},
      {Start::kUpdate, "RETR 1\r\n", "", {}},
      {Start::kUpdate, "DELE 1\r\n", "", {}},
      {Start::kUpdate, "NOOP\r\n", "", {}},
      {Start::kUpdate, "RSET\r\n", "", {}},
      {Start::kUpdate, "TOP 1 1\r\n", "", {}},
      {Start::kUpdate, "UIDL\r\n", "", {}},
      {Start::kUpdate, "CAPA\r\n", "", {}},
      {Start::kUpdate, "STLS\r\n", "", {}},
      {Start::kUpdate, "UTF8\r\n", "", {}},
      {Start::kUpdate, "QUIT\r\n", "", {}},
      {Start::kUpdate, "XTND\r\n", "", {}},
  };
}

TEST(Pop3SessionTest, EveryCommandInEveryStateAtEveryFragmentSize) {
  for (const CommandCase& c : CommandTable()) {
    for (size_t fragment : kFragmentSizes) {
      SCOPED_TRACE(c.input + " in state " + std::to_string(static_cast<int>(c.start)) +
                   " fragment " + std::to_string(fragment));
      Fixture f;
      if (c.start != Start::kAuthorization) {
        f.Login();
        f.driver.Feed("DELE 2\r\n");
        f.driver.TakeOutput();
      }
      if (c.start == Start::kUpdate) {
        f.driver.set_auto_answer(false);
        f.driver.Feed("QUIT\r\n");
        ASSERT_EQ(f.session().state(), Pop3State::kUpdate);
      }
      const size_t events_before = f.driver.events().size();
      f.driver.Feed(c.input, fragment);
      EXPECT_EQ(f.driver.output(), c.output);
      std::vector<std::string> events(f.driver.events().begin() + events_before,
                                      f.driver.events().end());
      EXPECT_EQ(events, c.events);
      if (c.start == Start::kUpdate) {
        // The commit result answers QUIT; the command fed meanwhile is never answered.
        f.driver.AnswerPending();
        EXPECT_EQ(f.driver.output(),
                  "+OK pop.example POP3 server signing off (2 messages left)\r\n");
        EXPECT_TRUE(f.driver.closed());
        EXPECT_EQ(f.driver.commits(), 1);
      }
    }
  }
}

// --- Line handling -----------------------------------------------------------------------

TEST(Pop3SessionTest, KeywordsAreCaseInsensitiveAndArgumentsTakeOneSpace) {
  for (size_t fragment : kFragmentSizes) {
    Fixture f;
    f.Login();
    f.driver.Feed("stat\r\nUidl  1\r\n  LIST 3\r\nlist 3\r\ntop 1   0\r\ntop 1 0\r\nNoOp\r\n",
                  fragment);
    const std::string spacing = "-ERR Syntax error: arguments are separated by a single space\r\n";
    EXPECT_EQ(f.driver.TakeOutput(), "+OK 3 600\r\n" + spacing + "-ERR Unknown command\r\n" +
                                         "+OK 3 300\r\n" + spacing + "+OK\r\n" +
                                         f.mailbox.Render(MessageIndex(0), 0) + "+OK\r\n");
  }
}

TEST(Pop3SessionTest, BareLineFeedIsRefusedAndCloses) {
  for (size_t fragment : kFragmentSizes) {
    Fixture f;
    f.Login();
    f.driver.Feed("STAT\r\nDELE 1\nQUIT\r\n", fragment);
    EXPECT_EQ(f.driver.TakeOutput(),
              "+OK 3 600\r\n-ERR Lines must end with CRLF, closing connection\r\n");
    EXPECT_TRUE(f.driver.closed());
    EXPECT_EQ(f.driver.commits(), 0);  // neither DELE nor QUIT ran
    EXPECT_EQ(f.session().counters().bare_line_feed_closes, 1u);
  }
}

TEST(Pop3SessionTest, BareLineFeedDuringSaslIsRefusedAndCloses) {
  Fixture f;
  f.driver.Feed("AUTH PLAIN\r\n");
  f.driver.TakeOutput();
  f.driver.Feed("AG1yb3NlAHNlY3JldA==\n");
  EXPECT_EQ(f.driver.TakeOutput(), "-ERR Lines must end with CRLF, closing connection\r\n");
  EXPECT_TRUE(f.driver.closed());
  EXPECT_EQ(f.session().state(), Pop3State::kClosed);
}

TEST(Pop3SessionTest, NulBytesNeverFormAKeyword) {
  Fixture f;
  f.Login();
  f.driver.Feed(std::string("\0TOP 1 0\r\nST\0T\r\n", 16));
  EXPECT_EQ(f.driver.TakeOutput(),
            "-ERR Syntax error: control character in command\r\n"
            "-ERR Syntax error: control character in command\r\n");
}

TEST(Pop3SessionTest, PasswordKeepsItsSpaces) {
  Fixture f;
  f.driver.accounts()["mrose"].password = "correct horse  battery ";
  f.driver.Feed("USER mrose\r\nPASS correct horse  battery \r\n");
  EXPECT_EQ(f.driver.last_secret(), "correct horse  battery ");
  EXPECT_EQ(f.session().state(), Pop3State::kTransaction);
}

TEST(Pop3SessionTest, OverlongCommandLineIsRefusedAndParsingResynchronises) {
  for (size_t fragment : kFragmentSizes) {
    Fixture f;
    f.Login();
    // 255 octets including CRLF is the RFC 2449 maximum and is accepted.
    const std::string max_line = "UIDL " + std::string(255 - 8, '0') + "1\r\n";
    ASSERT_EQ(max_line.size(), 255u);
    const std::string long_line = "UIDL " + std::string(300, '0') + "1\r\n";
    f.driver.Feed(max_line + long_line + "STAT\r\n", fragment);
    EXPECT_EQ(f.driver.TakeOutput(), "+OK 1 u1\r\n-ERR Line too long\r\n+OK 3 600\r\n");
    EXPECT_EQ(f.session().counters().command_line_too_long, 1u);
    EXPECT_EQ(f.session().counters().bad_commands, 1u);
  }
}

TEST(Pop3SessionTest, LineBeyondTheFramerLimitIsDiscardedWithoutBuffering) {
  Pop3SessionOptions options = PlainOptions();
  options.sasl_line_bytes_max = 1024;
  Fixture f(options);
  f.Login();
  f.driver.Feed(std::string(5000, 'x'), 100);  // no LF yet: reported once, then dropped
  EXPECT_EQ(f.driver.TakeOutput(), "-ERR Line too long\r\n");
  f.driver.Feed(std::string(5000, 'y') + "\r\nSTAT\r\n", 100);
  EXPECT_EQ(f.driver.TakeOutput(), "+OK 3 600\r\n");
  EXPECT_EQ(f.session().counters().command_line_too_long, 1u);
  EXPECT_TRUE(f.session().WantsInput());
}

TEST(Pop3SessionTest, TooManyBadCommandsClose) {
  Pop3SessionOptions options = PlainOptions();
  options.bad_commands_max = 3;
  Fixture f(options);
  f.driver.Feed("FOO\r\nSTAT\r\nBAR\r\nNOOP\r\n");
  EXPECT_EQ(f.driver.TakeOutput(),
            "-ERR Unknown command\r\n-ERR Command not valid in this state\r\n"
            "-ERR Too many bad commands, closing connection\r\n");
  EXPECT_TRUE(f.driver.closed());
  EXPECT_EQ(f.session().counters().bad_commands, 3u);
  EXPECT_EQ(f.session().counters().bad_command_limit_closes, 1u);
  f.driver.Feed("CAPA\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), "");
}

// --- Pipelining and back-pressure -----------------------------------------------------------

TEST(Pop3SessionTest, PipelinedCommandsAreAnsweredInOrder) {
  for (size_t fragment : kFragmentSizes) {
    Fixture f;
    f.driver.Feed(
        "CAPA\r\nUSER mrose\r\nPASS secret\r\nSTAT\r\nLIST 2\r\nUIDL 3\r\nDELE 1\r\nRETR 2\r\n"
        "QUIT\r\n",
        fragment);
    EXPECT_EQ(f.driver.output(),
              std::string(kCapaPlain) +
                  "+OK\r\n+OK mrose's maildrop has 3 messages (600 octets)\r\n+OK 3 600\r\n"
                  "+OK 2 200\r\n+OK 3 u3\r\n+OK message 1 deleted\r\n+OK 200 octets\r\n" +
                  f.mailbox.Render(MessageIndex(1), {}) +
                  "+OK pop.example POP3 server signing off (2 messages left)\r\n");
    EXPECT_THAT(f.driver.events(),
                ElementsAre("auth USER mrose", "open mrose", "stream 1", "commit 0", "close"));
  }
}

TEST(Pop3SessionTest, NothingIsParsedWhileAResultIsPending) {
  Fixture f;
  f.driver.set_auto_answer(false);
  f.driver.Feed("USER mrose\r\nPASS secret\r\nSTAT\r\nLIST 1\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), "+OK\r\n");
  EXPECT_THAT(f.driver.events(), ElementsAre("auth USER mrose"));
  EXPECT_TRUE(f.session().AwaitingResult());
  f.driver.Feed("NOOP\r\n");  // still not parsed
  EXPECT_EQ(f.driver.TakeOutput(), "");
  f.driver.AnswerPending();  // auth ok -> open maildrop, still pending
  EXPECT_EQ(f.driver.TakeOutput(), "");
  EXPECT_THAT(f.driver.events(), ElementsAre("auth USER mrose", "open mrose"));
  f.driver.AnswerPending();  // maildrop open: the pipelined commands run now, in order
  EXPECT_EQ(f.driver.TakeOutput(),
            "+OK mrose's maildrop has 3 messages (600 octets)\r\n+OK 3 600\r\n+OK 1 100\r\n"
            "+OK\r\n");
}

TEST(Pop3SessionTest, InputIsNotParsedWhileTooMuchOutputIsQueued) {
  Pop3SessionOptions options = PlainOptions();
  options.output_queued_bytes_max = 20;
  Fixture f(options);
  f.Login();
  f.driver.set_auto_flush(false);
  f.driver.Flush();
  std::string script;
  std::string expected;
  for (int i = 0; i < 10; ++i) {
    script += "STAT\r\n";
    expected += "+OK 3 600\r\n";  // 11 octets
  }
  const uint64_t blocked_before = f.session().counters().output_blocked;
  f.driver.Feed(script);
  // 11 + 11 > 20: the third STAT waits for the output to drain.
  EXPECT_EQ(f.driver.output(), "+OK 3 600\r\n+OK 3 600\r\n");
  EXPECT_EQ(f.session().counters().output_blocked, blocked_before + 1);
  int flushes = 0;
  while (f.driver.output().size() < expected.size() && flushes < 100) {
    f.driver.Flush();
    ++flushes;
  }
  EXPECT_EQ(f.driver.output(), expected);
  EXPECT_EQ(flushes, 4);
}

TEST(Pop3SessionTest, LargeListingIsProducedInBoundedPieces) {
  FakeMailbox mailbox;
  std::string expected_list = "+OK 2000 messages (";
  uint64_t total = 0;
  std::string lines;
  for (int i = 0; i < 2000; ++i) {
    const uint64_t size = 20 + i % 50;
    mailbox.AddOfSize(size, "uid" + std::to_string(i));
    total += size;
    lines += std::to_string(i + 1) + " " + std::to_string(size) + "\r\n";
  }
  expected_list += std::to_string(total) + " octets)\r\n" + lines + ".\r\n";
  Pop3SessionOptions options = PlainOptions();
  options.output_queued_bytes_max = 1000;
  FakeDriver driver(options);
  driver.accounts()["mrose"] = {.password = "secret", .mailbox = &mailbox};
  driver.Feed("USER mrose\r\nPASS secret\r\n");
  driver.TakeOutput();
  driver.set_auto_flush(false);
  driver.Flush();
  driver.Feed("LIST\r\nNOOP\r\n");
  // One piece: at most the limit plus one line.
  EXPECT_LE(driver.output().size(), 1000u + 32u);
  EXPECT_GT(driver.output().size(), 900u);
  int flushes = 0;
  while (driver.output().size() < expected_list.size() + 5 && flushes < 1000) {
    driver.Flush();
    ++flushes;
  }
  EXPECT_EQ(driver.output(), expected_list + "+OK\r\n");
  EXPECT_GT(flushes, 10);
}

TEST(Pop3SessionTest, WantsInputTurnsFalseWhenTooMuchInputWaits) {
  Pop3SessionOptions options = PlainOptions();
  options.input_buffered_bytes_max = 64;
  Fixture f(options);
  f.driver.set_auto_answer(false);
  f.driver.Feed("USER mrose\r\nPASS secret\r\n");
  EXPECT_TRUE(f.session().WantsInput());
  f.driver.Feed(std::string(70, 'N'));
  EXPECT_FALSE(f.session().WantsInput());
  f.driver.Feed("more");
  EXPECT_EQ(f.session().counters().input_over_limit, 1u);
}

// --- Authentication ---------------------------------------------------------------------

TEST(Pop3SessionTest, FailedAuthenticationIsDelayedAndLimited) {
  Pop3SessionOptions options = PlainOptions();
  options.auth_failures_max = 2;
  options.auth_failure_delay_ms = 1500;
  Fixture f(options);
  f.driver.set_auto_answer(false);
  Pop3Session& s = f.session();
  // First failure: the delay comes before the -ERR [AUTH] write.
  s.Feed("USER mrose\r\nPASS wrong\r\n");
  std::vector<std::string> order;
  auto drain = [&] {
    for (Pop3Action a = s.NextAction(); a.kind != Pop3ActionKind::kNone; a = s.NextAction()) {
      order.push_back(std::string(Pop3ActionKindNameForTest(a.kind)) +
                      (a.kind == Pop3ActionKind::kWrite   ? ":" + std::string(a.bytes)
                       : a.kind == Pop3ActionKind::kDelay ? ":" + std::to_string(a.delay_ms)
                                                          : ""));
    }
  };
  drain();
  s.OnAuthResult({Pop3AuthResult::Code::kBadCredentials});
  drain();
  s.Feed("USER mrose\r\nPASS wrong again\r\nUSER x\r\n");
  drain();
  s.OnAuthResult({Pop3AuthResult::Code::kBadCredentials});
  drain();
  EXPECT_THAT(order, ElementsAre("write:+OK\r\n", "authenticate", "delay:1500",
                                 "write:-ERR [AUTH] Authentication failed\r\n", "write:+OK\r\n",
                                 "authenticate", "delay:1500",
                                 "write:-ERR [AUTH] Authentication failed\r\n", "close"));
  EXPECT_EQ(s.counters().auth_failures, 2u);
  EXPECT_EQ(s.counters().auth_failure_limit_closes, 1u);
  EXPECT_EQ(s.state(), Pop3State::kClosed);
}

TEST(Pop3SessionTest, TheDriverChoosesEachFailuresDelay) {
  Pop3SessionOptions options = PlainOptions();
  options.auth_failure_delay_ms = 1500;
  Fixture f(options);
  f.driver.set_auto_answer(false);
  Pop3Session& s = f.session();
  s.Feed("USER mrose\r\nPASS wrong\r\n");
  for (Pop3Action a = s.NextAction(); a.kind != Pop3ActionKind::kNone; a = s.NextAction()) {
  }
  s.OnAuthResult({.code = Pop3AuthResult::Code::kBadCredentials, .failure_delay_ms = 15'000});
  Pop3Action delay = s.NextAction();
  ASSERT_EQ(delay.kind, Pop3ActionKind::kDelay);
  EXPECT_EQ(delay.delay_ms, 15'000u);  // the penalty, not the option
  Pop3Action answer = s.NextAction();
  ASSERT_EQ(answer.kind, Pop3ActionKind::kWrite);
  EXPECT_EQ(answer.bytes, "-ERR [AUTH] Authentication failed\r\n");
}

TEST(Pop3SessionTest, UnknownUserFailsAtPassLikeAWrongPassword) {
  Fixture f;
  f.driver.Feed("USER nobody\r\nPASS secret\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), "+OK\r\n-ERR [AUTH] Authentication failed\r\n");
  // USER must be given again after a failed PASS.
  f.driver.Feed("PASS secret\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), "-ERR No user name given, send USER first\r\n");
}

TEST(Pop3SessionTest, AuthAndMaildropFailuresCarryResponseCodes) {
  struct Case {
    std::optional<Pop3AuthResult::Code> auth;
    std::optional<Pop3MaildropResult::Code> maildrop;
    bool in_use;
    std::string reply;
  };
  const Case cases[] = {
      {Pop3AuthResult::Code::kTempFailure,
       {},
       false,
       "-ERR [SYS/TEMP] Temporary authentication failure, try again later\r\n"},
      {Pop3AuthResult::Code::kPermFailure, {}, false, "-ERR [SYS/PERM] Account unavailable\r\n"},
      {Pop3AuthResult::Code::kLoginDelay,
       {},
       false,
       "-ERR [LOGIN-DELAY] Logged in too recently, try again later\r\n"},
      {{}, {}, true, "-ERR [IN-USE] maildrop already locked\r\n"},
      {{},
       Pop3MaildropResult::Code::kTempFailure,
       false,
       "-ERR [SYS/TEMP] Maildrop temporarily unavailable, try again later\r\n"},
      {{},
       Pop3MaildropResult::Code::kPermFailure,
       false,
       "-ERR [SYS/PERM] Maildrop unavailable\r\n"},
  };
  for (const Case& c : cases) {
    Fixture f;
    f.driver.accounts()["mrose"].auth_code = c.auth;
    f.driver.accounts()["mrose"].maildrop_code = c.maildrop;
    f.driver.accounts()["mrose"].in_use = c.in_use;
    f.driver.Feed("USER mrose\r\nPASS secret\r\nSTAT\r\n");
    EXPECT_EQ(f.driver.TakeOutput(), "+OK\r\n" + c.reply + kWrongState);
    EXPECT_EQ(f.session().state(), Pop3State::kAuthorization);
    EXPECT_EQ(f.session().counters().auth_failures, 0u);  // no delay, no count
    EXPECT_THAT(f.driver.events(), Not(::testing::Contains(::testing::StartsWith("delay"))));
  }
}

TEST(Pop3SessionTest, AuthPlainWithInitialResponse) {
  for (size_t fragment : kFragmentSizes) {
    Fixture f;
    // base64("\0mrose\0secret")
    f.driver.Feed("auth plain AG1yb3NlAHNlY3JldA==\r\nSTAT\r\n", fragment);
    EXPECT_EQ(f.driver.TakeOutput(),
              "+OK mrose's maildrop has 3 messages (600 octets)\r\n+OK 3 600\r\n");
    EXPECT_EQ(f.driver.last_credentials().mechanism, AuthMechanism::kSaslPlain);
    EXPECT_EQ(f.driver.last_authzid(), "");
  }
}

TEST(Pop3SessionTest, AuthPlainWithContinuationAndAuthzid) {
  for (size_t fragment : kFragmentSizes) {
    Fixture f;
    f.driver.accounts()["mrose"].password = "s e c";
    // base64("admin\0mrose\0s e c")
    f.driver.Feed("AUTH PLAIN\r\nYWRtaW4AbXJvc2UAcyBlIGM=\r\n", fragment);
    EXPECT_EQ(f.driver.TakeOutput(), "+ \r\n+OK mrose's maildrop has 3 messages (600 octets)\r\n");
    EXPECT_EQ(f.driver.last_authzid(), "admin");
    EXPECT_EQ(f.driver.last_secret(), "s e c");
  }
}

TEST(Pop3SessionTest, AuthPlainEdgeCases) {
  struct Case {
    std::string input;
    std::string output;
  };
  const Case cases[] = {
      {"AUTH PLAIN\r\n*\r\n", "+ \r\n-ERR Authentication cancelled\r\n"},
      {"AUTH PLAIN =\r\n", "-ERR Invalid SASL PLAIN response\r\n"},  // empty initial response
      {"AUTH PLAIN\r\n\r\n", "+ \r\n-ERR Invalid SASL PLAIN response\r\n"},
      {"AUTH PLAIN !!!!\r\n", "-ERR Invalid base64 data\r\n"},
      {"AUTH PLAIN\r\nAG1yb3NlAHNlY3JldA=\r\n", "+ \r\n-ERR Invalid base64 data\r\n"},
      {"AUTH PLAIN\r\nAG1yb3NlAHNlY3JldA== \r\n", "+ \r\n-ERR Invalid base64 data\r\n"},
      {"AUTH PLAIN bXJvc2U=\r\n", "-ERR Invalid SASL PLAIN response\r\n"},      // no NULs
      {"AUTH PLAIN AABzZWNyZXQ=\r\n", "-ERR Invalid SASL PLAIN response\r\n"},  // empty authcid
      {"AUTH PLAIN AG1yb3NlAHNlY3JldA== extra\r\n",
       "-ERR Syntax: AUTH mechanism [initial-response]\r\n"},
      {"AUTH CRAM-MD5\r\n", "-ERR Unsupported authentication mechanism\r\n"},
  };
  for (const Case& c : cases) {
    for (size_t fragment : kFragmentSizes) {
      SCOPED_TRACE(c.input);
      Fixture f;
      f.driver.Feed(c.input + "NOOP\r\n", fragment);
      // After each failure the session is back in AUTHORIZATION, parsing commands.
      EXPECT_EQ(f.driver.TakeOutput(), c.output + kWrongState);
      EXPECT_TRUE(f.driver.events().empty());
    }
  }
}

TEST(Pop3SessionTest, AuthLogin) {
  for (size_t fragment : kFragmentSizes) {
    Fixture f;
    f.driver.Feed("AUTH LOGIN\r\nbXJvc2U=\r\nc2VjcmV0\r\n", fragment);
    EXPECT_EQ(f.driver.TakeOutput(),
              "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n"
              "+OK mrose's maildrop has 3 messages (600 octets)\r\n");
    EXPECT_EQ(f.driver.last_credentials().mechanism, AuthMechanism::kSaslLogin);
  }
  Fixture with_initial;
  with_initial.driver.Feed("AUTH LOGIN bXJvc2U=\r\nc2VjcmV0\r\n");
  EXPECT_EQ(with_initial.driver.TakeOutput(),
            "+ UGFzc3dvcmQ6\r\n+OK mrose's maildrop has 3 messages (600 octets)\r\n");
  Fixture cancelled;
  cancelled.driver.Feed("AUTH LOGIN\r\nbXJvc2U=\r\n*\r\n");
  EXPECT_EQ(cancelled.driver.TakeOutput(),
            "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n-ERR Authentication cancelled\r\n");
  EXPECT_TRUE(cancelled.driver.events().empty());
}

TEST(Pop3SessionTest, SaslLinesMayBeLongButAreLimited) {
  Pop3SessionOptions options = PlainOptions();
  options.sasl_line_bytes_max = 16 * 1024;
  // A 12 KiB initial response (an OAuth-sized token) is accepted on the AUTH line.
  const std::string long_password(9000, 'p');
  std::string plain = std::string("\0mrose\0", 7) + long_password;
  static const char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string encoded;
  for (size_t i = 0; i < plain.size(); i += 3) {
    uint32_t n = static_cast<uint8_t>(plain[i]) << 16;
    if (i + 1 < plain.size()) n |= static_cast<uint8_t>(plain[i + 1]) << 8;
    if (i + 2 < plain.size()) n |= static_cast<uint8_t>(plain[i + 2]);
    encoded += kAlphabet[(n >> 18) & 63];
    encoded += kAlphabet[(n >> 12) & 63];
    encoded += i + 1 < plain.size() ? kAlphabet[(n >> 6) & 63] : '=';
    encoded += i + 2 < plain.size() ? kAlphabet[n & 63] : '=';
  }
  {
    Fixture f(options);
    f.driver.accounts()["mrose"].password = long_password;
    f.driver.Feed("AUTH PLAIN " + encoded + "\r\n", 1000);
    EXPECT_EQ(f.session().state(), Pop3State::kTransaction);
  }
  {
    Fixture f(options);
    f.driver.Feed("AUTH PLAIN\r\n" + std::string(20000, 'A') + "\r\nNOOP\r\n", 1000);
    EXPECT_EQ(f.driver.TakeOutput(),
              "+ \r\n-ERR Authentication line too long\r\n" + std::string(kWrongState));
    EXPECT_EQ(f.session().counters().sasl_line_too_long, 1u);
  }
  {
    // The 255-octet command limit still holds for every other command.
    Fixture f(options);
    f.driver.Feed("USER " + std::string(300, 'u') + "\r\n");
    EXPECT_EQ(f.driver.TakeOutput(), "-ERR Line too long\r\n");
  }
}

TEST(Pop3SessionTest, Apop) {
  Pop3SessionOptions options = PlainOptions();
  options.policy.apop_allowed = true;
  options.apop_timestamp = "<1.2@pop.example>";
  FakeMailbox mailbox;
  FillMailbox(&mailbox);
  FakeDriver driver(options);
  driver.accounts()["mrose"] = {.apop_digest = "0123456789abcdef0123456789abcdef",
                                .mailbox = &mailbox};
  EXPECT_EQ(driver.TakeOutput(), "+OK POP3 server ready <1.2@pop.example>\r\n");
  driver.Feed("APOP mrose\r\nAPOP mrose 0123\r\nAPOP mrose 0123456789ABCDEF0123456789abcdeX\r\n");
  EXPECT_EQ(driver.TakeOutput(),
            "-ERR Syntax: APOP name digest\r\n-ERR Syntax: APOP name digest\r\n"
            "-ERR Syntax: APOP name digest\r\n");
  driver.Feed("APOP mrose 00000000000000000000000000000000\r\n");
  EXPECT_EQ(driver.TakeOutput(), "-ERR [AUTH] Authentication failed\r\n");
  // Upper-case hex is normalised; the timestamp travels with the credentials.
  driver.Feed("APOP mrose 0123456789ABCDEF0123456789ABCDEF\r\n");
  EXPECT_EQ(driver.TakeOutput(), "+OK mrose's maildrop has 3 messages (600 octets)\r\n");
  EXPECT_EQ(driver.last_secret(), "0123456789abcdef0123456789abcdef");

  // Not offered without a timestamp, even when the policy allows it.
  options.apop_timestamp.clear();
  FakeDriver no_timestamp(options);
  EXPECT_EQ(no_timestamp.TakeOutput(), "+OK POP3 server ready\r\n");
  no_timestamp.Feed("APOP mrose 0123456789abcdef0123456789abcdef\r\n");
  EXPECT_EQ(no_timestamp.TakeOutput(), "-ERR APOP is not available\r\n");
}

TEST(Pop3SessionTest, ApopCredentialsCarryTheTimestamp) {
  Pop3SessionOptions options = PlainOptions();
  options.policy.apop_allowed = true;
  options.apop_timestamp = "<1.2@pop.example>";
  Pop3Session session(options);
  session.Feed("APOP mrose 0123456789abcdef0123456789abcdef\r\n");
  Pop3Action action = session.NextAction();
  ASSERT_EQ(action.kind, Pop3ActionKind::kWrite);  // greeting
  action = session.NextAction();
  ASSERT_EQ(action.kind, Pop3ActionKind::kAuthenticate);
  EXPECT_EQ(action.credentials.mechanism, AuthMechanism::kApop);
  EXPECT_EQ(action.credentials.user, "mrose");
  EXPECT_EQ(action.credentials.apop_timestamp, "<1.2@pop.example>");
}

// --- TLS -----------------------------------------------------------------------------------

Pop3SessionOptions TlsOptions() {
  Pop3SessionOptions options;
  options.hostname = "pop.example";
  options.tls_available = true;  // plaintext_requires_tls stays at its default (true)
  return options;
}

TEST(Pop3SessionTest, PlaintextNeedsTlsAndStlsProvidesIt) {
  for (size_t fragment : kFragmentSizes) {
    Fixture f(TlsOptions());
    f.driver.Feed("USER mrose\r\nPASS secret\r\nAUTH PLAIN AG1yb3NlAHNlY3JldA==\r\nAUTH\r\n",
                  fragment);
    const std::string refused =
        "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections, use "
        "STLS\r\n";
    EXPECT_EQ(f.driver.TakeOutput(), refused + refused + refused + "+OK\r\n.\r\n");
    EXPECT_TRUE(f.driver.events().empty());
    // Bytes pipelined behind STLS in the same read were sent in plaintext and are dropped.
    // (Bytes read later belong to the TLS stream; the fake driver starts TLS at once.)
    f.driver.Feed("STLS\r\nUSER evil\r\n");
    EXPECT_EQ(f.driver.TakeOutput(), "+OK Begin TLS negotiation\r\n");
    EXPECT_THAT(f.driver.events(), ElementsAre("starttls"));
    EXPECT_TRUE(f.session().tls_active());
    EXPECT_EQ(f.session().counters().stls_discarded_bytes, 11u);
    f.driver.Feed("STLS\r\nUSER mrose\r\nPASS secret\r\nSTLS\r\n", fragment);
    EXPECT_EQ(f.driver.TakeOutput(),
              "-ERR Command not permitted when TLS active\r\n+OK\r\n"
              "+OK mrose's maildrop has 3 messages (600 octets)\r\n" +
                  std::string(kWrongState));
  }
}

TEST(Pop3SessionTest, BytesFedDuringTheHandshakeAreDropped) {
  Fixture f(TlsOptions());
  f.driver.set_auto_answer(false);
  f.driver.Feed("STLS\r\n");
  f.driver.Feed("USER evil\r\n");
  EXPECT_EQ(f.session().counters().stls_discarded_bytes, 11u);
  f.driver.AnswerPending();
  f.driver.Feed("CAPA\r\n");
  EXPECT_THAT(f.driver.TakeOutput(), Not(HasSubstr("evil")));
}

TEST(Pop3SessionTest, StlsForgetsTheUserGivenBefore) {
  Pop3SessionOptions options = TlsOptions();
  options.policy.plaintext_requires_tls = false;
  Fixture f(options);
  f.driver.Feed("USER mrose\r\nSTLS\r\n");
  f.driver.Feed("PASS secret\r\n");
  EXPECT_EQ(f.driver.TakeOutput(),
            "+OK\r\n+OK Begin TLS negotiation\r\n-ERR No user name given, send USER first\r\n");
}

TEST(Pop3SessionTest, LoopbackMayBeExemptFromTls) {
  Pop3SessionOptions options = TlsOptions();
  options.peer_is_loopback = true;
  Fixture exempt(options);
  exempt.Login();
  options.policy.loopback_exempt_from_tls = false;
  Fixture strict(options);
  strict.driver.Feed("USER mrose\r\n");
  EXPECT_THAT(strict.driver.TakeOutput(), HasSubstr("-ERR [AUTH] Plaintext"));
}

// --- Per-tenant plaintext policy -------------------------------------------------------------

// Tenants by domain; anything else is kDefault. Counts lookups (one per user name checked).
class FakeTenantLookup : public TenantPlaintextAuthLookup {
 public:
  TenantPlaintextAuth ForDomain(std::string_view domain) const override {
    ++lookups;
    if (domain == "allow.test") return TenantPlaintextAuth::kAllow;
    if (domain == "strict.test") return TenantPlaintextAuth::kRequireTls;
    return TenantPlaintextAuth::kDefault;
  }
  bool AnyAllowed() const override { return any_allowed; }
  bool any_allowed = true;
  mutable int lookups = 0;
};

constexpr char kRefused[] =
    "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections, use STLS\r\n";

struct TenantPlaintextCase {
  const char* domain;  // allow.test, default.test or strict.test
  bool global_requires_tls;
  bool tls;
  bool loopback;
  bool allowed;  // expected
};

std::vector<TenantPlaintextCase> TenantPlaintextTable() {
  std::vector<TenantPlaintextCase> cases;
  for (const char* domain : {"allow.test", "default.test", "strict.test"}) {
    for (bool global : {true, false}) {
      for (bool tls : {false, true}) {
        for (bool loopback : {false, true}) {
          const std::string_view d = domain;
          bool allowed = tls;
          if (d == "allow.test") allowed = true;
          if (d == "default.test") allowed = tls || !global || loopback;
          cases.push_back({domain, global, tls, loopback, allowed});
        }
      }
    }
  }
  return cases;
}

Pop3SessionOptions TenantOptions(const TenantPlaintextCase& c, const FakeTenantLookup* lookup) {
  Pop3SessionOptions options;
  options.hostname = "pop.example";
  options.tls_available = !c.tls;
  options.tls_active = c.tls;
  options.peer_is_loopback = c.loopback;
  options.policy.plaintext_requires_tls = c.global_requires_tls;
  options.policy.tenant_plaintext_auth = lookup;
  return options;
}

std::string CaseName(const TenantPlaintextCase& c) {
  return std::string(c.domain) + (c.global_requires_tls ? " global=require" : " global=allow") +
         (c.tls ? " tls" : " plain") + (c.loopback ? " loopback" : " remote");
}

// --- Trusted proxies: XCLIENT, plaintext logins, PROXY headers from others ------------------

Pop3SessionOptions ProxiedOptions() {
  Pop3SessionOptions options = TlsOptions();
  options.peer_is_trusted_proxy = true;
  options.policy.trusted_proxy_exempt_from_tls = true;
  return options;
}

TEST(Pop3SessionTest, GreetingAdvertisesXclientToTrustedProxiesOnly) {
  FakeDriver proxied(ProxiedOptions());
  EXPECT_EQ(proxied.TakeOutput(), "+OK [XCLIENT] POP3 server ready\r\n");
  FakeDriver direct(TlsOptions());
  EXPECT_EQ(direct.TakeOutput(), "+OK POP3 server ready\r\n");
}

TEST(Pop3SessionTest, XclientFromATrustedProxySetsTheClientAddress) {
  for (size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(fragment);
    Fixture f(ProxiedOptions());
    f.driver.Feed("XCLIENT ADDR=192.0.2.7 PORT=51000 SESSION=abc TTL=5 LOGIN=x FORWARD=e30=\r\n",
                  fragment);
    EXPECT_EQ(f.driver.TakeOutput(), "+OK XCLIENT accepted\r\n");
    EXPECT_EQ(f.session().xclient_address(), "192.0.2.7");
    EXPECT_EQ(f.session().xclient_port(), 51000);
    f.driver.Feed("xclient addr=IPV6:2001:db8::7\r\n", fragment);
    EXPECT_EQ(f.driver.TakeOutput(), "+OK XCLIENT accepted\r\n");
    EXPECT_EQ(f.session().xclient_address(), "2001:db8::7");
    EXPECT_EQ(f.session().xclient_port(), 51000);  // kept: this XCLIENT named no port
    f.Login();                                     // plaintext: the proxy holds the client's TLS
  }
}

TEST(Pop3SessionTest, XclientRefusesBadFieldsAndLateUse) {
  Fixture f(ProxiedOptions());
  f.driver.Feed("XCLIENT ADDR=not-an-ip\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), "-ERR XCLIENT ADDR is not an IP address\r\n");
  f.driver.Feed("XCLIENT PORT=65536\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), "-ERR XCLIENT PORT is not a port number\r\n");
  f.driver.Feed("XCLIENT ADDR\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), "-ERR Syntax: XCLIENT KEY=VALUE ...\r\n");
  EXPECT_EQ(f.session().xclient_address(), "");
  f.driver.Feed("USER mrose\r\nXCLIENT ADDR=192.0.2.7\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), "+OK\r\n-ERR XCLIENT must come before USER or AUTH\r\n");
  f.driver.Feed("PASS secret\r\n");
  EXPECT_EQ(f.session().state(), Pop3State::kTransaction);
  f.driver.TakeOutput();
  f.driver.Feed("XCLIENT ADDR=192.0.2.7\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), kWrongState);
  EXPECT_EQ(f.session().xclient_address(), "");
}

TEST(Pop3SessionTest, XclientIsUnknownFromUntrustedPeers) {
  Pop3SessionOptions options = PlainOptions();
  Fixture f(options);
  f.driver.Feed("XCLIENT ADDR=192.0.2.7 PORT=1\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), "-ERR Unknown command\r\n");
  EXPECT_EQ(f.session().xclient_address(), "");
  EXPECT_EQ(f.session().counters().bad_commands, 1u);
}

TEST(Pop3SessionTest, TrustedProxyPlaintextExemptionIsAPolicy) {
  // Exempt: USER/PASS without TLS, even for a tenant that requires TLS.
  FakeTenantLookup lookup;
  Pop3SessionOptions options = ProxiedOptions();
  options.policy.tenant_plaintext_auth = &lookup;
  Fixture exempt(options);
  exempt.driver.accounts()["u@strict.test"] = {.password = "pw", .mailbox = &exempt.mailbox};
  exempt.driver.Feed("USER u@strict.test\r\nPASS pw\r\n");
  EXPECT_EQ(exempt.session().state(), Pop3State::kTransaction);
  // Not exempt (--proxy_plaintext_logins=false): the proxy's connection is plaintext.
  options.policy.trusted_proxy_exempt_from_tls = false;
  Fixture strict(options);
  strict.driver.Feed("USER mrose\r\n");
  EXPECT_EQ(strict.driver.TakeOutput(), kRefused);
  // The exemption needs a trusted proxy.
  Pop3SessionOptions direct = TlsOptions();
  direct.policy.trusted_proxy_exempt_from_tls = true;
  Fixture remote(direct);
  remote.driver.Feed("USER mrose\r\n");
  EXPECT_EQ(remote.driver.TakeOutput(), kRefused);
}

TEST(Pop3SessionTest, ProxyHeaderFromAnUntrustedPeerCloses) {
  for (size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(fragment);
    Fixture f;
    f.driver.Feed("PROXY TCP4 192.0.2.7 198.51.100.1 51000 110\r\nUSER mrose\r\n", fragment);
    EXPECT_EQ(f.driver.TakeOutput(), "-ERR PROXY header not accepted from this address\r\n");
    EXPECT_EQ(f.session().counters().proxy_header_refusals, 1u);
    EXPECT_THAT(f.driver.events(), ElementsAre("close"));
  }
  // Only as the first line: later, PROXY is just an unknown command.
  Fixture later;
  later.driver.Feed("NOOP\r\nPROXY TCP4 192.0.2.7 198.51.100.1 51000 110\r\n");
  EXPECT_THAT(later.driver.TakeOutput(), HasSubstr("-ERR Unknown command\r\n"));
  EXPECT_EQ(later.session().counters().proxy_header_refusals, 0u);
}

TEST(Pop3SessionTest, TenantPlaintextPolicyDecidesUserPass) {
  for (const TenantPlaintextCase& c : TenantPlaintextTable()) {
    SCOPED_TRACE(CaseName(c));
    FakeTenantLookup lookup;
    Fixture f(TenantOptions(c, &lookup));
    const std::string user = std::string("u@") + c.domain;
    f.driver.accounts()[user] = {.password = "pw", .mailbox = &f.mailbox};
    // USER alone: the verdict comes before the client sends its password.
    f.driver.Feed("USER " + user + "\r\n");
    EXPECT_EQ(f.driver.TakeOutput(), c.allowed ? "+OK\r\n" : kRefused);
    f.driver.Feed("PASS pw\r\n");
    if (c.allowed) {
      EXPECT_EQ(f.session().state(), Pop3State::kTransaction);
    } else {
      EXPECT_EQ(f.driver.TakeOutput(), kRefused);
      EXPECT_EQ(f.session().state(), Pop3State::kAuthorization);
      EXPECT_TRUE(f.driver.events().empty());  // nothing was authenticated
      EXPECT_EQ(f.session().counters().bad_commands, 0u);
    }
  }
}

TEST(Pop3SessionTest, TenantPlaintextPolicyDecidesSaslLoginBeforeThePassword) {
  for (const TenantPlaintextCase& c : TenantPlaintextTable()) {
    SCOPED_TRACE(CaseName(c));
    FakeTenantLookup lookup;
    Fixture f(TenantOptions(c, &lookup));
    const std::string user = std::string("u@") + c.domain;
    f.driver.accounts()[user] = {.password = "pw", .mailbox = &f.mailbox};
    f.driver.Feed("AUTH LOGIN\r\n");
    EXPECT_EQ(f.driver.TakeOutput(), "+ VXNlcm5hbWU6\r\n");  // the tenant is not known yet
    const std::string user_b64 = std::string(c.domain) == "allow.test"     ? "dUBhbGxvdy50ZXN0"
                                 : std::string(c.domain) == "default.test" ? "dUBkZWZhdWx0LnRlc3Q="
                                                                           : "dUBzdHJpY3QudGVzdA==";
    f.driver.Feed(user_b64 + "\r\n");
    if (!c.allowed) {
      EXPECT_EQ(f.driver.TakeOutput(), kRefused);  // no "Password:" prompt
      EXPECT_TRUE(f.driver.events().empty());
      continue;
    }
    EXPECT_EQ(f.driver.TakeOutput(), "+ UGFzc3dvcmQ6\r\n");
    f.driver.Feed("cHc=\r\n");  // "pw"
    EXPECT_EQ(f.session().state(), Pop3State::kTransaction);
  }
}

TEST(Pop3SessionTest, TenantPlaintextPolicyDecidesSaslPlain) {
  for (const TenantPlaintextCase& c : TenantPlaintextTable()) {
    SCOPED_TRACE(CaseName(c));
    FakeTenantLookup lookup;
    Fixture f(TenantOptions(c, &lookup));
    const std::string user = std::string("u@") + c.domain;
    f.driver.accounts()[user] = {.password = "pw", .mailbox = &f.mailbox};
    // "\0u@<domain>\0pw" as an initial response.
    const std::string ir = std::string(c.domain) == "allow.test"     ? "AHVAYWxsb3cudGVzdABwdw=="
                           : std::string(c.domain) == "default.test" ? "AHVAZGVmYXVsdC50ZXN0AHB3"
                                                                     : "AHVAc3RyaWN0LnRlc3QAcHc=";
    f.driver.Feed("AUTH PLAIN " + ir + "\r\n");
    if (c.allowed) {
      EXPECT_EQ(f.session().state(), Pop3State::kTransaction);
    } else {
      EXPECT_EQ(f.driver.TakeOutput(), kRefused);
      EXPECT_TRUE(f.driver.events().empty());
    }
    // Without an initial response, AUTH PLAIN would ask for the password before the tenant is
    // known: refused wherever the server-wide rule refuses.
    if (f.session().state() != Pop3State::kAuthorization) continue;
    f.driver.Feed("AUTH PLAIN\r\n");
    const bool global_allows = c.tls || !c.global_requires_tls || c.loopback;
    EXPECT_EQ(f.driver.TakeOutput(), global_allows ? "+ \r\n" : kRefused);
  }
}

TEST(Pop3SessionTest, TenantPlaintextPolicyLeavesCapaToTheServerWideRule) {
  TenantPlaintextCase c{"allow.test", true, false, false, true};
  FakeTenantLookup lookup;
  Fixture f(TenantOptions(c, &lookup));
  f.driver.Feed("CAPA\r\n");
  const std::string capa = f.driver.TakeOutput();
  EXPECT_THAT(capa, Not(HasSubstr("USER\r\n")));
  EXPECT_THAT(capa, Not(HasSubstr("SASL")));
  EXPECT_THAT(capa, HasSubstr("STLS\r\n"));
  EXPECT_EQ(lookup.lookups, 0);
}

TEST(Pop3SessionTest, WithoutAllowedTenantsRefusalsComeAtTheCommandAsBefore) {
  TenantPlaintextCase c{"allow.test", true, false, false, false};
  FakeTenantLookup lookup;
  lookup.any_allowed = false;  // e.g. only require_tls overrides exist
  Fixture f(TenantOptions(c, &lookup));
  f.driver.Feed("AUTH LOGIN\r\nUSER x\r\nUSER u@default.test\r\nPASS pw\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), std::string(kRefused) + kRefused + kRefused + kRefused);
  EXPECT_EQ(lookup.lookups, 0);
}

TEST(Pop3SessionTest, TenantPlaintextPolicyAfterStlsAndNamesWithoutDomain) {
  TenantPlaintextCase c{"strict.test", false, false, true, false};
  FakeTenantLookup lookup;
  Fixture f(TenantOptions(c, &lookup));
  f.driver.accounts()["u@strict.test"] = {.password = "pw", .mailbox = &f.mailbox};
  // A name without a domain follows the server-wide rule (here: allowed).
  f.driver.Feed("USER mrose\r\nUSER u@strict.test\r\nPASS pw\r\nSTLS\r\n");
  EXPECT_EQ(f.driver.TakeOutput(),
            std::string("+OK\r\n") + kRefused + kRefused + "+OK Begin TLS negotiation\r\n");
  // After STLS the refusal is forgotten and the tenant may log in.
  f.driver.Feed("PASS pw\r\nUSER u@strict.test\r\nPASS pw\r\n");
  EXPECT_EQ(f.driver.TakeOutput(),
            "-ERR No user name given, send USER first\r\n+OK\r\n"
            "+OK u@strict.test's maildrop has 3 messages (600 octets)\r\n");
}

TEST(Pop3SessionTest, CapaDependsOnTlsLoginAndPolicy) {
  // Before TLS, plaintext refused: no USER, no SASL, but STLS.
  Fixture before(TlsOptions());
  before.driver.Feed("CAPA\r\n");
  EXPECT_EQ(before.driver.TakeOutput(),
            "+OK Capability list follows\r\nTOP\r\nRESP-CODES\r\nPIPELINING\r\nUIDL\r\n"
            "IMPLEMENTATION posthaste\r\nAUTH-RESP-CODE\r\nSTLS\r\nUTF8\r\nLANG\r\n.\r\n");
  // After STLS: USER and SASL, no STLS.
  before.driver.Feed("STLS\r\n");
  before.driver.TakeOutput();
  before.driver.Feed("CAPA\r\n");
  EXPECT_EQ(before.driver.TakeOutput(), kCapaPlain);
  // Port 995 with policy values, after login.
  Pop3SessionOptions options = TlsOptions();
  options.tls_active = true;
  options.policy.expire_days = Pop3TenantPolicy::kExpireNever;
  options.policy.login_delay_seconds = 300;
  options.implementation = "";
  Fixture after(options);
  after.Login();
  after.driver.Feed("CAPA\r\n");
  EXPECT_EQ(after.driver.TakeOutput(),
            "+OK Capability list follows\r\nTOP\r\nUSER\r\nSASL PLAIN LOGIN\r\nRESP-CODES\r\n"
            "LOGIN-DELAY 300\r\nPIPELINING\r\nEXPIRE NEVER\r\nUIDL\r\nAUTH-RESP-CODE\r\nUTF8\r\n"
            "LANG\r\n.\r\n");
  // A plain transport that can do TLS does not offer STLS after login.
  Pop3SessionOptions loopback = TlsOptions();
  loopback.peer_is_loopback = true;
  Fixture in_transaction(loopback);
  in_transaction.Login();
  in_transaction.driver.Feed("CAPA\r\n");
  EXPECT_THAT(in_transaction.driver.TakeOutput(), Not(HasSubstr("STLS")));
}

// A tenant lookup whose CAPA values before login are set by the test.
class CapaTenants : public TenantPlaintextAuthLookup {
 public:
  explicit CapaTenants(CapaPolicy before_login) : before_login_(before_login) {}
  TenantPlaintextAuth ForDomain(std::string_view) const override {
    return TenantPlaintextAuth::kDefault;
  }
  bool AnyAllowed() const override { return false; }
  CapaPolicy BeforeLogin() const override { return before_login_; }

 private:
  CapaPolicy before_login_;
};

TEST(Pop3SessionTest, CapaAnnouncesTheTenantsLeastValuesBeforeLoginAndTheUsersAfter) {
  CapaTenants tenants({.login_delay_seconds = 0, .expire_days = 30, .per_user = true});
  Pop3SessionOptions options = PlainOptions();
  options.policy.tenant_plaintext_auth = &tenants;
  Fixture f(options);
  f.driver.accounts()["mrose"].user_policy.capa = {.login_delay_seconds = 900,
                                                   .expire_days = CapaPolicy::kExpireNever};
  f.driver.Feed("CAPA\r\n");
  std::string before = f.driver.TakeOutput();
  EXPECT_THAT(before, HasSubstr("\r\nLOGIN-DELAY 0 USER\r\nPIPELINING\r\nEXPIRE 30 USER\r\n"));
  f.Login();
  f.driver.Feed("CAPA\r\n");
  const std::string after = f.driver.TakeOutput();
  EXPECT_THAT(after, HasSubstr("\r\nLOGIN-DELAY 900\r\nPIPELINING\r\nEXPIRE NEVER\r\n"));
  EXPECT_THAT(after, Not(HasSubstr("USER\r\nPIPELINING")));
  // A user whose tenant sets nothing: no LOGIN-DELAY, no EXPIRE after login.
  Fixture plain(options);
  plain.Login();
  plain.driver.Feed("CAPA\r\n");
  EXPECT_EQ(plain.driver.TakeOutput(), kCapaPlain);
}

TEST(Pop3SessionTest, LoginDelayRefusalKeepsTheSessionInAuthorization) {
  Fixture f;
  f.driver.accounts()["mrose"].maildrop_code = Pop3MaildropResult::Code::kLoginDelay;
  f.driver.Feed("USER mrose\r\nPASS secret\r\n");
  EXPECT_EQ(f.driver.TakeOutput(),
            "+OK\r\n-ERR [LOGIN-DELAY] Logged in too recently, try again later\r\n");
  EXPECT_EQ(f.session().state(), Pop3State::kAuthorization);
  EXPECT_EQ(f.session().counters().login_delay_refusals, 1u);
  EXPECT_EQ(f.session().counters().auth_failures, 0u);
  f.driver.accounts()["mrose"].maildrop_code.reset();
  f.Login();
}

TEST(Pop3SessionTest, MechanismRefusedByTheTenantIsNotAFailedLogin) {
  Fixture f;
  f.driver.accounts()["mrose"].auth_code = Pop3AuthResult::Code::kMechanismRefused;
  f.driver.Feed("USER mrose\r\nPASS secret\r\n");
  EXPECT_EQ(f.driver.TakeOutput(),
            "+OK\r\n-ERR [AUTH] This login mechanism is not allowed for this domain\r\n");
  EXPECT_EQ(f.session().state(), Pop3State::kAuthorization);
  EXPECT_EQ(f.session().counters().auth_failures, 0u);
}

TEST(Pop3SessionTest, ExpireZeroDeletesWhatRetrWasSentAtQuit) {
  Fixture f;
  f.driver.accounts()["mrose"].user_policy.capa.expire_days = 0;
  f.Login();
  // RETR 1 and 3 are sent; TOP 2 is not a retrieval; DELE 3 then RSET undoes the mark only.
  f.driver.Feed("RETR 1\r\nTOP 2 0\r\nRETR 3\r\nDELE 3\r\nRSET\r\n");
  f.driver.TakeOutput();
  f.driver.Feed("QUIT\r\n");
  EXPECT_THAT(f.driver.TakeOutput(), HasSubstr("signing off (1 message left)"));
  EXPECT_THAT(f.driver.events(), ::testing::Contains("commit 0,2"));
  EXPECT_EQ(f.session().counters().expired_at_quit, 2u);
  // A TOP that sent the whole message is a retrieval too.
  Fixture top;
  top.driver.accounts()["mrose"].user_policy.capa.expire_days = 0;
  top.Login();
  top.driver.Feed("TOP 2 99999999\r\n");
  top.driver.TakeOutput();
  top.session().OnWholeMessageSentByTop(MessageIndex(1));
  top.driver.Feed("QUIT\r\n");
  EXPECT_THAT(top.driver.TakeOutput(), HasSubstr("signing off (2 messages left)"));
  EXPECT_THAT(top.driver.events(), ::testing::Contains("commit 1"));
  // Without EXPIRE 0, RETR deletes nothing.
  Fixture keep;
  keep.Login();
  keep.driver.Feed("RETR 1\r\nQUIT\r\n");
  EXPECT_THAT(keep.driver.TakeOutput(), HasSubstr("signing off (3 messages left)"));
  EXPECT_THAT(keep.driver.events(), ::testing::Contains("commit "));
}

TEST(Pop3SessionTest, DailyDownloadLimitRefusesRetrAndTheSessionGoesOn) {
  Fixture f;
  f.driver.accounts()["mrose"].user_policy.download_octets_left = 350;
  f.Login();
  // 100 fits (250 left), 300 does not, 200 does (50 left), then TOP of 100 does not.
  f.driver.Feed("RETR 1\r\nRETR 3\r\nRETR 2\r\nTOP 1 0\r\n");
  const std::string out = f.driver.TakeOutput();
  EXPECT_THAT(out, HasSubstr("\r\n.\r\n-ERR [SYS/TEMP] Daily download limit reached, try again "
                             "tomorrow\r\n+OK 200 octets\r\n"));
  EXPECT_THAT(out, ::testing::EndsWith(
                       "-ERR [SYS/TEMP] Daily download limit reached, try again tomorrow\r\n"));
  EXPECT_THAT(f.driver.events(), ::testing::Contains("stream 0"));
  EXPECT_THAT(f.driver.events(), ::testing::Contains("stream 1"));
  EXPECT_THAT(f.driver.events(), Not(::testing::Contains("stream 2")));
  EXPECT_EQ(f.session().counters().download_limit_refusals, 2u);
  // The session goes on: STAT, LIST, DELE and QUIT still work.
  f.driver.Feed("STAT\r\nLIST 3\r\nDELE 3\r\nQUIT\r\n");
  EXPECT_EQ(f.driver.TakeOutput(),
            "+OK 3 600\r\n+OK 3 300\r\n+OK message 3 deleted\r\n"
            "+OK pop.example POP3 server signing off (2 messages left)\r\n");
  EXPECT_THAT(f.driver.events(), ::testing::Contains("commit 2"));
}

TEST(Pop3SessionTest, TopIsChargedWhatItSendsToTheDownloadLimit) {
  Fixture f;
  f.driver.accounts()["mrose"].user_policy.download_octets_left = 300;
  f.Login();
  // TOP 3 0 sends the 14-octet header ("Subject: x" and the blank line): 286 left. RETR 2
  // (200) fits, RETR 1 (100) no longer does. (Commands pipelined behind the TOP, parsed before
  // its length is known, see the whole message held back.)
  f.driver.Feed("TOP 3 0\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), "+OK\r\nSubject: x\r\n\r\n.\r\n");
  f.driver.Feed("RETR 2\r\nRETR 1\r\n");
  const std::string out = f.driver.TakeOutput();
  EXPECT_THAT(out, HasSubstr("+OK 200 octets\r\n"));
  EXPECT_THAT(out, ::testing::EndsWith(
                       "-ERR [SYS/TEMP] Daily download limit reached, try again tomorrow\r\n"));
  EXPECT_EQ(f.session().counters().download_limit_refusals, 1u);
  // Without a limit nothing is refused.
  Fixture unlimited;
  unlimited.Login();
  unlimited.driver.Feed("TOP 3 0\r\nRETR 2\r\nRETR 1\r\nRETR 3\r\n");
  EXPECT_THAT(unlimited.driver.TakeOutput(), Not(HasSubstr("-ERR")));
  EXPECT_EQ(unlimited.session().counters().download_limit_refusals, 0u);
}

Pop3SessionOptions CheckingOptions() {
  Pop3SessionOptions options = PlainOptions();
  options.check_stored_messages = true;
  return options;
}

// With check_stored_messages, RETR and TOP say nothing until the driver's check: an intact
// message goes out as before, a damaged one gets "-ERR [SYS/PERM]" and no bytes, and the
// session goes on (pipelined commands behind it are answered in order).
TEST(Pop3SessionTest, DamagedMessageIsRefusedAfterTheCheckAndTheSessionGoesOn) {
  Fixture f(CheckingOptions());
  f.driver.accounts()["mrose"].user_policy.capa.expire_days = 0;
  f.Login();
  f.driver.set_message_check(MessageIndex(1), Pop3MessageCheck::kDamaged);
  f.driver.set_message_check(MessageIndex(2), Pop3MessageCheck::kUnavailable);
  f.driver.Feed("RETR 2\r\nRETR 1\r\nTOP 2 0\r\nRETR 3\r\nNOOP\r\n");
  const std::string out = f.driver.TakeOutput();
  EXPECT_THAT(out, ::testing::StartsWith(
                       "-ERR [SYS/PERM] Message 2 is damaged in storage and was not sent\r\n"
                       "+OK 100 octets\r\n"));
  EXPECT_THAT(out, ::testing::EndsWith(
                       ".\r\n-ERR [SYS/PERM] Message 2 is damaged in storage and was not sent\r\n"
                       "-ERR [SYS/TEMP] Message cannot be read now, try again later\r\n+OK\r\n"));
  EXPECT_EQ(f.driver.events(),
            (std::vector<std::string>{"auth USER mrose", "open mrose", "check 1", "check 0",
                                      "stream 0", "check 1", "check 2"}));
  // A refused RETR is no retrieval: under EXPIRE 0 only message 1 goes at QUIT.
  f.driver.Feed("QUIT\r\n");
  EXPECT_THAT(f.driver.events(), ::testing::Contains("commit 0"));
}

TEST(Pop3SessionTest, NothingIsParsedWhileAMessageCheckIsPending) {
  Fixture f(CheckingOptions());
  f.Login();
  f.driver.set_auto_answer(false);
  f.driver.Feed("RETR 1\r\nSTAT\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), "");
  EXPECT_TRUE(f.session().AwaitingResult());
  f.driver.AnswerPending();
  EXPECT_THAT(f.driver.TakeOutput(), ::testing::AllOf(::testing::StartsWith("+OK 100 octets\r\n"),
                                                      ::testing::EndsWith(".\r\n+OK 3 600\r\n")));
}

TEST(Pop3SessionTest, ARefusedCheckGivesTheDownloadChargeBack) {
  Fixture f(CheckingOptions());
  f.driver.accounts()["mrose"].user_policy.download_octets_left = 300;
  f.Login();
  f.driver.set_message_check(MessageIndex(2), Pop3MessageCheck::kDamaged);
  // 300 is charged and given back, so RETR 2 (200) and RETR 1 (100) still fit.
  f.driver.Feed("RETR 3\r\nRETR 2\r\nRETR 1\r\n");
  const std::string out = f.driver.TakeOutput();
  EXPECT_THAT(out, HasSubstr("+OK 200 octets\r\n"));
  EXPECT_THAT(out, HasSubstr("+OK 100 octets\r\n"));
  EXPECT_THAT(out, Not(HasSubstr("Daily download limit")));
}

TEST(Pop3SessionTest, TheDamagedMessageReplyIsTranslated) {
  Fixture f(CheckingOptions());
  f.Login();
  f.driver.set_message_check(MessageIndex(0), Pop3MessageCheck::kDamaged);
  f.driver.Feed("LANG de\r\n");
  f.driver.TakeOutput();
  f.driver.Feed("RETR 1\r\n");
  EXPECT_EQ(f.driver.TakeOutput(),
            "-ERR [SYS/PERM] Nachricht 1 ist im Speicher beschädigt und wurde nicht gesendet\r\n");
}

TEST(Pop3SessionTest, Utf8IsAcceptedBeforeAndAfterLogin) {
  Fixture f;
  EXPECT_FALSE(f.session().utf8_enabled());
  f.driver.Feed("UTF8\r\n");
  EXPECT_TRUE(f.session().utf8_enabled());
  EXPECT_EQ(f.driver.TakeOutput(), "+OK UTF8 enabled\r\n");
  f.Login();
  f.driver.Feed("utf8\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), "+OK UTF8 enabled\r\n");
  EXPECT_TRUE(f.session().utf8_enabled());
}

// --- Deletions, RSET, QUIT, connection loss ---------------------------------------------------

TEST(Pop3SessionTest, DeletedMessagesDisappearUntilRset) {
  Fixture f;
  f.Login();
  f.driver.Feed(
      "DELE 1\r\nDELE 3\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 3 1\r\nRSET\r\nSTAT\r\n"
      "LIST 1\r\n");
  EXPECT_EQ(f.driver.TakeOutput(),
            "+OK message 1 deleted\r\n+OK message 3 deleted\r\n+OK 1 200\r\n"
            "+OK 1 message (200 octets)\r\n2 200\r\n.\r\n+OK\r\n2 u2\r\n.\r\n"
            "-ERR message 1 already deleted\r\n-ERR message 3 already deleted\r\n"
            "+OK maildrop has 3 messages (600 octets)\r\n+OK 3 600\r\n+OK 1 100\r\n");
  EXPECT_FALSE(f.session().IsMarkedDeletedForTest(MessageIndex(0)));
  f.driver.Feed("DELE 2\r\n");
  EXPECT_TRUE(f.session().IsMarkedDeletedForTest(MessageIndex(1)));
}

TEST(Pop3SessionTest, QuitCommitsOnceAndAnswersAfterTheCommit) {
  Fixture f;
  f.Login();
  f.driver.set_auto_answer(false);
  f.driver.Feed("DELE 1\r\nDELE 3\r\nQUIT\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), "+OK message 1 deleted\r\n+OK message 3 deleted\r\n");
  EXPECT_EQ(f.driver.commits(), 1);
  EXPECT_THAT(f.driver.last_commit(), ElementsAre(MessageIndex(0), MessageIndex(2)));
  EXPECT_FALSE(f.driver.closed());
  f.driver.AnswerPending();
  EXPECT_EQ(f.driver.TakeOutput(), "+OK pop.example POP3 server signing off (1 message left)\r\n");
  EXPECT_TRUE(f.driver.closed());
  EXPECT_EQ(f.driver.commits(), 1);
}

TEST(Pop3SessionTest, FailedCommitAnswersSysTemp) {
  Fixture f;
  f.Login();
  f.driver.set_commit_result(Pop3CommitResult::kTempFailure);
  f.driver.Feed("DELE 2\r\nQUIT\r\n");
  EXPECT_EQ(f.driver.TakeOutput(),
            "+OK message 2 deleted\r\n"
            "-ERR [SYS/TEMP] Could not remove deleted messages, none were removed\r\n");
  EXPECT_TRUE(f.driver.closed());
  EXPECT_EQ(f.driver.commits(), 1);
}

TEST(Pop3SessionTest, ConnectionLossCommitsNothing) {
  for (bool quit_fed : {false, true}) {
    Fixture f;
    f.Login();
    f.driver.set_auto_answer(false);
    f.driver.set_auto_flush(false);
    f.driver.Feed("DELE 1\r\nDELE 2\r\n");
    // A QUIT whose commit action was never taken by the driver is forgotten too.
    if (quit_fed) f.session().Feed("QUIT\r\n");
    f.session().OnConnectionLost();
    f.driver.Pump();
    EXPECT_EQ(f.driver.commits(), 0);
    EXPECT_EQ(f.session().state(), Pop3State::kClosed);
    f.driver.Feed("QUIT\r\n");
    EXPECT_EQ(f.driver.commits(), 0);
    EXPECT_FALSE(f.session().WantsInput());
  }
}

TEST(Pop3SessionTest, ResultsArrivingAfterConnectionLossAreIgnored) {
  Pop3SessionOptions options = PlainOptions();
  options.tls_available = true;
  Pop3Session session(options);
  session.Feed("USER mrose\r\nPASS secret\r\n");
  while (session.NextAction().kind != Pop3ActionKind::kNone) {
  }
  session.OnConnectionLost();
  session.OnAuthResult({Pop3AuthResult::Code::kOk});
  session.OnMaildropOpened({Pop3MaildropResult::Code::kOk, nullptr});
  session.OnCommitResult(Pop3CommitResult::kOk);
  session.OnTlsStarted();
  session.OnOutputFlushed();
  EXPECT_EQ(session.NextAction().kind, Pop3ActionKind::kNone);
  EXPECT_EQ(session.state(), Pop3State::kClosed);
}

TEST(Pop3SessionTest, UnprintableAccountNamesAreNotEchoed) {
  Fixture f;
  f.driver.accounts()[std::string("a\x01") + "b"] = {.password = "p", .mailbox = &f.mailbox};
  f.driver.Feed("AUTH PLAIN AGEBYgBw\r\n");  // "\0a\x01b\0p"
  EXPECT_EQ(f.driver.TakeOutput(), "+OK maildrop has 3 messages (600 octets)\r\n");
}

TEST(Pop3SessionTest, CountsCommands) {
  Fixture f;
  f.driver.Feed("CAPA\r\nNOOP\r\nUSER a\r\n");
  EXPECT_EQ(f.session().counters().commands, 3u);
  EXPECT_EQ(f.session().counters().bad_commands, 1u);
}

TEST(Pop3SessionTest, MaildropLimitAnswersSysTempThenCloses) {
  Fixture f;
  f.driver.accounts()["mrose"].maildrop_code = Pop3MaildropResult::Code::kLimitReached;
  f.driver.Feed("USER mrose\r\nPASS secret\r\nSTAT\r\n");
  EXPECT_EQ(f.driver.TakeOutput(),
            "+OK\r\n-ERR [SYS/TEMP] Maildrop temporarily unavailable, try again later\r\n");
  EXPECT_TRUE(f.driver.closed());
  EXPECT_EQ(f.session().state(), Pop3State::kClosed);
}

// The driver's refusals replace the greeting: one reply line, then close.
TEST(Pop3SessionTest, RefusalReplacesTheGreetingAndCloses) {
  const std::pair<Pop3Refusal, std::string> cases[] = {
      {Pop3Refusal::kServerAtCapacity, "-ERR [SYS/TEMP] Server at capacity, try again later\r\n"},
      {Pop3Refusal::kServerBusy, "-ERR [SYS/TEMP] Server busy, try again later\r\n"},
      {Pop3Refusal::kTooManyFromAddress,
       "-ERR [SYS/TEMP] Too many connections from your address\r\n"},
  };
  for (const auto& [refusal, reply] : cases) {
    Pop3Session session(PlainOptions());  // the greeting is queued, not yet taken
    session.Refuse(refusal);
    Pop3Action write = session.NextAction();
    ASSERT_EQ(write.kind, Pop3ActionKind::kWrite);
    EXPECT_EQ(write.bytes, reply);
    EXPECT_EQ(session.NextAction().kind, Pop3ActionKind::kClose);
    session.Feed("CAPA\r\n");
    EXPECT_EQ(session.NextAction().kind, Pop3ActionKind::kNone);
    EXPECT_EQ(session.state(), Pop3State::kClosed);
  }
}

TEST(Pop3SessionTest, LoginTimeoutForgetsQueuedOutputAndCloses) {
  Fixture f;
  f.driver.set_auto_flush(false);
  f.driver.Feed("USER mrose\r\n");
  f.session().Feed("NOOP\r\n");  // answered by the session, not yet taken by the driver
  f.session().OnTimeout(Pop3Timeout::kLogin);
  f.driver.Pump();
  EXPECT_EQ(f.driver.TakeOutput(), "+OK\r\n-ERR Disconnected: no login in time\r\n");
  EXPECT_TRUE(f.driver.closed());
  f.session().OnTimeout(Pop3Timeout::kLogin);  // closed: ignored
  f.driver.Pump();
  EXPECT_EQ(f.driver.TakeOutput(), "");
}

TEST(Pop3SessionTest, IdleTimeoutCommitsNothing) {
  Fixture f;
  f.Login();
  f.driver.Feed("DELE 1\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), "+OK message 1 deleted\r\n");
  f.session().OnTimeout(Pop3Timeout::kIdle);
  f.driver.Pump();
  EXPECT_EQ(f.driver.TakeOutput(), "-ERR Disconnected for inactivity\r\n");
  EXPECT_TRUE(f.driver.closed());
  EXPECT_EQ(f.driver.commits(), 0);
}

}  // namespace
}  // namespace posthaste::pop3
