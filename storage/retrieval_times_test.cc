// Retrieval times (MailStore::RecordRetrievals, RetrievedAtOrBefore) and job cursors, on a real
// RocksDB store: what the retention job (RFC 2449 EXPIRE n) reads to decide what has expired.
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "storage/mail_store.h"
#include "storage/testing/store_test_base.h"

namespace posthaste::storage {
namespace {

using ::posthaste::storage::testing::StoreTestBase;

constexpr char kUser[] = "ann@example.org";
const absl::Time kDay1 = absl::FromUnixSeconds(1'700'000'000);

class RetrievalTimesTest : public StoreTestBase {
 protected:
  void SetUp() override {
    StoreTestBase::SetUp();
    ASSERT_TRUE(store_->CreateAccount(kUser, "x").ok());
    for (int i = 0; i < 4; ++i) MustDeliver(kUser, "Subject: m\r\n\r\nbody\r\n");
  }
  std::vector<size_t> RetrievedBy(absl::Time cutoff) {
    auto snap = MustOpen(kUser);
    auto r = store_->RetrievedAtOrBefore(*snap, cutoff);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::vector<size_t>{};
  }
};

TEST_F(RetrievalTimesTest, UnretrievedMessagesHaveNoTime) {
  EXPECT_TRUE(RetrievedBy(kDay1 + absl::Hours(24 * 3650)).empty());
}

TEST_F(RetrievalTimesTest, TheFirstRetrievalCountsAndSurvivesAReopen) {
  auto snap = MustOpen(kUser);
  ASSERT_TRUE(store_->RecordRetrievals(*snap, {1, 3}, kDay1).ok());
  // A later retrieval does not move the time forward.
  ASSERT_TRUE(store_->RecordRetrievals(*snap, {1}, kDay1 + absl::Hours(48)).ok());
  ASSERT_TRUE(store_->RecordRetrievals(*snap, {2}, kDay1 + absl::Hours(48)).ok());
  Reopen();
  EXPECT_TRUE(RetrievedBy(kDay1 - absl::Seconds(1)).empty());
  EXPECT_EQ(RetrievedBy(kDay1), (std::vector<size_t>{1, 3}));
  EXPECT_EQ(RetrievedBy(kDay1 + absl::Hours(47)), (std::vector<size_t>{1, 3}));
  EXPECT_EQ(RetrievedBy(kDay1 + absl::Hours(48)), (std::vector<size_t>{1, 2, 3}));
}

TEST_F(RetrievalTimesTest, DeletionRemovesTheTimeAndIndexesFollowTheSnapshot) {
  auto snap = MustOpen(kUser);
  ASSERT_TRUE(store_->RecordRetrievals(*snap, {0, 2}, kDay1).ok());
  ASSERT_TRUE(store_->CommitDeletions(*snap, {0}).ok());
  // Message 2 of the old snapshot is index 1 of the new one.
  EXPECT_EQ(RetrievedBy(kDay1), (std::vector<size_t>{1}));
  // A retrieval recorded through a stale snapshot for a deleted message writes nothing.
  ASSERT_TRUE(store_->RecordRetrievals(*snap, {0}, kDay1).ok());
  EXPECT_EQ(RetrievedBy(kDay1), (std::vector<size_t>{1}));
  auto report = store_->Check();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok());
}

TEST_F(RetrievalTimesTest, BadIndexRecordsNothing) {
  auto snap = MustOpen(kUser);
  EXPECT_EQ(ErrorOf(store_->RecordRetrievals(*snap, {0, 9}, kDay1)), StoreError::kNoSuchMessage);
  EXPECT_TRUE(RetrievedBy(kDay1).empty());
}

TEST_F(RetrievalTimesTest, ARecreatedAccountStartsWithoutTimes) {
  auto snap = MustOpen(kUser);
  ASSERT_TRUE(store_->RecordRetrievals(*snap, {0, 1}, kDay1).ok());
  ASSERT_TRUE(store_->DeleteAccount(kUser).ok());
  EXPECT_EQ(ErrorOf(store_->RecordRetrievals(*snap, {2}, kDay1)), StoreError::kUnknownAccount);
  ASSERT_TRUE(store_->CreateAccount(kUser, "x").ok());
  MustDeliver(kUser, "Subject: new\r\n\r\nbody\r\n");
  EXPECT_TRUE(RetrievedBy(kDay1 + absl::Hours(24 * 3650)).empty());
}

TEST_F(RetrievalTimesTest, JobCursorsAreKeptAcrossAReopenAndCleared) {
  EXPECT_EQ(*store_->GetJobCursor("retention"), "");
  ASSERT_TRUE(store_->SetJobCursor("retention", "bob@example.org").ok());
  Reopen();
  EXPECT_EQ(*store_->GetJobCursor("retention"), "bob@example.org");
  EXPECT_EQ(*store_->GetJobCursor("other"), "");
  ASSERT_TRUE(store_->SetJobCursor("retention", "").ok());
  EXPECT_EQ(*store_->GetJobCursor("retention"), "");
  EXPECT_EQ(ErrorOf(store_->SetJobCursor("retention", std::string(kJobCursorBytesMax + 1, 'a'))),
            StoreError::kInvalidArgument);
  EXPECT_EQ(ErrorOf(store_->SetJobCursor("", "a")), StoreError::kInvalidArgument);
}

}  // namespace
}  // namespace posthaste::storage
