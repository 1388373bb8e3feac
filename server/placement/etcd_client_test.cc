#include "server/placement/etcd_client.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "gtest/gtest.h"
#include "server/placement/testing/etcd_cluster.h"

namespace posthaste::server::placement {
namespace {

using testing::EtcdCluster;

std::unique_ptr<EtcdCluster> StartCluster() {
  auto cluster = EtcdCluster::Start();
  EXPECT_TRUE(cluster.ok()) << cluster.status();
  return cluster.ok() ? *std::move(cluster) : nullptr;
}

TEST(EtcdClientTest, PutRangeDelete) {
  auto cluster = StartCluster();
  ASSERT_NE(cluster, nullptr);
  EtcdClient client({.endpoints = cluster->endpoints()});
  // Bytes that need base64 and JSON escaping both ways.
  const std::string value = std::string("{\"ip\":\"10.0.0.1\"}\n\x00\xff", 20);
  auto put = client.Put("/p/backends/b1", value);
  ASSERT_TRUE(put.ok()) << put.status();
  ASSERT_TRUE(client.Put("/p/tenants/a.test", "{\"backend\":\"b1\"}").ok());
  ASSERT_TRUE(client.Put("/q/other", "x").ok());
  auto one = client.Range("/p/backends/b1");
  ASSERT_TRUE(one.ok()) << one.status();
  ASSERT_EQ(one->kvs.size(), 1u);
  EXPECT_EQ(one->kvs[0].value, value);
  EXPECT_EQ(one->kvs[0].mod_revision, *put);
  EXPECT_EQ(one->kvs[0].version, 1);
  auto prefix = client.Range("/p/", {.range_end = PrefixRangeEnd("/p/")});
  ASSERT_TRUE(prefix.ok()) << prefix.status();
  EXPECT_EQ(prefix->kvs.size(), 2u);
  EXPECT_EQ(prefix->count, 2);
  EXPECT_GT(prefix->revision, *put);
  auto serializable = client.Range(
      "/p/", {.range_end = PrefixRangeEnd("/p/"), .serializable = true, .count_only = true});
  ASSERT_TRUE(serializable.ok());
  EXPECT_EQ(serializable->count, 2);
  EXPECT_TRUE(serializable->kvs.empty());
  auto missing = client.Range("/p/nothing");
  ASSERT_TRUE(missing.ok());
  EXPECT_TRUE(missing->kvs.empty());
  auto deleted = client.Delete("/p/", PrefixRangeEnd("/p/"));
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 2);
  EXPECT_EQ(client.Range("/p/", {.range_end = PrefixRangeEnd("/p/")})->count, 0);
}

TEST(EtcdClientTest, CompareAndSwapLetsOneOfTwoMovesWin) {
  auto cluster = StartCluster();
  ASSERT_NE(cluster, nullptr);
  EtcdClient client({.endpoints = cluster->endpoints()});
  // Create only if absent: once.
  auto created =
      client.CompareAndSwap("/p/tenants/a.test", 0, EtcdOp::Put("/p/tenants/a.test", "b1"));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_TRUE(*created);
  EXPECT_FALSE(
      *client.CompareAndSwap("/p/tenants/a.test", 0, EtcdOp::Put("/p/tenants/a.test", "b9")));
  const int64_t revision = client.Range("/p/tenants/a.test")->kvs[0].mod_revision;
  // Two movers read the same revision and race: exactly one switches the placement.
  std::atomic<int> wins{0};
  std::vector<std::thread> movers;
  for (const char* target : {"b2", "b3"}) {
    movers.emplace_back([&, target] {
      EtcdClient own({.endpoints = cluster->endpoints()});
      auto won = own.CompareAndSwap("/p/tenants/a.test", revision,
                                    EtcdOp::Put("/p/tenants/a.test", target));
      ASSERT_TRUE(won.ok()) << won.status();
      if (*won) wins.fetch_add(1);
    });
  }
  for (auto& t : movers) t.join();
  EXPECT_EQ(wins.load(), 1);
  const std::string now = client.Range("/p/tenants/a.test")->kvs[0].value;
  EXPECT_TRUE(now == "b2" || now == "b3") << now;
  // A compare on the value, then a delete in the failure branch.
  auto txn = client.Txn({EtcdCompare::ValueIs("/p/tenants/a.test", "b1")},
                        {EtcdOp::Put("/p/x", "never")}, {EtcdOp::Delete("/p/tenants/a.test")});
  ASSERT_TRUE(txn.ok()) << txn.status();
  EXPECT_FALSE(txn->succeeded);
  EXPECT_TRUE(client.Range("/p/tenants/a.test")->kvs.empty());
  EXPECT_TRUE(client.Range("/p/x")->kvs.empty());
}

TEST(EtcdClientTest, LeasesKeepKeysAliveUntilRevokedOrExpired) {
  auto cluster = StartCluster();
  ASSERT_NE(cluster, nullptr);
  EtcdClient client({.endpoints = cluster->endpoints()});
  auto lease = client.LeaseGrant(5);
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(client.Put("/p/backends/b1", "v", *lease).ok());
  EXPECT_EQ(client.Range("/p/backends/b1")->kvs[0].lease, *lease);
  auto ttl = client.LeaseKeepAlive(*lease);
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_EQ(*ttl, 5);
  ASSERT_TRUE(client.LeaseRevoke(*lease).ok());
  EXPECT_TRUE(client.Range("/p/backends/b1")->kvs.empty());
  EXPECT_TRUE(absl::IsNotFound(client.LeaseKeepAlive(*lease).status()));
  EXPECT_TRUE(absl::IsNotFound(client.LeaseRevoke(*lease)));
  // Not renewed: the key goes by itself.
  auto short_lease = client.LeaseGrant(1);
  ASSERT_TRUE(short_lease.ok());
  ASSERT_TRUE(client.Put("/p/backends/b2", "v", *short_lease).ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!client.Range("/p/backends/b2")->kvs.empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(client.Range("/p/backends/b2")->kvs.empty());
}

TEST(EtcdClientTest, WatchSeesPutsAndDeletesInOrder) {
  auto cluster = StartCluster();
  ASSERT_NE(cluster, nullptr);
  EtcdClient client({.endpoints = cluster->endpoints()});
  auto first = client.Put("/p/tenants/a.test", "1");
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(client.Put("/q/elsewhere", "x").ok());
  // From an old revision: the history is replayed first.
  auto watch = client.Watch("/p/", PrefixRangeEnd("/p/"), *first);
  ASSERT_TRUE(watch.ok()) << watch.status();
  ASSERT_TRUE(client.Put("/p/tenants/b.test", "2").ok());
  ASSERT_TRUE(client.Delete("/p/tenants/a.test").ok());
  std::vector<EtcdWatchEvent> events;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (events.size() < 3 && absl::Now() < deadline) {
    auto response = (*watch)->Next(absl::Now() + absl::Seconds(1));
    if (absl::IsDeadlineExceeded(response.status())) continue;
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_FALSE(response->canceled);
    for (auto& e : response->events) events.push_back(std::move(e));
  }
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].kv.key, "/p/tenants/a.test");
  EXPECT_EQ(events[0].kv.value, "1");
  EXPECT_FALSE(events[0].is_delete);
  EXPECT_EQ(events[1].kv.key, "/p/tenants/b.test");
  EXPECT_TRUE(events[2].is_delete);
  EXPECT_EQ(events[2].kv.key, "/p/tenants/a.test");
  // Nothing more: the stream waits, and says so by the deadline.
  EXPECT_TRUE(
      absl::IsDeadlineExceeded((*watch)->Next(absl::Now() + absl::Milliseconds(300)).status()));
}

