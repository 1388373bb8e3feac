// FakeLmtpBackend (testonly): an LmtpBackend for adapter tests. It records every check and
// copy the adapter starts and answers them only when the test says so, in any order, the way
// the offload pool would. A copy answered kDelivered is "stored": its message is read from the
// adapter's view at that moment (so a buffer freed too early shows up under ASan).
// Threading: the test's thread.
#ifndef POSTHASTE_SERVER_LMTP_SERVICE_TESTING_FAKE_BACKEND_H_
#define POSTHASTE_SERVER_LMTP_SERVICE_TESTING_FAKE_BACKEND_H_

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/lmtp_service/lmtp_backend.h"

namespace posthaste::server::testing {

class FakeLmtpBackend final : public LmtpBackend {
 public:
  struct Check {
    LmtpBackendClient* client = nullptr;
    std::string address;
    std::optional<uint64_t> declared_size;
  };
  struct Copy {
    LmtpBackendClient* client = nullptr;
    size_t index = 0;
    std::string mailbox;
    std::string_view message;  // the adapter's view, valid until answered
  };

  bool StartCheck(LmtpBackendClient& client, std::string_view address,
                  std::optional<uint64_t> declared_size) override;
  bool StartCopy(LmtpBackendClient& client, size_t index, std::string_view mailbox,
                 std::string_view message) override;

  // While true, every Start* returns false (a full offload queue).
  void set_refuse_work(bool refuse) { refuse_work_ = refuse; }

  // Answers the oldest pending check. REQUIRES: one is pending.
  void AnswerCheck(lmtp::LmtpRecipientVerdict verdict);
  void AcceptCheck() { AnswerCheck({lmtp::LmtpRecipientVerdict::Code::kAccepted, "", ""}); }
  // Answers the pending copy for `mailbox`. REQUIRES: one is pending.
  void AnswerCopy(std::string_view mailbox, lmtp::LmtpDeliveryResult result);
  void DeliverCopy(std::string_view mailbox) {
    AnswerCopy(mailbox, {lmtp::LmtpDeliveryResult::Code::kDelivered, ""});
  }

  const std::vector<Check>& pending_checks() const { return checks_; }
  const std::vector<Copy>& pending_copies() const { return copies_; }
  // Messages stored per mailbox (copies answered kDelivered).
  const std::map<std::string, std::vector<std::string>>& stored() const { return stored_; }
  size_t copies_started() const { return copies_started_; }

 private:
  bool refuse_work_ = false;
  std::vector<Check> checks_;
  std::vector<Copy> copies_;
  std::map<std::string, std::vector<std::string>> stored_;
  size_t copies_started_ = 0;
};

}  // namespace posthaste::server::testing

#endif  // POSTHASTE_SERVER_LMTP_SERVICE_TESTING_FAKE_BACKEND_H_
