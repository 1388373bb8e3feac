// Crash test: a child process (crash_child) delivers, deletes and compacts in a loop and is
// killed with SIGKILL at random moments, at least 200 times. After every kill the store is
// reopened and must show:
//   - every acknowledged delivery, byte-exact, unless its deletion was acknowledged;
//   - no acknowledged deletion back again, and no UIDL ever handed out twice;
//   - every message present intact (each names its generator seed), counters equal to the
//     mailbox contents, and MailStore::Check() without problems (no index entry pointing
//     outside a segment).
// A deletion the child announced but whose commit was not acknowledged may have happened or
// not; either is accepted, and what is found becomes the new expectation.
//
// What it catches: acknowledging before the bytes or the index entry reach the kernel (lost
// writes in user-space buffers or an unsynced in-memory index), index entries written before
// their segment bytes, torn or non-atomic deletion commits, counter drift, UIDL reuse after
// recovery, and compaction that drops or repoints data unsafely. What SIGKILL cannot catch:
// a missing fsync (the page cache survives a killed process); that needs power-loss testing.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "storage/mail_store.h"
#include "tests/crash_message.h"
#include "tests/subprocess.h"

namespace posthaste {
namespace {

using Key = std::pair<size_t, std::string>;  // account index, UIDL

struct Deletion {
  int run;             // the child run that deleted it
  std::string reason;  // how we know
};

struct Model {
  std::map<Key, uint64_t> live;     // acknowledged (or found after recovery) and not deleted
  std::set<Key> delivered;          // every UIDL ever reported delivered or found
  std::map<Key, Deletion> deleted;  // deletion acknowledged (or found committed)
  std::set<Key> pending;            // deletion announced, not acknowledged
  uint64_t acked_deliveries = 0;
  uint64_t acked_deletions = 0;
  int run = 0;  // the current child run (trial)
};

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// Runs the child, kills it with SIGKILL `run_ms` after it reported "R" (store open, work
// starting) or, when `from_start`, `run_ms` after it was started (so start-up and index
// recovery get killed too), and returns everything it reported.
// Fails the test if the child exited by itself.
std::string RunAndKill(const std::string& child, const std::string& dir, uint64_t run_id,
                       const std::vector<std::string>& accounts, int run_ms, bool from_start) {
  int fds[2];
  EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(fds[1], 1);
    std::vector<std::string> args = {child, dir, std::to_string(run_id)};
    args.insert(args.end(), accounts.begin(), accounts.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(fds[1]);
  std::string reports;
  char buffer[65536];
  // Until the child is ready, wait at most 30 s (a broken child must not hang the test).
  int64_t deadline = from_start ? NowMs() + run_ms : NowMs() + 30000;
  bool ready = from_start;
  bool open = true;
  while (open) {
    if (!ready && reports.compare(0, 2, "R\n") == 0) {
      ready = true;
      deadline = NowMs() + run_ms;
    }
    int64_t left = deadline - NowMs();
    if (left <= 0) break;
    pollfd pfd{fds[0], POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(left)) <= 0) continue;
    ssize_t n = read(fds[0], buffer, sizeof(buffer));
    if (n <= 0) {
      open = false;
    } else {
      reports.append(buffer, static_cast<size_t>(n));
    }
  }
  kill(pid, SIGKILL);
  while (true) {  // whatever was written before the kill
    ssize_t n = read(fds[0], buffer, sizeof(buffer));
    if (n <= 0) break;
    reports.append(buffer, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the child ended by itself (status " << status << "); see its stderr above";
  return reports;
}

// Applies the complete report lines (a line cut by the kill is ignored).
void ApplyReports(const std::string& reports, Model* model) {
  size_t end = reports.rfind('\n');
  if (end == std::string::npos) return;
  for (absl::string_view line : absl::StrSplit(reports.substr(0, end), '\n')) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    if (fields[0] == "R") continue;  // the child is ready
    ASSERT_GE(fields.size(), 2u) << line;
    const size_t account = std::stoul(fields[1]);
    if (fields[0] == "D") {
      ASSERT_EQ(fields.size(), 4u) << line;
      Key key{account, fields[2]};
      ASSERT_TRUE(model->delivered.insert(key).second)
          << "UIDL handed out twice: " << fields[2] << " (run " << model->run << ")";
      ++model->acked_deliveries;
      auto gone = model->deleted.find(key);
      if (gone == model->deleted.end()) {
        model->live[key] = std::stoull(fields[3]);
        continue;
      }
      // Threads report independently: the deleter may report a message's deletion before
      // the delivering thread reports its delivery, but only within one run.
      ASSERT_EQ(gone->second.run, model->run)
          << "UIDL reused in run " << model->run << " after deletion: " << fields[2] << " ("
          << gone->second.reason << ")";
    } else if (fields[0] == "R") {
      continue;
    } else if (fields[0] == "P") {
      for (size_t i = 2; i < fields.size(); ++i) model->pending.insert({account, fields[i]});
    } else if (fields[0] == "X") {
      for (size_t i = 2; i < fields.size(); ++i) {
        Key key{account, fields[i]};
        model->pending.erase(key);
        model->live.erase(key);
        model->deleted[key] =
            Deletion{model->run, absl::StrCat("deletion acknowledged in run ", model->run)};
        ++model->acked_deletions;
      }
    } else {
      FAIL() << "bad report line: " << line;
    }
  }
}

// Reopens the store and checks it against the model; then makes what was found (for
// unacknowledged operations) the model for the next trial.
void Verify(const std::string& dir, const std::vector<std::string>& accounts, Model* model,
            int trial) {
  SCOPED_TRACE(absl::StrCat("after kill #", trial));
  storage::StoreOptions options;
  options.data_dir = dir;
  options.create_if_missing = false;
  auto opened = storage::MailStore::Open(options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  storage::MailStore& store = **opened;

  std::set<Key> present;
  for (size_t a = 0; a < accounts.size(); ++a) {
    auto snapshot = store.OpenMailbox(accounts[a]);
    ASSERT_TRUE(snapshot.ok()) << snapshot.status();
    uint64_t octets = 0;
    for (size_t i = 0; i < (*snapshot)->size(); ++i) {
      Key key{a, std::string((*snapshot)->uidl(i))};
      ASSERT_TRUE(present.insert(key).second) << "duplicate UIDL in mailbox: " << key.second;
      ASSERT_EQ(model->deleted.count(key), 0u)
          << "acknowledged deletion reappeared: " << accounts[a] << " " << key.second;
      auto stored = store.ReadMessageForTest(**snapshot, i);
      ASSERT_TRUE(stored.ok()) << key.second << ": " << stored.status();
      std::optional<uint64_t> seed = testing::CrashSeedOf(*stored);
      ASSERT_TRUE(seed.has_value()) << "message without its seed header: " << key.second;
      auto it = model->live.find(key);
      if (it != model->live.end()) {
        ASSERT_EQ(*seed, it->second) << "message " << key.second << " holds another message";
      }
      const storage::NormalizedMessage expected =
          storage::NormalizeForStorage(testing::CrashMessage(*seed));
      ASSERT_EQ(*stored, expected.stored) << "bytes differ for " << key.second;
      ASSERT_EQ((*snapshot)->pop3_size(i), expected.pop3_size) << key.second;
      octets += expected.pop3_size;
      model->live.emplace(key, *seed);  // found after recovery: must stay from now on
      model->delivered.insert(key);
    }
    auto stats = store.GetMailboxStats(accounts[a]);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(stats->messages, (*snapshot)->size()) << accounts[a];
    EXPECT_EQ(stats->octets, octets) << accounts[a];
  }
  for (auto it = model->live.begin(); it != model->live.end();) {
    if (present.count(it->first) != 0) {
      ++it;
      continue;
    }
    // Only a deletion that was announced (and then maybe committed) may explain an absence.
    ASSERT_EQ(model->pending.count(it->first), 1u)
        << "acknowledged delivery lost: " << accounts[it->first.first] << " " << it->first.second
        << " (seed " << it->second << ")";
    model->deleted[it->first] =
        Deletion{trial, absl::StrCat("announced deletion found committed after kill #", trial)};
    it = model->live.erase(it);
  }
  model->pending.clear();

  auto report = store.Check();
  ASSERT_TRUE(report.ok()) << report.status();
  for (const std::string& problem : report->problems) ADD_FAILURE() << "check: " << problem;
  ASSERT_TRUE(report->ok());
}

TEST(CrashTest, AcknowledgedWorkSurvivesSigkill) {
  const char* env_trials = std::getenv("PH_CRASH_TRIALS");
  const int trials = env_trials != nullptr ? std::atoi(env_trials) : 200;
  const std::string child = testing::RunfilePath("tests/crash_child");
  const std::string dir = testing::MakeTempDir("crash") + "/store";
  const std::vector<std::string> accounts = {"crash0@example.test", "crash1@example.test"};
  {
    auto store = storage::MailStore::Open({.data_dir = dir});
    ASSERT_TRUE(store.ok()) << store.status();
    for (const std::string& a : accounts) {
      ASSERT_TRUE((*store)->CreateAccount(a, "{PLAIN}x").ok());
    }
  }
  std::mt19937_64 rng(20261122);
  Model model;
  int kills_with_work = 0;
  int done = 0;
  for (int trial = 1; trial <= trials; ++trial) {
    done = trial;
    // Mostly mid-work; sometimes during start-up (index recovery) or after a longer run.
    int run_ms;
    bool from_start = false;
    switch (rng() % 10) {
      case 0:
        run_ms = static_cast<int>(rng() % 40);
        from_start = true;
        break;
      case 1:
      case 2:
        run_ms = 150 + static_cast<int>(rng() % 250);
        break;
      default:
        run_ms = static_cast<int>(rng() % 120);
    }
    const uint64_t before = model.acked_deliveries + model.acked_deletions;
    const std::string reports = RunAndKill(child, dir, trial, accounts, run_ms, from_start);
    model.run = trial;
    ASSERT_NO_FATAL_FAILURE(ApplyReports(reports, &model));
    if (model.acked_deliveries + model.acked_deletions > before) ++kills_with_work;
    ASSERT_NO_FATAL_FAILURE(Verify(dir, accounts, &model, trial));
    if (::testing::Test::HasFailure()) break;
  }
  std::printf(
      "crash test: %d trials (SIGKILL each), %d while the child had acknowledged work; "
      "%llu acknowledged deliveries, %llu acknowledged deletions, %zu messages live at the end\n",
      done, kills_with_work, static_cast<unsigned long long>(model.acked_deliveries),
      static_cast<unsigned long long>(model.acked_deletions), model.live.size());
  ::testing::Test::RecordProperty("trials", done);
  EXPECT_GE(done, 200);
  EXPECT_GE(kills_with_work, trials / 3) << "the child rarely got to work before the kill";
}

}  // namespace
}  // namespace posthaste
