// TenantPolicyTable against a real store: loads overrides only, refreshes when (and only when)
// a tenant changed, and each shard view follows publications.
#include "server/pop3_service/tenant_policies.h"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace posthaste::server {
namespace {

using pop3::TenantPlaintextAuth;
using storage::PlaintextAuth;
using storage::TenantPolicy;

std::unique_ptr<storage::MailStore> NewStore() {
  static std::atomic<int> counter{0};
  const char* tmp = std::getenv("TEST_TMPDIR");
  storage::StoreOptions options;
  options.data_dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/tenant-policies-", getpid(),
                                  "-", counter.fetch_add(1));
  auto store = storage::MailStore::Open(options);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

TEST(TenantPolicyTableTest, LoadsOnlyOverridesAndFollowsChanges) {
  auto store = NewStore();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->SetTenantPolicy("allow.test", TenantPolicy{PlaintextAuth::kAllow}).ok());
  ASSERT_TRUE(
      store->SetTenantPolicy("strict.test", TenantPolicy{PlaintextAuth::kRequireTls}).ok());
  ASSERT_TRUE(store->SetTenantLimits("plain.test", storage::TenantLimits{}).ok());

  TenantPolicyTable table;
  ShardTenantPolicies shard(table);
  EXPECT_FALSE(shard.AnyAllowed());  // nothing loaded yet: everything default
  EXPECT_EQ(shard.ForDomain("allow.test"), TenantPlaintextAuth::kDefault);

  ASSERT_TRUE(table.Load(*store).ok());
  EXPECT_EQ(table.Current()->plaintext_auth.size(), 2u);  // plain.test has no entry
  EXPECT_TRUE(shard.AnyAllowed());
  EXPECT_EQ(shard.ForDomain("allow.test"), TenantPlaintextAuth::kAllow);
  EXPECT_EQ(shard.ForDomain("Allow.TEST"), TenantPlaintextAuth::kAllow);
  EXPECT_EQ(shard.ForDomain("strict.test"), TenantPlaintextAuth::kRequireTls);
  EXPECT_EQ(shard.ForDomain("plain.test"), TenantPlaintextAuth::kDefault);
  EXPECT_EQ(shard.ForDomain("unknown.test"), TenantPlaintextAuth::kDefault);

  // Nothing changed: no reload.
  const uint64_t generation = table.generation();
  auto refreshed = table.RefreshIfChanged(*store);
  ASSERT_TRUE(refreshed.ok());
  EXPECT_FALSE(*refreshed);
  EXPECT_EQ(table.generation(), generation);

  ASSERT_TRUE(store->SetTenantPolicy("allow.test", TenantPolicy{PlaintextAuth::kDefault}).ok());
  ASSERT_TRUE(store->SetTenantPolicy("plain.test", TenantPolicy{PlaintextAuth::kAllow}).ok());
  refreshed = table.RefreshIfChanged(*store);
  ASSERT_TRUE(refreshed.ok());
  EXPECT_TRUE(*refreshed);
  EXPECT_EQ(shard.ForDomain("allow.test"), TenantPlaintextAuth::kDefault);
  EXPECT_EQ(shard.ForDomain("plain.test"), TenantPlaintextAuth::kAllow);

  ASSERT_TRUE(store->SetTenantPolicy("plain.test", TenantPolicy{}).ok());
  ASSERT_TRUE(table.RefreshIfChanged(*store).ok());
  EXPECT_FALSE(shard.AnyAllowed());
  EXPECT_EQ(table.Current()->require_tls, 1u);
}

TEST(TenantPolicyTableTest, ApopAndMasterUsers) {
  auto store = NewStore();
  ASSERT_NE(store, nullptr);
  TenantPolicy apop;
  apop.apop_allowed = true;
  apop.master_users = {"Boss@apop.test"};
  ASSERT_TRUE(store->SetTenantPolicy("apop.test", apop).ok());
  ASSERT_TRUE(store->SetTenantLimits("plain.test", storage::TenantLimits{}).ok());

  TenantPolicyTable table;
  ShardTenantPolicies shard(table);
  EXPECT_FALSE(shard.AnyApopAllowed());
  ASSERT_TRUE(table.Load(*store).ok());
  EXPECT_TRUE(shard.AnyApopAllowed());
  EXPECT_FALSE(shard.AnyAllowed());  // APOP does not allow plaintext USER/PASS
  EXPECT_TRUE(shard.ApopAllowedFor("mrose@APOP.test"));
  EXPECT_FALSE(shard.ApopAllowedFor("mrose@plain.test"));
  EXPECT_FALSE(shard.ApopAllowedFor("apop.test"));
  EXPECT_TRUE(shard.IsMasterUser("boss@apop.test"));
  EXPECT_FALSE(shard.IsMasterUser("mrose@apop.test"));

  ASSERT_TRUE(store->SetTenantPolicy("apop.test", TenantPolicy{}).ok());
  ASSERT_TRUE(table.RefreshIfChanged(*store).ok());
  EXPECT_FALSE(shard.AnyApopAllowed());
  EXPECT_FALSE(shard.ApopAllowedFor("mrose@apop.test"));
  EXPECT_FALSE(shard.IsMasterUser("boss@apop.test"));
}

}  // namespace
}  // namespace posthaste::server
