#include "server/tenant/policy_fields.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/strings.h"
#include "server/auth/password_hash.h"

namespace posthaste::server::tenant {

const std::vector<std::string_view>& TenantPolicyFieldNames() {
  static const auto* names = [] {
    auto* all = new std::vector<std::string_view>(kTenantLoginRuleNames.begin(),
                                                  kTenantLoginRuleNames.end());
    all->insert(all->end(), kTenantSettingNames.begin(), kTenantSettingNames.end());
    return all;
  }();
  return *names;
}

namespace {

std::string JoinedFieldNames() {
  std::string out;
  for (std::string_view name : TenantPolicyFieldNames()) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

}  // namespace

bool IsTenantPolicyField(std::string_view name) {
  const std::vector<std::string_view>& names = TenantPolicyFieldNames();
  return std::find(names.begin(), names.end(), name) != names.end();
}

absl::Status SetTenantPolicyField(std::string_view name, std::string_view text,
                                  storage::TenantPolicy* policy) {
  auto invalid = [&](std::string_view expected) {
    return absl::InvalidArgumentError(absl::StrCat(
        AbslView(name), ": expected ", AbslView(expected), ", got \"", AbslView(text), "\""));
  };
  if (name == "plaintext_auth") {
    const std::optional<storage::PlaintextAuth> value = storage::ParsePlaintextAuth(text);
    if (!value.has_value()) return invalid("default, allow or require_tls");
    policy->plaintext_auth = *value;
    return absl::OkStatus();
  }
  if (name == "apop") {
    if (text != "allow" && text != "deny") return invalid("allow or deny");
    policy->apop_allowed = text == "allow";
    return absl::OkStatus();
  }
  if (name == "master_users") {
    std::vector<std::string> users;
    if (text != "none") {
      for (absl::string_view user : absl::StrSplit(AbslView(text), ',', absl::SkipEmpty())) {
        users.emplace_back(user);
      }
      if (users.empty()) return invalid("addresses separated by commas, or none");
    }
    policy->master_users = std::move(users);
    return absl::OkStatus();
  }
  if (name == "password_scheme") {
    if (text == "default") {
      policy->password_scheme.clear();
      return absl::OkStatus();
    }
    absl::StatusOr<auth::HashSetting> setting = auth::ParseHashSetting(text);
    if (!setting.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("password_scheme: ", setting.status().message()));
    }
    policy->password_scheme = auth::HashSettingText(*setting);
    return absl::OkStatus();
  }
  if (!IsTenantSettingName(name)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown tenant policy field \"", AbslView(name),
                                                   "\" (known: ", JoinedFieldNames(), ")"));
  }
  return SetTenantSetting(name, text, &policy->service);
}

std::string TenantPolicyFieldText(std::string_view name, const storage::TenantPolicy& policy) {
  if (name == "plaintext_auth")
    return std::string(storage::PlaintextAuthName(policy.plaintext_auth));
  if (name == "apop") return policy.apop_allowed ? "allow" : "deny";
  if (name == "master_users") {
    return policy.master_users.empty() ? std::string("none")
                                       : absl::StrJoin(policy.master_users, ",");
  }
  if (name == "password_scheme") {
    return policy.password_scheme.empty() ? std::string("default") : policy.password_scheme;
  }
  return TenantSettingText(name, policy.service);
}

}  // namespace posthaste::server::tenant
