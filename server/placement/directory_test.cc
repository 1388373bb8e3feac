#include "server/placement/directory.h"

#include "gtest/gtest.h"
#include "server/placement/directory_codec.h"

namespace posthaste::server::placement {
namespace {

constexpr std::string_view kPrefix = "/posthaste/";

DirectorySnapshot Sample() {
  DirectorySnapshot s;
  EXPECT_TRUE(ApplyDirectoryKey(
                  kPrefix, "/posthaste/backends/b1",
                  R"({"ip":"10.0.0.7","pop3":110,"pop3s":995,"lmtp":24,"admin":8080})", false, &s)
                  .ok());
  EXPECT_TRUE(
      ApplyDirectoryKey(kPrefix, "/posthaste/backends/b2", R"({"ip":"::1","lmtp":2424})", false, &s)
          .ok());
  EXPECT_TRUE(
      ApplyDirectoryKey(kPrefix, "/posthaste/tenants/Example.COM", R"({"backend":"b1"})", false, &s)
          .ok());
  EXPECT_TRUE(ApplyDirectoryKey(kPrefix, "/posthaste/users/vip@example.com",
                                R"({"backend":"b2","moving_to":"b1"})", false, &s)
                  .ok());
  EXPECT_TRUE(
      ApplyDirectoryKey(kPrefix, "/posthaste/tenants/gone.test", R"({"backend":"b9"})", false, &s)
          .ok());
  return s;
}

TEST(DirectoryTest, ResolvesUserOverTenant) {
  const DirectorySnapshot s = Sample();
  auto tenant = s.Resolve("Alice@EXAMPLE.com");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  EXPECT_EQ(tenant->backend->name, "b1");
  EXPECT_EQ(tenant->backend->ip, "10.0.0.7");
  EXPECT_EQ(tenant->backend->pop3s_port, 995);
  EXPECT_FALSE(tenant->moving);
  EXPECT_FALSE(tenant->from_user_override);
  auto user = s.Resolve("VIP@example.com");
  ASSERT_TRUE(user.ok()) << user.status();
  EXPECT_EQ(user->backend->name, "b2");
  EXPECT_EQ(user->backend->lmtp_port, 2424);
  EXPECT_TRUE(user->moving);
  EXPECT_TRUE(user->from_user_override);
  EXPECT_TRUE(absl::IsNotFound(s.Resolve("a@elsewhere.test").status()));
  EXPECT_TRUE(absl::IsNotFound(s.Resolve("no-at-sign").status()));
  EXPECT_TRUE(absl::IsUnavailable(s.Resolve("a@gone.test").status()));
}

TEST(DirectoryTest, DeletesAndBadValues) {
  DirectorySnapshot s = Sample();
  ASSERT_TRUE(ApplyDirectoryKey(kPrefix, "/posthaste/backends/b1", "", true, &s).ok());
  EXPECT_TRUE(absl::IsUnavailable(s.Resolve("a@example.com").status()));
  // A bad value drops the entry rather than keep a stale one.
  EXPECT_FALSE(ApplyDirectoryKey(kPrefix, "/posthaste/tenants/example.com", "{", false, &s).ok());
  EXPECT_TRUE(absl::IsNotFound(s.Resolve("a@example.com").status()));
  for (const char* bad : {R"({"ip":"host.name"})", R"({"ip":"1.2.3.4","pop3":70000})",
                          R"({"ip":"1.2.3.4","pop3":"110"})", R"({"pop3":1})", "[]"}) {
    EXPECT_FALSE(DecodeBackend("b", bad).ok()) << bad;
  }
  EXPECT_FALSE(DecodePlacement(R"({"backend":""})").ok());
  EXPECT_FALSE(DecodePlacement(R"({"backend":"b","moving_to":1})").ok());
  // Keys outside the schema are not the directory's business.
  EXPECT_TRUE(ApplyDirectoryKey(kPrefix, "/posthaste/other/x", "junk", false, &s).ok());
  EXPECT_TRUE(ApplyDirectoryKey(kPrefix, "/elsewhere/backends/x", "junk", false, &s).ok());
}

TEST(DirectoryTest, EncodingRoundTrips) {
  BackendEndpoint b{.name = "b1",
                    .ip = "127.0.0.2",
                    .pop3_port = 1,
                    .pop3s_port = 2,
                    .lmtp_port = 3,
                    .admin_port = 4};
  auto back = DecodeBackend("b1", EncodeBackend(b));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ip, "127.0.0.2");
  EXPECT_EQ(back->admin_port, 4);
  auto entry = DecodePlacement(EncodePlacement({.backend = "b1", .moving_to = "b2"}));
  ASSERT_TRUE(entry.ok());
  EXPECT_EQ(entry->moving_to, "b2");
  EXPECT_EQ(TenantKey(kPrefix, "Example.COM"), "/posthaste/tenants/example.com");
  EXPECT_EQ(UserKey(kPrefix, "A@B.c"), "/posthaste/users/a@b.c");
  EXPECT_EQ(BackendKey(kPrefix, "b1"), "/posthaste/backends/b1");
}

}  // namespace
}  // namespace posthaste::server::placement
