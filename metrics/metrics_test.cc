#include <atomic>
#include <cstddef>
#include <string>
#include <thread>
#include <vector>

#include "base/counter_fields.h"
#include "gtest/gtest.h"
#include "metrics/counter_table.h"
#include "metrics/exporter.h"
#include "metrics/shard_metrics.h"
#include "metrics/tenant_series.h"

namespace posthaste::metrics {
namespace {

using prometheus::MetricFamily;

// A small block shaped like the server's: own counters, a nested block, a per-shard gauge, a
// nanosecond counter and a second row for one member.
#define PH_TEST_INNER_COUNTERS(X) \
  X(splice_bytes, "spliced")      \
  X(copy_bytes, "copied")
struct TestInner {
  PH_TEST_INNER_COUNTERS(PH_COUNTER_MEMBER)
};

#define PH_TEST_COUNTERS(X)                                                                       \
  X(accepted, kCounter, "posthaste_test_connections_accepted_total", "", "Connections accepted.") \
  X(open, kGaugePerShard, "posthaste_test_connections_open", "", "Open, by shard.")               \
  X(limit_per_ip, kCounter, "posthaste_test_limit_rejections_total", "limit=per_ip",              \
    "Refused by a limit.")                                                                        \
  X(limit_per_shard, kCounter, "posthaste_test_limit_rejections_total", "limit=per_shard", "")    \
  X(busy_ns, kNanosAsSecondsPerShard, "posthaste_test_busy_seconds_total", "", "Busy time.")
#define PH_TEST_MORE_ROWS(X)                                                                       \
  X(inner.splice_bytes, kCounter, "posthaste_test_body_bytes_total", "path=splice", "Body bytes.") \
  X(inner.copy_bytes, kCounter, "posthaste_test_body_bytes_total", "path=copy", "")                \
  X(inner.splice_bytes, kCounter, "posthaste_test_moved_bytes_total", "", "Every path summed.")    \
  X(inner.copy_bytes, kCounter, "posthaste_test_moved_bytes_total", "", "")                        \
  X(limit_per_ip, kCounter, "posthaste_test_refused_total", "reason=per_ip,proto=test",            \
    "Second name of a limit.")
struct TestBlock {
  PH_TEST_COUNTERS(PH_COUNTER_MEMBER)
  TestInner inner;
};
#define PH_TEST_ROW(...) PH_COUNTER_ROW(TestBlock, __VA_ARGS__)
constexpr CounterRow kTestRows[] = {PH_TEST_COUNTERS(PH_TEST_ROW) PH_TEST_MORE_ROWS(PH_TEST_ROW)};
const CounterTable kTestTable = PH_COUNTER_TABLE(TestBlock, kTestRows);

struct TestProcess {
  std::atomic<uint64_t> reloads{0};
};
#define PH_TEST_PROCESS_ROW(...) PH_COUNTER_ROW(TestProcess, __VA_ARGS__)
constexpr CounterRow kProcessRows[] = {PH_TEST_PROCESS_ROW(
    reloads, kCounter, "posthaste_test_reloads_total", "", "Reloads (process-wide).")};
const CounterTable kProcessTable = PH_COUNTER_TABLE(TestProcess, kProcessRows);

std::string Text(const std::vector<ShardCopy>& shards,
                 const std::vector<CounterBlockCopy>& process = {}) {
  return SerializeText(
      Exporter::Families(shards, static_cast<uint32_t>(shards.size()), process, nullptr, true));
}

bool Has(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

TEST(CounterTable, TheTestTableFollowsTheRules) {
  EXPECT_TRUE(ValidateCounterTable(kTestTable).ok()) << ValidateCounterTable(kTestTable);
  EXPECT_TRUE(ValidateCounterTable(kProcessTable).ok());
  EXPECT_EQ(kTestRows[5].member, "inner.splice_bytes");
  EXPECT_EQ(kTestRows[5].offset, offsetof(TestBlock, inner) + offsetof(TestInner, splice_bytes));
}

TEST(CounterTable, ValidateRejectsRowsThatBreakTheNamingRules) {
  auto bad = [](CounterRow row) {
    const CounterRow rows[] = {row};
    return ValidateCounterTable(CounterTable{"Bad", sizeof(TestBlock), rows});
  };
  const size_t at = offsetof(TestBlock, accepted);
  EXPECT_TRUE(bad({"accepted", CounterKind::kCounter, "posthaste_x_total", "", "h", at}).ok());
  EXPECT_FALSE(bad({"accepted", CounterKind::kCounter, "x_total", "", "h", at}).ok());
  EXPECT_FALSE(bad({"accepted", CounterKind::kCounter, "posthaste_x", "", "h", at}).ok());
  EXPECT_FALSE(
      bad({"accepted", CounterKind::kGaugePerShard, "posthaste_x_total", "", "h", at}).ok());
  EXPECT_FALSE(
      bad({"accepted", CounterKind::kNanosAsSecondsPerShard, "posthaste_x_total", "", "h", at})
          .ok());
  EXPECT_FALSE(bad({"accepted", CounterKind::kCounter, "posthaste_x_total", "k", "h", at}).ok());
  EXPECT_FALSE(
      bad({"accepted", CounterKind::kCounter, "posthaste_x_total", "shard=1", "h", at}).ok());
  EXPECT_FALSE(bad({"accepted", CounterKind::kCounter, "posthaste_x_total", "", "", at}).ok());
  EXPECT_FALSE(bad({"accepted", CounterKind::kCounter, "posthaste_x_total", "", "h", 3}).ok());
  EXPECT_FALSE(
      bad({"accepted", CounterKind::kCounter, "posthaste_x_total", "", "h", sizeof(TestBlock)})
          .ok());
}

TEST(CounterTable, EveryRowAppearsOnTheScrapeWithItsLabels) {
  // Shard 0 has the block at zero, shard 1 has every member set: each row yields a sample.
  std::vector<ShardCopy> shards(2);
  TestBlock zero, set;
  set.accepted = set.open = set.limit_per_ip = set.limit_per_shard = set.busy_ns = 1;
  set.inner.splice_bytes = set.inner.copy_bytes = 1;
  shards[0].blocks.push_back(CounterBlockCopy::Of(CounterBlockRef::Of(kTestTable, zero)));
  shards[1].blocks.push_back(CounterBlockCopy::Of(CounterBlockRef::Of(kTestTable, set)));
  const std::vector<MetricFamily> families = Exporter::Families(shards, 2, {}, nullptr, true);
  for (const CounterRow& row : kTestTable.rows) {
    const MetricFamily* family = nullptr;
    for (const auto& f : families) {
      if (f.name == row.name) family = &f;
    }
    ASSERT_NE(family, nullptr) << row.member;
    EXPECT_FALSE(family->help.empty()) << row.name;
    bool found = false;
    for (const auto& m : family->metric) {
      size_t matched = 0;
      for (const auto& [key, value] : ParseCounterLabels(row.labels)) {
        for (const auto& l : m.label) matched += l.name == key && l.value == value;
      }
      if (matched == ParseCounterLabels(row.labels).size()) found = true;
    }
    EXPECT_TRUE(found) << row.member << " " << row.name << "{" << row.labels << "}";
  }
}

TEST(LatencyHistogram, BucketsByUpperBound) {
  LatencyHistogram h;
  h.Observe(0);               // first bucket
  h.Observe(50'000);          // exactly 50 us: first bucket (le is inclusive)
  h.Observe(50'001);          // second
  h.Observe(3'000'000);       // 3 ms: the 5 ms bucket
  h.Observe(60'000'000'000);  // 60 s: +Inf
  EXPECT_EQ(h.buckets[0], 2u);
  EXPECT_EQ(h.buckets[1], 1u);
  EXPECT_EQ(h.buckets[6], 1u);
  EXPECT_EQ(h.buckets.back(), 1u);
  EXPECT_EQ(h.count(), 5u);
  EXPECT_EQ(h.sum_ns, 0u + 50'000 + 50'001 + 3'000'000 + 60'000'000'000);
}

TEST(TenantLabels, LargestGetTheirOwnLabelTheRestShareOther) {
  absl::flat_hash_map<std::string, uint64_t> accounts = {
      {"big.test", 100}, {"mid.test", 50}, {"small.test", 2}, {"tiny.test", 1}};
  TenantLabels labels = TenantLabels::Largest(accounts, 2);
  ASSERT_EQ(labels.size(), 4u);  // other, none, big, mid
  EXPECT_EQ(labels.label(labels.SlotOf("big.test")), "big.test");
  EXPECT_EQ(labels.label(labels.SlotOf("MID.test")), "mid.test");
  EXPECT_EQ(labels.SlotOf("small.test"), TenantLabels::kOther);
  EXPECT_EQ(labels.SlotOfAddress("alice@Big.Test"), labels.SlotOf("big.test"));
  EXPECT_EQ(labels.SlotOfAddress("no-domain"), TenantLabels::kOther);
  EXPECT_EQ(labels.label(TenantLabels::kNone), "none");
  // A cap of zero: everything is "other".
  EXPECT_EQ(TenantLabels::Largest(accounts, 0).size(), 2u);
}

TEST(TenantLabels, RankedBySessionsThenAccounts) {
  const absl::flat_hash_map<std::string, uint64_t> accounts = {
      {"big.test", 100}, {"mid.test", 50}, {"small.test", 2}};
  // No sessions yet: the accounts decide, as at start-up.
  TenantLabels start = TenantLabels::Ranked({}, accounts, 2);
  EXPECT_EQ(start.labels(), (std::vector<std::string>{"other", "none", "big.test", "mid.test"}));
  // A tenant created while serving (no accounts known) with sessions passes those without.
  const absl::flat_hash_map<std::string, uint64_t> sessions = {{"new.test", 3}, {"mid.test", 1}};
  TenantLabels later = TenantLabels::Ranked(sessions, accounts, 2);
  EXPECT_EQ(later.labels(), (std::vector<std::string>{"other", "none", "new.test", "mid.test"}));
  EXPECT_EQ(later.SlotOf("big.test"), TenantLabels::kOther);
  // Ties in sessions: accounts, then the name.
  TenantLabels tied =
      TenantLabels::Ranked({{"b.test", 1}, {"a.test", 1}, {"small.test", 1}}, accounts, 2);
  EXPECT_EQ(tied.labels(), (std::vector<std::string>{"other", "none", "small.test", "a.test"}));
  EXPECT_EQ(TenantLabels::Ranked(sessions, accounts, 10).size(), 2u + 4u);
  EXPECT_EQ(TenantLabels::Ranked(sessions, accounts, 0).size(), 2u);
}

TEST(TenantLabelRanking, SessionsAddUpAcrossShardsAndRecomputes) {
  TenantLabelRanking ranking({{"big.test", 10}, {"mid.test", 5}}, 2);
  EXPECT_EQ(ranking.Rank().labels(),
            (std::vector<std::string>{"other", "none", "big.test", "mid.test"}));
  ranking.AddLogins({{"new.test", 1}});                   // shard 0
  ranking.AddLogins({{"new.test", 1}, {"big.test", 1}});  // shard 1
  EXPECT_EQ(ranking.Rank().labels(),
            (std::vector<std::string>{"other", "none", "new.test", "big.test"}));
  ranking.AddLogins({{"mid.test", 3}});  // a later period: totals, not the last period
  EXPECT_EQ(ranking.Rank().labels(),
            (std::vector<std::string>{"other", "none", "mid.test", "new.test"}));
}

TEST(TenantLabelTable, ShardsReReadOnlyWhenTheGenerationMoves) {
  TenantLabelTable table;
  table.Publish(TenantLabels({"a.test"}));
  ShardMetrics metrics;
  ShardTenantSeries series(&table, metrics, 16, 100);
  const uint16_t a = series.SeriesOfAddress("x@A.test");
  EXPECT_EQ(metrics.tenant_labels[a], "a.test");
  EXPECT_EQ(series.SeriesOfAddress("x@b.test"), TenantLabels::kOther);
  const auto before = table.Current();
  const uint64_t generation = table.generation();
  EXPECT_EQ(series.SeriesOfAddress("y@a.test"), a);
  EXPECT_EQ(table.Current(), before);  // nothing published: the same snapshot
  table.Publish(TenantLabels({"b.test"}));
  EXPECT_GT(table.generation(), generation);
  // b.test gets a new series; a.test keeps its series (and its counts) but new sessions of it
  // count as "other".
  const uint16_t b = series.SeriesOfAddress("x@b.test");
  EXPECT_NE(b, a);
  EXPECT_EQ(metrics.tenant_labels[b], "b.test");
  EXPECT_EQ(series.SeriesOfAddress("x@a.test"), TenantLabels::kOther);
  // a.test labelled again: its old series, not a second one.
  table.Publish(TenantLabels({"a.test", "b.test"}));
  EXPECT_EQ(series.SeriesOfAddress("x@a.test"), a);
  EXPECT_EQ(metrics.tenant_labels.size(), 4u);
}

TEST(TenantLabelTable, RelabellingKeepsEverySeriesMonotonic) {
  TenantLabelTable table;
  ShardMetrics metrics;
  ShardTenantSeries series(&table, metrics, 16, 100);
  const auto session = [&](std::string_view user) {
    metrics.CountSession(series.SeriesOfAddress(user), SessionOutcome::kLogout);
  };
  const auto scrape = [&] {
    std::vector<ShardCopy> shards(1);
    series.Refresh();
    shards[0].metrics = metrics;
    absl::flat_hash_map<std::string, double> by_tenant;
    for (const auto& f : Exporter::Families(shards, 1, {}, nullptr, true)) {
      if (f.name != "posthaste_pop3_sessions_total") continue;
      for (const auto& m : f.metric) {
        if (m.label[1].value == "logout") by_tenant[m.label[0].value] += m.counter.value;
      }
    }
    return by_tenant;
  };
  session("u@new.test");
  session("u@new.test");
  auto first = scrape();
  EXPECT_EQ(first["other"], 2);
  EXPECT_FALSE(first.contains("new.test"));
  table.Publish(TenantLabels({"new.test"}));
  auto labelled = scrape();  // the label shows at once, at 0, before any new session
  EXPECT_EQ(labelled["other"], 2);
  EXPECT_EQ(labelled["new.test"], 0);
  session("u@new.test");
  auto second = scrape();
  EXPECT_EQ(second["other"], 2);  // never goes down
  EXPECT_EQ(second["new.test"], 1);
  table.Publish(TenantLabels());  // the label goes away again
  session("u@new.test");
  auto third = scrape();
  EXPECT_EQ(third["other"], 3);
  EXPECT_EQ(third["new.test"], 1);  // kept, not reset
}

TEST(TenantLabelTable, SeriesAndLoginDomainsAreBounded) {
  TenantLabelTable table;
  ShardMetrics metrics;
  ShardTenantSeries series(&table, metrics, 3, 2);  // other, none and one more
  table.Publish(TenantLabels({"a.test", "b.test"}));
  EXPECT_EQ(metrics.tenant_labels.size(), 2u);  // not refreshed yet
  const uint16_t a = series.SeriesOfAddress("u@a.test");
  EXPECT_EQ(metrics.tenant_labels.size(), 3u);
  EXPECT_EQ(metrics.tenant_labels[a], "a.test");
  EXPECT_EQ(series.SeriesOfAddress("u@b.test"), TenantLabels::kOther);
  series.CountLogin("u@A.test");
  series.CountLogin("v@a.test");
  series.CountLogin("u@b.test");
  series.CountLogin("u@c.test");  // a third domain: not counted
  series.CountLogin("no-domain");
  auto logins = series.TakeLoginCounts();
  EXPECT_EQ(logins.size(), 2u);
  EXPECT_EQ(logins["a.test"], 2u);
  EXPECT_EQ(logins["b.test"], 1u);
  EXPECT_TRUE(series.TakeLoginCounts().empty());
}

TEST(ShardMetrics, AddMatchesTenantSeriesByLabel) {
  ShardMetrics one, two;
  const uint16_t a1 = one.AppendTenantSeries("a.test");
  const uint16_t b2 = two.AppendTenantSeries("b.test");
  const uint16_t a2 = two.AppendTenantSeries("a.test");
  one.CountSession(a1, SessionOutcome::kLogout);
  two.CountSession(a2, SessionOutcome::kLogout);
  two.CountSession(b2, SessionOutcome::kQuit);
  two.CountRedownloadSession(a2);
  ShardMetrics sum;
  sum.Add(one);
  sum.Add(two);
  ASSERT_EQ(sum.tenant_labels, (std::vector<std::string>{"other", "none", "a.test", "b.test"}));
  EXPECT_EQ(sum.tenants[2].sessions[static_cast<size_t>(SessionOutcome::kLogout)], 2u);
  EXPECT_EQ(sum.tenants[2].redownload_sessions, 1u);
  EXPECT_EQ(sum.tenants[3].sessions[static_cast<size_t>(SessionOutcome::kQuit)], 1u);
}

TEST(ShardMetrics, AddSumsEveryPart) {
  ShardMetrics one, two;
  one.AppendTenantSeries("a.test");
  two.AppendTenantSeries("a.test");
  one.CountRefused(RefuseReason::kBusy);
  two.CountRefused(RefuseReason::kBusy);
  one.CountSession(2, SessionOutcome::kLogout);
  two.CountSession(2, SessionOutcome::kLogout);
  one.CountAuth(2, AuthMechanismLabel::kUser, AuthResult::kFailed);
  two.CountCommand(Command::kRetr, CommandResult::kOk, 1'000);
  ShardMetrics sum;
  sum.Add(one);
  sum.Add(two);
  EXPECT_EQ(sum.connections_refused[static_cast<size_t>(RefuseReason::kBusy)], 2u);
  EXPECT_EQ(sum.tenants[2].sessions[static_cast<size_t>(SessionOutcome::kLogout)], 2u);
  EXPECT_EQ(sum.tenants[2].authentications[0][static_cast<size_t>(AuthResult::kFailed)], 1u);
  EXPECT_EQ(sum.commands[static_cast<size_t>(Command::kRetr)][0], 1u);
  EXPECT_EQ(sum.command_latency[static_cast<size_t>(Command::kRetr)].count(), 1u);
}

const prometheus::MetricFamily* FindFamily(const std::vector<prometheus::MetricFamily>& families,
                                           const std::string& name) {
  for (const auto& f : families) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

TEST(Exporter, SumsBlocksKeepsShardLabelsAndAddsRowsNamingOneSeries) {
  std::vector<ShardCopy> shards(2);
  TestBlock one, two;
  one.accepted = 3;
  two.accepted = 4;
  one.open = 5;
  two.open = 6;
  one.busy_ns = 1'500'000'000;
  one.limit_per_ip = 2;
  two.limit_per_shard = 1;
  one.inner.splice_bytes = 100;
  two.inner.copy_bytes = 20;
  shards[0].blocks.push_back(CounterBlockCopy::Of(CounterBlockRef::Of(kTestTable, one)));
  shards[1].blocks.push_back(CounterBlockCopy::Of(CounterBlockRef::Of(kTestTable, two)));
  TestProcess process;
  process.reloads = 9;
  const std::string text = Text(shards, {CounterBlockCopy::OfAtomics(kProcessTable, process)});
  EXPECT_TRUE(Has(text, "posthaste_test_connections_accepted_total 7")) << text;
  EXPECT_TRUE(Has(text, "posthaste_test_connections_open{shard=\"0\"} 5")) << text;
  EXPECT_TRUE(Has(text, "posthaste_test_connections_open{shard=\"1\"} 6")) << text;
  EXPECT_TRUE(Has(text, "posthaste_test_busy_seconds_total{shard=\"0\"} 1.5")) << text;
  EXPECT_TRUE(Has(text, "posthaste_test_limit_rejections_total{limit=\"per_ip\"} 2")) << text;
  EXPECT_TRUE(Has(text, "posthaste_test_limit_rejections_total{limit=\"per_shard\"} 1"));
  EXPECT_TRUE(Has(text, "posthaste_test_body_bytes_total{path=\"splice\"} 100")) << text;
  EXPECT_TRUE(Has(text, "posthaste_test_body_bytes_total{path=\"copy\"} 20")) << text;
  EXPECT_TRUE(Has(text, "posthaste_test_moved_bytes_total 120")) << text;
  EXPECT_TRUE(Has(text, "posthaste_test_refused_total{reason=\"per_ip\",proto=\"test\"} 2"));
  EXPECT_TRUE(Has(text, "posthaste_test_reloads_total 9")) << text;
  // One HELP/TYPE per family, its samples together.
  size_t pos = 0, helps = 0;
  while ((pos = text.find("# HELP posthaste_test_body_bytes_total ", pos)) != std::string::npos) {
    ++helps;
    ++pos;
  }
  EXPECT_EQ(helps, 1u);
}

TEST(Exporter, ARefusalCountedInABlockMovesItsSeries) {
  TestBlock block;
  const auto scrape = [&] {
    std::vector<ShardCopy> shards(1);
    shards[0].blocks.push_back(CounterBlockCopy::Of(CounterBlockRef::Of(kTestTable, block)));
    return Text(shards);
  };
  EXPECT_TRUE(Has(scrape(), "posthaste_test_limit_rejections_total{limit=\"per_ip\"} 0"));
  ++block.limit_per_ip;  // what a shard does when the limit refuses a connection
  const std::string text = scrape();
  EXPECT_TRUE(Has(text, "posthaste_test_limit_rejections_total{limit=\"per_ip\"} 1")) << text;
  EXPECT_TRUE(Has(text, "posthaste_test_refused_total{reason=\"per_ip\",proto=\"test\"} 1"));
}

TEST(Exporter, SumsShardsAtScrape) {
  std::vector<ShardCopy> copies(2);
  copies[0].metrics.AppendTenantSeries("a.test");
  const uint16_t a = copies[1].metrics.AppendTenantSeries("a.test");
  copies[0].metrics.commands[static_cast<size_t>(Command::kStat)][0] = 5;
  copies[1].metrics.commands[static_cast<size_t>(Command::kStat)][0] = 6;
  copies[1].metrics.CountSession(a, SessionOutcome::kTimeout);
  copies[0].metrics.CountCommand(Command::kPass, CommandResult::kOk, 2'000'000);
  copies[1].metrics.CountRefused(RefuseReason::kBusy);
  int calls = 0;
  Exporter exporter(ExporterSources{.shards =
                                        [&](std::vector<ShardCopy>* out) {
                                          ++calls;
                                          *out = copies;
                                          return 2u;
                                        },
                                    .store =
                                        [] {
                                          StoreMetrics s;
                                          s.valid = true;
                                          s.messages = 42;
                                          s.block_cache_hits = 3;
                                          s.block_cache_misses = 1;
                                          s.index_memtable_bytes = 5 << 20;
                                          s.index_block_cache_capacity = 64 << 20;
                                          return s;
                                        },
                                    .ready = [] { return true; }});
  const auto families = exporter.Collect();
  EXPECT_EQ(calls, 1);
  const std::string text = SerializeText(families);
  EXPECT_NE(text.find("posthaste_pop3_commands_total{command=\"STAT\",result=\"ok\"} 11\n"),
            std::string::npos)
      << text;
  EXPECT_TRUE(Has(text, "posthaste_pop3_connections_refused_total{reason=\"busy\"} 1"));
  EXPECT_TRUE(Has(text, "posthaste_bugs_total 0")) << text;
  EXPECT_NE(text.find("posthaste_pop3_sessions_total{tenant=\"a.test\",outcome=\"timeout\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("posthaste_store_messages 42\n"), std::string::npos);
  EXPECT_NE(text.find("posthaste_store_block_cache_hit_ratio 0.75\n"), std::string::npos);
  EXPECT_TRUE(Has(text, "posthaste_store_index_memory_bytes{part=\"memtables\"} 5242880")) << text;
  EXPECT_TRUE(Has(text, "posthaste_store_index_memory_bytes{part=\"block_cache\"} 0")) << text;
  EXPECT_TRUE(Has(text, "posthaste_store_index_block_cache_capacity_bytes 67108864")) << text;
  EXPECT_NE(
      text.find("posthaste_pop3_command_duration_seconds_bucket{command=\"PASS\",le=\"0.0025\"} 1"),
      std::string::npos);
  EXPECT_NE(text.find("posthaste_pop3_command_duration_seconds_count{command=\"PASS\"} 1"),
            std::string::npos);
  // Every family follows the naming rule: posthaste_ prefix (or process_, the client
  // libraries' standard names for the process's own figures), counters end in _total.
  for (const auto& f : families) {
    EXPECT_TRUE(f.name.starts_with("posthaste_") || f.name.starts_with("process_")) << f.name;
    if (f.type == prometheus::MetricType::Counter) {
      EXPECT_EQ(f.name.substr(f.name.size() - 6), "_total") << f.name;
    }
  }
  // Tenant labels are bounded: other, none and a.test only.
  const auto* sessions = FindFamily(families, "posthaste_pop3_sessions_total");
  ASSERT_NE(sessions, nullptr);
  EXPECT_EQ(sessions->metric.size(), 3u * static_cast<size_t>(SessionOutcome::kCount));
}

}  // namespace
}  // namespace posthaste::metrics
