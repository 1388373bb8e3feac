// Pop3CommandObserver: one begin and one end per command line, with the status of the reply
// that finished it, also across auth/maildrop/commit results and SASL exchanges.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/pop3/session.h"
#include "server/pop3/testing/fake_mailbox.h"

namespace posthaste::pop3 {
namespace {

class Recorder : public Pop3CommandObserver {
 public:
  void OnCommandBegin(Pop3Command command) override {
    events.push_back("begin " + std::to_string(static_cast<int>(command)));
  }
  void OnCommandEnd(Pop3Command command, bool ok) override {
    events.push_back("end " + std::to_string(static_cast<int>(command)) + (ok ? " ok" : " err"));
  }
  std::vector<std::string> events;
};

std::string B(Pop3Command c) { return "begin " + std::to_string(static_cast<int>(c)); }
std::string E(Pop3Command c, bool ok) {
  return "end " + std::to_string(static_cast<int>(c)) + (ok ? " ok" : " err");
}

TEST(CommandObserver, EveryCommandBeginsAndEndsWithItsStatus) {
  for (size_t fragment : {0, 1, 3}) {
    Recorder recorder;
    Pop3SessionOptions options;
    options.peer_is_loopback = true;
    options.command_observer = &recorder;
    options.auth_failure_delay_ms = 0;
    testing::FakeMailbox mailbox;
    mailbox.Add("Subject: a\r\n\r\nbody\r\n", "u1");
    testing::FakeDriver driver(options);
    driver.accounts()["alice"] = {.password = "secret", .mailbox = &mailbox};
    driver.Feed(
        "CAPA\r\nUSER alice\r\nPASS wrong\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nRETR 9\r\n"
        "RETR 1\r\nBOGUS\r\nDELE 1\r\nQUIT\r\n",
        fragment);
    EXPECT_TRUE(driver.closed());
    const std::vector<std::string> want = {
        B(Pop3Command::kCapa),       E(Pop3Command::kCapa, true),  B(Pop3Command::kUser),
        E(Pop3Command::kUser, true), B(Pop3Command::kPass),        E(Pop3Command::kPass, false),
        B(Pop3Command::kUser),       E(Pop3Command::kUser, true),  B(Pop3Command::kPass),
        E(Pop3Command::kPass, true), B(Pop3Command::kStat),        E(Pop3Command::kStat, true),
        B(Pop3Command::kRetr),       E(Pop3Command::kRetr, false), B(Pop3Command::kRetr),
        E(Pop3Command::kRetr, true), B(Pop3Command::kUnknown),     E(Pop3Command::kUnknown, false),
        B(Pop3Command::kDele),       E(Pop3Command::kDele, true),  B(Pop3Command::kQuit),
        E(Pop3Command::kQuit, true)};
    EXPECT_EQ(recorder.events, want) << "fragment " << fragment;
  }
}

TEST(CommandObserver, SaslExchangeEndsOnlyWithTheFinalStatus) {
  Recorder recorder;
  Pop3SessionOptions options;
  options.peer_is_loopback = true;
  options.command_observer = &recorder;
  testing::FakeMailbox mailbox;
  testing::FakeDriver driver(options);
  driver.accounts()["alice"] = {.password = "secret", .mailbox = &mailbox};
  driver.set_auto_answer(false);
  driver.Feed("AUTH LOGIN\r\n");
  EXPECT_EQ(recorder.events, std::vector<std::string>{B(Pop3Command::kAuth)});
  driver.Feed("YWxpY2U=\r\n");            // alice
  driver.Feed("c2VjcmV0\r\n");            // secret
  EXPECT_EQ(recorder.events.size(), 1u);  // verification pending
  driver.AnswerPending();                 // auth ok -> open maildrop
  driver.AnswerPending();                 // maildrop opened -> +OK
  EXPECT_EQ(recorder.events,
            (std::vector<std::string>{B(Pop3Command::kAuth), E(Pop3Command::kAuth, true)}));
}

}  // namespace
}  // namespace posthaste::pop3
