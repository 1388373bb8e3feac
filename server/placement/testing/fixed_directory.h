// FixedDirectory: a DirectorySource holding whatever snapshot a test sets, for unit tests of
// the directory's consumers (server/route). Thread-safe: Set/SetStale from the test thread
// while servers read Current() on theirs.
#ifndef POSTHASTE_SERVER_PLACEMENT_TESTING_FIXED_DIRECTORY_H_
#define POSTHASTE_SERVER_PLACEMENT_TESTING_FIXED_DIRECTORY_H_

#include <atomic>
#include <memory>
#include <mutex>
#include <utility>

#include "server/placement/directory.h"

namespace posthaste::server::placement {

class FixedDirectory final : public DirectorySource {
 public:
  FixedDirectory() : snapshot_(std::make_shared<const DirectorySnapshot>()) {}
  explicit FixedDirectory(DirectorySnapshot snapshot)
      : snapshot_(std::make_shared<const DirectorySnapshot>(std::move(snapshot))) {}

  std::shared_ptr<const DirectorySnapshot> Current() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return snapshot_;
  }
  bool stale() const override { return stale_.load(); }

  void Set(DirectorySnapshot snapshot) {
    auto next = std::make_shared<const DirectorySnapshot>(std::move(snapshot));
    std::lock_guard<std::mutex> lock(mu_);
    snapshot_ = std::move(next);
  }
  void SetStale(bool stale) { stale_.store(stale); }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const DirectorySnapshot> snapshot_;
  std::atomic<bool> stale_{false};
};

}  // namespace posthaste::server::placement

#endif  // POSTHASTE_SERVER_PLACEMENT_TESTING_FIXED_DIRECTORY_H_
