// Command processing speed of Pop3Session against a 10,000-message snapshot: a pipelined
// STAT/LIST n/UIDL n/RETR n mix (commands per second), and whole-mailbox LIST and UIDL
// listings with the default 64 KiB output limit (produced in pieces) and with a limit large
// enough to produce them in one go. The driver here only sums reply bytes: no I/O.
//
//   bazel run --config=opt //server/pop3:pop3_session_benchmark --
//     --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <cstdio>
#include <memory>
#include <string>

#include "base/check.h"
#include "benchmark/benchmark.h"
#include "server/pop3/mailbox_snapshot.h"
#include "server/pop3/session.h"

namespace posthaste::pop3 {
namespace {

constexpr uint32_t kMessages = 10'000;

std::shared_ptr<const MailboxSnapshot> TenThousandMessages() {
  MailboxSnapshot::Builder builder;
  builder.Reserve(kMessages, kMessages * 24);
  for (uint32_t i = 0; i < kMessages; ++i) {
    // Realistic UIDLs (Dovecot-style hex ids) and sizes from 1 KiB to ~200 KiB.
    char uidl[32];
    std::snprintf(uidl, sizeof(uidl), "%08x%08x", 0x5f3e0000u + i, i * 2654435761u);
    PH_CHECK(builder.Add(1024 + (i * 7919u) % 200'000, uidl, i).ok());
  }
  return std::move(builder).Build();
}

// Carries out actions; answers results at once; counts the reply bytes.
struct Driver {
  std::unique_ptr<Pop3Session> session;
  std::shared_ptr<const MailboxSnapshot> snapshot;
  uint64_t reply_bytes = 0;
  uint64_t streams = 0;

  void Pump() {
    bool taken = false;
    while (true) {
      const Pop3Action action = session->NextAction();
      switch (action.kind) {
        case Pop3ActionKind::kNone:
          if (!taken) return;
          taken = false;
          session->OnOutputFlushed();
          continue;
        case Pop3ActionKind::kWrite:
          reply_bytes += action.bytes.size();
          break;
        case Pop3ActionKind::kStreamMessage:
          ++streams;
          break;
        case Pop3ActionKind::kAuthenticate:
          session->OnAuthResult({Pop3AuthResult::Code::kOk, "bench@example.com"});
          break;
        case Pop3ActionKind::kOpenMaildrop:
          session->OnMaildropOpened({Pop3MaildropResult::Code::kOk, snapshot});
          break;
        default:
          break;
      }
      taken = true;
    }
  }
};

Driver LoggedIn(size_t output_limit) {
  Pop3SessionOptions options;
  options.policy.plaintext_requires_tls = false;
  options.output_queued_bytes_max = output_limit;
  Driver driver;
  driver.snapshot = TenThousandMessages();
  driver.session = std::make_unique<Pop3Session>(options);
  driver.session->Feed("USER bench@example.com\r\nPASS secret\r\n");
  driver.Pump();
  PH_CHECK(driver.session->state() == Pop3State::kTransaction);
  return driver;
}

// 100 pipelined commands per Feed: 25 x (STAT, LIST n, UIDL n, RETR n) over spread-out n.
void BM_PipelinedMix(benchmark::State& state) {
  Driver driver = LoggedIn(64 * 1024);
  std::string batch;
  for (int i = 0; i < 25; ++i) {
    const std::string n = std::to_string(1 + (i * 397) % kMessages);
    batch += "STAT\r\nLIST " + n + "\r\nUIDL " + n + "\r\nRETR " + n + "\r\n";
  }
  for (auto _ : state) {
    driver.session->Feed(batch);
    driver.Pump();
  }
  PH_CHECK(driver.session->counters().bad_commands == 0);
  state.counters["sizeof_session"] = sizeof(Pop3Session);
  state.SetItemsProcessed(state.iterations() * 100);
  state.counters["commands_per_second"] = benchmark::Counter(
      static_cast<double>(state.iterations() * 100), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PipelinedMix);

// LIST or UIDL of the whole 10k mailbox; arg 0: LIST/UIDL, arg 1: output limit in bytes.
void BM_WholeListing(benchmark::State& state) {
  Driver driver = LoggedIn(static_cast<size_t>(state.range(1)));
  const std::string command = state.range(0) == 0 ? "LIST\r\n" : "UIDL\r\n";
  uint64_t bytes_before = driver.reply_bytes;
  for (auto _ : state) {
    driver.session->Feed(command);
    driver.Pump();
  }
  state.SetBytesProcessed(static_cast<int64_t>(driver.reply_bytes - bytes_before));
  state.counters["listings_per_second"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["reply_bytes"] = static_cast<double>(driver.reply_bytes - bytes_before) /
                                  static_cast<double>(state.iterations());
}
BENCHMARK(BM_WholeListing)
    ->ArgNames({"uidl", "output_limit"})
    ->Args({0, 64 * 1024})
    ->Args({1, 64 * 1024})
    ->Args({0, 4 * 1024 * 1024})
    ->Args({1, 4 * 1024 * 1024});

}  // namespace
}  // namespace posthaste::pop3
