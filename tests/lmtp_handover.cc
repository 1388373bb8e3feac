#include "tests/lmtp_handover.h"

#include <algorithm>
#include <string>
#include <vector>

#include "base/check.h"
#include "server/lmtp/session.h"

namespace posthaste::tests {
namespace {

using lmtp::LmtpAction;
using lmtp::LmtpActionKind;
using lmtp::LmtpDeliveryResult;
using lmtp::LmtpRecipientVerdict;
using lmtp::LmtpSession;
using lmtp::LmtpSessionOptions;

constexpr std::string_view kReversePath = "mta@relay.example";

class Driver {
 public:
  explicit Driver(LmtpSessionOptions options) : session_(std::move(options)) { Pump(); }

  void Feed(std::string_view bytes) {
    session_.Feed(bytes);
    Pump();
  }

  int deliveries() const { return deliveries_; }
  const std::string& message() const { return message_; }

 private:
  void Pump() {
    for (int guard = 0; guard < 1000000; ++guard) {
      LmtpAction action = session_.NextAction();
      if (action.kind == LmtpActionKind::kNone) {
        session_.OnOutputFlushed();
        action = session_.NextAction();
      }
      switch (action.kind) {
        case LmtpActionKind::kNone:
        case LmtpActionKind::kClose:
          return;
        case LmtpActionKind::kWrite:
          break;
        case LmtpActionKind::kCheckRecipient:
          session_.OnRecipientChecked({LmtpRecipientVerdict::Code::kAccepted, "", ""});
          break;
        case LmtpActionKind::kDeliver: {
          if (++deliveries_ == 1) message_.assign(action.delivery.message);
          const std::vector<LmtpDeliveryResult> results(
              action.delivery.recipients.size(),
              LmtpDeliveryResult{LmtpDeliveryResult::Code::kDelivered, ""});
          session_.OnDeliveryDone(results);
          break;
        }
      }
    }
    PH_CHECK(false);  // the session never stops producing actions
  }

  LmtpSession session_;
  int deliveries_ = 0;
  std::string message_;
};

}  // namespace

std::string UnstuffedReference(std::string_view content) {
  std::string out;
  while (!content.empty()) {
    const size_t crlf = content.find("\r\n");
    PH_CHECK(crlf != std::string_view::npos);  // content ends in CRLF
    std::string_view line = content.substr(0, crlf);
    content.remove_prefix(crlf + 2);
    if (!line.empty() && line.front() == '.') line.remove_prefix(1);
    for (char c : line) {
      if (c == '\n') {
        out += "\r\n";
      } else {
        out.push_back(c);
      }
    }
    out += "\r\n";
  }
  return out;
}

LmtpHandover RunLmtpHandover(std::string_view data, uint32_t seed) {
  uint32_t rng = seed | 1;
  auto next = [&rng] {
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
  };
  LmtpSessionOptions options;
  options.hostname = "handover.example";
  options.add_return_path = (seed & 0x10000) == 0;
  options.message_bytes_max = 4u << 20;  // beyond any input here: no message is refused
  Driver driver(options);
  driver.Feed("LHLO relay.example\r\nMAIL FROM:<" + std::string(kReversePath) +
              ">\r\nRCPT TO:<user@handover.example>\r\nDATA\r\n");

  const std::string stream = std::string(data) + "\r\n.\r\n";
  size_t dot;  // where the terminating ".\r\n" starts
  if (stream.compare(0, 3, ".\r\n") == 0) {
    dot = 0;
  } else {
    dot = stream.find("\r\n.\r\n") + 2;
  }
  // Message bytes only: what follows the first terminator would be commands.
  const std::string_view message_bytes = std::string_view(stream).substr(0, dot + 3);
  for (size_t pos = 0; pos < message_bytes.size();) {
    const size_t piece = std::min<size_t>(message_bytes.size() - pos, 1 + next() % 300);
    driver.Feed(message_bytes.substr(pos, piece));
    pos += piece;
  }

  LmtpHandover result;
  if (options.add_return_path) {
    result.unstuffed = "Return-Path: <" + std::string(kReversePath) + ">\r\n";
  }
  result.unstuffed += UnstuffedReference(std::string_view(stream).substr(0, dot));
  result.delivered = driver.message();
  result.delivered_once = driver.deliveries() == 1;
  return result;
}

}  // namespace posthaste::tests
