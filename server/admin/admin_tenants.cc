#include "server/admin/admin_tenants.h"

#include <algorithm>
#include <map>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/strings.h"
#include "server/tenant/policy_fields.h"
#include "storage/store_error.h"

namespace posthaste::server::admin {
namespace {

// A policy change that meets a concurrent one (without If-Match) reads again and retries.
constexpr int kPolicyWriteAttempts = 3;

constexpr std::string_view kLimitNames[] = {"quota_messages", "quota_octets", "message_bytes_max"};

struct TenantUsage {
  uint64_t accounts = 0;
  uint64_t messages = 0;
  uint64_t octets = 0;
};

bool AllDigits(std::string_view text) {
  return !text.empty() && text.find_first_not_of("0123456789") == std::string_view::npos;
}

// A policy field's text as JSON: a number when it is one ("300"), else a string ("never").
std::string FieldJson(std::string_view text) {
  return AllDigits(text) ? std::string(text) : JsonString(text);
}

std::string TenantJson(const storage::TenantInfo& tenant, const TenantUsage& usage) {
  std::string out = absl::StrCat("{\"domain\":", JsonString(tenant.domain),
                                 ",\"revision\":", tenant.policy.revision,
                                 ",\"quota_messages\":", tenant.limits.quota_messages,
                                 ",\"quota_octets\":", tenant.limits.quota_octets,
                                 ",\"message_bytes_max\":", tenant.limits.message_bytes_max);
  for (std::string_view name : tenant::TenantPolicyFieldNames()) {
    absl::StrAppend(&out, ",\"", AbslView(name),
                    "\":", FieldJson(tenant::TenantPolicyFieldText(name, tenant.policy)));
  }
  absl::StrAppend(&out, ",\"accounts\":", usage.accounts, ",\"messages\":", usage.messages,
                  ",\"octets\":", usage.octets, "}");
  return out;
}

// Accounts, messages and octets per domain (one scan of the accounts, or of one domain's).
absl::StatusOr<std::map<std::string, TenantUsage>> UsageByDomain(
    storage::MailStore& store, std::optional<std::string_view> domain) {
  auto accounts = store.ListAccounts(domain);
  if (!accounts.ok()) return accounts.status();
  std::map<std::string, TenantUsage> out;
  for (const storage::AccountSummary& a : *accounts) {
    TenantUsage& usage = out[a.address.substr(a.address.rfind('@') + 1)];
    ++usage.accounts;
    usage.messages += a.stats.messages;
    usage.octets += a.stats.octets;
  }
  return out;
}

std::string ETagOf(uint64_t revision) { return absl::StrCat("\"", revision, "\""); }

// If-Match: absent (nullopt), "*" (any revision: nullopt too), or one "N" entity tag. Anything
// else matches no revision (UINT64_MAX never is one).
std::optional<uint64_t> IfMatchRevision(const http::HttpRequest& request) {
  const std::string* header = request.FindHeader("If-Match");
  if (header == nullptr || *header == "*") return std::nullopt;
  std::string_view tag = *header;
  if (tag.size() >= 2 && tag.front() == '"' && tag.back() == '"') {
    tag = tag.substr(1, tag.size() - 2);
    if (AllDigits(tag) && tag.size() <= 19) return ParseDecimalU64(tag).value_or(UINT64_MAX);
  }
  return UINT64_MAX;
}

// The limits and policy fields of `body` applied to `limits` and `policy`: every value checked
// before anything is stored, so a bad one changes nothing. Sets *any_limit / *any_policy.
absl::Status ApplyFields(const JsonObject& body, storage::TenantLimits* limits,
                         storage::TenantPolicy* policy, bool* any_limit, bool* any_policy) {
  for (std::string_view name : kLimitNames) {
    auto value = IntegerField(body, name);
    if (!value.ok()) return value.status();
    if (!value->has_value()) continue;
    *any_limit = true;
    if (name == "quota_messages") limits->quota_messages = **value;
    if (name == "quota_octets") limits->quota_octets = **value;
    if (name == "message_bytes_max") {
      if (**value > storage::kMessageBytesMaxConfigurable) {
        return absl::InvalidArgumentError(absl::StrCat("\"message_bytes_max\" may be at most ",
                                                       storage::kMessageBytesMaxConfigurable));
      }
      limits->message_bytes_max = **value;
    }
  }
  for (std::string_view name : tenant::TenantPolicyFieldNames()) {
    auto it = body.find(name);
    if (it == body.end() || it->second.type == JsonScalar::Type::kNull) continue;
    std::string text;
    if (it->second.type == JsonScalar::Type::kInteger) {
      text = absl::StrCat(it->second.integer);
    } else if (it->second.type == JsonScalar::Type::kString && !AllDigits(it->second.string)) {
      text = it->second.string;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", AbslView(name), "\" takes a number or a word, as `posthaste tenant policy` does ",
          "(numbers as JSON numbers)"));
    }
    absl::Status set = tenant::SetTenantPolicyField(name, text, policy);
    if (!set.ok()) return set;
    *any_policy = true;
  }
  return absl::OkStatus();
}

std::vector<std::string_view> AllowedMembers(bool with_domain) {
  std::vector<std::string_view> names(std::begin(kLimitNames), std::end(kLimitNames));
  const std::vector<std::string_view>& policy = tenant::TenantPolicyFieldNames();
  names.insert(names.end(), policy.begin(), policy.end());
  if (with_domain) names.push_back("domain");
  return names;
}

