#include "server/auth/oauth_tenants.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/json.h"
#include "base/strings.h"

namespace posthaste::auth {
namespace {

absl::Status ConfigError(std::string_view domain, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("oauth config: tenant ", JsonQuote(domain), ": ", AbslView(why)));
}

absl::StatusOr<OAuthTenantConfig> ParseTenant(std::string_view domain, const JsonValue& entry,
                                              std::string_view config_dir) {
  if (!entry.is_object()) return ConfigError(domain, "not a JSON object");
  OAuthTenantConfig tenant;
  tenant.domain = absl::AsciiStrToLower(AbslView(domain));
  if (tenant.domain.empty() || tenant.domain.find('@') != std::string::npos) {
    return ConfigError(domain, "not a domain");
  }
  bool has_issuer = false, has_audiences = false, has_jwks = false;
  for (const auto& member : entry.members()) {
    // Named references, not a structured binding: clang 14 cannot capture those in a lambda.
    const std::string& name = member.first;
    const JsonValue& value = member.second;
    auto need_string = [&](std::string* out) -> absl::Status {
      if (!value.is_string() || value.text().empty()) {
        return ConfigError(domain, absl::StrCat(name, " must be a non-empty string"));
      }
      *out = std::string(value.text());
      return absl::OkStatus();
    };
    absl::Status status;
    if (name == "issuer") {
      status = need_string(&tenant.checks.issuer);
      has_issuer = true;
    } else if (name == "audiences") {
      if (!value.is_array() || value.elements().empty()) {
        return ConfigError(domain, "audiences must be a non-empty array of strings");
      }
      for (const auto& a : value.elements()) {
        if (!a.is_string() || a.text().empty()) {
          return ConfigError(domain, "audiences must be a non-empty array of strings");
        }
        tenant.checks.audiences.emplace_back(a.text());
      }
      has_audiences = true;
    } else if (name == "mailbox_claim") {
      status = need_string(&tenant.checks.mailbox_claim);
    } else if (name == "jwks_path") {
      status = need_string(&tenant.jwks_path);
      has_jwks = true;
    } else if (name == "clock_skew_seconds") {
      const auto skew = value.type() == JsonValue::Type::kNumber ? value.AsInt64() : std::nullopt;
      if (!skew || *skew < 0 || *skew > kOAuthClockSkewSecondsMax) {
        return ConfigError(domain, absl::StrCat("clock_skew_seconds must be an integer from 0 to ",
                                                kOAuthClockSkewSecondsMax));
      }
      tenant.checks.clock_skew_seconds = *skew;
    } else if (name == "scope") {
      status = need_string(&tenant.scope);
    } else if (name == "openid_configuration") {
      status = need_string(&tenant.openid_configuration);
    } else {
      return ConfigError(domain, absl::StrCat("unknown member ", JsonQuote(name)));
    }
    if (!status.ok()) return status;
  }
  if (!has_issuer || !has_audiences || !has_jwks) {
    return ConfigError(domain, "issuer, audiences and jwks_path are required");
  }
  if (tenant.jwks_path[0] != '/' && !config_dir.empty()) {
    tenant.jwks_path = absl::StrCat(AbslView(config_dir), "/", tenant.jwks_path);
  }
  return tenant;
}

// ASCII case-insensitive, like the store's one mailbox per address whatever its case.
bool SameAddress(std::string_view a, std::string_view b) {
  return absl::EqualsIgnoreCase(AbslView(a), AbslView(b));
}

std::string_view DomainOf(std::string_view address) {
  const size_t at = address.rfind('@');
  return at == std::string_view::npos ? std::string_view() : address.substr(at + 1);
}

// The tenant a token names through its (unverified) mailbox claim, for a client that named no
// user. The claim must be the one that tenant configured, or a token could pick a tenant by
// a claim that tenant does not trust.
const OAuthTenant* TenantOfToken(const OAuthSnapshot& snapshot, std::string_view token) {
  auto jws = ParseCompactJws(token);
  if (!jws.ok()) return nullptr;
  auto claims = ParseJson(
      jws->payload, JsonLimits{.bytes_max = kJwtBytesMax, .depth_max = 16, .values_max = 4096});
  if (!claims.ok() || !claims->is_object()) return nullptr;
  for (const auto& claim : snapshot.mailbox_claims) {
    const JsonValue* value = claims->Find(claim);
    if (value == nullptr || !value->is_string()) continue;
    const OAuthTenant* tenant = snapshot.Find(DomainOf(value->text()));
    if (tenant != nullptr && tenant->config.checks.mailbox_claim == claim) return tenant;
  }
  return nullptr;
}

struct ReadResult {
  std::string text;
  uint64_t device = 0;
  uint64_t inode = 0;
  int64_t size = 0;
  int64_t mtime_ns = 0;
};

absl::StatusOr<ReadResult> ReadSmallFile(const std::string& path, size_t bytes_max) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": ", strerror(errno)));
  ReadResult result;
  struct stat st {};
  absl::Status status;
  if (fstat(fd, &st) != 0) {
    status = absl::InternalError(absl::StrCat(path, ": fstat: ", strerror(errno)));
  } else {
    result.device = st.st_dev;
    result.inode = st.st_ino;
    result.size = st.st_size;
    result.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
    char buf[16384];
    while (status.ok()) {
      const ssize_t n = read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        status = absl::InternalError(absl::StrCat(path, ": read: ", strerror(errno)));
      } else if (n == 0) {
        break;
      } else if (result.text.size() + n > bytes_max) {
        status =
            absl::InvalidArgumentError(absl::StrCat(path, ": longer than ", bytes_max, " bytes"));
      } else {
        result.text.append(buf, n);
      }
    }
  }
  close(fd);
  if (!status.ok()) return status;
  return result;
}

}  // namespace

