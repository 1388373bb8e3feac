// StoreTestBase: a gtest fixture with a real MailStore on disk in a fresh data directory under
// TEST_TMPDIR, for the storage tests. Reopen() closes and opens it again (as a restart would).
//
// Threading: the test's thread only. Ownership: the fixture owns the store.
#ifndef POSTHASTE_STORAGE_TESTING_STORE_TEST_BASE_H_
#define POSTHASTE_STORAGE_TESTING_STORE_TEST_BASE_H_

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/mail_store.h"

namespace posthaste::storage::testing {

// A new, not yet existing directory path under TEST_TMPDIR (or /tmp), unique in the process.
inline std::string NewDataDirForTest() {
  static std::atomic<int> counter{0};
  const char* tmp = std::getenv("TEST_TMPDIR");
  return absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/store-", ::getpid(), "-",
                      counter.fetch_add(1));
}

class StoreTestBase : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.data_dir = NewDataDirForTest();
    Reopen();
  }

  void Reopen() {
    store_.reset();
    auto store = MailStore::Open(options_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  DeliverResult MustDeliver(const std::string& address, const std::string& raw,
                            const DeliverOptions& options = {}) {
    auto r = store_->Deliver(address, raw, options);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : DeliverResult{};
  }

  std::shared_ptr<const MailboxSnapshot> MustOpen(const std::string& address) {
    auto snap = store_->OpenMailbox(address);
    EXPECT_TRUE(snap.ok()) << snap.status();
    return snap.ok() ? *snap : nullptr;
  }

  StoreOptions options_;
  std::unique_ptr<MailStore> store_;
};

}  // namespace posthaste::storage::testing

#endif  // POSTHASTE_STORAGE_TESTING_STORE_TEST_BASE_H_
