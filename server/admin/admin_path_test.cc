// ParseAdminPath: good targets name their resource; every hostile spelling is refused with
// InvalidArgument (400), never decoded twice or resolved into another account.
#include "server/admin/admin_path.h"

#include <string>

#include "gtest/gtest.h"

namespace posthaste::server::admin {
namespace {

using std::string_literals::operator""s;

std::string Account(std::string_view target) {
  absl::StatusOr<AdminPath> path = ParseAdminPath(target);
  EXPECT_TRUE(path.ok()) << target << ": " << path.status();
  if (!path.ok()) return "";
  EXPECT_EQ(path->resource, AdminPath::Resource::kAccount) << target;
  return path->address;
}

absl::StatusCode CodeOf(std::string_view target) { return ParseAdminPath(target).status().code(); }

TEST(AdminPathTest, CollectionWithAndWithoutDomainFilter) {
  for (std::string_view target : {"/api/v1/accounts", "/api/v1/accounts?"}) {
    auto path = ParseAdminPath(target);
    ASSERT_TRUE(path.ok()) << target << ": " << path.status();
    EXPECT_EQ(path->resource, AdminPath::Resource::kAccounts);
    EXPECT_EQ(path->domain, std::nullopt);
  }
  auto filtered = ParseAdminPath("/api/v1/accounts?domain=Example.TEST");
  ASSERT_TRUE(filtered.ok()) << filtered.status();
  EXPECT_EQ(filtered->domain, "example.test");
  EXPECT_EQ(ParseAdminPath("/api/v1/accounts?domain=ex%61mple.test")->domain, "example.test");
}

TEST(AdminPathTest, AccountAddressesAreDecodedOnce) {
  EXPECT_EQ(Account("/api/v1/accounts/alice@t.test"), "alice@t.test");
  EXPECT_EQ(Account("/api/v1/accounts/alice%40t.test"), "alice@t.test");  // %40 is '@'
  EXPECT_EQ(Account("/api/v1/accounts/ALICE@T.TEST"), "ALICE@T.TEST");    // the store folds case
  EXPECT_EQ(Account("/api/v1/accounts/first.last+tag@t.test"), "first.last+tag@t.test");
  EXPECT_EQ(Account("/api/v1/accounts/o%27neil@t.test"), "o'neil@t.test");
  EXPECT_EQ(Account("/%61pi/v1/accounts/a@t.test"), "a@t.test");  // unreserved, decoded
  // Once: "%2540" is "%40" (not an address: '%' is allowed in a local part, so it is one,
  // with a literal "%40" in it and no '@').
  EXPECT_EQ(CodeOf("/api/v1/accounts/alice%2540t.test"), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Account("/api/v1/accounts/a%2541@t.test"), "a%41@t.test");
}

TEST(AdminPathTest, MailboxAndHoldOfAnAccount) {
  auto mailbox =
      ParseAdminPath("/api/v1/accounts/alice%40t.test/mailbox?after=18446744073709551615");
  ASSERT_TRUE(mailbox.ok()) << mailbox.status();
  EXPECT_EQ(mailbox->resource, AdminPath::Resource::kMailbox);
  EXPECT_EQ(mailbox->address, "alice@t.test");
  EXPECT_EQ(mailbox->after_seq, UINT64_MAX);
  auto first = ParseAdminPath("/api/v1/accounts/alice@t.test/mailbox");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->after_seq, 0u);
  auto hold = ParseAdminPath("/api/v1/accounts/alice@t.test/hold");
  ASSERT_TRUE(hold.ok());
  EXPECT_EQ(hold->resource, AdminPath::Resource::kHold);
  EXPECT_EQ(CodeOf("/api/v1/accounts/not-an-address/mailbox"), absl::StatusCode::kInvalidArgument);
}

TEST(AdminPathTest, TenantsSessionsAndStore) {
  EXPECT_EQ(ParseAdminPath("/api/v1/tenants")->resource, AdminPath::Resource::kTenants);
  auto tenant = ParseAdminPath("/api/v1/tenants/Ex%61mple.TEST");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  EXPECT_EQ(tenant->resource, AdminPath::Resource::kTenant);
  EXPECT_EQ(tenant->domain, "example.test");

  auto all = ParseAdminPath("/api/v1/sessions");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->resource, AdminPath::Resource::kSessions);
  EXPECT_EQ(all->domain, std::nullopt);
  EXPECT_EQ(all->user, std::nullopt);
  EXPECT_EQ(ParseAdminPath("/api/v1/sessions?tenant=T.test")->domain, "t.test");
  EXPECT_EQ(ParseAdminPath("/api/v1/sessions?user=Bob%40t.test")->user, "Bob@t.test");
  auto plain = ParseAdminPath("/api/v1/sessions?user=a@b.test");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->user, "a@b.test");
  EXPECT_EQ(plain->domain, std::nullopt);
  auto one = ParseAdminPath("/api/v1/sessions/3-18446744073709551615");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->resource, AdminPath::Resource::kSession);
  EXPECT_EQ(one->session_shard, 3u);
  EXPECT_EQ(one->session_connection, UINT64_MAX);

  EXPECT_EQ(ParseAdminPath("/api/v1/store/usage")->resource, AdminPath::Resource::kStoreUsage);
  EXPECT_EQ(ParseAdminPath("/api/v1/store/check")->resource, AdminPath::Resource::kStoreCheck);
  EXPECT_EQ(ParseAdminPath("/api/v1/store/compaction")->resource,
            AdminPath::Resource::kStoreCompaction);

  for (std::string_view target : {"/api/v1/tenants/not_a_domain",
                                  "/api/v1/tenants/a%2Fb.test",
                                  "/api/v1/tenants?x=1",
                                  "/api/v1/tenants/t.test?x=1",
                                  "/api/v1/sessions?tenant=t.test&user=a@t.test",
                                  "/api/v1/sessions?tenant=t.test&tenant=u.test",
                                  "/api/v1/sessions?user=bob",
                                  "/api/v1/sessions?user=a/b@t.test",
                                  "/api/v1/sessions?shard=1",
                                  "/api/v1/sessions?tenant=",
                                  "/api/v1/sessions/1",
                                  "/api/v1/sessions/1-",
                                  "/api/v1/sessions/-1",
                                  "/api/v1/sessions/a-1",
                                  "/api/v1/sessions/1-2-3",
                                  "/api/v1/sessions/4294967296-1",
                                  "/api/v1/sessions/+1-1",
                                  "/api/v1/sessions/1-2?x=1",
                                  "/api/v1/store/usage?x=1",
                                  "/api/v1/tenants/%2e%2e",
                                  "/api/v1/store/../accounts"}) {
    EXPECT_EQ(CodeOf(target), absl::StatusCode::kInvalidArgument) << target;
  }
  for (std::string_view target :
       {"/api/v1/store", "/api/v1/store/other", "/api/v1/store/usage/x", "/api/v1/tenants/t.test/x",
        "/api/v1/sessions/1-2/x", "/api/v1/Tenants"}) {
    EXPECT_EQ(CodeOf(target), absl::StatusCode::kNotFound) << target;
  }
}

