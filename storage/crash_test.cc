// SIGKILL crash test of the store itself (the CLI has its own, through the binary).
//
// Each trial re-executes this test binary as a child (a fresh process: RocksDB's thread pools do
// not survive fork) that delivers, deletes and compacts in a loop, reporting every acknowledged
// delivery ("D") and deletion ("X") on a pipe, and announcing each deletion before committing
// it ("P"). The parent kills it with SIGKILL after a random delay, reopens the store and checks
// that every acknowledged delivery is present byte-exact (unless its deletion had been
// announced), that no acknowledged deletion came back, that the counters match the mailbox, and
// that Check() finds nothing wrong.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/strings.h"
#include "gtest/gtest.h"
#include "storage/mail_store.h"

extern char** environ;

namespace posthaste::storage {
namespace {

constexpr char kAddress[] = "crash@test.example";
constexpr uint64_t kSegmentRollBytes = 64 * 1024;

std::string MessageFor(uint64_t i) {
  std::string body;
  const size_t len = (i * 7919) % 6000;
  for (size_t k = 0; k < len; ++k) {
    body.push_back(k % 61 == 60 ? '\n' : static_cast<char>('a' + (i + k) % 26));
  }
  return absl::StrCat("Subject: crash ", i, "\n\n.dot line\n", body);
}

StoreOptions OptionsFor(const std::string& dir) {
  StoreOptions options;
  options.data_dir = dir;
  options.segment_roll_bytes = kSegmentRollBytes;
  options.compaction_live_ratio = 0.7;
  return options;
}

void Report(int fd, const std::string& line) {
  std::string out = line + "\n";
  if (::write(fd, out.data(), out.size()) != static_cast<ssize_t>(out.size())) _exit(3);
}

// The child: runs until killed.
[[noreturn]] void ChildMain(const std::string& dir, uint64_t first, int fd) {
  auto store = MailStore::Open(OptionsFor(dir));
  if (!store.ok()) {
    std::fprintf(stderr, "child open: %s\n", std::string(store.status().message()).c_str());
    _exit(2);
  }
  for (uint64_t i = first;; ++i) {
    auto r = (*store)->Deliver(kAddress, MessageFor(i));
    if (!r.ok()) _exit(4);
    Report(fd, absl::StrCat("D ", i, " ", r->uidl));
    if (i % 5 == 4) {
      auto snap = (*store)->OpenMailbox(kAddress);
      if (!snap.ok()) _exit(5);
      if ((*snap)->size() >= 2) {
        // Announced before the commit: if the kill lands between the commit and the "X" line,
        // these may be gone without an acknowledgement.
        Report(fd, absl::StrCat("P ", AbslView((*snap)->uidl(0)), " ", AbslView((*snap)->uidl(1))));
        auto d = (*store)->CommitDeletions(**snap, {0, 1});
        if (!d.ok()) _exit(6);
        // One line (one write) for both: they were deleted together.
        Report(fd, absl::StrCat("X ", AbslView((*snap)->uidl(0)), " ", AbslView((*snap)->uidl(1))));
      }
    }
    if (i % 40 == 39 && !(*store)->Compact().ok()) _exit(7);
  }
}

// Runs the child before gtest when this binary is re-executed for a trial.
[[maybe_unused]] const bool kChildDispatch = [] {
  const char* dir = std::getenv("PH_CRASH_CHILD_DIR");
  if (dir == nullptr) return false;
  uint64_t first = 0;
  int fd = -1;
  if (!absl::SimpleAtoi(std::getenv("PH_CRASH_CHILD_FIRST"), &first) ||
      !absl::SimpleAtoi(std::getenv("PH_CRASH_CHILD_FD"), &fd)) {
    _exit(9);
  }
  ChildMain(dir, first, fd);
}();

TEST(CrashTest, AcknowledgedWorkSurvivesSigkillAtRandomMoments) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/crash-", ::getpid());
  {
    auto store = MailStore::Open(OptionsFor(dir));
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->CreateAccount(kAddress, "x").ok());
  }
  std::mt19937 rng(20261122);
  std::map<std::string, uint64_t> acked;  // UIDL -> message number
  std::set<std::string> deleted;
  std::set<std::string> maybe_deleted;  // deletion started, acknowledgement unknown
  constexpr int kTrials = 40;
  int trials = 0;
  for (int trial = 0; trial < kTrials; ++trial) {
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    const uint64_t first = static_cast<uint64_t>(trial) * 1000000;
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::dup2(fds[1], 3);  // dup2 clears O_CLOEXEC on the copy
      ::setenv("PH_CRASH_CHILD_DIR", dir.c_str(), 1);
      ::setenv("PH_CRASH_CHILD_FIRST", std::to_string(first).c_str(), 1);
      ::setenv("PH_CRASH_CHILD_FD", "3", 1);
      char* argv[] = {const_cast<char*>("crash_child"), nullptr};
      ::execve("/proc/self/exe", argv, environ);
      _exit(8);
    }
    ::close(fds[1]);
    // Kill after a random delay, while reading acknowledgements as they come.
    const int delay_ms = std::uniform_int_distribution<int>(20, 400)(rng);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(delay_ms);
    std::string pending;
    char buf[4096];
    bool killed = false;
    for (;;) {
      const auto now = std::chrono::steady_clock::now();
      if (!killed && now >= deadline) {
        ::kill(pid, SIGKILL);
        killed = true;
      }
      const int wait_ms =
          killed
              ? 1000
              : static_cast<int>(
                    std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count()) +
                    1;
      struct pollfd p = {fds[0], POLLIN, 0};
      if (::poll(&p, 1, wait_ms) == 0) continue;
      ssize_t n = ::read(fds[0], buf, sizeof(buf));
      if (n <= 0) break;  // EOF: the child is gone
      pending.append(buf, static_cast<size_t>(n));
    }
    ::close(fds[0]);
    int wstatus = 0;
    ASSERT_EQ(::waitpid(pid, &wstatus, 0), pid);
    ASSERT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
        << "child exited on its own with status " << wstatus;
    // Only complete lines were acknowledged.
    pending.resize(pending.rfind('\n') == std::string::npos ? 0 : pending.rfind('\n') + 1);
    for (absl::string_view line : absl::StrSplit(pending, '\n', absl::SkipEmpty())) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ');
      if (parts[0] == "D") {
        uint64_t i = 0;
        ASSERT_TRUE(absl::SimpleAtoi(parts[1], &i));
        acked[parts[2]] = i;
      } else if (parts[0] == "P") {
        maybe_deleted.insert(parts.begin() + 1, parts.end());
      } else {
        deleted.insert(parts.begin() + 1, parts.end());
      }
    }

    // Restart and verify.
    auto store = MailStore::Open(OptionsFor(dir));
    ASSERT_TRUE(store.ok()) << store.status();
    auto snap = (*store)->OpenMailbox(kAddress);
    ASSERT_TRUE(snap.ok()) << snap.status();
    std::map<std::string, size_t> present;
    for (size_t k = 0; k < (*snap)->size(); ++k) present[std::string((*snap)->uidl(k))] = k;
    for (const auto& [uidl, i] : acked) {
      if (deleted.count(uidl) != 0) {
        EXPECT_EQ(present.count(uidl), 0u) << "acknowledged deletion came back: " << uidl;
        continue;
      }
      auto it = present.find(uidl);
      if (it == present.end() && maybe_deleted.count(uidl) != 0) continue;
      ASSERT_NE(it, present.end()) << "acknowledged delivery lost: " << uidl;
      auto bytes = (*store)->ReadMessageForTest(**snap, it->second);
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      ASSERT_EQ(*bytes, NormalizeForStorage(MessageFor(i)).stored) << uidl;
    }
    auto stats = (*store)->GetMailboxStats(kAddress);
    ASSERT_TRUE(stats.ok());
    EXPECT_EQ(stats->messages, (*snap)->size());
    EXPECT_EQ(stats->octets, (*snap)->total_octets());
    auto report = (*store)->Check();
    ASSERT_TRUE(report.ok()) << report.status();
    for (const auto& problem : report->problems) ADD_FAILURE() << problem;
    ASSERT_TRUE(report->ok());
    ++trials;
  }
  std::printf("crash trials: %d, acknowledged deliveries: %zu, acknowledged deletions: %zu\n",
              trials, acked.size(), deleted.size());
  EXPECT_EQ(trials, kTrials);
}

}  // namespace
}  // namespace posthaste::storage
