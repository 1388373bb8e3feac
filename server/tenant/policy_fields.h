// The whole tenant policy (storage::TenantPolicy) by name: the login rules that the CLI's
// `tenant policy` flags and the HTTP admin API's tenant fields share (plaintext_auth, apop,
// master_users, password_scheme), then every service setting of settings_fields.h. One table,
// so both accept the same values and print them the same way.
//
//   plaintext_auth   default | allow | require_tls
//   apop             allow | deny                      APOP and CRAM-MD5
//   master_users     ADDR,ADDR... | none               addresses of the tenant's own domain
//   password_scheme  SCHEME[:COST] | default           server/auth/password_hash.h
//   ...              the service settings (kTenantSettingNames)
//
// Pure functions; thread-safe.
#ifndef POSTHASTE_SERVER_TENANT_POLICY_FIELDS_H_
#define POSTHASTE_SERVER_TENANT_POLICY_FIELDS_H_

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "server/tenant/settings_fields.h"
#include "storage/mail_store.h"

namespace posthaste::server::tenant {

inline constexpr std::array<std::string_view, 4> kTenantLoginRuleNames = {
    "plaintext_auth", "apop", "master_users", "password_scheme"};

// kTenantLoginRuleNames, then kTenantSettingNames.
const std::vector<std::string_view>& TenantPolicyFieldNames();
bool IsTenantPolicyField(std::string_view name);

// Sets the field `name` of `policy` from `text` (the forms above). InvalidArgument naming the
// field and the value for anything else, including an unknown name; `policy` is unchanged then.
// Master users are checked against the domain by MailStore::SetTenantPolicy.
absl::Status SetTenantPolicyField(std::string_view name, std::string_view text,
                                  storage::TenantPolicy* policy);

// The field `name` as text, in the form SetTenantPolicyField accepts. `name` must be one of
// TenantPolicyFieldNames().
std::string TenantPolicyFieldText(std::string_view name, const storage::TenantPolicy& policy);

}  // namespace posthaste::server::tenant

#endif  // POSTHASTE_SERVER_TENANT_POLICY_FIELDS_H_
