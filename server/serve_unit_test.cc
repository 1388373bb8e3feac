// Unit tests of the serve building blocks that need no network: flag parsing, CIDR matching,
// the maildrop registry's lock/takeover/limit rules, the verification cache, and the storage
// adapter.
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/auth/password_hash.h"
#include "server/lmtp_service/store_verdicts.h"
#include "server/pop3_service/auth_service.h"
#include "server/pop3_service/maildrop_registry.h"
#include "server/pop3_service/storage_adapter.h"
#include "server/serve_options.h"
#include "storage/mail_store.h"

namespace posthaste::server {
namespace {

using Outcome = MaildropRegistry::Outcome;

TEST(ServeOptionsTest, DefaultsAndFlags) {
  auto o = ParseServeOptions({"--data_dir=/x"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->pop3_listen.host, "0.0.0.0");
  EXPECT_EQ(o->pop3_listen.port, 110);
  EXPECT_EQ(o->metrics_listen.port, 9110);
  EXPECT_EQ(o->max_connections_per_user_ip, 10u);
  EXPECT_EQ(o->auth_timeout_s, 60u);
  EXPECT_EQ(o->idle_timeout_s, 600u);
  EXPECT_TRUE(o->plaintext_requires_tls);
  EXPECT_EQ(o->in_use_policy, pop3::InUsePolicy::kTakeover);
  ASSERT_EQ(o->trusted_networks.size(), 2u);  // loopback
  const uint8_t loopback4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 2};
  EXPECT_TRUE(CidrContains(o->trusted_networks[0], loopback4));
  EXPECT_TRUE(
      ParseServeOptions({"--data_dir=/x", "--trusted_networks="})->trusted_networks.empty());

  o = ParseServeOptions({"--data_dir", "/x", "--pop3_listen=127.0.0.1:0",
                         "--metrics_listen=[::1]:9", "--shards=3", "--in_use_policy=refuse",
                         "--trusted_networks=10.0.0.0/8,::1", "--plaintext_requires_tls=false"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->pop3_listen.port, 0);
  EXPECT_EQ(o->metrics_listen.host, "::1");
  EXPECT_EQ(o->shards, 3u);
  EXPECT_EQ(o->in_use_policy, pop3::InUsePolicy::kRefuse);
  EXPECT_EQ(o->trusted_networks.size(), 2u);
  EXPECT_FALSE(o->plaintext_requires_tls);

  EXPECT_FALSE(ParseServeOptions({}).ok());  // --data_dir is required
  EXPECT_FALSE(ParseServeOptions({"--data_dir=/x", "--bogus=1"}).ok());
  EXPECT_FALSE(ParseServeOptions({"--data_dir=/x", "--pop3_listen=1.2.3.4"}).ok());
  EXPECT_FALSE(ParseServeOptions({"--data_dir=/x", "--pop3_listen=h:70000"}).ok());
  EXPECT_FALSE(ParseServeOptions({"--data_dir=/x", "--shards=x"}).ok());
  EXPECT_FALSE(ParseServeOptions({"--data_dir=/x", "--in_use_policy=steal"}).ok());
  // Every deadline is at least a second: 0 would turn a deadline off (or fire it at once).
  for (const char* flag : {"--auth_timeout_s=0", "--idle_timeout_s=0", "--send_stall_timeout_s=0",
                           "--lmtp_idle_timeout_s=0"}) {
    EXPECT_FALSE(ParseServeOptions({"--data_dir=/x", flag}).ok()) << flag;
  }
  EXPECT_TRUE(ParseServeOptions({"--data_dir=/x", "--send_stall_timeout_s=1"}).ok());
  EXPECT_FALSE(ParseServeOptions({"--data_dir=/x", "--trusted_networks=10.0.0.0/33"}).ok());
}

TEST(ServeOptionsTest, ProxyNetworks) {
  auto o = ParseServeOptions({"--data_dir=/x"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->proxy_networks.empty());  // no PROXY protocol unless asked for
  EXPECT_EQ(o->proxy_header_timeout_ms, 5000u);
  EXPECT_TRUE(o->proxy_plaintext_logins);
  o = ParseServeOptions({"--data_dir=/x", "--proxy_networks=10.1.0.0/16,2001:db8::/32",
                         "--proxy_header_timeout_ms=250", "--proxy_plaintext_logins=false"});
  ASSERT_TRUE(o.ok()) << o.status();
  ASSERT_EQ(o->proxy_networks.size(), 2u);
  const uint8_t inside[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3};
  const uint8_t outside[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 2, 2, 3};
  EXPECT_TRUE(CidrContains(o->proxy_networks[0], inside));
  EXPECT_FALSE(CidrContains(o->proxy_networks[0], outside));
  EXPECT_EQ(o->proxy_header_timeout_ms, 250u);
  EXPECT_FALSE(o->proxy_plaintext_logins);
  EXPECT_EQ(o->trusted_networks.size(), 2u);  // untouched: the two lists are separate
  // LMTP on the pod address, for an MTA or an LMTP proxy elsewhere in the cluster.
  o = ParseServeOptions({"--data_dir=/x", "--lmtp_listen=0.0.0.0:2424"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->lmtp_listen.host, "0.0.0.0");
  EXPECT_EQ(o->lmtp_listen.port, 2424);
}

TEST(ServeOptionsTest, DrainDelay) {
  auto o = ParseServeOptions({"--data_dir=/x"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->drain_delay_s, 0u);  // off unless asked for (the Helm chart sets it)
  o = ParseServeOptions({"--data_dir=/x", "--drain_delay_s=15"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->drain_delay_s, 15u);
  EXPECT_FALSE(ParseServeOptions({"--data_dir=/x", "--drain_delay_s=3601"}).ok());
  EXPECT_FALSE(ParseServeOptions({"--data_dir=/x", "--drain_delay_s=-1"}).ok());
}

TEST(ServeOptionsTest, PinShards) {
  EXPECT_TRUE(ParseServeOptions({"--data_dir=/x"})->pin_shards);
  EXPECT_FALSE(ParseServeOptions({"--data_dir=/x", "--pin_shards=false"})->pin_shards);
  EXPECT_FALSE(ParseServeOptions({"--data_dir=/x", "--pin_shards=sometimes"}).ok());
}

TEST(ServeOptionsTest, OffloadPoolSizes) {
  auto o = ParseServeOptions({"--data_dir=/x"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->offload_threads, 0u);  // CPU pool: sized from the shards at startup
  EXPECT_EQ(o->io_threads, 32u);
  o = ParseServeOptions({"--data_dir=/x", "--offload_threads=3", "--io_threads=64"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->offload_threads, 3u);
  EXPECT_EQ(o->io_threads, 64u);
  EXPECT_FALSE(ParseServeOptions({"--data_dir=/x", "--io_threads=0"}).ok());
  EXPECT_FALSE(ParseServeOptions({"--data_dir=/x", "--io_threads=257"}).ok());
}

TEST(ServeOptionsTest, PlacementDirectoryFlags) {
  auto o = ParseServeOptions({"--data_dir=/x"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->etcd_endpoints.empty());  // no registration
  EXPECT_EQ(o->etcd_prefix, "/posthaste/");
  EXPECT_EQ(o->etcd_lease_ttl_s, 5u);
  o = ParseServeOptions({"--data_dir=/x",
                         "--etcd_endpoints=http://127.0.0.1:2379,http://[::1]:2379",
                         "--advertise_ip=10.0.0.7", "--backend_name=b1", "--etcd_lease_ttl_s=3",
                         "--etcd_prefix=/mail/"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->advertise_ip, "10.0.0.7");
  EXPECT_EQ(o->backend_name, "b1");
  EXPECT_EQ(o->etcd_lease_ttl_s, 3u);
  for (const std::vector<std::string>& bad : std::vector<std::vector<std::string>>{
           {"--data_dir=/x", "--etcd_endpoints=http://127.0.0.1:2379"},  // no --advertise_ip
           {"--data_dir=/x", "--etcd_endpoints=http://127.0.0.1:2379", "--advertise_ip=host"},
           {"--data_dir=/x", "--etcd_endpoints=127.0.0.1:2379", "--advertise_ip=10.0.0.7"},
           {"--data_dir=/x", "--etcd_endpoints=http://a:1", "--advertise_ip=10.0.0.7",
            "--etcd_prefix=nosl"},
           {"--data_dir=/x", "--etcd_endpoints=http://a:1", "--advertise_ip=10.0.0.7",
            "--backend_name=a/b"},
           {"--data_dir=/x", "--advertise_ip=10.0.0.7"},  // nothing to register with
           {"--data_dir=/x", "--etcd_endpoints=http://a:1", "--advertise_ip=10.0.0.7",
            "--etcd_lease_ttl_s=0"},
       }) {
    EXPECT_FALSE(ParseServeOptions(bad).ok()) << bad.back();
  }
}

TEST(ServeOptionsTest, TlsFlags) {
  auto o = ParseServeOptions({"--data_dir=/x"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_FALSE(o->tls_configured());
  EXPECT_FALSE(o->pop3s_enabled);  // no certificate: no pop3s listener
  EXPECT_EQ(o->tls_reload_check_s, 10u);

  o = ParseServeOptions({"--data_dir=/x", "--tls_cert=/c.pem", "--tls_key=/k.pem"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->tls_configured());
  EXPECT_TRUE(o->pop3s_enabled);
  EXPECT_EQ(o->pop3s_listen.host, "0.0.0.0");
  EXPECT_EQ(o->pop3s_listen.port, 995);

  o = ParseServeOptions({"--data_dir=/x", "--tls_cert=/c.pem", "--tls_key=/k.pem",
                         "--tls_cert_dir=/d", "--pop3s_listen=127.0.0.1:0",
                         "--tls_reload_check_s=0"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->pop3s_listen.port, 0);
  EXPECT_EQ(o->tls_cert_dir, "/d");
  EXPECT_EQ(o->tls_reload_check_s, 0u);

  o = ParseServeOptions(
      {"--data_dir=/x", "--tls_cert=/c.pem", "--tls_key=/k.pem", "--pop3s_listen=off"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_FALSE(o->pop3s_enabled);
  EXPECT_TRUE(o->tls_configured());  // STLS still offered

  EXPECT_FALSE(ParseServeOptions({"--data_dir=/x", "--tls_cert=/c.pem"}).ok());
  EXPECT_FALSE(ParseServeOptions({"--data_dir=/x", "--tls_key=/k.pem"}).ok());
  EXPECT_FALSE(ParseServeOptions({"--data_dir=/x", "--tls_cert_dir=/d"}).ok());
  EXPECT_FALSE(ParseServeOptions({"--data_dir=/x", "--pop3s_listen=127.0.0.1:995"}).ok());
  EXPECT_TRUE(ParseServeOptions({"--data_dir=/x", "--pop3s_listen=off"}).ok());
  EXPECT_FALSE(
      ParseServeOptions({"--data_dir=/x", "--tls_cert=/c", "--tls_key=/k", "--pop3s_listen=nohost"})
          .ok());
}

TEST(ServeOptionsTest, LmtpAndAdminFlags) {
  auto o = ParseServeOptions({"--data_dir=/d"});
  ASSERT_TRUE(o.ok());
  EXPECT_TRUE(o->lmtp_enabled);
  EXPECT_EQ(o->lmtp_listen.host, "127.0.0.1");
  EXPECT_EQ(o->lmtp_listen.port, 24);
  EXPECT_FALSE(o->lmtp_over_quota_permanent);
  EXPECT_TRUE(o->admin_listen.empty());
  o = ParseServeOptions({"--data_dir=/d", "--lmtp_listen=off", "--lmtp_over_quota=permanent",
                         "--admin_listen=127.0.0.1:0", "--admin_token_file=/t"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_FALSE(o->lmtp_enabled);
  EXPECT_TRUE(o->lmtp_over_quota_permanent);
  EXPECT_EQ(o->admin_listen, "127.0.0.1:0");
  EXPECT_FALSE(ParseServeOptions({"--data_dir=/d", "--lmtp_over_quota=maybe"}).ok());
  EXPECT_FALSE(ParseServeOptions({"--data_dir=/d", "--lmtp_listen=nope"}).ok());
  // The admin API never runs without a token.
  EXPECT_FALSE(ParseServeOptions({"--data_dir=/d", "--admin_listen=127.0.0.1:0"}).ok());
}

TEST(ServeOptionsTest, HttpListenerFlags) {
  auto o = ParseServeOptions({"--data_dir=/d"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->http_header_timeout_ms, 5000u);
  EXPECT_EQ(o->http_body_timeout_ms, 10000u);
  EXPECT_EQ(o->http_connections_max, 256u);
  EXPECT_EQ(o->http_connections_per_ip, 16u);
  o = ParseServeOptions({"--data_dir=/d", "--http_header_timeout_ms=1500",
                         "--http_body_timeout_ms=2500", "--http_connections_max=40",
                         "--http_connections_per_ip=0"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->http_header_timeout_ms, 1500u);
  EXPECT_EQ(o->http_body_timeout_ms, 2500u);
  EXPECT_EQ(o->http_connections_max, 40u);
  EXPECT_EQ(o->http_connections_per_ip, 0u);
  for (const char* bad :
       {"--http_header_timeout_ms=0", "--http_body_timeout_ms=0", "--http_connections_max=0",
        "--http_header_timeout_ms=x", "--http_connections_max=100001"}) {
    EXPECT_FALSE(ParseServeOptions({"--data_dir=/d", bad}).ok()) << bad;
  }
  EXPECT_NE(ServeUsage().find("--http_header_timeout_ms=5000"), std::string::npos);
}

// Operators see these lines when a flag is wrong: each kind of flag names itself and says
// what it expected.
TEST(ServeOptionsTest, ErrorMessagesNameTheFlagAndWhatItExpects) {
  const std::pair<std::string, std::string> cases[] = {
      {"--shards=x", "--shards: expected an integer 0..1024, got \"x\""},
      {"--pin_shards=maybe", "--pin_shards: expected true or false, got \"maybe\""},
      {"--idle_timeout_s=0", "--idle_timeout_s must be at least 1"},
      {"--io_threads=0", "--io_threads must be in [1, 256]"},
      {"--http_connections_max=0", "--http_connections_max must be in [1, 100000]"},
      {"--send_path=fast", "--send_path: expected auto, splice, send_zc or copy"},
      {"--in_use_policy=steal", "--in_use_policy: expected takeover or refuse"},
      {"--lmtp_over_quota=never", "--lmtp_over_quota: expected temporary or permanent"},
      {"--log_format=xml", "--log_format: expected text or json"},
      {"--pop3_listen=1.2.3.4", "--pop3_listen: expected HOST:PORT, got \"1.2.3.4\""},
      {"--lmtp_listen=h:x", "--lmtp_listen: bad port in \"h:x\""},
      {"--admin_listen=nope", "--admin_listen: expected HOST:PORT, got \"nope\""},
      {"--trusted_networks=10.0.0.0/33", "--trusted_networks: bad network \"10.0.0.0/33\""},
      {"--proxy_networks=10.0.0.0/8,fe80::/129", "--proxy_networks: bad network \"fe80::/129\""},
      {"--proxy_networks=haproxy", "--proxy_networks: bad network \"haproxy\""},
      {"--proxy_header_timeout_ms=0", "--proxy_header_timeout_ms must be in [1, 60000]"},
      {"--bogus=1", "unknown flag --bogus"},
      {"--shards", "flag --shards needs a value"},
  };
  for (const auto& [flag, message] : cases) {
    absl::StatusOr<ServeOptions> o = ParseServeOptions({"--data_dir=/x", flag});
    ASSERT_FALSE(o.ok()) << flag;
    EXPECT_EQ(o.status().message(), message) << flag;
  }
  // "off" turns a listener off; pop3s also accepts an empty value.
  absl::StatusOr<ServeOptions> o = ParseServeOptions(
      {"--data_dir=/x", "--lmtp_listen=off", "--tls_cert=c", "--tls_key=k", "--pop3s_listen="});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_FALSE(o->lmtp_enabled);
  EXPECT_FALSE(o->pop3s_enabled);
  EXPECT_FALSE(ParseServeOptions({"--data_dir=/x", "--lmtp_listen="}).ok());
}

TEST(CidrTest, MatchesV4AndV6) {
  auto net = ParseCidr("192.168.0.0/16");
  ASSERT_TRUE(net.ok());
  uint8_t a[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 7, 9};
  EXPECT_TRUE(CidrContains(*net, a));
  a[13] = 169;
  EXPECT_FALSE(CidrContains(*net, a));
  auto v6 = ParseCidr("2001:db8::/32");
  ASSERT_TRUE(v6.ok());
  uint8_t b[16] = {0x20, 0x01, 0x0d, 0xb8, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 1};
  EXPECT_TRUE(CidrContains(*v6, b));
  b[3] = 0xb9;
  EXPECT_FALSE(CidrContains(*v6, b));
  EXPECT_FALSE(ParseCidr("nonsense").ok());
}

TEST(MaildropRegistryTest, RefuseGrantsOneHolderAtATime) {
  MaildropRegistry r;
  ConnectionRef a{0, 1}, b{1, 2}, holder;
  EXPECT_EQ(r.Acquire("u@d", "1.1.1.1", true, {.user_ip_limit = 10}, pop3::InUsePolicy::kRefuse, a, &holder),
            Outcome::kGranted);
  EXPECT_EQ(r.Acquire("u@d", "1.1.1.1", true, {.user_ip_limit = 10}, pop3::InUsePolicy::kRefuse, b, &holder),
            Outcome::kInUse);
  r.Release("u@d", "1.1.1.1", true, a);
  EXPECT_EQ(r.Acquire("u@d", "1.1.1.1", false, {.user_ip_limit = 10}, pop3::InUsePolicy::kRefuse, b, &holder),
            Outcome::kGranted);
  r.Release("u@d", "1.1.1.1", true, b);
  EXPECT_EQ(r.users(), 0u);
}

TEST(MaildropRegistryTest, TakeoverAsksTheHolderOnce) {
  MaildropRegistry r;
  ConnectionRef a{0, 1}, b{1, 2}, c{1, 3}, holder;
  const auto kTake = pop3::InUsePolicy::kTakeover;
  ASSERT_EQ(r.Acquire("u@d", "ip", true, {.user_ip_limit = 0}, kTake, a, &holder), Outcome::kGranted);
  ASSERT_EQ(r.Acquire("u@d", "ip", true, {.user_ip_limit = 0}, kTake, b, &holder), Outcome::kAskHolder);
  EXPECT_EQ(holder, a);
  // While the question is out, others are told it is in use.
  EXPECT_EQ(r.Acquire("u@d", "ip", true, {.user_ip_limit = 0}, kTake, c, &holder), Outcome::kInUse);
  // The holder was busy: b is refused and a keeps it.
  EXPECT_FALSE(r.FinishTakeover("u@d", b, /*released=*/false));
  EXPECT_EQ(r.HolderForTest("u@d"), a);
  // Asked again, the holder was idle and was ended: b holds it; a's late release is ignored.
  ASSERT_EQ(r.Acquire("u@d", "ip", false, {.user_ip_limit = 0}, kTake, b, &holder), Outcome::kAskHolder);
  EXPECT_TRUE(r.FinishTakeover("u@d", b, /*released=*/true));
  r.Release("u@d", "ip", true, a);
  EXPECT_EQ(r.HolderForTest("u@d"), b);
}

TEST(MaildropRegistryTest, UserIpLimitCountsConnections) {
  MaildropRegistry r;
  ConnectionRef holder;
  const auto kRefuse = pop3::InUsePolicy::kRefuse;
  for (uint64_t i = 1; i <= 2; ++i) {
    EXPECT_NE(r.Acquire("u@d", "ip", true, {.user_ip_limit = 2}, kRefuse, {0, i}, &holder),
              Outcome::kTooManyForUserIp);
  }
  EXPECT_EQ(r.Acquire("u@d", "ip", true, {.user_ip_limit = 2}, kRefuse, {0, 3}, &holder), Outcome::kTooManyForUserIp);
  EXPECT_NE(r.Acquire("u@d", "other-ip", true, {.user_ip_limit = 2}, kRefuse, {0, 4}, &holder),
            Outcome::kTooManyForUserIp);
  r.Release("u@d", "ip", true, {0, 2});
  EXPECT_NE(r.Acquire("u@d", "ip", true, {.user_ip_limit = 2}, kRefuse, {0, 5}, &holder), Outcome::kTooManyForUserIp);
}

TEST(MaildropRegistryTest, UserLimitCountsConnectionsFromEveryAddress) {
  MaildropRegistry r;
  ConnectionRef holder;
  const auto kRefuse = pop3::InUsePolicy::kRefuse;
  const MaildropRegistry::Limits two_per_user{.user_limit = 2};
  EXPECT_EQ(r.Acquire("u@d", "ip1", true, two_per_user, kRefuse, {0, 1}, &holder),
            Outcome::kGranted);
  EXPECT_EQ(r.Acquire("u@d", "ip2", true, two_per_user, kRefuse, {0, 2}, &holder),
            Outcome::kInUse);  // counted: it stays logged in without the maildrop
  EXPECT_EQ(r.Acquire("u@d", "ip3", true, two_per_user, kRefuse, {0, 3}, &holder),
            Outcome::kTooManyForUser);
  r.Release("u@d", "ip2", true, {0, 2});
  EXPECT_EQ(r.Acquire("u@d", "ip3", true, two_per_user, kRefuse, {0, 3}, &holder),
            Outcome::kInUse);
}

TEST(MaildropRegistryTest, LoginDelayRefusesAGrantTooSoonAfterTheLastOne) {
  MaildropRegistry r;
  ConnectionRef holder;
  const auto kRefuse = pop3::InUsePolicy::kRefuse;
  constexpr uint64_t kSecond = 1'000'000'000;
  MaildropRegistry::Limits limits{.login_delay_ns = 60 * kSecond, .now_ns = 1000 * kSecond};
  ASSERT_EQ(r.Acquire("u@d", "ip", false, limits, kRefuse, {0, 1}, &holder), Outcome::kGranted);
  r.Release("u@d", "ip", false, {0, 1});
  limits.now_ns += 59 * kSecond;
  EXPECT_EQ(r.Acquire("u@d", "ip", false, limits, kRefuse, {0, 2}, &holder), Outcome::kTooSoon);
  EXPECT_EQ(r.users(), 0u);  // a refusal holds nothing
  // Another user is not delayed by it; a refused attempt does not move the clock.
  EXPECT_EQ(r.Acquire("v@d", "ip", false, limits, kRefuse, {0, 3}, &holder), Outcome::kGranted);
  limits.now_ns += 1 * kSecond;
  EXPECT_EQ(r.Acquire("u@d", "ip", false, limits, kRefuse, {0, 4}, &holder), Outcome::kGranted);
  EXPECT_EQ(r.delayed_users(), 2u);
  // A takeover's grant starts the delay too: once the holder is ended, a third login at once is
  // too soon, though the holder's grant was long ago.
  r.Release("u@d", "ip", false, {0, 4});
  limits.now_ns += 60 * kSecond;
  ASSERT_EQ(r.Acquire("u@d", "ip", false, limits, kRefuse, {0, 5}, &holder), Outcome::kGranted);
  limits.now_ns += 61 * kSecond;
  ASSERT_EQ(r.Acquire("u@d", "ip", false, limits, pop3::InUsePolicy::kTakeover, {0, 6}, &holder),
            Outcome::kAskHolder);
  ASSERT_TRUE(r.FinishTakeover("u@d", {0, 6}, /*released=*/true));
  r.Release("u@d", "ip", false, {0, 6});
  limits.now_ns += 1 * kSecond;
  EXPECT_EQ(r.Acquire("u@d", "ip", false, limits, kRefuse, {0, 7}, &holder), Outcome::kTooSoon);
}

TEST(OwnerShardTest, StableAndInRange) {
  EXPECT_EQ(OwnerShard("a@b", 1), 0u);
  EXPECT_EQ(OwnerShard("a@b", 7), OwnerShard("a@b", 7));
  EXPECT_LT(OwnerShard("someone@example.test", 4), 4u);
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    dir_ = std::string(tmp != nullptr ? tmp : "/tmp") + "/serve_unit_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    auto store = storage::MailStore::Open({.data_dir = dir_});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  std::string dir_;
  std::unique_ptr<storage::MailStore> store_;
};

TEST_F(StoreTest, VerificationCacheHitsAndDropsOnPasswordChange) {
  ASSERT_TRUE(store_->CreateAccount("ann@example.test", *auth::HashPassword("s3cret")).ok());
  AuthService auth(store_.get(), {});
  AuthVerdict v = auth.Verify("ann@EXAMPLE.test", "s3cret");
  EXPECT_EQ(v.code, AuthVerdict::Code::kOk);
  EXPECT_EQ(v.address, "ann@example.test");
  EXPECT_FALSE(v.cache_hit);
  v = auth.Verify("ann@example.test", "s3cret");
  EXPECT_EQ(v.code, AuthVerdict::Code::kOk);
  EXPECT_TRUE(v.cache_hit);
  // A wrong password is never answered from the cache.
  EXPECT_EQ(auth.Verify("ann@example.test", "wrong").code, AuthVerdict::Code::kBadCredentials);
  // A password change invalidates the cached verification of the old one.
  ASSERT_TRUE(store_->SetPasswordHash("ann@example.test", *auth::HashPassword("new")).ok());
  EXPECT_EQ(auth.Verify("ann@example.test", "s3cret").code, AuthVerdict::Code::kBadCredentials);
  v = auth.Verify("ann@example.test", "new");
  EXPECT_EQ(v.code, AuthVerdict::Code::kOk);
  EXPECT_FALSE(v.cache_hit);
  // Disabled accounts fail even with the right (cached) password.
  ASSERT_TRUE(store_->SetDisabled("ann@example.test", true).ok());
  EXPECT_EQ(auth.Verify("ann@example.test", "new").code, AuthVerdict::Code::kBadCredentials);
  EXPECT_EQ(auth.Verify("nobody@example.test", "x").code, AuthVerdict::Code::kBadCredentials);
  EXPECT_EQ(auth.Verify("not an address", "x").code, AuthVerdict::Code::kBadCredentials);
}

// An imported Dovecot {SSHA512} hash (made by `doveadm pw`) becomes one at the server's
// setting at the first successful login, once; wrong passwords, {PLAIN} and a disabled
// rehash leave hashes alone.
TEST_F(StoreTest, RehashAtLoginMovesHashesToTheServerSetting) {
  constexpr char kImported[] =
      "{SSHA512}FOnfRIhTC0WR+r/VQjC2EHI6sw+JN/W9yL66+1TU8Wm6rLrFz3/4RqZ7mvyMHyKJ20CTfb2k+gXTurXePTX"
      "OyLid6t4=";
  ASSERT_TRUE(store_->CreateAccount("dee@example.test", kImported).ok());
  ASSERT_TRUE(store_->CreateAccount("eve@example.test", kImported).ok());
  ASSERT_TRUE(store_->CreateAccount("flo@example.test", "{PLAIN}correct horse").ok());
  const auth::HashSetting setting{auth::HashScheme::kSha512Crypt, 6000};
  AuthService auth(store_.get(), {.hash_setting = setting});
  EXPECT_EQ(auth.Verify("dee@example.test", "wrong").code, AuthVerdict::Code::kBadCredentials);
  EXPECT_EQ(store_->GetAccount("dee@example.test")->password_hash, kImported);

  AuthVerdict v = auth.Verify("dee@example.test", "correct horse");
  EXPECT_EQ(v.code, AuthVerdict::Code::kOk);
  EXPECT_TRUE(v.rehashed);
  const std::string rehashed = store_->GetAccount("dee@example.test")->password_hash;
  EXPECT_EQ(rehashed.substr(0, 15), "$6$rounds=6000$") << rehashed;
  EXPECT_TRUE(auth::VerifyPassword("correct horse", rehashed).value());
  // Cached against the new hash; then, uncached, the hash is at the setting: no second rehash.
  v = auth.Verify("dee@example.test", "correct horse");
  EXPECT_TRUE(v.cache_hit);
  EXPECT_FALSE(v.rehashed);
  AuthService fresh(store_.get(), {.hash_setting = setting});
  v = fresh.Verify("dee@example.test", "correct horse");
  EXPECT_EQ(v.code, AuthVerdict::Code::kOk);
  EXPECT_FALSE(v.rehashed);
  EXPECT_EQ(store_->GetAccount("dee@example.test")->password_hash, rehashed);

  // {PLAIN} is a secret kept on purpose (APOP): never rehashed.
  v = auth.Verify("flo@example.test", "correct horse");
  EXPECT_EQ(v.code, AuthVerdict::Code::kOk);
  EXPECT_FALSE(v.rehashed);
  EXPECT_EQ(store_->GetAccount("flo@example.test")->password_hash, "{PLAIN}correct horse");

  AuthService off(store_.get(), {.hash_setting = setting, .rehash_at_login = false});
  v = off.Verify("eve@example.test", "correct horse");
  EXPECT_EQ(v.code, AuthVerdict::Code::kOk);
  EXPECT_FALSE(v.rehashed);
  EXPECT_EQ(store_->GetAccount("eve@example.test")->password_hash, kImported);
}

TEST_F(StoreTest, CacheDisabledWithZeroTtl) {
  ASSERT_TRUE(store_->CreateAccount("bob@example.test", *auth::HashPassword("pw")).ok());
  AuthService auth(store_.get(), {.cache_ttl = absl::ZeroDuration()});
  EXPECT_EQ(auth.Verify("bob@example.test", "pw").code, AuthVerdict::Code::kOk);
  EXPECT_FALSE(auth.Verify("bob@example.test", "pw").cache_hit);
}

TEST_F(StoreTest, AdapterKeepsSizesUidlsAndRefs) {
  ASSERT_TRUE(store_->CreateAccount("cy@example.test", "{PLAIN}x").ok());
  auto d1 = store_->Deliver("cy@example.test", "Subject: a\n\nbody\n.dot\n");
  auto d2 = store_->Deliver("cy@example.test", "Subject: b\r\n\r\nx\r\n", {.uidl = "kept-1"});
  ASSERT_TRUE(d1.ok() && d2.ok());
  auto stored = store_->OpenMailbox("cy@example.test");
  ASSERT_TRUE(stored.ok());
  auto adapted = AdaptSnapshot(*stored);
  ASSERT_TRUE(adapted.ok()) << adapted.status();
  ASSERT_EQ(adapted->view->count(), 2u);
  EXPECT_EQ(adapted->view->size_octets(pop3::MessageIndex(0)), d1->pop3_size);
  EXPECT_EQ(adapted->view->uidl(pop3::MessageIndex(0)), d1->uidl);
  EXPECT_EQ(adapted->view->uidl(pop3::MessageIndex(1)), "kept-1");
  EXPECT_EQ(adapted->view->ref(pop3::MessageIndex(1)), 1u);
  EXPECT_EQ(adapted->view->total_octets(), d1->pop3_size + d2->pop3_size);
}

// The listing cap shows the newest messages numbered from 1, and a deletion made through the
// view (its refs, as StoreMaildrop::CommitDeletions maps them) removes exactly the messages
// the client saw; the older ones come into view afterwards.
TEST_F(StoreTest, ListingCapShowsTheNewestAndDeletesOnlyWhatWasShown) {
  ASSERT_TRUE(store_->CreateAccount("cap@example.test", "{PLAIN}x").ok());
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(store_
                    ->Deliver("cap@example.test", absl::StrCat("Subject: ", i, "\r\n\r\nx\r\n"),
                              {.uidl = absl::StrCat("m", i)})
                    .ok());
  }
  auto stored = store_->OpenMailbox("cap@example.test");
  ASSERT_TRUE(stored.ok());
  auto capped = AdaptSnapshot(*stored, 2);
  ASSERT_TRUE(capped.ok()) << capped.status();
  ASSERT_EQ(capped->view->count(), 2u);
  EXPECT_EQ(capped->view->uidl(pop3::MessageIndex(0)), "m4");
  EXPECT_EQ(capped->view->uidl(pop3::MessageIndex(1)), "m5");
  EXPECT_EQ(capped->view->ref(pop3::MessageIndex(0)), 3u);
  EXPECT_EQ(capped->view->total_octets(), (*stored)->pop3_size(3) + (*stored)->pop3_size(4));
  // A cap above the count shows everything.
  EXPECT_EQ(AdaptSnapshot(*stored, 9)->view->count(), 5u);

  // DELE 1 under the cap: the 4th stored message, never the 1st.
  auto done = store_->CommitDeletions(
      *capped->stored, {static_cast<size_t>(capped->view->ref(pop3::MessageIndex(0)))});
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->deleted, 1u);
  auto after = store_->OpenMailbox("cap@example.test");
  ASSERT_TRUE(after.ok());
  std::vector<std::string> left;
  for (size_t i = 0; i < (*after)->size(); ++i) left.emplace_back((*after)->uidl(i));
  EXPECT_EQ(left, (std::vector<std::string>{"m1", "m2", "m3", "m5"}));
  auto next = AdaptSnapshot(*after, 2);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->view->uidl(pop3::MessageIndex(0)), "m3");
  EXPECT_EQ(next->view->uidl(pop3::MessageIndex(1)), "m5");
}

}  // namespace
}  // namespace posthaste::server

namespace posthaste::server {
namespace {

using lmtp::LmtpDeliveryResult;
using lmtp::LmtpRecipientVerdict;

TEST(LmtpVerdictTest, RecipientVerdictFromUsage) {
  using Code = LmtpRecipientVerdict::Code;
  using storage::StoreError;
  using storage::StoreErrorStatus;
  EXPECT_EQ(
      RecipientVerdict(StoreErrorStatus(StoreError::kUnknownAccount, "x"), std::nullopt, false)
          .code,
      Code::kUnknown);
  EXPECT_EQ(
      RecipientVerdict(StoreErrorStatus(StoreError::kInvalidAddress, "x"), std::nullopt, false)
          .code,
      Code::kUnknown);
  EXPECT_EQ(RecipientVerdict(StoreErrorStatus(StoreError::kIo, "x"), std::nullopt, false).code,
            Code::kTempFailure);
  // The kind decides, not the code: a file missing under the store is no unknown user.
  EXPECT_EQ(
      RecipientVerdict(storage::WithStoreError(absl::NotFoundError("open x"), StoreError::kIo),
                       std::nullopt, false)
          .code,
      Code::kTempFailure);
  EXPECT_EQ(RecipientVerdict(absl::NotFoundError("not from the store"), std::nullopt, false).code,
            Code::kTempFailure);
  storage::AccountUsage usage;
  usage.address = "u@x.org";
  usage.message_bytes_max = 1000;
  usage.effective_quota = {2, 500};
  usage.stats = {1, 400};
  LmtpRecipientVerdict ok = RecipientVerdict(usage, 100, false);
  EXPECT_EQ(ok.code, Code::kAccepted);
  EXPECT_EQ(ok.mailbox, "u@x.org");
  EXPECT_EQ(RecipientVerdict(usage, 1001, false).code, Code::kTooBig);
  EXPECT_EQ(RecipientVerdict(usage, 101, false).code, Code::kOverQuotaTemp);
  EXPECT_EQ(RecipientVerdict(usage, 101, true).code, Code::kOverQuotaPerm);
  usage.reserved = {1, 0};  // a delivery in flight takes the last message slot
  EXPECT_EQ(RecipientVerdict(usage, std::nullopt, false).code, Code::kOverQuotaTemp);
  usage.reserved = {0, 0};
  usage.held = true;  // moving to another backend: the MTA retries later
  EXPECT_EQ(RecipientVerdict(usage, std::nullopt, false).code, Code::kMoving);
  usage.disabled = true;
  EXPECT_EQ(RecipientVerdict(usage, std::nullopt, false).code, Code::kDisabled);
}

TEST(LmtpVerdictTest, DeliveryOutcomeFromStoreStatus) {
  using Code = LmtpDeliveryResult::Code;
  using storage::StoreError;
  using storage::StoreErrorStatus;
  EXPECT_EQ(DeliveryOutcome(absl::OkStatus(), false).code, Code::kDelivered);
  EXPECT_EQ(DeliveryOutcome(StoreErrorStatus(StoreError::kOverQuota, "mailbox quota exceeded: ..."),
                            false)
                .code,
            Code::kOverQuotaTemp);
  EXPECT_EQ(
      DeliveryOutcome(StoreErrorStatus(StoreError::kOverQuota, "mailbox quota exceeded: ..."), true)
          .code,
      Code::kOverQuotaPerm);
  EXPECT_EQ(
      DeliveryOutcome(
          StoreErrorStatus(StoreError::kMessageTooBig, "message of 9 octets exceeds ..."), false)
          .code,
      Code::kTooBig);
  const LmtpDeliveryResult gone =
      DeliveryOutcome(StoreErrorStatus(StoreError::kUnknownAccount, "gone"), false);
  EXPECT_EQ(gone.code, Code::kPermFailure);
  EXPECT_EQ(gone.text, "No such user here");
  const LmtpDeliveryResult disabled =
      DeliveryOutcome(StoreErrorStatus(StoreError::kDisabled, "disabled"), false);
  EXPECT_EQ(disabled.code, Code::kPermFailure);
  EXPECT_EQ(disabled.text, "Mailbox disabled");
  EXPECT_EQ(DeliveryOutcome(StoreErrorStatus(StoreError::kTemporary, "index busy"), false).code,
            Code::kTempFailure);
  // A full disk has its own reply (452 4.3.1), still temporary.
  EXPECT_EQ(DeliveryOutcome(StoreErrorStatus(StoreError::kNoSpace, "disk full"), false).code,
            Code::kNoSpace);
  EXPECT_EQ(DeliveryOutcome(StoreErrorStatus(StoreError::kAccountHeld, "moving"), false).code,
            Code::kMoving);
  // The kind decides, never the code or the words: these are all temporary.
  EXPECT_EQ(
      DeliveryOutcome(
          storage::WithStoreError(absl::NotFoundError("create segment"), StoreError::kIo), false)
          .code,
      Code::kTempFailure);
  EXPECT_EQ(DeliveryOutcome(absl::ResourceExhaustedError("quota of the offload queue"), false).code,
            Code::kTempFailure);
  EXPECT_EQ(DeliveryOutcome(StoreErrorStatus(StoreError::kNotWireForm, "bare CR"), false).code,
            Code::kTempFailure);
}

}  // namespace
}  // namespace posthaste::server
