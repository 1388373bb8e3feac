// RetentionJob on a real store: what EXPIRE n deletes (messages retrieved more than n days
// before the pass's time), what it leaves (unretrieved or recent messages, tenants with EXPIRE
// unset, NEVER or 0), mailboxes held by a session (skipped, then done on the next pass), and a
// pass cut short that resumes after the last account it finished.
#include "server/retention/retention_job.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "storage/mail_store.h"

namespace posthaste::server::retention {
namespace {

const absl::Time kRetrieved = absl::FromUnixSeconds(1'700'000'000);
constexpr absl::Duration kDay = absl::Hours(24);

class FakeGuard : public MailboxGuard {
 public:
  bool TryHold(const std::string& account) override {
    if (busy.contains(account)) return false;
    ++holds;
    held.insert(account);
    return true;
  }
  void Release(const std::string& account) override { held.erase(account); }

  std::set<std::string> busy;  // held by a "session"
  std::set<std::string> held;  // by the job, now
  int holds = 0;
};

class RetentionJobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static std::atomic<int> counter{0};
    const char* tmp = std::getenv("TEST_TMPDIR");
    storage::StoreOptions options;
    options.data_dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/retention-", getpid(), "-",
                                    counter.fetch_add(1));
    auto store = storage::MailStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  void SetExpire(const std::string& domain, std::optional<uint32_t> days) {
    storage::TenantPolicy policy = store_->GetTenant(domain)->policy;
    policy.service.expire_days = days;
    ASSERT_TRUE(store_->SetTenantPolicy(domain, policy).ok());
  }

  // An account with `messages` messages, the first `retrieved` of them retrieved at kRetrieved.
  void AddAccount(const std::string& address, int messages, int retrieved) {
    ASSERT_TRUE(store_->CreateAccount(address, "x").ok());
    for (int i = 0; i < messages; ++i) {
      ASSERT_TRUE(store_->Deliver(address, absl::StrCat("Subject: ", i, "\r\n\r\nbody\r\n")).ok());
    }
    auto snap = store_->OpenMailbox(address);
    ASSERT_TRUE(snap.ok());
    std::vector<size_t> indexes;
    for (int i = 0; i < retrieved; ++i) indexes.push_back(i);
    ASSERT_TRUE(store_->RecordRetrievals(**snap, indexes, kRetrieved).ok());
  }

  uint64_t Messages(const std::string& address) {
    return store_->GetMailboxStats(address)->messages;
  }

  std::unique_ptr<storage::MailStore> store_;
  FakeGuard guard_;
  RetentionStats stats_;
};

TEST_F(RetentionJobTest, DeletesWhatWasRetrievedMoreThanNDaysAgoAndNothingElse) {
  AddAccount("a@keep7.test", 5, 3);
  AddAccount("b@never.test", 2, 2);
  AddAccount("c@zero.test", 2, 2);
  AddAccount("d@unset.test", 2, 2);
  SetExpire("keep7.test", 7);
  SetExpire("never.test", storage::TenantServiceSettings::kExpireNever);
  SetExpire("zero.test", 0);
  RetentionJob job(*store_, &guard_, {.messages_per_second = 0}, &stats_);

  // Seven days after retrieval, less a second: still kept.
  auto early = job.RunPass(kRetrieved + 7 * kDay - absl::Seconds(1));
  ASSERT_TRUE(early.ok()) << early.status();
  EXPECT_EQ(early->messages_deleted, 0u);
  EXPECT_EQ(early->tenants, 1u);
  EXPECT_EQ(Messages("a@keep7.test"), 5u);

  auto due = job.RunPass(kRetrieved + 7 * kDay);
  ASSERT_TRUE(due.ok()) << due.status();
  EXPECT_TRUE(due->complete);
  EXPECT_EQ(due->messages_deleted, 3u);
  EXPECT_GT(due->octets_deleted, 0u);
  EXPECT_EQ(Messages("a@keep7.test"), 2u);  // the two never retrieved stay
  for (const char* other : {"b@never.test", "c@zero.test", "d@unset.test"}) {
    EXPECT_EQ(Messages(other), 2u) << other;
  }
  EXPECT_EQ(stats_.messages_deleted.load(), 3u);
  EXPECT_EQ(stats_.passes.load(), 2u);
  EXPECT_GT(stats_.last_pass_end_unix_seconds.load(), 0u);
  EXPECT_TRUE(guard_.held.empty());

  // Idempotent: nothing more to do at the same time, even years later for the rest.
  auto again = job.RunPass(kRetrieved + 3650 * kDay);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->messages_deleted, 0u);
  auto report = store_->Check();
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok());
}