// The body as a flat JSON object of known members only; nullopt after replying (413, 400).
std::optional<JsonObject> ReadTenantBody(AdminExchange* conn, bool with_domain) {
  std::optional<std::string> text = ReadBody(conn);
  if (!text.has_value()) return std::nullopt;
  absl::StatusOr<JsonObject> body = ParseJsonObject(*text);
  if (!body.ok()) {
    ReplyStatus(conn, body.status());
    return std::nullopt;
  }
  const std::vector<std::string_view> allowed = AllowedMembers(with_domain);
  for (const auto& [name, value] : *body) {
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      ReplyError(conn, 400, "Bad Request", absl::StrCat("unknown member \"", name, "\""));
      return std::nullopt;
    }
  }
  return *std::move(body);
}

}  // namespace

bool TenantRoutes::ReplyTenant(AdminExchange* conn, int code, std::string_view reason,
                               const std::string& domain, std::string_view extra_headers) {
  auto tenant = store_->GetTenant(domain);
  if (!tenant.ok()) return ReplyStatus(conn, tenant.status());
  auto usage = UsageByDomain(*store_, tenant->domain);
  if (!usage.ok()) return ReplyStatus(conn, usage.status());
  Reply(conn, code, reason, TenantJson(*tenant, (*usage)[tenant->domain]) + "\n",
        absl::StrCat("ETag: ", ETagOf(tenant->policy.revision), "\r\n", AbslView(extra_headers)));
  return true;
}

bool TenantRoutes::List(AdminExchange* conn) {
  auto tenants = store_->ListTenants();
  if (!tenants.ok()) return ReplyStatus(conn, tenants.status());
  auto usage = UsageByDomain(*store_, std::nullopt);
  if (!usage.ok()) return ReplyStatus(conn, usage.status());
  std::string body = "{\"tenants\":[";
  for (size_t i = 0; i < tenants->size(); ++i) {
    const storage::TenantInfo& tenant = (*tenants)[i];
    absl::StrAppend(&body, i == 0 ? "" : ",", TenantJson(tenant, (*usage)[tenant.domain]));
  }
  body += "]}\n";
  Reply(conn, 200, "OK", body);
  return true;
}

bool TenantRoutes::Show(AdminExchange* conn, const std::string& domain) {
  return ReplyTenant(conn, 200, "OK", domain);
}

bool TenantRoutes::Create(AdminExchange* conn) {
  std::optional<JsonObject> body = ReadTenantBody(conn, /*with_domain=*/true);
  if (!body.has_value()) return true;
  auto domain_field = StringField(*body, "domain");
  if (!domain_field.ok()) return ReplyStatus(conn, domain_field.status());
  if (!domain_field->has_value()) {
    return ReplyError(conn, 400, "Bad Request", "\"domain\" is required");
  }
  absl::StatusOr<std::string> domain = storage::NormalizeDomain(**domain_field);
  if (!domain.ok()) {
    return ReplyError(conn, 400, "Bad Request",
                      absl::StrCat("\"domain\" is not a domain: ", domain.status().message()));
  }
  storage::TenantLimits limits;
  storage::TenantPolicy policy;
  bool any_limit = false;
  bool any_policy = false;
  absl::Status applied = ApplyFields(*body, &limits, &policy, &any_limit, &any_policy);
  if (!applied.ok()) return ReplyStatus(conn, applied);
  absl::Status created = store_->CreateTenant(*domain, limits, policy);
  if (!created.ok()) return ReplyStatus(conn, created);
  Changed();
  return ReplyTenant(conn, 201, "Created", *domain,
                     absl::StrCat("Location: /api/v1/tenants/", *domain, "\r\n"));
}

bool TenantRoutes::Update(AdminExchange* conn, const std::string& domain) {
  std::optional<JsonObject> body = ReadTenantBody(conn, /*with_domain=*/false);
  if (!body.has_value()) return true;
  const std::optional<uint64_t> if_match = IfMatchRevision(conn->request);
  for (int attempt = 0;; ++attempt) {
    auto tenant = store_->GetTenant(domain);
    if (!tenant.ok()) return ReplyStatus(conn, tenant.status());
    storage::TenantLimits limits = tenant->limits;
    storage::TenantPolicy policy = tenant->policy;
    bool any_limit = false;
    bool any_policy = false;
    absl::Status applied = ApplyFields(*body, &limits, &policy, &any_limit, &any_policy);
    if (!applied.ok()) return ReplyStatus(conn, applied);
    if (if_match.has_value() && *if_match != tenant->policy.revision) {
      return ReplyError(
          conn, 412, "Precondition Failed",
          absl::StrCat("the policy of ", domain, " is at revision ", tenant->policy.revision,
                       " (ETag ", ETagOf(tenant->policy.revision), "): read it again"));
    }
    if (any_policy) {
      // The revision read above: a change made since then is never overwritten unseen.
      absl::Status set = store_->SetTenantPolicy(domain, policy, tenant->policy.revision);
      if (storage::ErrorOf(set) == storage::StoreError::kStaleRevision && !if_match.has_value() &&
          attempt + 1 < kPolicyWriteAttempts) {
        continue;
      }
      if (!set.ok()) return ReplyStatus(conn, set);
    }
    if (any_limit) {
      absl::Status set = store_->SetTenantLimits(domain, limits);
      if (!set.ok()) return ReplyStatus(conn, set);
    }
    if (any_policy || any_limit) Changed();
    return ReplyTenant(conn, 200, "OK", domain);
  }
}

bool TenantRoutes::Delete(AdminExchange* conn, const std::string& domain) {
  absl::Status deleted = store_->DeleteTenant(domain);
  if (!deleted.ok()) return ReplyStatus(conn, deleted);
  Changed();
  conn->response.status = 204;
  return true;
}

}  // namespace posthaste::server::admin
