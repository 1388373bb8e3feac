// Test doubles for Pop3Session (testonly):
//   FakeMailbox  messages held in memory in stored POP3 form, turned into a MailboxSnapshot,
//                and rendered the way the transport would stream them (RETR and TOP).
//   FakeDriver   plays the connection driver: feeds a script in fragments of a chosen size,
//                carries out every action (writes and streams go to one transcript), and
//                answers authentication, maildrop, commit and TLS actions from its settings,
//                either at once or only when the test says so.
// Threading: single-threaded, like the session.
#ifndef POSTHASTE_SERVER_POP3_TESTING_FAKE_MAILBOX_H_
#define POSTHASTE_SERVER_POP3_TESTING_FAKE_MAILBOX_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "server/pop3/mailbox_snapshot.h"
#include "server/pop3/session.h"

namespace posthaste::pop3::testing {

class FakeMailbox {
 public:
  // `stored` is the message in stored POP3 form (CRLF lines, dot-stuffed, no terminator).
  void Add(std::string stored, std::string uidl);
  // A message of exactly `size_octets` octets (filler lines), for size-only tests.
  void AddOfSize(uint64_t size_octets, std::string uidl);

  std::shared_ptr<const MailboxSnapshot> Snapshot() const;
  uint32_t count() const { return static_cast<uint32_t>(messages_.size()); }
  const std::string& stored(MessageIndex index) const { return messages_[index.value()].stored; }

  // What the transport sends for a stream action: the message (or, for TOP, its header, the
  // blank line and the first `top_body_lines` body lines), then ".\r\n".
  std::string Render(MessageIndex index, std::optional<uint64_t> top_body_lines) const;

 private:
  struct Message {
    std::string stored;
    std::string uidl;
  };
  std::vector<Message> messages_;
};

class FakeDriver {
 public:
  struct Account {
    std::string password;
    std::string apop_digest;  // expected APOP digest for the session's timestamp
    FakeMailbox* mailbox = nullptr;
    bool in_use = false;
    std::optional<Pop3AuthResult::Code> auth_code;          // overrides the password check
    std::optional<Pop3MaildropResult::Code> maildrop_code;  // overrides opening
    Pop3UserPolicy user_policy;                             // handed over with the maildrop
  };

  explicit FakeDriver(Pop3SessionOptions options = {});

  // Answers kSasl steps (AuthMechanism::kSasl: mechanism, AUTH or a later line, the decoded
  // response or none). Unset: every kSasl step fails with kBadCredentials.
  std::function<Pop3AuthResult(std::string_view mechanism, bool start,
                               std::optional<std::string_view> response)>
      sasl_answer;

  Pop3Session& session() { return *session_; }
  std::map<std::string, Account>& accounts() { return accounts_; }
  void set_commit_result(Pop3CommitResult result) { commit_result_ = result; }
  // The answer to a kCheckMessage of message `index` (default kIntact).
  void set_message_check(MessageIndex index, Pop3MessageCheck result) {
    message_checks_[index.value()] = result;
  }
  // When false, results wait for AnswerPending(); OnOutputFlushed() is still automatic.
  void set_auto_answer(bool auto_answer) { auto_answer_ = auto_answer; }
  // When false, the driver never calls OnOutputFlushed() by itself (see Flush()).
  void set_auto_flush(bool auto_flush) { auto_flush_ = auto_flush; }

  // Feeds `input` in pieces of `fragment_bytes` (0: whole), carrying out actions after each.
  void Feed(std::string_view input, size_t fragment_bytes = 0);
  // Takes and carries out actions until the session has none left.
  void Pump();
  // Answers the pending result (auth, maildrop, commit or TLS), then pumps.
  void AnswerPending();
  void Flush();

  // Everything sent to the client so far (reply text and streamed messages).
  const std::string& output() const { return output_; }
  std::string TakeOutput();
  // One entry per non-write action: "stream 0", "top 0 10", "auth USER mrose", "open mrose",
  // "commit 0,2", "starttls", "delay 2000", "close", "check 0".
  const std::vector<std::string>& events() const { return events_; }
  bool closed() const { return closed_; }
  bool pending() const { return pending_ != Pending::kNone; }
  int commits() const { return commits_; }
  std::vector<MessageIndex> last_commit() const { return last_commit_; }
  const Pop3Credentials& last_credentials() const { return last_credentials_; }
  const std::string& last_secret() const { return last_secret_; }
  const std::string& last_authzid() const { return last_authzid_; }

 private:
  enum class Pending { kNone, kAuth, kMaildrop, kCommit, kTls, kMessageCheck };
  void Answer();

  std::unique_ptr<Pop3Session> session_;
  std::map<std::string, Account> accounts_;
  Pop3CommitResult commit_result_ = Pop3CommitResult::kOk;
  std::map<uint32_t, Pop3MessageCheck> message_checks_;
  uint32_t checking_ = 0;  // Pending::kMessageCheck: the message
  bool auto_answer_ = true;
  bool auto_flush_ = true;
  bool taken_since_flush_ = false;
  Pending pending_ = Pending::kNone;
  std::string pending_user_;
  FakeMailbox* open_mailbox_ = nullptr;
  std::string output_;
  std::vector<std::string> events_;
  bool closed_ = false;
  int commits_ = 0;
  std::vector<MessageIndex> last_commit_;
  Pop3Credentials last_credentials_;
  std::string last_user_;
  std::string last_secret_;
  std::string last_authzid_;
  std::string last_sasl_mechanism_;
};

}  // namespace posthaste::pop3::testing

#endif  // POSTHASTE_SERVER_POP3_TESTING_FAKE_MAILBOX_H_
