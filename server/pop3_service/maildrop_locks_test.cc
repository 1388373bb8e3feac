// MaildropLocks across three simulated shards on one thread: grants, refusals, takeover of an
// idle holder, the (user, IP) limit, and what is given back when a connection ends, also while
// its request is still out.
#include "server/pop3_service/maildrop_locks.h"

#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace posthaste::server {
namespace {

using Outcome = MaildropLocks::Outcome;

// Every shard's messages go through one queue, run in order by RunAll().
class FakeShards final : public MaildropShards {
 public:
  explicit FakeShards(uint32_t count) : registries_(count) {}

  uint32_t shard_count() const override { return static_cast<uint32_t>(registries_.size()); }
  bool RunOn(uint32_t from, uint32_t target, absl::AnyInvocable<void()> fn) override {
    if (refuse_sends) return false;
    queue_.push_back(std::move(fn));
    return true;
  }
  MaildropRegistry& RegistryOf(uint32_t shard) override { return registries_[shard]; }
  bool EndIfIdle(ConnectionRef holder, std::string_view user, uint64_t idle_ns) override {
    if (idle.count(holder.id) == 0) return false;
    ended.push_back(holder);
    return true;
  }
  void EndForMove(ConnectionRef holder, std::string_view user) override {
    ended_for_move.push_back(holder);
  }

  void RunAll() {
    for (int i = 0; i < 1000 && !queue_.empty(); ++i) {
      absl::AnyInvocable<void()> fn = std::move(queue_.front());
      queue_.pop_front();
      fn();
    }
    ASSERT_TRUE(queue_.empty());
  }
  std::optional<ConnectionRef> Holder(const std::string& user) {
    return registries_[OwnerShard(user, shard_count())].HolderForTest(user);
  }
  size_t Entries(const std::string& user) {
    return registries_[OwnerShard(user, shard_count())].users();
  }

  bool refuse_sends = false;
  std::set<uint64_t> idle;  // connection ids that EndIfIdle may end
  std::vector<ConnectionRef> ended;
  std::vector<ConnectionRef> ended_for_move;

 private:
  std::vector<MaildropRegistry> registries_;
  std::deque<absl::AnyInvocable<void()>> queue_;
};

class MaildropLocksTest : public ::testing::Test {
 protected:
  MaildropLocksTest() {
    for (uint32_t i = 0; i < 3; ++i) locks_.push_back(std::make_unique<MaildropLocks>(shards_, i));
  }

  // Connection `id` on `shard` asks; returns the outcome once every message has run.
  std::optional<Outcome> Ask(uint32_t shard, uint64_t id, std::string ip = "192.0.2.1",
                             pop3::InUsePolicy policy = pop3::InUsePolicy::kRefuse,
                             uint32_t limit = 0) {
    std::optional<Outcome> result;
    MaildropLocks::Request request{.user = "mrose@example.org",
                                   .ip = std::move(ip),
                                   .user_ip_limit = limit,
                                   .policy = policy,
                                   .takeover_idle_ns = 10};
    EXPECT_TRUE(locks_[shard]->Acquire(id, request, [&result](Outcome o) { result = o; }));
    shards_.RunAll();
    return result;
  }

