#include "server/tenant/settings_fields.h"

#include "gtest/gtest.h"

namespace posthaste::server::tenant {
namespace {

using storage::TenantServiceSettings;

TEST(TenantSettingsFieldsTest, DefaultsChangeNothingAndReadAsDefault) {
  const TenantServiceSettings settings;
  EXPECT_TRUE(ChangedTenantSettings(settings).empty());
  EXPECT_EQ(TenantSettingText("login_delay_s", settings), "default");
  EXPECT_EQ(TenantSettingText("expire_days", settings), "default");
  EXPECT_EQ(TenantSettingText("daily_download_bytes", settings), "0");
  EXPECT_EQ(TenantSettingText("lang", settings), "default");
}

TEST(TenantSettingsFieldsTest, EverySettingRoundTripsThroughItsText) {
  TenantServiceSettings settings;
  ASSERT_TRUE(SetTenantSetting("login_delay_s", "900", &settings).ok());
  ASSERT_TRUE(SetTenantSetting("expire_days", "never", &settings).ok());
  ASSERT_TRUE(SetTenantSetting("daily_download_bytes", "1000000", &settings).ok());
  ASSERT_TRUE(SetTenantSetting("list_newest", "500", &settings).ok());
  ASSERT_TRUE(SetTenantSetting("idle_timeout_s", "120", &settings).ok());
  ASSERT_TRUE(SetTenantSetting("connections_per_user", "3", &settings).ok());
  ASSERT_TRUE(SetTenantSetting("login_mechanisms", "user, plain,SCRAM-SHA-256,plain", &settings).ok());
  ASSERT_TRUE(SetTenantSetting("lang", "DE", &settings).ok());
  EXPECT_EQ(settings.login_delay_s, 900u);
  EXPECT_EQ(settings.expire_days, TenantServiceSettings::kExpireNever);
  EXPECT_EQ(settings.login_mechanisms, "PLAIN,SCRAM-SHA-256,USER");
  EXPECT_EQ(settings.lang, "de");
  TenantServiceSettings copy;
  for (const auto& [name, text] : ChangedTenantSettings(settings)) {
    ASSERT_TRUE(SetTenantSetting(name, text, &copy).ok()) << name << "=" << text;
  }
  EXPECT_EQ(copy, settings);
  EXPECT_EQ(ChangedTenantSettings(settings).size(), kTenantSettingNames.size());
}

TEST(TenantSettingsFieldsTest, ZeroExpireIsNotTheDefault) {
  TenantServiceSettings settings;
  ASSERT_TRUE(SetTenantSetting("expire_days", "0", &settings).ok());
  EXPECT_EQ(settings.expire_days, 0u);
  EXPECT_EQ(TenantSettingText("expire_days", settings), "0");
  ASSERT_TRUE(SetTenantSetting("expire_days", "default", &settings).ok());
  EXPECT_FALSE(settings.expire_days.has_value());
}

TEST(TenantSettingsFieldsTest, BadValuesAreRefusedNamingTheSettingAndLeaveItAlone) {
  TenantServiceSettings settings;
  for (const auto& [name, text] : std::vector<std::pair<std::string, std::string>>{
           {"login_delay_s", "-1"},
           {"login_delay_s", "4294967295"},
           {"expire_days", "forever"},
           {"daily_download_bytes", "1e9"},
           {"list_newest", ""},
           {"login_mechanisms", "PLAIN,GSSAPI"},
           {"login_mechanisms", ","},
           {"lang", "xx"},
           {"no_such_setting", "1"}}) {
    const absl::Status status = SetTenantSetting(name, text, &settings);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << name << "=" << text;
    EXPECT_NE(status.message().find(name), absl::string_view::npos) << status.message();
  }
  EXPECT_EQ(settings, TenantServiceSettings());
}

TEST(TenantSettingsFieldsTest, MechanismsFollowTheServerUnlessListed) {
  TenantServiceSettings settings;
  EXPECT_TRUE(TenantAllowsMechanism(settings, "APOP"));
  ASSERT_TRUE(SetTenantSetting("login_mechanisms", "SCRAM-SHA-256,USER", &settings).ok());
  EXPECT_TRUE(TenantAllowsMechanism(settings, "USER"));
  EXPECT_TRUE(TenantAllowsMechanism(settings, "SCRAM-SHA-256"));
  EXPECT_FALSE(TenantAllowsMechanism(settings, "SCRAM-SHA-256-PLUS"));
  EXPECT_FALSE(TenantAllowsMechanism(settings, "PLAIN"));
}

}  // namespace
}  // namespace posthaste::server::tenant
