#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "metrics/exporter.h"
#include "metrics/shard_metrics.h"

namespace posthaste::metrics {
namespace {

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

TEST(ShardMetrics, AddSumsEveryPart) {
  TenantLabels tenants({"a.test"});
  ShardMetrics one(tenants.size()), two(tenants.size());
  one.connections_accepted = 3;
  two.connections_accepted = 4;
  one.CountSession(2, SessionOutcome::kLogout);
  two.CountSession(2, SessionOutcome::kLogout);
  one.CountAuth(2, AuthMechanismLabel::kUser, AuthResult::kFailed);
  two.CountCommand(Command::kRetr, CommandResult::kOk, 1'000);
  two.reactor.busy_ns = 7;
  ShardMetrics sum(tenants.size());
  sum.Add(one);
  sum.Add(two);
  EXPECT_EQ(sum.connections_accepted, 7u);
  EXPECT_EQ(sum.sessions[2][static_cast<size_t>(SessionOutcome::kLogout)], 2u);
  EXPECT_EQ(sum.authentications[2][0][static_cast<size_t>(AuthResult::kFailed)], 1u);
  EXPECT_EQ(sum.commands[static_cast<size_t>(Command::kRetr)][0], 1u);
  EXPECT_EQ(sum.command_latency[static_cast<size_t>(Command::kRetr)].count(), 1u);
  EXPECT_EQ(sum.reactor.busy_ns, 7u);
}

const prometheus::MetricFamily* FindFamily(const std::vector<prometheus::MetricFamily>& families,
                                           const std::string& name) {
  for (const auto& f : families) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

TEST(Exporter, SumsShardsAtScrapeAndKeepsShardLabelsForTheReactor) {
  auto tenants = std::make_shared<TenantLabels>(std::vector<std::string>{"a.test"});
  std::vector<ShardMetrics> copies(2, ShardMetrics(tenants->size()));
  copies[0].commands[static_cast<size_t>(Command::kStat)][0] = 5;
  copies[1].commands[static_cast<size_t>(Command::kStat)][0] = 6;
  copies[0].reactor.loop_iterations = 10;
  copies[1].reactor.loop_iterations = 20;
  copies[1].CountSession(tenants->SlotOf("a.test"), SessionOutcome::kTimeout);
  copies[0].CountCommand(Command::kPass, CommandResult::kOk, 2'000'000);
  int calls = 0;
  Exporter exporter(tenants, {.shards =
                                  [&](std::vector<ShardMetrics>* out) {
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
                                    return s;
                                  },
                              .ready = [] { return true; }});
  const auto families = exporter.Collect();
  EXPECT_EQ(calls, 1);
  const std::string text = SerializeText(families);
  EXPECT_NE(text.find("posthaste_pop3_commands_total{command=\"STAT\",result=\"ok\"} 11\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("posthaste_reactor_loop_iterations_total{shard=\"0\"} 10\n"),
            std::string::npos);
  EXPECT_NE(text.find("posthaste_reactor_loop_iterations_total{shard=\"1\"} 20\n"),
            std::string::npos);
  EXPECT_NE(text.find("posthaste_pop3_sessions_total{tenant=\"a.test\",outcome=\"timeout\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("posthaste_store_messages 42\n"), std::string::npos);
  EXPECT_NE(text.find("posthaste_store_block_cache_hit_ratio 0.75\n"), std::string::npos);
  EXPECT_NE(
      text.find("posthaste_pop3_command_duration_seconds_bucket{command=\"PASS\",le=\"0.0025\"} 1"),
      std::string::npos);
  EXPECT_NE(text.find("posthaste_pop3_command_duration_seconds_count{command=\"PASS\"} 1"),
            std::string::npos);
  // Every family follows the naming rule: posthaste_ prefix, counters end in _total.
  for (const auto& f : families) {
    EXPECT_EQ(f.name.rfind("posthaste_", 0), 0u) << f.name;
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
