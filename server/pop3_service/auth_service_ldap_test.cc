// AuthService's routing to the LDAP passdb (auth_service_ldap.cc), without a directory: a
// tenant listed in the LDAP configuration never falls back to the store's hashes, other tenants
// never reach the directory, and the hash given to created accounts never verifies.
// tests/ldap_passdb_test.py covers the rest against a real slapd.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "server/auth/ldap_passdb.h"
#include "server/auth/password_hash.h"
#include "server/pop3_service/auth_service.h"
#include "storage/mail_store.h"

namespace posthaste::server {
namespace {

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

class AuthServiceLdapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    auto store = storage::MailStore::Open(
        {.data_dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/auth_service_ldap_" +
                     ::testing::UnitTest::GetInstance()->current_test_info()->name()});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auth::LdapTenantConfig tenant;
    tenant.domain = "dir.test";
    tenant.uris = {"ldap://127.0.0.1:" + std::to_string(ClosedPort())};
    tenant.user_dn = "uid=%n,dc=dir,dc=test";
    tenant.breaker_failures_max = 1;
    tenant.breaker_open_ms = 600'000;
    auth::LdapConfig config;
    config.tenants.push_back(tenant);
    directory_ = std::make_unique<auth::LdapDirectory>(std::move(config));
  }

  std::unique_ptr<storage::MailStore> store_;
  std::unique_ptr<auth::LdapDirectory> directory_;
};

TEST_F(AuthServiceLdapTest, DirectoryTenantsNeverUseTheStoresHash) {
  ASSERT_TRUE(store_->CreateAccount("ann@local.test", *auth::HashPassword("pw")).ok());
  ASSERT_TRUE(store_->CreateAccount("ann@dir.test", *auth::HashPassword("pw")).ok());
  AuthService service(store_.get(), {.ldap = directory_.get()});
  EXPECT_EQ(service.Verify("ann@local.test", "pw").code, AuthVerdict::Code::kOk);
  // The directory is unreachable: a temporary failure, not the store's answer.
  EXPECT_EQ(service.Verify("ann@dir.test", "pw").code, AuthVerdict::Code::kTempFailure);
  EXPECT_EQ(service.Verify("ANN@DIR.TEST", "pw").code, AuthVerdict::Code::kTempFailure);
  auth::LdapStats& stats = directory_->passdbs()[0]->stats();
  EXPECT_EQ(stats.requests_unavailable.load(), 1u);
  EXPECT_EQ(stats.breaker_refused.load(), 1u);
  // Local tenants are untouched by the open breaker.
  EXPECT_EQ(service.Verify("ann@local.test", "pw").code, AuthVerdict::Code::kOk);
  EXPECT_EQ(service.Verify("ann@local.test", "wrong").code, AuthVerdict::Code::kBadCredentials);
  EXPECT_EQ(stats.requests_unavailable.load() + stats.breaker_refused.load(), 2u);
}

TEST_F(AuthServiceLdapTest, TheCreatedAccountsHashNeverVerifies) {
  // What auth_service_ldap.cc stores for a mailbox it creates: should the tenant leave the
  // LDAP configuration, its users need `user passwd` before they can log in.
  ASSERT_TRUE(store_->CreateAccount("zed@local.test", "{LDAP}").ok());
  AuthService service(store_.get(), {});
  for (const char* password : {"{LDAP}", "LDAP", "x", ""}) {
    EXPECT_EQ(service.Verify("zed@local.test", password).code, AuthVerdict::Code::kBadCredentials)
        << password;
  }
}

}  // namespace
}  // namespace posthaste::server
