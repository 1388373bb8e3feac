#include "server/tenant/policy_fields.h"

#include "gtest/gtest.h"

namespace posthaste::server::tenant {
namespace {

TEST(TenantPolicyFields, EveryFieldRoundTripsThroughItsText) {
  storage::TenantPolicy policy;
  const std::vector<std::pair<std::string_view, std::string_view>> values = {
      {"plaintext_auth", "require_tls"},
      {"apop", "allow"},
      {"master_users", "boss@x.test,aide@x.test"},
      {"password_scheme", "sha512-crypt"},
      {"login_delay_s", "300"},
      {"expire_days", "never"},
      {"daily_download_bytes", "1000000"},
      {"list_newest", "50"},
      {"idle_timeout_s", "60"},
      {"connections_per_user", "3"},
      {"login_mechanisms", "PLAIN,USER"},
      {"lang", "de"}};
  ASSERT_EQ(values.size(), TenantPolicyFieldNames().size());
  for (const auto& [name, text] : values) {
    ASSERT_TRUE(IsTenantPolicyField(name)) << name;
    ASSERT_TRUE(SetTenantPolicyField(name, text, &policy).ok()) << name;
  }
  for (const auto& [name, text] : values) {
    EXPECT_EQ(TenantPolicyFieldText(name, policy), text) << name;
  }
  EXPECT_EQ(policy.plaintext_auth, storage::PlaintextAuth::kRequireTls);
  EXPECT_TRUE(policy.apop_allowed);
  EXPECT_EQ(policy.service.list_newest, 50u);
}

TEST(TenantPolicyFields, DefaultsPrintAsTheirResetWords) {
  const storage::TenantPolicy policy;
  EXPECT_EQ(TenantPolicyFieldText("plaintext_auth", policy), "default");
  EXPECT_EQ(TenantPolicyFieldText("apop", policy), "deny");
  EXPECT_EQ(TenantPolicyFieldText("master_users", policy), "none");
  EXPECT_EQ(TenantPolicyFieldText("password_scheme", policy), "default");
  EXPECT_EQ(TenantPolicyFieldText("expire_days", policy), "default");
  storage::TenantPolicy changed;
  ASSERT_TRUE(SetTenantPolicyField("master_users", "a@x.test", &changed).ok());
  ASSERT_TRUE(SetTenantPolicyField("master_users", "none", &changed).ok());
  EXPECT_TRUE(changed.master_users.empty());
  ASSERT_TRUE(SetTenantPolicyField("password_scheme", "yescrypt:5", &changed).ok());
  ASSERT_TRUE(SetTenantPolicyField("password_scheme", "default", &changed).ok());
  EXPECT_TRUE(changed.password_scheme.empty());
}

TEST(TenantPolicyFields, BadValuesNameTheFieldAndChangeNothing) {
  storage::TenantPolicy policy;
  for (const auto& [name, text] :
       std::vector<std::pair<std::string_view, std::string_view>>{{"plaintext_auth", "sometimes"},
                                                                  {"apop", "yes"},
                                                                  {"master_users", ","},
                                                                  {"password_scheme", "rot13"},
                                                                  {"login_delay_s", "-1"},
                                                                  {"expire_days", "soon"},
                                                                  {"lang", "xx"},
                                                                  {"no_such_field", "1"}}) {
    const absl::Status status = SetTenantPolicyField(name, text, &policy);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_NE(status.message().find(std::string(name)), std::string::npos) << status;
  }
  EXPECT_EQ(TenantPolicyFieldText("plaintext_auth", policy), "default");
  EXPECT_FALSE(policy.apop_allowed);
  EXPECT_EQ(TenantPolicyFieldText("lang", policy), "default");
}

}  // namespace
}  // namespace posthaste::server::tenant
