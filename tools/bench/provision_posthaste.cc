// provision_posthaste: creates the benchmark's accounts and mailboxes in a posthaste data
// directory in one process, through the public MailStore API (the `user add` CLI takes a
// password and hashes it with posthaste's default, yescrypt, one process per user).
//
//   provision_posthaste --data_dir=DIR --users_file=users.txt --password_hash='$6$...'
//
// users.txt (written by benchdata.py) holds "address<TAB>maildir" lines. Every account gets the
// given crypt(3) hash, so posthaste verifies the very same SHA512-CRYPT hash as Dovecot; every
// file in the Maildir's cur/ and new/ is delivered in file-name order. Accounts that exist
// already are left as they are (a second run adds nothing). Several threads deliver at once so
// the store's group commit shares fsyncs. Progress on stderr; exit 1 on the first error.
#include <dirent.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "storage/mail_store.h"

ABSL_FLAG(std::string, data_dir, "", "posthaste data directory (created when absent)");
ABSL_FLAG(std::string, users_file, "", "lines of address<TAB>maildir");
ABSL_FLAG(std::string, password_hash, "", "crypt(3) hash stored for every account");
ABSL_FLAG(int, threads, 8, "delivering threads");
ABSL_FLAG(bool, compact, true, "compact the index when done (the steady state)");

namespace {

constexpr size_t kUsersMax = 1'000'000;
constexpr size_t kMessageBytesMax = 64u << 20;

struct User {
  std::string address;
  std::string maildir;
};

std::vector<std::string> MessageFiles(const std::string& maildir) {
  std::vector<std::string> files;
  for (const char* sub : {"/cur", "/new"}) {
    const std::string dir = maildir + sub;
    DIR* d = opendir(dir.c_str());
    if (d == nullptr) continue;
    while (dirent* entry = readdir(d)) {
      if (entry->d_name[0] == '.') continue;
      files.push_back(dir + "/" + entry->d_name);
    }
    closedir(d);
  }
  std::sort(files.begin(), files.end());
  return files;
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return out->size() <= kMessageBytesMax;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  const std::string hash = absl::GetFlag(FLAGS_password_hash);
  const int threads = std::clamp(absl::GetFlag(FLAGS_threads), 1, 64);
  if (data_dir.empty() || hash.empty() || absl::GetFlag(FLAGS_users_file).empty()) {
    std::fprintf(stderr, "provision_posthaste: --data_dir, --users_file, --password_hash needed\n");
    return 2;
  }
  std::vector<User> users;
  std::ifstream list(absl::GetFlag(FLAGS_users_file));
  std::string line;
  while (std::getline(list, line) && users.size() < kUsersMax) {
    const size_t tab = line.find('\t');
    if (tab == std::string::npos) continue;
    users.push_back({line.substr(0, tab), line.substr(tab + 1)});
  }
  posthaste::storage::StoreOptions options;
  options.data_dir = data_dir;
  options.create_if_missing = true;
  absl::StatusOr<std::unique_ptr<posthaste::storage::MailStore>> store =
      posthaste::storage::MailStore::Open(options);
  if (!store.ok()) {
    std::fprintf(stderr, "provision_posthaste: %s\n", store.status().ToString().c_str());
    return 1;
  }
  std::atomic<size_t> next{0};
  std::atomic<size_t> done{0};
  std::atomic<size_t> messages{0};
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::string error;
  auto fail = [&](const std::string& what) {
    std::lock_guard<std::mutex> lock(error_mutex);
    if (error.empty()) error = what;
    failed = true;
  };
  auto work = [&] {
    std::string message;
    while (!failed) {
      const size_t i = next.fetch_add(1);
      if (i >= users.size()) return;
      const User& user = users[i];
      absl::StatusOr<posthaste::storage::AccountInfo> created =
          (*store)->CreateAccount(user.address, hash);
      if (absl::IsAlreadyExists(created.status())) {
        ++done;
        continue;  // provisioned by an earlier run
      }
      if (!created.ok()) {
        fail(user.address + ": " + created.status().ToString());
        return;
      }
      for (const std::string& file : MessageFiles(user.maildir)) {
        if (!ReadFile(file, &message)) {
          fail(file + ": unreadable or too large");
          return;
        }
        absl::StatusOr<posthaste::storage::DeliverResult> delivered =
            (*store)->Deliver(user.address, message);
        if (!delivered.ok()) {
          fail(file + ": " + delivered.status().ToString());
          return;
        }
        ++messages;
      }
      const size_t n = ++done;
      if (n % 1000 == 0) std::fprintf(stderr, "provision_posthaste: %zu accounts\n", n);
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(work);
  for (std::thread& t : pool) t.join();
  if (failed) {
    std::fprintf(stderr, "provision_posthaste: %s\n", error.c_str());
    return 1;
  }
  std::fprintf(stderr, "provision_posthaste: %zu accounts, %zu messages delivered\n", done.load(),
               messages.load());
  // Benchmarks measure the steady state: RocksDB folds the merge operands of fresh deliveries
  // into their chunks at its next compaction anyway (as Dovecot's indexes are built before the
  // runs). Fresh-delivery figures are in docs/BENCHMARKS.md, "Store".
  if (absl::GetFlag(FLAGS_compact)) {
    absl::Status compacted = (*store)->CompactIndex();
    if (!compacted.ok()) {
      std::fprintf(stderr, "provision_posthaste: compact: %s\n", compacted.ToString().c_str());
      return 1;
    }
    std::fprintf(stderr, "provision_posthaste: index compacted\n");
  }
  return 0;
}