absl::StatusOr<std::vector<OAuthTenantConfig>> ParseOAuthConfig(std::string_view text,
                                                                std::string_view config_dir) {
  auto root = ParseJson(text, JsonLimits{.bytes_max = kOAuthConfigBytesMax});
  if (!root.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("oauth config: ", root.status().message()));
  }
  const JsonValue* tenants = root->is_object() ? root->Find("tenants") : nullptr;
  if (tenants == nullptr || !tenants->is_object() || root->members().size() != 1) {
    return absl::InvalidArgumentError(
        "oauth config: want an object with one member, \"tenants\": {domain: settings}");
  }
  if (tenants->members().size() > kOAuthTenantsMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("oauth config: more than ", kOAuthTenantsMax, " tenants"));
  }
  std::vector<OAuthTenantConfig> out;
  absl::flat_hash_map<std::string, bool> seen;
  for (const auto& [domain, entry] : tenants->members()) {
    auto tenant = ParseTenant(domain, entry, config_dir);
    if (!tenant.ok()) return tenant.status();
    // The JSON reader refuses duplicate names, but not two spellings of one domain.
    if (!seen.emplace(tenant->domain, true).second) return ConfigError(domain, "listed twice");
    out.push_back(std::move(*tenant));
  }
  return out;
}

absl::StatusOr<std::vector<OAuthTenantConfig>> LoadOAuthConfigFile(const std::string& path) {
  auto file = ReadSmallFile(path, kOAuthConfigBytesMax);
  if (!file.ok()) return file.status();
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  return ParseOAuthConfig(file->text, slash == 0 ? "/" : dir);
}

const OAuthTenant* OAuthSnapshot::Find(std::string_view domain) const {
  if (domain.empty()) return nullptr;
  auto it = tenants.find(absl::AsciiStrToLower(AbslView(domain)));
  return it == tenants.end() ? nullptr : it->second.get();
}

BearerVerdict VerifyBearerToken(const OAuthSnapshot& snapshot, std::string_view token,
                                std::string_view user, int64_t now_unix_seconds) {
  BearerVerdict verdict;
  const OAuthTenant* tenant =
      user.empty() ? TenantOfToken(snapshot, token) : snapshot.Find(DomainOf(user));
  if (tenant == nullptr) {
    verdict.detail = user.empty() ? "the token names no OAuth tenant"
                                  : "the user's domain has no OAuth configuration";
    return verdict;
  }
  verdict.scope = tenant->config.scope;
  verdict.openid_configuration = tenant->config.openid_configuration;
  auto verified = VerifyJwt(token, tenant->keys->keys, tenant->config.checks, now_unix_seconds);
  if (!verified.ok()) {
    verdict.failure = verified.status().code() == absl::StatusCode::kOutOfRange
                          ? SaslFailure::kTokenExpired
                          : SaslFailure::kTokenInvalid;
    verdict.detail = std::string(verified.status().message());
    return verdict;
  }
  if (!user.empty() && !SameAddress(user, verified->mailbox)) {
    verdict.detail = "the token names another mailbox";
    return verdict;
  }
  // With no user named, the tenant came from the token before verification: the verified
  // mailbox must still belong to it.
  if (user.empty() && snapshot.Find(DomainOf(verified->mailbox)) != tenant) {
    verdict.detail = "the token's mailbox is outside its tenant";
    return verdict;
  }
  verdict.ok = true;
  verdict.mailbox = user.empty() ? verified->mailbox : std::string(user);
  return verdict;
}