TEST(AdminPathTest, NulIsRefusedRawOrEncoded) {
  EXPECT_EQ(CodeOf("/api/v1/accounts/ALICE@t.test%00whatever"), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CodeOf("/api/v1/accounts/ALICE@t.test%00"), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CodeOf("/api/v1/accounts/ALICE@t.test\0whatever"s), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CodeOf("/api/v1/accounts?domain=t.test%00x"), absl::StatusCode::kInvalidArgument);
}

TEST(AdminPathTest, DotSegmentsAreRefusedNeverResolved) {
  for (std::string_view target : {
           "/api/v1/accounts/alice@t.test/../bob@t.test",
           "/api/v1/accounts/alice@t.test/..",
           "/api/v1/accounts/../accounts/bob@t.test",
           "/api/v1/accounts/./bob@t.test",
           "/api/v1/accounts/bob@t.test/.",
           "/api/v1/x/../accounts/bob@t.test",
           "/../api/v1/accounts/bob@t.test",
           "/api/v1/accounts/%2e%2e/bob@t.test",
           "/api/v1/accounts/%2E%2E/bob@t.test",
           "/api/v1/accounts/.%2e/bob@t.test",
           "/api/v1/accounts/%2e/bob@t.test",
           "/api/v1/accounts/alice@t.test/%2e%2e/bob@t.test",
           "/api/v1/accounts/..",
           "/api/v1/accounts/%2e%2e",
       }) {
    EXPECT_EQ(CodeOf(target), absl::StatusCode::kInvalidArgument) << target;
  }
}

TEST(AdminPathTest, EmptySegmentsAreRefused) {
  for (std::string_view target :
       {"/api/v1/accounts//bob@t.test", "//api/v1/accounts/bob@t.test", "/api//v1/accounts",
        "/api/v1/accounts/", "/api/v1/accounts/bob@t.test/", "/", "//"}) {
    EXPECT_EQ(CodeOf(target), absl::StatusCode::kInvalidArgument) << target;
  }
}

