// The crash test's victim: delivers and deletes messages in a loop (and now and then compacts)
// until it is killed, reporting on stdout each operation the store ACKNOWLEDGED:
//   D <account> <uidl> <seed>            Deliver returned OK
//   R                                    the store is open; work starts
//   P <account> <uidl> [<uidl> ...]      about to call CommitDeletions for these messages
//   X <account> <uidl> [<uidl> ...]      CommitDeletions returned OK for these messages
// Each report is one write(2) under a mutex, written only after the call returned, so the
// parent never hears of an operation that was not acknowledged.
//
//   crash_child DATA_DIR RUN_ID ACCOUNT...
// Threads: three deliverers, one deleter/compactor. Exits by itself after 60 s.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "storage/mail_store.h"
#include "tests/crash_message.h"

namespace {

std::mutex report_mutex;

void Report(const std::string& line) {
  std::lock_guard<std::mutex> lock(report_mutex);
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = write(1, line.data() + done, line.size() - done);
    if (n <= 0) _exit(3);  // the parent is gone
    done += static_cast<size_t>(n);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: crash_child DATA_DIR RUN_ID ACCOUNT...\n");
    return 2;
  }
  alarm(60);
  const uint64_t run_id = std::strtoull(argv[2], nullptr, 10);
  std::vector<std::string> accounts(argv + 3, argv + argc);
  posthaste::storage::StoreOptions options;
  options.data_dir = argv[1];
  options.create_if_missing = false;
  options.segment_roll_bytes = 256 * 1024;  // many closed segments, so compaction has work
  auto opened = posthaste::storage::MailStore::Open(options);
  if (!opened.ok()) {
    std::fprintf(stderr, "crash_child: %s\n", std::string(opened.status().message()).c_str());
    return 1;
  }
  posthaste::storage::MailStore& store = **opened;
  Report("R\n");

  std::atomic<uint64_t> counter{0};
  auto deliverer = [&](int thread) {
    std::mt19937_64 rng(run_id * 7919 + thread);
    while (true) {
      const size_t account = rng() % accounts.size();
      // Unique across runs: run id in the high bits.
      const uint64_t seed = (run_id << 24) | counter.fetch_add(1);
      auto delivered = store.Deliver(accounts[account], posthaste::testing::CrashMessage(seed));
      if (!delivered.ok()) {
        std::fprintf(stderr, "crash_child: deliver: %s\n",
                     std::string(delivered.status().message()).c_str());
        _exit(1);
      }
      Report("D " + std::to_string(account) + " " + delivered->uidl + " " + std::to_string(seed) +
             "\n");
    }
  };
  auto deleter = [&] {
    std::mt19937_64 rng(run_id * 104729);
    for (uint64_t round = 0;; ++round) {
      const size_t account = rng() % accounts.size();
      auto snapshot = store.OpenMailbox(accounts[account]);
      if (!snapshot.ok()) _exit(1);
      const size_t size = (*snapshot)->size();
      if (size > 6) {
        std::vector<size_t> indexes;
        for (size_t i = 0; i < size && indexes.size() < 24; ++i) {
          if (rng() % 3 != 0) indexes.push_back(i);
        }
        std::string uidls;
        for (size_t i : indexes) uidls += " " + std::string((*snapshot)->uidl(i));
        Report("P " + std::to_string(account) + uidls + "\n");
        auto deleted = store.CommitDeletions(**snapshot, indexes);
        if (!deleted.ok()) {
          std::fprintf(stderr, "crash_child: delete: %s\n",
                       std::string(deleted.status().message()).c_str());
          _exit(1);
        }
        if (deleted->deleted != indexes.size()) {
          // This thread is the only deleter: nothing can have gone before it.
          std::fprintf(stderr, "crash_child: deleted %zu of %zu\n",
                       static_cast<size_t>(deleted->deleted), indexes.size());
          _exit(1);
        }
        Report("X " + std::to_string(account) + uidls + "\n");
      }
      if (round % 8 == 7) {
        auto compacted = store.Compact();
        if (!compacted.ok()) {
          std::fprintf(stderr, "crash_child: compact: %s\n",
                       std::string(compacted.status().message()).c_str());
          _exit(1);
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) threads.emplace_back(deliverer, t);
  threads.emplace_back(deleter);
  for (auto& thread : threads) thread.join();
  return 0;
}
