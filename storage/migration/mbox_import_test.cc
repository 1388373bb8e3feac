// The mbox splitter on hand-made files, and ImportMbox into a real store on disk.
#include "storage/migration/mbox_import.h"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/mail_store.h"
#include "storage/testing/store_test_base.h"

namespace posthaste::storage::migration {
namespace {

std::vector<MboxMessage> Split(const std::string& text, uint64_t limit = 1 << 20,
                               absl::Status* status = nullptr) {
  std::istringstream in(text);
  std::vector<MboxMessage> out;
  absl::Status s = ForEachMboxMessage(in, limit, [&](MboxMessage& m) {
    out.push_back(m);
    return absl::OkStatus();
  });
  if (status != nullptr) {
    *status = s;
  } else {
    EXPECT_TRUE(s.ok()) << s;
  }
  return out;
}

constexpr char kTwo[] =
    "From alice@example.org Thu Jan  1 10:20:30 2026\n"
    "Subject: one\n"
    "\n"
    ">From the start, an escaped line\n"
    ">>From a quoted one\n"
    "From inside a paragraph stays text\n"
    "\n"
    "\n"
    "From bob@example.org Fri Jan  2 00:00:00 2026\n"
    "Subject: two\n"
    "\n"
    "last line without a newline";

TEST(MboxSplitTest, SeparatorsEscapesAndTheEmptyLineBeforeASeparator) {
  const std::vector<MboxMessage> messages = Split(kTwo);
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0].text,
            "Subject: one\n\nFrom the start, an escaped line\n>From a quoted one\n"
            "From inside a paragraph stays text\n\n");
  EXPECT_EQ(messages[1].text, "Subject: two\n\nlast line without a newline\n");
  ASSERT_TRUE(messages[0].arrival.has_value());
  EXPECT_EQ(absl::ToUnixSeconds(*messages[0].arrival), 1767262830);  // 2026-01-01 10:20:30 UTC
  EXPECT_EQ(absl::ToUnixSeconds(*messages[1].arrival), 1767312000);
}

TEST(MboxSplitTest, CrlfFilesAndSeparatorsWithoutADate) {
  const std::vector<MboxMessage> messages =
      Split("From MAILER-DAEMON\r\nSubject: a\r\n\r\nbody\r\n\r\nFrom x\r\nSubject: b\r\n");
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[0].text, "Subject: a\r\n\nbody\r\n");
  EXPECT_FALSE(messages[0].arrival.has_value());
  EXPECT_EQ(messages[1].text, "Subject: b\r\n");
}

TEST(MboxSplitTest, NotAnMboxAndOversizedMessagesAreRefused) {
  absl::Status status;
  Split("Subject: no separator\n", 1 << 20, &status);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  Split(absl::StrCat("From x\n", std::string(2000, 'a'), "\n"), 1000, &status);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  Split(absl::StrCat("From x\n", std::string(2000, 'a')), 1000, &status);  // one long line
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Split("").empty());
}

TEST(MboxSplitTest, UidlsAreShortValidAndDistinctPerOccurrence) {
  const std::string hex(64, 'a');
  EXPECT_EQ(MboxUidl(hex, 1), "MB" + std::string(32, 'a') + ".1");
  EXPECT_NE(MboxUidl(hex, 1), MboxUidl(hex, 2));
  EXPECT_TRUE(ValidateUidl(MboxUidl(hex, 123456)).ok());
}

class MboxImportTest : public ::posthaste::storage::testing::StoreTestBase {
 protected:
  void SetUp() override {
    StoreTestBase::SetUp();
    ASSERT_TRUE(store_->CreateAccount("ann@example.org", "$hash").ok());
    path_ = absl::StrCat(options_.data_dir, "-mbox");
  }
  void Write(const std::string& text) {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out << text;
  }
  std::string path_;
};

TEST_F(MboxImportTest, ImportsOnceKeepsDuplicatesAndArrivalTimes) {
  const std::string same = "From x Thu Jan  1 00:00:00 2026\nSubject: same\n\nsame body\n\n";
  Write(absl::StrCat(kTwo, "\n\n", same, same));
  std::vector<MboxImportProgress> reports;
  auto result = ImportMbox(*store_, "Ann@Example.org", path_,
                           [&](const MboxImportProgress& p) { reports.push_back(p); });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->total, 4u);
  EXPECT_EQ(result->imported, 4u);  // the two identical messages both kept
  ASSERT_FALSE(reports.empty());
  EXPECT_EQ(reports.back().done, 4u);
  auto snapshot = MustOpen("ann@example.org");
  ASSERT_EQ(snapshot->size(), 4u);
  EXPECT_EQ(absl::ToUnixSeconds(snapshot->arrival_time(0)), 1767262830);
  EXPECT_NE(snapshot->uidl(2), snapshot->uidl(3));
  auto first = store_->ReadMessageForTest(*snapshot, 0);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(*first,
            "Subject: one\r\n\r\nFrom the start, an escaped line\r\n>From a quoted one\r\n"
            "From inside a paragraph stays text\r\n\r\n");

  // Again: nothing new. With one more message appended: only that one.
  auto again = ImportMbox(*store_, "ann@example.org", path_, nullptr);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->imported, 0u);
  EXPECT_EQ(again->skipped, 4u);
  Write(absl::StrCat(kTwo, "\n\n", same, same, same));
  auto more = ImportMbox(*store_, "ann@example.org", path_, nullptr);
  ASSERT_TRUE(more.ok()) << more.status();
  EXPECT_EQ(more->imported, 1u);
  EXPECT_EQ(MustOpen("ann@example.org")->size(), 5u);
}

TEST_F(MboxImportTest, RefusesBeforeStoringWhatTheStoreWouldRefuse) {
  ASSERT_TRUE(store_->SetQuota("ann@example.org", AccountQuota{1, 0}).ok());
  Write(kTwo);
  auto over_quota = ImportMbox(*store_, "ann@example.org", path_, nullptr);
  EXPECT_EQ(over_quota.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(MustOpen("ann@example.org")->size(), 0u);
  EXPECT_EQ(ImportMbox(*store_, "nobody@example.org", path_, nullptr).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ImportMbox(*store_, "ann@example.org", path_ + ".missing", nullptr).status().code(),
            absl::StatusCode::kNotFound);
  Write("not an mbox\n");
  EXPECT_EQ(ImportMbox(*store_, "ann@example.org", path_, nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace posthaste::storage::migration