absl::StatusOr<std::unique_ptr<OAuthRegistry>> OAuthRegistry::Create(
    std::vector<OAuthTenantConfig> tenants) {
  std::unique_ptr<OAuthRegistry> registry(new OAuthRegistry());
  std::lock_guard<std::mutex> lock(registry->load_mu_);
  for (auto& config : tenants) {
    TenantState state;
    auto tenant = std::make_shared<OAuthTenant>();
    tenant->config = std::move(config);
    tenant->keys = std::make_shared<const JwkSet>();
    state.tenant = std::move(tenant);
    absl::Status status = registry->LoadLocked(&state);
    if (!status.ok()) return status;
    const std::string domain = state.tenant->config.domain;
    registry->states_.emplace(domain, std::move(state));
  }
  registry->PublishLocked();
  return registry;
}

absl::Status OAuthRegistry::LoadLocked(TenantState* state) {
  const OAuthTenantConfig& config = state->tenant->config;
  auto where = [&](absl::string_view why) {
    return absl::StrCat("oauth tenant ", config.domain, ": ", why);
  };
  auto file = ReadSmallFile(config.jwks_path, kJwksBytesMax);
  if (!file.ok()) {
    state->identity = FileIdentity{};
    return absl::Status(file.status().code(), where(file.status().message()));
  }
  state->identity = FileIdentity{file->device, file->inode, file->size, file->mtime_ns};
  auto keys = ParseJwks(file->text);
  if (!keys.ok()) return absl::InvalidArgumentError(where(keys.status().message()));
  if (keys->keys.empty()) {
    return absl::InvalidArgumentError(where(absl::StrCat(config.jwks_path, ": no usable key (",
                                                         absl::StrJoin(keys->skipped, "; "), ")")));
  }
  auto tenant = std::make_shared<OAuthTenant>();
  tenant->config = config;
  tenant->keys = std::make_shared<const JwkSet>(std::move(*keys));
  state->tenant = std::move(tenant);
  return absl::OkStatus();
}

void OAuthRegistry::PublishLocked() {
  auto snapshot = std::make_shared<OAuthSnapshot>();
  for (const auto& [domain, state] : states_) {
    snapshot->tenants.emplace(domain, state.tenant);
    const std::string& claim = state.tenant->config.checks.mailbox_claim;
    if (std::find(snapshot->mailbox_claims.begin(), snapshot->mailbox_claims.end(), claim) ==
        snapshot->mailbox_claims.end()) {
      snapshot->mailbox_claims.push_back(claim);
    }
  }
  current_.store(std::move(snapshot), std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

OAuthReloadReport OAuthRegistry::ReloadChanged() {
  OAuthReloadReport report;
  std::lock_guard<std::mutex> lock(load_mu_);
  for (auto& [domain, state] : states_) {
    struct stat st {};
    FileIdentity now;
    if (stat(state.tenant->config.jwks_path.c_str(), &st) == 0) {
      now = FileIdentity{st.st_dev, st.st_ino, st.st_size,
                         int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec};
    }
    if (now == state.identity) continue;
    const std::shared_ptr<const OAuthTenant> before = state.tenant;
    absl::Status status = LoadLocked(&state);
    if (!status.ok()) {
      report.errors.push_back(std::string(status.message()));
    } else if (state.tenant != before) {
      report.reloaded.push_back(domain);
    }
  }
  if (!report.reloaded.empty()) PublishLocked();
  return report;
}

absl::Status OAuthRegistry::ReloadTenant(std::string_view domain) {
  std::lock_guard<std::mutex> lock(load_mu_);
  auto it = states_.find(absl::AsciiStrToLower(AbslView(domain)));
  if (it == states_.end()) {
    return absl::NotFoundError(absl::StrCat("no OAuth configuration for ", AbslView(domain)));
  }
  absl::Status status = LoadLocked(&it->second);
  if (status.ok()) PublishLocked();
  return status;
}

std::shared_ptr<const OAuthSnapshot> OAuthRegistry::Current() const {
  return current_.load(std::memory_order_acquire);
}

}  // namespace posthaste::auth
