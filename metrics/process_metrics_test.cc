#include "metrics/process_metrics.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <string>

#include "gtest/gtest.h"
#include "metrics/exporter.h"

namespace posthaste::metrics {
namespace {

void WriteFile(const std::string& path, const std::string& text) {
  FILE* f = fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr) << path;
  fputs(text.c_str(), f);
  fclose(f);
}

// A /proc/<pid> lookalike: its stat line, three descriptors in fd/, and a /proc/stat.
class FakeProc : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/fake_proc_" + std::to_string(getpid());
    ASSERT_EQ(mkdir(dir_.c_str(), 0700), 0);
    ASSERT_EQ(mkdir((dir_ + "/fd").c_str(), 0700), 0);
    for (const char* fd : {"0", "1", "2"}) WriteFile(dir_ + "/fd/" + fd, "");
    WriteFile(dir_ + "/system_stat", "cpu  1 2 3 4\nintr 5\nbtime 1700000000\nprocesses 9\n");
  }
  void TearDown() override {
    for (const char* fd : {"0", "1", "2"}) unlink((dir_ + "/fd/" + fd).c_str());
    rmdir((dir_ + "/fd").c_str());
    unlink((dir_ + "/stat").c_str());
    unlink((dir_ + "/system_stat").c_str());
    rmdir(dir_.c_str());
  }
  std::string dir_;
};

TEST_F(FakeProc, ReadsTheFieldsAfterACommandNameWithSpacesAndParentheses) {
  // Fields 3.. of proc(5): state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
  // utime(14)=250 stime(15)=150 cutime cstime priority nice num_threads(20)=7 itrealvalue
  // starttime(22)=12345 vsize(23)=1048576000 rss(24)=2500 ...
  WriteFile(dir_ + "/stat",
            "4242 (serve (a) b) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 7 0 "
            "12345 1048576000 2500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0\n");
  absl::StatusOr<ProcessMetrics> m =
      ReadProcessMetrics(dir_, dir_ + "/system_stat", /*ticks_per_second=*/100,
                         /*page_bytes=*/4096);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_DOUBLE_EQ(m->cpu_seconds, 4.0);
  EXPECT_EQ(m->threads, 7u);
  EXPECT_EQ(m->virtual_bytes, 1048576000u);
  EXPECT_EQ(m->resident_bytes, 2500u * 4096u);
  EXPECT_DOUBLE_EQ(m->start_time_seconds, 1700000000.0 + 123.45);
  EXPECT_EQ(m->open_fds, 3u);
  EXPECT_GT(m->max_fds, 0u);
}

TEST_F(FakeProc, AShortOrGarbledStatLineIsAnErrorNotZeros) {
  WriteFile(dir_ + "/stat", "4242 (serve) S 1 4242\n");
  EXPECT_EQ(ReadProcessMetrics(dir_, dir_ + "/system_stat", 100, 4096).status().code(),
            absl::StatusCode::kDataLoss);
  WriteFile(dir_ + "/stat", "4242 serve S 1 4242\n");
  EXPECT_EQ(ReadProcessMetrics(dir_, dir_ + "/system_stat", 100, 4096).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(ReadProcessMetrics(dir_ + "/missing", dir_ + "/system_stat", 100, 4096).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ProcessMetrics, OwnProcess) {
  absl::StatusOr<ProcessMetrics> m = ReadProcessMetrics();
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_GT(m->resident_bytes, 1u << 20);
  EXPECT_GE(m->virtual_bytes, m->resident_bytes);
  EXPECT_GE(m->open_fds, 3u);  // stdin, stdout, stderr
  EXPECT_GE(m->max_fds, m->open_fds);
  EXPECT_GE(m->threads, 1u);
  const double now = static_cast<double>(time(nullptr));
  EXPECT_LE(m->start_time_seconds, now + 1);
  EXPECT_GT(m->start_time_seconds, now - 24 * 3600);
}

TEST(ProcessMetrics, ExportedUnderThePrometheusClientNames) {
  ProcessMetrics m{.cpu_seconds = 1.5,
                   .resident_bytes = 7 << 20,
                   .virtual_bytes = 9 << 20,
                   .open_fds = 12,
                   .max_fds = 1024,
                   .threads = 5,
                   .start_time_seconds = 1700000000};
  const std::string text = SerializeText(Exporter::ProcessFamilies(m));
  for (const char* line :
       {"process_cpu_seconds_total 1.5\n", "process_resident_memory_bytes 7340032\n",
        "process_virtual_memory_bytes 9437184\n", "process_open_fds 12\n", "process_max_fds 1024\n",
        "process_threads 5\n", "process_start_time_seconds 1700000000\n",
        "# TYPE process_cpu_seconds_total counter\n", "# TYPE process_open_fds gauge\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << text;
  }
}

}  // namespace
}  // namespace posthaste::metrics