TEST(AdminPathTest, SlashInsideTheAddressIsRefused) {
  for (std::string_view target :
       {"/api/v1/accounts/a%2Fb@t.test", "/api/v1/accounts/a%2fb@t.test",
        "/api/v1/accounts/alice@t.test/bob@t.test", "/api/v1/accounts/alice@t.test/x",
        "/api/v1/accounts/alice@t.test/mailbox/x", "/api/v1/accounts/alice@t.test/hold?after=1",
        "/api/v1/accounts/alice@t.test/mailbox?after=",
        "/api/v1/accounts/alice@t.test/mailbox?after=-1",
        "/api/v1/accounts/alice@t.test/mailbox?after=99999999999999999999",
        "/api/v1/accounts/alice@t.test/mailbox?after=1&after=2",
        "/api/v1/accounts/alice@t.test/mailbox?before=1", "/api/v1/accounts/a%5Cb@t.test",
        "/api/v1/accounts/a\\b@t.test"}) {
    EXPECT_EQ(CodeOf(target), absl::StatusCode::kInvalidArgument) << target;
  }
}

TEST(AdminPathTest, ControlCharactersAndNonAsciiAreRefused) {
  for (std::string_view target : {"/api/v1/accounts/a%0Ab@t.test", "/api/v1/accounts/a%0db@t.test",
                                  "/api/v1/accounts/a%09b@t.test", "/api/v1/accounts/a%7Fb@t.test",
                                  "/api/v1/accounts/a%C3%A9@t.test", "/api/v1/accounts/a\tb@t.test",
                                  "/api/v1/accounts/a\x01@t.test", "/api/v1/accounts/a\x7f@t.test",
                                  "/api/v1/accounts/\xc3\xa9@t.test", "/api/v1/accounts/a b@t.test",
                                  "/api/v1/accounts/a%20b@t.test"}) {
    EXPECT_EQ(CodeOf(target), absl::StatusCode::kInvalidArgument) << target;
  }
}

TEST(AdminPathTest, MalformedPercentEncodingIsRefused) {
  for (std::string_view target :
       {"/api/v1/accounts/a%@t.test", "/api/v1/accounts/a%4@t.test", "/api/v1/accounts/a%g0@t",
        "/api/v1/accounts/a@t.test%", "/api/v1/accounts/a@t.test%4", "/api/v1/accounts?domain=%"}) {
    EXPECT_EQ(CodeOf(target), absl::StatusCode::kInvalidArgument) << target;
  }
}

TEST(AdminPathTest, AnythingThatIsNotAnAddressIsRefused) {
  for (std::string_view target :
       {"/api/v1/accounts/bob", "/api/v1/accounts/@t.test", "/api/v1/accounts/a@b@t.test",
        "/api/v1/accounts/a@-t.test", "/api/v1/accounts/a<b>@t.test",
        "/api/v1/accounts/a%40b%40t.test"}) {
    EXPECT_EQ(CodeOf(target), absl::StatusCode::kInvalidArgument) << target;
  }
}

TEST(AdminPathTest, QueriesAreStrict) {
  for (std::string_view target :
       {"/api/v1/accounts/a@t.test?x=1", "/api/v1/accounts/a@t.test?",
        "/api/v1/accounts?domain=a.test&domain=b.test", "/api/v1/accounts?other=1",
        "/api/v1/accounts?domain=a.test&", "/api/v1/accounts?domain=bad_domain",
        "/api/v1/accounts?domain=", "/api/v1/accounts?Domain=a.test", "/api/v1/accounts#frag"}) {
    EXPECT_EQ(CodeOf(target), absl::StatusCode::kInvalidArgument) << target;
  }
}

TEST(AdminPathTest, TargetsNotInOriginFormAreRefused) {
  for (std::string_view target :
       {"", "*", "api/v1/accounts", "http://h/api/v1/accounts/a@t.test"}) {
    EXPECT_EQ(CodeOf(target), absl::StatusCode::kInvalidArgument) << target;
  }
  const std::string long_target = "/api/v1/accounts/" + std::string(kAdminTargetBytesMax, 'a');
  EXPECT_EQ(CodeOf(long_target), absl::StatusCode::kInvalidArgument);
}

TEST(AdminPathTest, OtherResourcesAreNotFound) {
  for (std::string_view target : {"/api/v1", "/api/v2/accounts", "/metrics", "/api/v1/Accounts",
                                  "/api/v1/accountsx/a@t.test", "/x"}) {
    EXPECT_EQ(CodeOf(target), absl::StatusCode::kNotFound) << target;
  }
}

}  // namespace
}  // namespace posthaste::server::admin
