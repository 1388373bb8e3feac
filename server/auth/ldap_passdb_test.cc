// Unit tests of the passdb's parts that need no directory: the circuit breaker, the negative
// cache, and Check() against a closed port. tests/ldap_passdb_test.py runs it against slapd.
#include "server/auth/ldap_passdb.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gtest/gtest.h"

namespace posthaste::auth {
namespace {

using State = LdapCircuitBreaker::State;

TEST(LdapCircuitBreaker, OpensAfterConsecutiveFailuresAndProbesOnce) {
  LdapCircuitBreaker breaker(3, absl::Seconds(5));
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  EXPECT_TRUE(breaker.Allow(t0));
  EXPECT_FALSE(breaker.RecordFailure(t0));
  EXPECT_FALSE(breaker.RecordFailure(t0));
  breaker.RecordSuccess();  // a success resets the run
  EXPECT_FALSE(breaker.RecordFailure(t0));
  EXPECT_FALSE(breaker.RecordFailure(t0));
  EXPECT_TRUE(breaker.RecordFailure(t0));
  EXPECT_EQ(breaker.state(), State::kOpen);
  EXPECT_FALSE(breaker.Allow(t0 + absl::Seconds(4)));
  // After open_for: one probe, the others still refused while it runs.
  EXPECT_TRUE(breaker.Allow(t0 + absl::Seconds(5)));
  EXPECT_EQ(breaker.state(), State::kHalfOpen);
  EXPECT_FALSE(breaker.Allow(t0 + absl::Seconds(5)));
  // The probe fails: open again for a whole period.
  EXPECT_TRUE(breaker.RecordFailure(t0 + absl::Seconds(6)));
  EXPECT_FALSE(breaker.Allow(t0 + absl::Seconds(10)));
  EXPECT_TRUE(breaker.Allow(t0 + absl::Seconds(11)));
  breaker.RecordSuccess();
  EXPECT_EQ(breaker.state(), State::kClosed);
  EXPECT_TRUE(breaker.Allow(t0 + absl::Seconds(11)));
  EXPECT_TRUE(breaker.Allow(t0 + absl::Seconds(11)));
}

TEST(LdapNegativeCache, RemembersWrongPasswordsForItsTtlAndStaysBounded) {
  LdapNegativeCache cache(absl::Seconds(10), 4);
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  cache.Add("alice@a.test", "wrong", t0);
  EXPECT_TRUE(cache.Contains("alice@a.test", "wrong", t0 + absl::Seconds(9)));
  EXPECT_FALSE(cache.Contains("alice@a.test", "right", t0));
  EXPECT_FALSE(cache.Contains("bob@a.test", "wrong", t0));
  // The separator keeps (login, password) pairs apart.
  EXPECT_FALSE(cache.Contains("alice@a.tes", "twrong", t0));
  EXPECT_FALSE(cache.Contains("alice@a.test", "wrong", t0 + absl::Seconds(10)));
  for (int i = 0; i < 100; ++i) {
    cache.Add("u" + std::to_string(i) + "@a.test", "x", t0 + absl::Seconds(i));
    EXPECT_LE(cache.SizeForTest(), 4u);
  }
  EXPECT_TRUE(cache.Contains("u99@a.test", "x", t0 + absl::Seconds(99)));
  LdapNegativeCache off(absl::ZeroDuration(), 4);
  off.Add("alice@a.test", "wrong", t0);
  EXPECT_FALSE(off.Contains("alice@a.test", "wrong", t0));
}

// A loopback port nothing listens on.
int ClosedPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

LdapTenantConfig Tenant() {
  LdapTenantConfig t;
  t.domain = "a.test";
  t.uris = {"ldap://127.0.0.1:" + std::to_string(ClosedPort())};
  t.user_dn = "uid=%n,dc=a,dc=test";
  t.breaker_failures_max = 2;
  t.breaker_open_ms = 60'000;
  return t;
}

TEST(LdapPassdb, UnreachableDirectoryOpensTheBreaker) {
  LdapPassdb passdb(Tenant());
  EXPECT_EQ(passdb.Check("alice@a.test", "pw").code, LdapCheckResult::Code::kUnavailable);
  EXPECT_EQ(passdb.Check("alice@a.test", "pw").code, LdapCheckResult::Code::kUnavailable);
  EXPECT_EQ(passdb.stats().breaker_opened.load(), 1u);
  EXPECT_EQ(passdb.stats().breaker_state.load(), 1u);
  // Open: answered without a connection attempt.
  const uint64_t opened = passdb.stats().connections_opened.load();
  EXPECT_EQ(passdb.Check("bob@a.test", "pw").code, LdapCheckResult::Code::kUnavailable);
  EXPECT_EQ(passdb.stats().breaker_refused.load(), 1u);
  EXPECT_EQ(passdb.stats().connections_opened.load(), opened);
  EXPECT_EQ(passdb.stats().requests_unavailable.load(), 2u);
  EXPECT_EQ(passdb.stats().connections_open.load(), 0u);
  EXPECT_EQ(passdb.stats().connections_in_use.load(), 0u);
}

TEST(LdapPassdb, EmptyPasswordAndMalformedLoginsNeverReachTheDirectory) {
  LdapPassdb passdb(Tenant());
  // An empty password would be an unauthenticated bind, which directories accept.
  EXPECT_EQ(passdb.Check("alice@a.test", "").code, LdapCheckResult::Code::kBadCredentials);
  EXPECT_EQ(passdb.Check("@a.test", "pw").code, LdapCheckResult::Code::kBadCredentials);
  EXPECT_EQ(passdb.Check(std::string("al\0ice@a.test", 13), "pw").code,
            LdapCheckResult::Code::kBadCredentials);
  EXPECT_EQ(passdb.Check(std::string(400, 'a') + "@a.test", "pw").code,
            LdapCheckResult::Code::kBadCredentials);
  EXPECT_EQ(passdb.stats().connections_opened.load(), 0u);
  EXPECT_EQ(passdb.stats().breaker_state.load(), 0u);
}

TEST(LdapDirectory, RoutesByDomainInAnyCase) {
  LdapConfig config;
  config.tenants.push_back(Tenant());
  LdapDirectory directory(std::move(config));
  EXPECT_NE(directory.ForLogin("alice@A.Test"), nullptr);
  EXPECT_NE(directory.ForLogin("we@ird@a.test"), nullptr);
  EXPECT_EQ(directory.ForLogin("alice@b.test"), nullptr);
  EXPECT_EQ(directory.ForLogin("alice"), nullptr);
  EXPECT_EQ(directory.ForLogin("alice@a.test.evil"), nullptr);
}

}  // namespace
}  // namespace posthaste::auth
