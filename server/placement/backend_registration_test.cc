#include "server/placement/backend_registration.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>

#include "gtest/gtest.h"
#include "server/placement/testing/etcd_cluster.h"

namespace posthaste::server::placement {
namespace {

using testing::EtcdCluster;

constexpr std::string_view kPrefix = "/posthaste/";

bool WaitFor(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (done()) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return done();
}

BackendRegistrationOptions Options(int64_t ttl_s) {
  return {.prefix = std::string(kPrefix),
          .backend = {.name = "b1", .ip = "127.0.0.2", .pop3_port = 1110, .lmtp_port = 2424},
          .ttl_s = ttl_s};
}

bool Registered(EtcdClient& client) {
  auto range = client.Range(BackendKey(kPrefix, "b1"));
  return range.ok() && !range->kvs.empty();
}

TEST(BackendRegistrationTest, PresentWhileRunningGoneAtOnceOnWithdraw) {
  auto cluster = EtcdCluster::Start();
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  EtcdClient reader({.endpoints = (*cluster)->endpoints()});
  BackendRegistration registration({.endpoints = (*cluster)->endpoints()}, Options(2));
  registration.Start();
  ASSERT_TRUE(WaitFor([&] { return Registered(reader); }, absl::Seconds(10)));
  auto value = reader.Range(BackendKey(kPrefix, "b1"));
  auto decoded = DecodeBackend("b1", value->kvs[0].value);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->ip, "127.0.0.2");
  EXPECT_EQ(decoded->lmtp_port, 2424);
  EXPECT_EQ(value->kvs[0].lease, registration.lease_for_test());
  // Kept alive well past its TTL.
  absl::SleepFor(absl::Seconds(5));
  EXPECT_TRUE(Registered(reader));
  ASSERT_TRUE(registration.Withdraw().ok());
  // Revoked, not left to expire: gone at the next read.
  EXPECT_FALSE(Registered(reader));
  EXPECT_TRUE(absl::IsNotFound(reader.LeaseKeepAlive(value->kvs[0].lease).status()));
}

TEST(BackendRegistrationTest, RegistersAgainAfterItsLeaseExpired) {
  auto cluster = EtcdCluster::Start();
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  EtcdClient admin({.endpoints = (*cluster)->endpoints()});
  BackendRegistration registration({.endpoints = (*cluster)->endpoints()}, Options(2));
  registration.Start();
  ASSERT_TRUE(WaitFor([&] { return registration.registered(); }, absl::Seconds(10)));
  const int64_t first = registration.lease_for_test();
  // The lease goes behind its back (as when etcd was unreachable for longer than the TTL).
  ASSERT_TRUE(admin.LeaseRevoke(first).ok());
  ASSERT_TRUE(WaitFor([&] { return registration.lease_for_test() != first && Registered(admin); },
                      absl::Seconds(10)));
}

TEST(BackendRegistrationTest, AKilledProcessIsGoneByTheTtl) {
  auto cluster = EtcdCluster::Start();
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  EtcdClient reader({.endpoints = (*cluster)->endpoints()});
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    BackendRegistration registration({.endpoints = (*cluster)->endpoints()}, Options(2));
    registration.Start();
    for (;;) pause();  // until SIGKILL: no withdraw
  }
  const bool appeared = WaitFor([&] { return Registered(reader); }, absl::Seconds(10));
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  ASSERT_TRUE(appeared);
  EXPECT_TRUE(Registered(reader));  // nobody revoked it
  EXPECT_TRUE(WaitFor([&] { return !Registered(reader); }, absl::Seconds(15)));
}

}  // namespace
}  // namespace posthaste::server::placement