// A listener that never accepts: connecting works (the backlog), answers never come.
class SilentListener {
 public:
  SilentListener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 16);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { close(fd_); }
  uint16_t port() const { return port_; }

 private:
  int fd_;
  uint16_t port_;
};

TEST(EtcdClientTest, FailsOverWhenTheMemberDiesOrHangs) {
  auto cluster = StartCluster();
  ASSERT_NE(cluster, nullptr);
  SilentListener silent;
  std::vector<HttpEndpoint> endpoints = {{.host = "127.0.0.1", .port = silent.port()}};
  for (const HttpEndpoint& e : cluster->endpoints()) endpoints.push_back(e);
  EtcdClient client({.endpoints = endpoints, .request_timeout = absl::Milliseconds(500)});
  // The hanging one times out; the next member answers and becomes current.
  auto put = client.Put("/p/k", "v");
  ASSERT_TRUE(put.ok()) << put.status();
  EXPECT_EQ(client.current_endpoint().port, cluster->endpoints()[0].port);
  // The member the client talks to dies: the calls go to another. If it was the leader, the
  // others answer once they elected a new one (about a second; more on a loaded machine).
  cluster->Kill(0);
  absl::StatusOr<EtcdRangeResult> range = absl::UnavailableError("not tried");
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (!range.ok() && absl::Now() < deadline) range = client.Range("/p/k");
  ASSERT_TRUE(range.ok()) << range.status();
  EXPECT_EQ(range->kvs[0].value, "v");
  EXPECT_NE(client.current_endpoint().port, cluster->endpoints()[0].port);
  // A transaction is never sent twice: to a hanging member it reports an unknown outcome.
  EtcdClient hanging({.endpoints = {{.host = "127.0.0.1", .port = silent.port()}},
                      .request_timeout = absl::Milliseconds(300)});
  auto txn = hanging.CompareAndSwap("/p/k", 0, EtcdOp::Put("/p/k", "w"));
  EXPECT_TRUE(absl::IsUnavailable(txn.status())) << txn.status();
}

TEST(EtcdClientTest, CancelEndsAWaitAtOnce) {
  SilentListener silent;
  EtcdClient client({.endpoints = {{.host = "127.0.0.1", .port = silent.port()}},
                     .request_timeout = absl::Seconds(30)});
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(200));
    client.Cancel();
  });
  const absl::Time start = absl::Now();
  auto range = client.Range("/p/k");
  canceller.join();
  EXPECT_TRUE(absl::IsCancelled(range.status())) << range.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

}  // namespace
}  // namespace posthaste::server::placement
