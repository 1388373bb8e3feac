// Tests of the load generator's measuring parts: the latency histogram and the /proc readers.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "tools/bench/latency_histogram.h"
#include "tools/bench/proc_stats.h"

namespace posthaste::bench {
namespace {

TEST(LatencyHistogramTest, BucketsAreMonotonicAndTight) {
  size_t last = 0;
  for (uint64_t v = 0; v < 100'000; ++v) {
    const size_t b = LatencyHistogram::BucketOf(v);
    ASSERT_GE(b, last);
    ASSERT_GE(LatencyHistogram::BucketUpperBound(b), v);
    // Within 1/32 of the value above the linear range.
    ASSERT_LE(LatencyHistogram::BucketUpperBound(b) - v, std::max<uint64_t>(v / 32, 0));
    last = b;
  }
  EXPECT_LT(LatencyHistogram::BucketOf(UINT64_MAX), LatencyHistogram::kBuckets);
  EXPECT_EQ(LatencyHistogram::BucketUpperBound(LatencyHistogram::BucketOf(UINT64_MAX)), UINT64_MAX);
}

TEST(LatencyHistogramTest, QuantilesMatchSortedSample) {
  std::mt19937_64 random(42);
  std::lognormal_distribution<double> dist(12.0, 1.5);  // ~160 us median, long tail
  std::vector<uint64_t> values;
  LatencyHistogram h;
  for (int i = 0; i < 100'000; ++i) {
    const uint64_t v = static_cast<uint64_t>(dist(random));
    values.push_back(v);
    h.Record(v);
  }
  std::sort(values.begin(), values.end());
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    const double exact = static_cast<double>(values[static_cast<size_t>(q * values.size()) - 1]);
    const double got = static_cast<double>(h.Quantile(q));
    EXPECT_NEAR(got, exact, exact * 0.04) << "q=" << q;
  }
  EXPECT_EQ(h.Quantile(1.0), values.back());
  EXPECT_EQ(h.count(), values.size());
}

TEST(LatencyHistogramTest, MergeAddsCounts) {
  LatencyHistogram a, b;
  for (int i = 0; i < 100; ++i) a.Record(1000);
  for (int i = 0; i < 100; ++i) b.Record(1'000'000);
  a.Merge(b);
  EXPECT_EQ(a.count(), 200u);
  EXPECT_EQ(a.max(), 1'000'000u);
  EXPECT_LE(a.Quantile(0.25), 1000u + 1000 / 32);
  EXPECT_GE(a.Quantile(0.75), 1'000'000u - 1'000'000 / 32);
  EXPECT_EQ(LatencyHistogram().Quantile(0.5), 0u);
}

TEST(ProcStatTest, ParsesCommandNamesWithSpacesAndParens) {
  const char line[] =
      "4242 (pop3 (x) y) S 17 4242 4242 0 -1 4194560 300 0 0 0 125 37 9 4 20 0 1 0 100 1000 50 "
      "18446744073709551615\n";
  std::optional<ProcStat> stat = ParseProcStat(line);
  ASSERT_TRUE(stat.has_value());
  EXPECT_EQ(stat->pid, 4242);
  EXPECT_EQ(stat->state, 'S');
  EXPECT_EQ(stat->ppid, 17);
  EXPECT_EQ(stat->utime, 125u);
  EXPECT_EQ(stat->stime, 37u);
  EXPECT_EQ(stat->cutime, 9u);
  EXPECT_EQ(stat->cstime, 4u);
  EXPECT_FALSE(ParseProcStat("").has_value());
  EXPECT_FALSE(ParseProcStat("12 (x) S 1 2").has_value());
  EXPECT_FALSE(ParseProcStat("x (y) S 1 1 1 0 -1 0 0 0 0 0 1 1 1 1 20").has_value());
}

TEST(ProcStatTest, ParsesPss) {
  const char rollup[] =
      "55d0c000-7ffd000 ---p 00000000 00:00 0  [rollup]\n"
      "Rss:                3412 kB\n"
      "Pss:                 523 kB\n"
      "Pss_Anon:            400 kB\n";
  std::optional<uint64_t> pss = ParsePssBytes(rollup);
  ASSERT_TRUE(pss.has_value());
  EXPECT_EQ(*pss, 523u * 1024);
  EXPECT_FALSE(ParsePssBytes("Rss: 1 kB\n").has_value());
  EXPECT_FALSE(ParsePssBytes("Pss: lots kB\n").has_value());
}

TEST(ProcessTreeTest, IncludesDescendantsAndTheirMemory) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // A grandchild, so the tree has depth 2; both wait to be killed (bounded: 60 s).
    const pid_t grandchild = fork();
    if (grandchild == 0) {
      char c = 'g';
      (void)!write(ready[1], &c, 1);
      sleep(60);
      _exit(0);
    }
    char c = 'c';
    (void)!write(ready[1], &c, 1);
    sleep(60);
    _exit(0);
  }
  char c;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  absl::StatusOr<std::vector<ProcStat>> tree = ReadProcessTree({child});
  ASSERT_TRUE(tree.ok()) << tree.status();
  EXPECT_EQ(tree->size(), 2u);
  absl::StatusOr<TreeUsage> usage = ReadTreeUsage({getpid()}, /*with_pss=*/true);
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_GE(usage->processes, 3u);
  EXPECT_GT(usage->pss_bytes, 0u);
  kill(child, SIGKILL);
  for (const ProcStat& stat : *tree) {
    if (stat.pid != child) kill(stat.pid, SIGKILL);
  }
  waitpid(child, nullptr, 0);
  close(ready[0]);
  close(ready[1]);
  EXPECT_FALSE(ReadProcessTree({-5}).ok());
}

}  // namespace
}  // namespace posthaste::bench
