// The tenant's POP3 service settings (storage/tenant_settings.h) by name, as the CLI's
// `tenant policy` flags and the HTTP admin API's JSON fields spell them: one table, so the two
// accept the same values and report them the same way.
//
//   login_delay_s         N | default                     RFC 2449 LOGIN-DELAY
//   expire_days           N | never | default             RFC 2449 EXPIRE (0: at QUIT)
//   daily_download_bytes  N (0: no limit)
//   list_newest           N (0: every message)
//   idle_timeout_s        N (0: the server's)
//   connections_per_user  N (0: the server's)
//   login_mechanisms      NAME,NAME... | default          e.g. USER,PLAIN,SCRAM-SHA-256
//   lang                  TAG | default                   e.g. en, de
#ifndef POSTHASTE_SERVER_TENANT_SETTINGS_FIELDS_H_
#define POSTHASTE_SERVER_TENANT_SETTINGS_FIELDS_H_

#include <array>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "storage/tenant_settings.h"

namespace posthaste::server::tenant {

inline constexpr std::array<std::string_view, 8> kTenantSettingNames = {
    "login_delay_s",  "expire_days",          "daily_download_bytes", "list_newest",
    "idle_timeout_s", "connections_per_user", "login_mechanisms",     "lang"};

// The login mechanisms a tenant may allow, as login_mechanisms spells them: USER stands for
// USER/PASS, APOP for the APOP command, the rest are SASL mechanism names.
inline constexpr std::array<std::string_view, 12> kLoginMechanismNames = {
    "APOP",          "CRAM-MD5",           "EXTERNAL",    "LOGIN",
    "OAUTHBEARER",   "PLAIN",              "SCRAM-SHA-1", "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "USER",        "XOAUTH2"};

// Languages the server answers in (server/pop3's catalog); `lang` accepts these tags.
inline constexpr std::array<std::string_view, 2> kTenantLanguageTags = {"en", "de"};

bool IsTenantSettingName(std::string_view name);

// Sets the setting `name` from `text` (the forms above, "default" everywhere). InvalidArgument
// naming the setting and the value for anything else, including an unknown name.
absl::Status SetTenantSetting(std::string_view name, std::string_view text,
                              storage::TenantServiceSettings* settings);

// The setting `name` as text: the form SetTenantSetting accepts, "default" when it follows the
// server. `name` must be one of kTenantSettingNames.
std::string TenantSettingText(std::string_view name, const storage::TenantServiceSettings& settings);

// Each setting that does not follow the server, as (name, text), in kTenantSettingNames order.
std::vector<std::pair<std::string_view, std::string>> ChangedTenantSettings(
    const storage::TenantServiceSettings& settings);

// Whether `mechanism` (upper case: "USER", "APOP", "PLAIN", ...) is allowed by `settings`.
bool TenantAllowsMechanism(const storage::TenantServiceSettings& settings,
                           std::string_view mechanism);

}  // namespace posthaste::server::tenant

#endif  // POSTHASTE_SERVER_TENANT_SETTINGS_FIELDS_H_
