// AuthPenaltyShard: a failure on one shard slows the same client on the others (by message), a
// success clears it everywhere, trusted clients send nothing, and each failure writes one log
// line in the documented format (docs/DEPLOY.md, the fail2ban filter).
#include "server/pop3_service/auth_penalty_shard.h"

#include <unistd.h>

#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace posthaste::server::pop3_service {
namespace {

using ::testing::MatchesRegex;

// Shards whose messages wait in one queue until Deliver(), as inboxes would.
class TestShards {
 public:
  explicit TestShards(uint32_t count) {
    for (uint32_t i = 0; i < count; ++i) {
      shards_.push_back(std::make_unique<AuthPenaltyShard>(
          auth::AuthPenaltyOptions{}, i, count,
          [this](uint32_t target, absl::AnyInvocable<void(AuthPenaltyShard&)> fn) {
            queue_.emplace_back(target, std::move(fn));
            return true;
          }));
    }
  }
  AuthPenaltyShard& operator[](uint32_t i) { return *shards_[i]; }
  size_t Deliver() {
    size_t delivered = 0;
    while (!queue_.empty()) {
      auto [target, fn] = std::move(queue_.front());
      queue_.pop_front();
      fn(*shards_[target]);
      ++delivered;
    }
    return delivered;
  }

 private:
  std::vector<std::unique_ptr<AuthPenaltyShard>> shards_;
  std::deque<std::pair<uint32_t, absl::AnyInvocable<void(AuthPenaltyShard&)>>> queue_;
};

PenalisedLogin From(std::string ip, std::string user = "bob@example.org", bool trusted = false) {
  return {.ip = std::move(ip), .trusted = trusted, .user = std::move(user)};
}

TEST(AuthPenaltyShard, AFailureOnOneShardSlowsTheClientOnTheOthers) {
  TestShards shards(3);
  EXPECT_EQ(shards[0].Failed(From("192.0.2.7", "a")), 2000u);
  EXPECT_EQ(shards[1].Failed(From("192.0.2.7", "b")), 2000u);  // not delivered yet
  EXPECT_EQ(shards.Deliver(), 4u);  // each failure to the two other shards
  EXPECT_EQ(shards[2].Failed(From("192.0.2.7", "c")), 8000u);
  shards.Deliver();
  EXPECT_EQ(shards[0].Failed(From("192.0.2.7", "d")), 15000u);
  EXPECT_EQ(shards[2].stats().peer_failures, 2u);
  EXPECT_EQ(shards[2].stats().failures_recorded, 1u);
}

TEST(AuthPenaltyShard, ASuccessClearsTheAddressOnEveryShard) {
  TestShards shards(2);
  for (int i = 0; i < 3; ++i) shards[0].Failed(From("2001:db8::1", "x" + std::to_string(i)));
  shards.Deliver();
  shards[1].Succeeded(From("2001:db8::2"));  // the same /64
  EXPECT_EQ(shards.Deliver(), 1u);
  EXPECT_EQ(shards[0].Failed(From("2001:db8::1", "y")), 2000u);
  EXPECT_EQ(shards[1].stats().resets, 1u);
  EXPECT_EQ(shards[0].stats().resets, 0u);  // counted once, where the login was
}

TEST(AuthPenaltyShard, TrustedClientsSendNothing) {
  TestShards shards(2);
  EXPECT_EQ(shards[0].Failed(From("10.0.0.1", "bob", true)), 2000u);
  shards[0].Succeeded(From("10.0.0.1", "bob", true));
  EXPECT_EQ(shards.Deliver(), 0u);
  EXPECT_EQ(shards[0].stats().failures_exempt, 1u);
}

// Reads what LogEvent writes while it lives.
class CapturedLog {
 public:
  CapturedLog() {
    EXPECT_EQ(pipe(fds_), 0);
    SetLogFdForTest(fds_[1]);
  }
  ~CapturedLog() {
    SetLogFdForTest(-1);
    close(fds_[0]);
    close(fds_[1]);
  }
  std::string Take() {
    char buf[4096];
    const ssize_t n = read(fds_[0], buf, sizeof(buf));
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  }

 private:
  int fds_[2] = {-1, -1};
};

TEST(AuthPenaltyShard, EachFailureWritesTheFail2banLine) {
  TestShards shards(2);
  CapturedLog log;
  shards[1].Failed({.ip = "192.0.2.7", .user = "bob@example.org", .mechanism = "PLAIN"});
  EXPECT_THAT(log.Take(), MatchesRegex("[0-9T:.Z-]+ warning \"auth failed\" rhost=192\\.0\\.2\\.7 "
                                       "user=bob@example\\.org mechanism=PLAIN shard=1 "
                                       "delay_ms=2000\n"));
  // A name with spaces is quoted and cannot pose as the address.
  shards[0].Failed({.ip = "192.0.2.8", .user = "x rhost=203.0.113.9"});
  EXPECT_THAT(
      log.Take(),
      MatchesRegex(".* \"auth failed\" rhost=192\\.0\\.2\\.8 user=\"x rhost=203\\.0\\.113\\.9\" "
                   "mechanism=USER shard=0 delay_ms=2000\n"));
}

}  // namespace
}  // namespace posthaste::server::pop3_service
