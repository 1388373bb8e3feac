#include "server/placement/directory_cache.h"

#include <functional>
#include <iostream>

#include "gtest/gtest.h"
#include "server/placement/testing/etcd_cluster.h"

namespace posthaste::server::placement {
namespace {

using testing::EtcdCluster;

constexpr std::string_view kPrefix = "/posthaste/";

// Polls `done` every 20 ms for up to `timeout`.
bool WaitFor(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return done();
}

std::string BackendOf(const DirectorySnapshot& snapshot, std::string_view address) {
  auto route = snapshot.Resolve(address);
  return route.ok() ? route->backend->name : std::string(route.status().message());
}

std::string BackendOf(const DirectorySource& source, std::string_view address) {
  return BackendOf(*source.Current(), address);
}

class DirectoryCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cluster = EtcdCluster::Start();
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
    writer_ = std::make_unique<EtcdClient>(EtcdClientOptions{.endpoints = cluster_->endpoints()});
    for (const char* name : {"b1", "b2"}) {
      ASSERT_TRUE(writer_
                      ->Put(BackendKey(kPrefix, name),
                            EncodeBackend({.ip = "127.0.0.1", .pop3_port = 110, .lmtp_port = 24}))
                      .ok());
    }
    ASSERT_TRUE(
        writer_->Put(TenantKey(kPrefix, "a.test"), EncodePlacement({.backend = "b1"})).ok());
  }

  std::unique_ptr<DirectoryCache> StartCache() {
    // Short timeouts: a member without quorum is given up on quickly.
    auto cache = std::make_unique<DirectoryCache>(
        EtcdClientOptions{.endpoints = cluster_->endpoints(),
                          .request_timeout = absl::Milliseconds(800)},
        DirectoryCacheOptions{.probe_interval = absl::Milliseconds(300)});
    EXPECT_TRUE(cache->WaitLoaded(absl::Seconds(10)));
    return cache;
  }

  std::unique_ptr<EtcdCluster> cluster_;
  std::unique_ptr<EtcdClient> writer_;
};

TEST_F(DirectoryCacheTest, LoadsThenFollowsChanges) {
  auto cache = StartCache();
  EXPECT_FALSE(cache->stale());
  EXPECT_EQ(BackendOf(*cache, "u@a.test"), "b1");
  const int64_t loaded_revision = cache->Current()->revision;
  EXPECT_GT(loaded_revision, 0);
  // A user override arrives through the watch; readers holding the old snapshot keep it.
  const auto before = cache->Current();
  const absl::Time put_at = absl::Now();
  ASSERT_TRUE(
      writer_->Put(UserKey(kPrefix, "vip@a.test"), EncodePlacement({.backend = "b2"})).ok());
  ASSERT_TRUE(WaitFor([&] { return BackendOf(*cache, "vip@a.test") == "b2"; }, absl::Seconds(5)));
  std::cout << "put seen by the cache after " << absl::FormatDuration(absl::Now() - put_at) << "\n";
  EXPECT_TRUE(absl::IsNotFound(before->Resolve("nobody@b.test").status()));
  EXPECT_EQ(BackendOf(*before, "vip@a.test"), "b1");
  EXPECT_GT(cache->Current()->revision, loaded_revision);
  // A backend withdrawn: its mailboxes become Unavailable, not misrouted.
  ASSERT_TRUE(writer_->Delete(BackendKey(kPrefix, "b1")).ok());
  ASSERT_TRUE(WaitFor([&] { return cache->Current()->backends.size() == 1; }, absl::Seconds(5)));
  EXPECT_TRUE(absl::IsUnavailable(cache->Current()->Resolve("u@a.test").status()));
  // A value that does not decode is counted and left out.
  ASSERT_TRUE(writer_->Put(TenantKey(kPrefix, "bad.test"), "{not json").ok());
  ASSERT_TRUE(WaitFor([&] { return cache->stats().bad_values == 1; }, absl::Seconds(5)));
  const DirectoryCacheStats stats = cache->stats();
  EXPECT_EQ(stats.reloads, 1u);
  EXPECT_GE(stats.watch_events, 3u);
  EXPECT_FALSE(stats.stale);
  EXPECT_EQ(stats.revision, cache->Current()->revision);
}

TEST_F(DirectoryCacheTest, FollowsOnAnotherMemberWhenItsMemberDies) {
  auto cache = StartCache();
  // The cache starts with the first member, so its watch is there once a change came through.
  ASSERT_TRUE(writer_->Put(TenantKey(kPrefix, "c.test"), EncodePlacement({.backend = "b1"})).ok());
  ASSERT_TRUE(WaitFor([&] { return BackendOf(*cache, "u@c.test") == "b1"; }, absl::Seconds(5)));
  cluster_->Kill(0);
  ASSERT_TRUE(writer_->Put(TenantKey(kPrefix, "a.test"), EncodePlacement({.backend = "b2"})).ok());
  EXPECT_TRUE(WaitFor([&] { return BackendOf(*cache, "u@a.test") == "b2"; }, absl::Seconds(10)));
  EXPECT_GE(cache->stats().watch_restarts, 1u);
  EXPECT_FALSE(cache->stale());
}

TEST_F(DirectoryCacheTest, StaleWithoutQuorumAnswersFromTheCacheThenRecovers) {
  auto cache = StartCache();
  ASSERT_EQ(BackendOf(*cache, "u@a.test"), "b1");
  const absl::Time killed_at = absl::Now();
  cluster_->Kill(1);
  cluster_->Kill(2);
  ASSERT_TRUE(WaitFor([&] { return cache->stale(); }, absl::Seconds(15)));
  std::cout << "stale after " << absl::FormatDuration(absl::Now() - killed_at) << "\n";
  EXPECT_TRUE(cache->stats().stale);
  EXPECT_GT(cache->stats().errors, 0u);
  // Answers keep coming from the last snapshot.
  EXPECT_EQ(BackendOf(*cache, "u@a.test"), "b1");
  // Kill the last one too: still answering.
  cluster_->Kill(0);
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(BackendOf(*cache, "u@a.test"), "b1");
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(cluster_->Restart(i).ok());
  ASSERT_TRUE(cluster_->WaitHealthy(absl::Seconds(20)).ok());
  const absl::Time healthy_at = absl::Now();
  ASSERT_TRUE(WaitFor([&] { return !cache->stale(); }, absl::Seconds(15)));
  std::cout << "fresh again " << absl::FormatDuration(absl::Now() - healthy_at)
            << " after the cluster answered\n";
  // And changes flow again.
  ASSERT_TRUE(writer_->Put(TenantKey(kPrefix, "a.test"), EncodePlacement({.backend = "b2"})).ok());
  EXPECT_TRUE(WaitFor([&] { return BackendOf(*cache, "u@a.test") == "b2"; }, absl::Seconds(10)));
}

}  // namespace
}  // namespace posthaste::server::placement