TEST_F(RetentionJobTest, AMailboxHeldBySessionIsSkippedThenDoneOnTheNextPass) {
  AddAccount("a@keep1.test", 3, 3);
  AddAccount("b@keep1.test", 3, 3);
  SetExpire("keep1.test", 1);
  guard_.busy.insert("a@keep1.test");
  RetentionJob job(*store_, &guard_, {.messages_per_second = 0}, &stats_);
  auto first = job.RunPass(kRetrieved + 2 * kDay);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->accounts_in_use, 1u);
  EXPECT_EQ(stats_.accounts_in_use.load(), 1u);
  EXPECT_EQ(Messages("a@keep1.test"), 3u);
  EXPECT_EQ(Messages("b@keep1.test"), 0u);

  guard_.busy.clear();  // the session quit
  auto second = job.RunPass(kRetrieved + 2 * kDay);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->accounts_in_use, 0u);
  EXPECT_EQ(Messages("a@keep1.test"), 0u);
}

TEST_F(RetentionJobTest, DeletesInBatchesEachUnderItsOwnHold) {
  AddAccount("a@keep1.test", 10, 10);
  SetExpire("keep1.test", 1);
  RetentionJob job(*store_, &guard_, {.messages_per_second = 0, .batch_messages_max = 3}, &stats_);
  auto pass = job.RunPass(kRetrieved + 2 * kDay);
  ASSERT_TRUE(pass.ok());
  EXPECT_EQ(pass->messages_deleted, 10u);
  EXPECT_EQ(guard_.holds, 4);  // 3 + 3 + 3 + 1
  EXPECT_EQ(Messages("a@keep1.test"), 0u);
}

TEST_F(RetentionJobTest, APassCutShortResumesAfterTheLastAccountDone) {
  for (int i = 0; i < 3; ++i) AddAccount(absl::StrCat("u", i, "@keep1.test"), 1, 1);
  SetExpire("keep1.test", 1);
  // A stopped pass leaves its cursor where it stopped: here, after u0.
  ASSERT_TRUE(store_->SetJobCursor("retention", "u0@keep1.test").ok());
  RetentionJob job(*store_, &guard_, {.messages_per_second = 0, .cursor_name = "retention"},
                   &stats_);
  auto resumed = job.RunPass(kRetrieved + 2 * kDay);
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ(resumed->accounts, 2u);  // u1 and u2 only
  EXPECT_EQ(Messages("u0@keep1.test"), 1u);
  EXPECT_EQ(Messages("u1@keep1.test"), 0u);
  EXPECT_EQ(*store_->GetJobCursor("retention"), "");  // complete: the next pass starts over
  auto next = job.RunPass(kRetrieved + 2 * kDay);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->accounts, 3u);
  EXPECT_EQ(Messages("u0@keep1.test"), 0u);

  // Stopped before the first account: the pass is not complete and says so.
  AddAccount("u9@keep1.test", 1, 1);
  std::atomic<bool> stop{true};
  auto stopped = job.RunPass(kRetrieved + 2 * kDay, &stop);
  ASSERT_TRUE(stopped.ok());
  EXPECT_FALSE(stopped->complete);
  EXPECT_EQ(Messages("u9@keep1.test"), 1u);
}

TEST_F(RetentionJobTest, CountersFollowTheNamingRules) {
  EXPECT_TRUE(metrics::ValidateCounterTable(RetentionCounterTable()).ok())
      << metrics::ValidateCounterTable(RetentionCounterTable());
}

}  // namespace
}  // namespace posthaste::server::retention
