// Message intake speed of LmtpSession: one transaction (MAIL, N RCPTs, DATA, a message of the
// given size in 64 KiB reads, the terminator) per iteration, with the driver answering checks
// and deliveries at once and only counting bytes: no I/O, no storage. Reports message bytes
// per second (reading DATA into the wire form storage keeps included) and transactions per
// second.
//
//   bazel run --config=opt //server/lmtp:lmtp_session_benchmark --
//     --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "base/check.h"
#include "benchmark/benchmark.h"
#include "server/lmtp/session.h"

namespace posthaste::lmtp {
namespace {

struct Driver {
  std::unique_ptr<LmtpSession> session;
  uint64_t delivered_bytes = 0;
  uint64_t reply_bytes = 0;

  void Pump() {
    bool taken = false;
    while (true) {
      const LmtpAction action = session->NextAction();
      switch (action.kind) {
        case LmtpActionKind::kNone:
          if (!taken) return;
          taken = false;
          session->OnOutputFlushed();
          continue;
        case LmtpActionKind::kWrite:
          reply_bytes += action.bytes.size();
          taken = true;
          break;
        case LmtpActionKind::kCheckRecipient:
          session->OnRecipientChecked({LmtpRecipientVerdict::Code::kAccepted, "", ""});
          break;
        case LmtpActionKind::kDeliver: {
          delivered_bytes += action.delivery.message.size() * action.delivery.recipients.size();
          const std::vector<LmtpDeliveryResult> results(
              action.delivery.recipients.size(),
              LmtpDeliveryResult{LmtpDeliveryResult::Code::kDelivered, ""});
          session->OnDeliveryDone(results);
          break;
        }
        case LmtpActionKind::kClose:
          PH_CHECK(false);
      }
    }
  }
};

// A typical text message body: 76-column lines, one in 40 starting with a (stuffed) dot.
std::string WireBody(size_t bytes) {
  std::string body;
  body.reserve(bytes + 128);
  body += "From: a@b.example\r\nTo: c@d.example\r\nSubject: bench\r\n\r\n";
  int line = 0;
  while (body.size() < bytes) {
    if (++line % 40 == 0) body += "..";
    body.append(74, 'x');
    body += "\r\n";
  }
  body += ".\r\n";
  return body;
}

void BM_Transaction(benchmark::State& state) {
  const size_t message_bytes = static_cast<size_t>(state.range(0));
  const int recipients = static_cast<int>(state.range(1));
  std::string envelope = "MAIL FROM:<a@b.example> SIZE=" + std::to_string(message_bytes) + "\r\n";
  for (int i = 0; i < recipients; ++i) {
    envelope += "RCPT TO:<user" + std::to_string(i) + "@d.example>\r\n";
  }
  envelope += "DATA\r\n";
  const std::string body = WireBody(message_bytes);
  Driver driver;
  driver.session = std::make_unique<LmtpSession>(LmtpSessionOptions{});
  driver.Pump();
  driver.session->Feed("LHLO bench.example\r\n");
  driver.Pump();
  constexpr size_t kRead = 64 * 1024;
  for (auto _ : state) {
    driver.session->Feed(envelope);
    driver.Pump();
    for (size_t pos = 0; pos < body.size(); pos += kRead) {
      driver.session->Feed(std::string_view(body).substr(pos, kRead));
      driver.Pump();
    }
  }
  PH_CHECK(driver.session->state() == LmtpState::kReady);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(body.size()));
  state.counters["transactions/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["sizeof_session"] = sizeof(LmtpSession);
}
BENCHMARK(BM_Transaction)
    ->Args({4 * 1024, 1})
    ->Args({64 * 1024, 1})
    ->Args({1024 * 1024, 1})
    ->Args({64 * 1024, 32});

}  // namespace
}  // namespace posthaste::lmtp
