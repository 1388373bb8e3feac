// The store after a failed write or sync of RocksDB's write-ahead log (issue 18, disk faults):
// it refuses writes as temporary, says so (MailStore::IndexReadOnly), and resumes by itself
// once the fault clears when RocksDB rates the error resumable (ENOSPC on the log); an I/O
// error on the log stays read-only until a restart, after which nothing acknowledged is lost.
// Faults are injected into the real RocksDB through a FileSystem wrapper on its .log files.
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "rocksdb/env.h"
#include "rocksdb/file_system.h"
#include "storage/mail_store.h"
#include "storage/testing/store_test_base.h"

namespace posthaste::storage {
namespace {

enum class LogFault { kNone, kNoSpace, kIoError };

// Fails appends and syncs of RocksDB's write-ahead log (files ending in ".log") with the
// current fault.
class FaultyLogFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  FaultyLogFile(std::unique_ptr<rocksdb::FSWritableFile> file, const std::atomic<LogFault>* fault)
      : FSWritableFileOwnerWrapper(std::move(file)), fault_(fault) {}
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = Injected("append");
    return s.ok() ? FSWritableFileOwnerWrapper::Append(data, options, dbg) : s;
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = Injected("append");
    return s.ok() ? FSWritableFileOwnerWrapper::Append(data, options, info, dbg) : s;
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = Injected("sync");
    return s.ok() ? FSWritableFileOwnerWrapper::Sync(options, dbg) : s;
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = Injected("sync");
    return s.ok() ? FSWritableFileOwnerWrapper::Fsync(options, dbg) : s;
  }

 private:
  rocksdb::IOStatus Injected(const char* what) const {
    switch (fault_->load()) {
      case LogFault::kNone:
        return rocksdb::IOStatus::OK();
      case LogFault::kNoSpace:
        return rocksdb::IOStatus::NoSpace(what, "injected ENOSPC");
      case LogFault::kIoError:
        return rocksdb::IOStatus::IOError(what, "injected EIO");
    }
    return rocksdb::IOStatus::OK();
  }
  const std::atomic<LogFault>* fault_;
};

class FaultyLogFileSystem : public rocksdb::FileSystemWrapper {
 public:
  FaultyLogFileSystem() : FileSystemWrapper(rocksdb::FileSystem::Default()) {}
  const char* Name() const override { return "FaultyLogFileSystem"; }
  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = FileSystemWrapper::NewWritableFile(name, options, result, dbg);
    if (s.ok() && name.size() > 4 && name.compare(name.size() - 4, 4, ".log") == 0) {
      *result = std::make_unique<FaultyLogFile>(std::move(*result), &fault);
    }
    return s;
  }
  std::atomic<LogFault> fault{LogFault::kNone};
};

class IndexFaultTest : public testing::StoreTestBase {
 protected:
  void SetUp() override {
    file_system_ = std::make_shared<FaultyLogFileSystem>();
    options_.index_env_for_test = rocksdb::NewCompositeEnv(file_system_);
    StoreTestBase::SetUp();
    ASSERT_TRUE(store_->CreateAccount("u@x.org", "{PLAIN}x").ok());
  }

  // Delivers until one is accepted, for up to 20 s (the store resumes with backoff).
  bool DeliveredWithinBound(const std::string& raw) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      if (store_->Deliver("u@x.org", raw).ok()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  std::shared_ptr<FaultyLogFileSystem> file_system_;
};

TEST_F(IndexFaultTest, ResumesByItselfAfterTheLogRanOutOfSpace) {
  MustDeliver("u@x.org", "before\r\n");
  file_system_->fault = LogFault::kNoSpace;
  auto refused = store_->Deliver("u@x.org", "under the fault\r\n");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ErrorOf(refused.status()), StoreError::kNoSpace) << refused.status();
  EXPECT_TRUE(store_->IndexReadOnly());
  // Refused before anything is written while read-only, and temporary.
  auto again = store_->Deliver("u@x.org", "still under the fault\r\n");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(ErrorOf(again.status()), StoreError::kTemporary) << again.status();
  EXPECT_NE(again.status().message().find("resuming by itself"), absl::string_view::npos)
      << again.status();
  auto stats = store_->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_TRUE(stats->index_read_only);

  file_system_->fault = LogFault::kNone;
  ASSERT_TRUE(DeliveredWithinBound("after the fault\r\n")) << "no delivery within 20 s";
  EXPECT_FALSE(store_->IndexReadOnly());
  // Reads kept working, and the acknowledged messages are there, before and after a restart.
  EXPECT_EQ(MustOpen("u@x.org")->size(), 2u);
  Reopen();
  EXPECT_EQ(MustOpen("u@x.org")->size(), 2u);
}

TEST_F(IndexFaultTest, AnIoErrorOnTheLogNeedsARestartAndLosesNothing) {
  MustDeliver("u@x.org", "before\r\n");
  file_system_->fault = LogFault::kIoError;
  EXPECT_FALSE(store_->Deliver("u@x.org", "under the fault\r\n").ok());
  EXPECT_TRUE(store_->IndexReadOnly());
  file_system_->fault = LogFault::kNone;
  // RocksDB 7.8 rates an I/O error on its log fatal: Resume() cannot clear it, and every write
  // is refused as temporary, naming the step that recovers.
  auto refused = store_->Deliver("u@x.org", "after clearing\r\n");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(ErrorOf(refused.status()), StoreError::kTemporary) << refused.status();
  EXPECT_NE(refused.status().message().find("restart posthaste"), absl::string_view::npos)
      << refused.status();
  EXPECT_TRUE(store_->IndexReadOnly());
  auto snapshot_under_fault = MustOpen("u@x.org");
  ASSERT_NE(snapshot_under_fault, nullptr);
  EXPECT_EQ(snapshot_under_fault->size(), 1u);
  // A deletion (POP3 QUIT) is refused as temporary too, and deletes nothing.
  EXPECT_EQ(ErrorOf(store_->CommitDeletions(*snapshot_under_fault, {0})), StoreError::kTemporary);
  Reopen();
  EXPECT_FALSE(store_->IndexReadOnly());
  MustDeliver("u@x.org", "after the restart\r\n");
  auto snapshot = MustOpen("u@x.org");
  ASSERT_NE(snapshot, nullptr);
  // The acknowledged ones; the refused one may be there too (RocksDB wrote it before its sync
  // failed), never counted as delivered.
  EXPECT_GE(snapshot->size(), 2u);
}

}  // namespace
}  // namespace posthaste::storage
