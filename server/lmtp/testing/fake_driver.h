// FakeLmtpDriver (testonly): plays the connection driver for LmtpSession tests. It feeds a
// script in fragments of a chosen size, carries out every action (writes go to one transcript,
// other actions to an event list), answers recipient checks from a table of known recipients
// and deliveries from per-mailbox outcomes, either at once or only when the test says so, and
// keeps every delivered message per mailbox the way storage would.
// Threading: single-threaded, like the session.
#ifndef POSTHASTE_SERVER_LMTP_TESTING_FAKE_DRIVER_H_
#define POSTHASTE_SERVER_LMTP_TESTING_FAKE_DRIVER_H_

#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/lmtp/session.h"

namespace posthaste::lmtp::testing {

class FakeLmtpDriver {
 public:
  struct Delivery {
    std::string reverse_path;
    BodyType body = BodyType::kUnspecified;
    std::vector<std::string> mailboxes;
    std::string message;
  };

  explicit FakeLmtpDriver(LmtpSessionOptions options = {});

  LmtpSession& session() { return *session_; }
  // Recipient verdicts by address (exact). Addresses not listed are kUnknown.
  std::map<std::string, LmtpRecipientVerdict>& recipients() { return recipients_; }
  // Delivery outcomes by mailbox. Mailboxes not listed are kDelivered.
  std::map<std::string, LmtpDeliveryResult>& outcomes() { return outcomes_; }
  // Convenience: accept `address` (mailbox = address).
  void AddRecipient(const std::string& address);
  // When false, results wait for AnswerPending(); OnOutputFlushed() is still automatic.
  void set_auto_answer(bool auto_answer) { auto_answer_ = auto_answer; }
  // When false, the driver never calls OnOutputFlushed() by itself (see Flush()).
  void set_auto_flush(bool auto_flush) { auto_flush_ = auto_flush; }

  // Feeds `input` in pieces of `fragment_bytes` (0: whole), carrying out actions after each.
  void Feed(std::string_view input, size_t fragment_bytes = 0);
  // Takes and carries out actions until the session has none left.
  void Pump();
  // Answers the pending check or delivery, then pumps.
  void AnswerPending();
  void Flush();

  const std::string& output() const { return output_; }
  std::string TakeOutput();
  // One entry per non-write action: "check <addr>" (" size=N" when declared),
  // "deliver <mailbox>,<mailbox> <octets>", "close".
  const std::vector<std::string>& events() const { return events_; }
  const std::vector<Delivery>& deliveries() const { return deliveries_; }
  // Messages stored per mailbox (kDelivered outcomes only).
  const std::map<std::string, std::vector<std::string>>& stored() const { return stored_; }
  bool closed() const { return closed_; }
  bool pending() const { return pending_ != Pending::kNone; }

 private:
  enum class Pending { kNone, kCheck, kDeliver };
  void Answer();

  std::unique_ptr<LmtpSession> session_;
  std::map<std::string, LmtpRecipientVerdict> recipients_;
  std::map<std::string, LmtpDeliveryResult> outcomes_;
  bool auto_answer_ = true;
  bool auto_flush_ = true;
  bool taken_since_flush_ = false;
  Pending pending_ = Pending::kNone;
  std::string pending_address_;
  LmtpDelivery pending_delivery_;
  std::string output_;
  std::vector<std::string> events_;
  std::vector<Delivery> deliveries_;
  std::map<std::string, std::vector<std::string>> stored_;
  bool closed_ = false;
};

}  // namespace posthaste::lmtp::testing

#endif  // POSTHASTE_SERVER_LMTP_TESTING_FAKE_DRIVER_H_
