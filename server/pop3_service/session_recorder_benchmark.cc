// What per-session metrics cost on the reactor thread, measured without the network: one
// POP3 session's worth of SessionRecorder calls (login, STAT, UIDL, 10 x RETR, QUIT: 14
// commands, each timed) with counting on and off (--metrics_sessions), the summary log line
// written to /dev/null in both; and one scrape's worth of work for the exporter (copy and sum
// two shards' metrics and counter blocks, build the families, serialise).
#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "metrics/exporter.h"
#include "server/counters.h"
#include "server/lmtp_service/lmtp_counters.h"
#include "server/pop3_service/pop3_counters.h"
#include "server/pop3_service/session_recorder.h"

namespace posthaste::server {
namespace {

void BM_Session(benchmark::State& state) {
  const bool counting = state.range(0) != 0;
  const int devnull = open("/dev/null", O_WRONLY);
  SetLogFdForTest(devnull);
  metrics::TenantLabelTable labels;
  labels.Publish(metrics::TenantLabels({"bench.test", "a.test", "b.test"}));
  metrics::ShardMetrics block;
  metrics::ShardTenantSeries tenants(&labels, block, 64, 1024);
  pop3::Pop3Credentials credentials;
  credentials.user = "user1@bench.test";
  uint64_t id = 0;
  for (auto _ : state) {
    SessionRecorder recorder(block, tenants, counting, 0, ++id, "127.0.0.1");
    pop3::Pop3CommandObserver* observer = recorder.observer();
    auto command = [&](pop3::Pop3Command c) {
      if (observer == nullptr) return;
      observer->OnCommandBegin(c);
      observer->OnCommandEnd(c, true);
    };
    command(pop3::Pop3Command::kUser);
    recorder.AuthStarted(credentials);
    recorder.AuthFinished(metrics::AuthResult::kOk);
    recorder.LoggedIn("user1@bench.test");
    recorder.MaildropOpened(10, 10 * 20480);
    command(pop3::Pop3Command::kPass);
    command(pop3::Pop3Command::kStat);
    command(pop3::Pop3Command::kUidl);
    for (int i = 0; i < 10; ++i) {
      recorder.Streamed(false);
      recorder.Retrieving(static_cast<uint32_t>(i), 20480);
      command(pop3::Pop3Command::kRetr);
      recorder.MessageBytesSent(20480);
      recorder.ReplyBytesSent(20);
    }
    recorder.CommitStarted(0);
    recorder.CommitFinished(true);
    command(pop3::Pop3Command::kQuit);
    recorder.Finish(14);
  }
  SetLogFdForTest(-1);
  close(devnull);
  benchmark::DoNotOptimize(block);
}
BENCHMARK(BM_Session)->Arg(0)->Arg(1)->ArgName("counting");

void BM_Scrape(benchmark::State& state) {
  std::vector<std::string> names;
  for (int64_t i = 0; i < state.range(0); ++i) names.push_back("t" + std::to_string(i) + ".test");
  metrics::ShardMetrics shard_metrics;
  for (const std::string& name : names) shard_metrics.AppendTenantSeries(name);
  const ShardStats pop3;
  const LmtpStats lmtp;
  const reactor::RingStats ring;
  const std::vector<metrics::CounterBlockRef> blocks = {
      metrics::CounterBlockRef::Of(Pop3ShardCounterTable(), pop3),
      metrics::CounterBlockRef::Of(LmtpShardCounterTable(), lmtp),
      metrics::CounterBlockRef::Of(RingCounterTable(), ring)};
  metrics::StoreMetrics store;
  store.valid = true;
  size_t bytes = 0;
  for (auto _ : state) {
    std::vector<metrics::ShardCopy> copies(2);  // what the shards hand over
    for (metrics::ShardCopy& copy : copies) {
      copy.metrics = shard_metrics;
      for (const metrics::CounterBlockRef& block : blocks) {
        copy.blocks.push_back(metrics::CounterBlockCopy::Of(block));
      }
    }
    auto families = metrics::Exporter::Families(copies, 2, {}, &store, true);
    bytes = metrics::SerializeText(families).size();
  }
  state.counters["text_bytes"] = static_cast<double>(bytes);
}
BENCHMARK(BM_Scrape)->Arg(0)->Arg(20)->ArgName("tenants");

}  // namespace
}  // namespace posthaste::server