  FakeShards shards_{3};
  std::vector<std::unique_ptr<MaildropLocks>> locks_;
};

TEST_F(MaildropLocksTest, SecondConnectionIsRefusedUntilTheFirstEnds) {
  EXPECT_EQ(Ask(0, 1), Outcome::kGranted);
  EXPECT_EQ(shards_.Holder("mrose@example.org"), (ConnectionRef{0, 1}));
  EXPECT_EQ(Ask(2, 5), Outcome::kInUse);
  locks_[0]->Release(1);
  shards_.RunAll();
  EXPECT_EQ(Ask(2, 6), Outcome::kGranted);
  locks_[2]->Release(5);
  locks_[2]->Release(6);
  shards_.RunAll();
  EXPECT_EQ(shards_.Entries("mrose@example.org"), 0u);
  EXPECT_EQ(locks_[0]->leases() + locks_[2]->leases(), 0u);
}

TEST_F(MaildropLocksTest, IdleHolderIsTakenOverBusyHolderIsNot) {
  EXPECT_EQ(Ask(0, 1, "192.0.2.1", pop3::InUsePolicy::kTakeover), Outcome::kGranted);
  EXPECT_EQ(Ask(1, 2, "192.0.2.1", pop3::InUsePolicy::kTakeover), Outcome::kInUse);  // not idle
  EXPECT_TRUE(shards_.ended.empty());
  shards_.idle.insert(1);
  EXPECT_EQ(Ask(1, 3, "192.0.2.1", pop3::InUsePolicy::kTakeover), Outcome::kGranted);
  EXPECT_EQ(shards_.ended, (std::vector<ConnectionRef>{{0, 1}}));
  EXPECT_EQ(shards_.Holder("mrose@example.org"), (ConnectionRef{1, 3}));
  locks_[0]->Release(1);  // the ended holder's release leaves the new holder alone
  shards_.RunAll();
  EXPECT_EQ(shards_.Holder("mrose@example.org"), (ConnectionRef{1, 3}));
}

// A connection that ends while its request is out: the lock granted to it is given back.
TEST_F(MaildropLocksTest, LockGrantedAfterTheConnectionEndedIsGivenBack) {
  bool answered = false;
  ASSERT_TRUE(locks_[0]->Acquire(1, {.user = "mrose@example.org", .ip = "192.0.2.1"},
                                 [&answered](Outcome) { answered = true; }));
  locks_[0]->Release(1);
  shards_.RunAll();
  EXPECT_FALSE(answered);
  EXPECT_EQ(shards_.Holder("mrose@example.org"), std::nullopt);
  EXPECT_EQ(shards_.Entries("mrose@example.org"), 0u);
  EXPECT_EQ(locks_[0]->leases(), 0u);
  EXPECT_EQ(Ask(1, 2), Outcome::kGranted);
}

TEST_F(MaildropLocksTest, UserIpLimitCountsUntilRelease) {
  EXPECT_EQ(Ask(0, 1, "192.0.2.1", pop3::InUsePolicy::kRefuse, 1), Outcome::kGranted);
  EXPECT_EQ(Ask(1, 2, "192.0.2.1", pop3::InUsePolicy::kRefuse, 1), Outcome::kTooManyForUserIp);
  EXPECT_EQ(Ask(1, 3, "192.0.2.9", pop3::InUsePolicy::kRefuse, 1), Outcome::kInUse);
  EXPECT_EQ(locks_[1]->leases(), 1u);  // connection 3 is counted for its IP; 2 is not
  locks_[0]->Unlock(1);                // the maildrop could not be opened: the count stays
  shards_.RunAll();
  EXPECT_EQ(shards_.Holder("mrose@example.org"), std::nullopt);
  EXPECT_EQ(Ask(2, 4, "192.0.2.1", pop3::InUsePolicy::kRefuse, 1), Outcome::kTooManyForUserIp);
  locks_[0]->Release(1);
  shards_.RunAll();
  EXPECT_EQ(Ask(2, 5, "192.0.2.1", pop3::InUsePolicy::kRefuse, 1), Outcome::kGranted);
}

TEST_F(MaildropLocksTest, AskingForAnotherUserGivesTheFirstBack) {
  EXPECT_EQ(Ask(0, 1), Outcome::kGranted);
  std::optional<Outcome> other;
  ASSERT_TRUE(locks_[0]->Acquire(1, {.user = "someone@example.org", .ip = "192.0.2.1"},
                                 [&other](Outcome o) { other = o; }));
  shards_.RunAll();
  EXPECT_EQ(other, Outcome::kGranted);
  EXPECT_EQ(shards_.Holder("mrose@example.org"), std::nullopt);
}

TEST_F(MaildropLocksTest, UnsentRequestHoldsNothing) {
  shards_.refuse_sends = true;
  EXPECT_FALSE(locks_[0]->Acquire(1, {.user = "mrose@example.org", .user_ip_limit = 1},
                                  [](Outcome) { ADD_FAILURE(); }));
  EXPECT_EQ(locks_[0]->leases(), 0u);
}

// A move ends the holder whatever it is doing (not only when idle), through the holder's shard;
// with nobody holding, it is done at once; a refused message leaves `done` unrun.
TEST_F(MaildropLocksTest, MoveEndsTheHolderBusyOrNot) {
  const std::string user = "mrose@example.org";
  const uint32_t owner = OwnerShard(user, shards_.shard_count());
  int done = 0;
  EndMaildropHolderForMove(shards_, owner, user, [&done] { ++done; });
  EXPECT_EQ(done, 1);  // nobody holds it
  EXPECT_TRUE(shards_.ended_for_move.empty());

  EXPECT_EQ(Ask(2, 7), Outcome::kGranted);  // busy: EndIfIdle would not end it
  EndMaildropHolderForMove(shards_, owner, user, [&done] { ++done; });
  EXPECT_EQ(done, 1);  // waits for the holder's shard
  shards_.RunAll();
  EXPECT_EQ(done, 2);
  EXPECT_EQ(shards_.ended_for_move, (std::vector<ConnectionRef>{{2, 7}}));
  EXPECT_TRUE(shards_.ended.empty());

  shards_.refuse_sends = true;
  EndMaildropHolderForMove(shards_, owner, user, [&done] { ++done; });
  shards_.refuse_sends = false;
  shards_.RunAll();
  EXPECT_EQ(done, 2);
}

}  // namespace
}  // namespace posthaste::server
