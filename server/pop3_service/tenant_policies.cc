#include "server/pop3_service/tenant_policies.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace posthaste::server {

pop3::TenantPlaintextAuth ToSessionSetting(storage::PlaintextAuth value) {
  switch (value) {
    case storage::PlaintextAuth::kAllow:
      return pop3::TenantPlaintextAuth::kAllow;
    case storage::PlaintextAuth::kRequireTls:
      return pop3::TenantPlaintextAuth::kRequireTls;
    case storage::PlaintextAuth::kDefault:
      break;
  }
  return pop3::TenantPlaintextAuth::kDefault;
}

TenantPolicyTable::TenantPolicyTable() : current_(std::make_shared<const TenantPolicySnapshot>()) {}

absl::Status TenantPolicyTable::Load(storage::MailStore& store) {
  std::lock_guard<std::mutex> lock(load_mu_);
  // Read the counter before the scan: a change racing the scan moves it past what is
  // recorded here, so the next RefreshIfChanged loads again.
  const uint64_t store_generation = store.tenant_generation();
  PH_ASSIGN_OR_RETURN(std::vector<storage::TenantInfo> tenants, store.ListTenants());
  auto snapshot = std::make_shared<TenantPolicySnapshot>();
  // CAPA before login: the least value of any tenant (one without the setting: LOGIN-DELAY 0,
  // EXPIRE NEVER), announced only when some tenant sets it.
  bool any_login_delay = false;
  bool any_expire = false;
  uint32_t least_login_delay = UINT32_MAX;
  uint32_t least_expire = pop3::CapaPolicy::kExpireNever;
  for (const storage::TenantInfo& tenant : tenants) {
    const storage::TenantServiceSettings& service = tenant.policy.service;
    if (service != storage::TenantServiceSettings()) {
      snapshot->service.emplace(tenant.domain, service);
    }
    any_login_delay |= service.login_delay_s.has_value();
    any_expire |= service.expire_days.has_value();
    least_login_delay = std::min(least_login_delay, service.login_delay_s.value_or(0));
    least_expire = std::min(least_expire, service.expire_days.value_or(pop3::CapaPolicy::kExpireNever));
    if (tenant.policy.apop_allowed) snapshot->apop_domains.insert(tenant.domain);
    for (const std::string& master : tenant.policy.master_users) {
      snapshot->master_users.insert(master);  // stored canonical
    }
    const pop3::TenantPlaintextAuth setting = ToSessionSetting(tenant.policy.plaintext_auth);
    if (setting == pop3::TenantPlaintextAuth::kDefault) continue;
    snapshot->plaintext_auth.emplace(tenant.domain, setting);  // stored lower-case
    if (setting == pop3::TenantPlaintextAuth::kAllow) {
      ++snapshot->allowed;
    } else {
      ++snapshot->require_tls;
    }
  }
  snapshot->any_allowed = snapshot->allowed > 0;
  if (any_login_delay) snapshot->before_login.login_delay_seconds = least_login_delay;
  if (any_expire) snapshot->before_login.expire_days = least_expire;
  snapshot->before_login.per_user = true;
  current_.store(std::move(snapshot), std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  store_generation_ = store_generation;
  loaded_ = true;
  return absl::OkStatus();
}

absl::StatusOr<bool> TenantPolicyTable::RefreshIfChanged(storage::MailStore& store) {
  {
    std::lock_guard<std::mutex> lock(load_mu_);
    if (loaded_ && store.tenant_generation() == store_generation_) return false;
  }
  PH_RETURN_IF_ERROR(Load(store));
  return true;
}

std::shared_ptr<const TenantPolicySnapshot> TenantPolicyTable::Current() const {
  return current_.load(std::memory_order_acquire);
}

ShardTenantPolicies::ShardTenantPolicies(const TenantPolicyTable& table) : table_(table) {}

const TenantPolicySnapshot& ShardTenantPolicies::Fresh() const {
  const uint64_t generation = table_.generation();
  if (snapshot_ == nullptr || generation != generation_) {
    // Counter first: a publication racing this sees a newer counter next time, never older.
    snapshot_ = table_.Current();
    generation_ = generation;
  }
  return *snapshot_;
}

pop3::TenantPlaintextAuth ShardTenantPolicies::ForDomain(std::string_view domain) const {
  const TenantPolicySnapshot& snapshot = Fresh();
  if (snapshot.plaintext_auth.empty()) return pop3::TenantPlaintextAuth::kDefault;
  std::string lower(domain);
  absl::AsciiStrToLower(&lower);
  auto it = snapshot.plaintext_auth.find(lower);
  return it == snapshot.plaintext_auth.end() ? pop3::TenantPlaintextAuth::kDefault : it->second;
}

bool ShardTenantPolicies::AnyAllowed() const { return Fresh().any_allowed; }

bool ShardTenantPolicies::AnyApopAllowed() const { return !Fresh().apop_domains.empty(); }

bool ShardTenantPolicies::ApopAllowedFor(std::string_view user) const {
  const TenantPolicySnapshot& snapshot = Fresh();
  const size_t at = user.rfind('@');
  if (snapshot.apop_domains.empty() || at == std::string_view::npos) return false;
  std::string domain(user.substr(at + 1));
  absl::AsciiStrToLower(&domain);
  return snapshot.apop_domains.contains(domain);
}

bool ShardTenantPolicies::IsMasterUser(std::string_view canonical_address) const {
  const TenantPolicySnapshot& snapshot = Fresh();
  return !snapshot.master_users.empty() &&
         snapshot.master_users.contains(AbslView(canonical_address));
}

const storage::TenantServiceSettings& ShardTenantPolicies::ServiceFor(std::string_view user) const {
  static const storage::TenantServiceSettings kDefaults;
  const TenantPolicySnapshot& snapshot = Fresh();
  const size_t at = user.rfind('@');
  if (snapshot.service.empty() || at == std::string_view::npos) return kDefaults;
  std::string domain(user.substr(at + 1));
  absl::AsciiStrToLower(&domain);
  auto it = snapshot.service.find(domain);
  return it == snapshot.service.end() ? kDefaults : it->second;
}

pop3::CapaPolicy ShardTenantPolicies::BeforeLogin() const { return Fresh().before_login; }

}  // namespace posthaste::server
