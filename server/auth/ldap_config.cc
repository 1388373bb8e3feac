#include "server/auth/ldap_config.h"

#include <fstream>
#include <limits>
#include <sstream>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "base/json.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace posthaste::auth {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void AppendHexEscape(std::string& out, unsigned char c) {
  out.push_back('\\');
  out.push_back(kHex[c >> 4]);
  out.push_back(kHex[c & 0xf]);
}

bool IsPrintableAscii(unsigned char c) { return c >= 0x20 && c < 0x7f; }

absl::Status Invalid(std::string_view where, std::string_view what) {
  return absl::InvalidArgumentError(std::string(where) + ": " + std::string(what));
}

// Reads the members of one tenant object; `where` names it in errors.
class TenantReader {
 public:
  TenantReader(const JsonValue& object, std::string where)
      : object_(object), where_(std::move(where)) {}

  absl::Status String(std::string_view name, std::string* out, bool required) {
    const JsonValue* v = Take(name);
    if (v == nullptr) return required ? Error(name, "is required") : absl::OkStatus();
    if (!v->is_string()) return Error(name, "must be a string");
    if (v->text().size() > kLdapTemplateBytesMax) return Error(name, "is too long");
    if (v->text().find('\0') != std::string_view::npos) return Error(name, "contains NUL");
    *out = std::string(v->text());
    return absl::OkStatus();
  }

  absl::Status Uint(std::string_view name, uint32_t* out, uint32_t min, uint32_t max) {
    const JsonValue* v = Take(name);
    if (v == nullptr) return absl::OkStatus();
    std::optional<int64_t> n =
        v->type() == JsonValue::Type::kNumber ? v->AsInt64() : std::optional<int64_t>();
    if (!n.has_value() || *n < min || *n > max) {
      return Error(name,
                   "must be an integer from " + std::to_string(min) + " to " + std::to_string(max));
    }
    *out = static_cast<uint32_t>(*n);
    return absl::OkStatus();
  }

  absl::Status Bool(std::string_view name, bool* out) {
    const JsonValue* v = Take(name);
    if (v == nullptr) return absl::OkStatus();
    if (v->type() != JsonValue::Type::kBool) return Error(name, "must be true or false");
    *out = v->boolean();
    return absl::OkStatus();
  }

  absl::Status Uris(std::vector<std::string>* out) {
    const JsonValue* v = Take("uris");
    if (v == nullptr) return Error("uris", "is required");
    if (!v->is_array() || v->elements().empty() || v->elements().size() > kLdapUrisMax) {
      return Error("uris", "must be an array of 1 to " + std::to_string(kLdapUrisMax) + " URIs");
    }
    for (const JsonValue& e : v->elements()) {
      if (!e.is_string()) return Error("uris", "must hold strings");
      std::string_view uri = e.text();
      const bool ldap = uri.substr(0, 7) == "ldap://";
      const bool ldaps = uri.substr(0, 8) == "ldaps://";
      const std::string_view rest = ldaps ? uri.substr(8) : ldap ? uri.substr(7) : "";
      // Host and port only: a DN, filter or extension in a URI would bypass this file's.
      if ((!ldap && !ldaps) || rest.empty() || uri.size() > 255 ||
          rest.find_first_of("/?# \t\r\n") != std::string_view::npos ||
          rest.find('\0') != std::string_view::npos) {
        return Error("uris", "each must be ldap://HOST[:PORT] or ldaps://HOST[:PORT]");
      }
      out->emplace_back(uri);
    }
    return absl::OkStatus();
  }

  // Every member must have been taken: a misspelt limit is an error, not a silent default.
  absl::Status NoneLeft() const {
    for (const JsonValue::Member& m : object_.members()) {
      if (!taken_.contains(m.first)) return Invalid(where_, "unknown member \"" + m.first + "\"");
    }
    return absl::OkStatus();
  }

  absl::Status Error(std::string_view name, std::string_view what) const {
    return Invalid(where_, std::string(name) + " " + std::string(what));
  }

 private:
  const JsonValue* Take(std::string_view name) {
    taken_.insert(std::string(name));
    return object_.Find(name);
  }

  const JsonValue& object_;
  const std::string where_;
  absl::flat_hash_set<std::string> taken_;
};

bool ValidTemplate(std::string_view tmpl) {
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] != '%') continue;
    if (i + 1 >= tmpl.size()) return false;
    const char c = tmpl[++i];
    if (c != 'u' && c != 'n' && c != 'd' && c != '%') return false;
  }
  return true;
}

// RFC 4517 attribute descriptions: a letter, then letters, digits and '-'.
bool ValidAttributeName(std::string_view name) {
  if (name.empty() || name.size() > 64 || !absl::ascii_isalpha(name[0])) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '-') return false;
  }
  return true;
}

bool ValidDomain(std::string_view domain) {
  if (domain.empty() || domain.size() > 253) return false;
  for (char c : domain) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '.') return false;
  }
  return true;
}

absl::StatusOr<LdapTenantConfig> ParseTenant(const JsonValue& object, size_t index) {
  if (!object.is_object()) {
    return Invalid("tenants[" + std::to_string(index) + "]", "must be an object");
  }
  LdapTenantConfig t;
  std::string where = "tenants[" + std::to_string(index) + "]";
  TenantReader r(object, where);
  PH_RETURN_IF_ERROR(r.String("domain", &t.domain, true));
  t.domain = absl::AsciiStrToLower(AbslView(t.domain));
  if (!ValidDomain(t.domain)) return r.Error("domain", "must be a DNS name");
  PH_RETURN_IF_ERROR(r.Uris(&t.uris));
  std::string tls = "none";
  PH_RETURN_IF_ERROR(r.String("tls", &tls, false));
  if (tls == "none") {
    t.tls = LdapTls::kNone;
  } else if (tls == "starttls") {
    t.tls = LdapTls::kStartTls;
  } else if (tls == "ldaps") {
    t.tls = LdapTls::kLdaps;
  } else {
    return r.Error("tls", "must be \"none\", \"starttls\" or \"ldaps\"");
  }
  for (const std::string& uri : t.uris) {
    const bool ldaps = uri.substr(0, 8) == "ldaps://";
    if (ldaps != (t.tls == LdapTls::kLdaps)) {
      return r.Error("uris", "must all be ldaps:// exactly when tls is \"ldaps\"");
    }
  }
  PH_RETURN_IF_ERROR(r.String("ca_file", &t.ca_file, false));
  std::string bind = "direct";
  PH_RETURN_IF_ERROR(r.String("bind", &bind, false));
  if (bind == "direct") {
    t.bind_mode = LdapBindMode::kDirect;
    PH_RETURN_IF_ERROR(r.String("user_dn", &t.user_dn, true));
    if (!ValidTemplate(t.user_dn)) return r.Error("user_dn", "has an unknown %-sequence");
  } else if (bind == "search") {
    t.bind_mode = LdapBindMode::kSearch;
    PH_RETURN_IF_ERROR(r.String("service_dn", &t.service_dn, true));
    PH_RETURN_IF_ERROR(r.String("service_password_file", &t.service_password_file, true));
    PH_RETURN_IF_ERROR(r.String("base_dn", &t.base_dn, true));
    PH_RETURN_IF_ERROR(r.String("filter", &t.filter, true));
    if (!ValidTemplate(t.filter)) return r.Error("filter", "has an unknown %-sequence");
    if (t.filter.size() < 2 || t.filter.front() != '(' || t.filter.back() != ')') {
      return r.Error("filter", "must be a parenthesised LDAP filter");
    }
  } else {
    return r.Error("bind", "must be \"direct\" or \"search\"");
  }
  PH_RETURN_IF_ERROR(r.String("mailbox_attribute", &t.mailbox_attribute, false));
  if (!t.mailbox_attribute.empty() && !ValidAttributeName(t.mailbox_attribute)) {
    return r.Error("mailbox_attribute", "must be an attribute name");
  }
  PH_RETURN_IF_ERROR(r.Bool("auto_create", &t.auto_create));
  PH_RETURN_IF_ERROR(r.Uint("connections_max", &t.connections_max, 1, 256));
  PH_RETURN_IF_ERROR(r.Uint("pool_wait_timeout_ms", &t.pool_wait_timeout_ms, 1, 60'000));
  PH_RETURN_IF_ERROR(r.Uint("connect_timeout_ms", &t.connect_timeout_ms, 1, 60'000));
  PH_RETURN_IF_ERROR(r.Uint("bind_timeout_ms", &t.bind_timeout_ms, 1, 60'000));
  PH_RETURN_IF_ERROR(r.Uint("search_timeout_ms", &t.search_timeout_ms, 1000, 60'000));
  PH_RETURN_IF_ERROR(r.Uint("breaker_failures_max", &t.breaker_failures_max, 1, 1000));
  PH_RETURN_IF_ERROR(r.Uint("breaker_open_ms", &t.breaker_open_ms, 1, 3'600'000));
  PH_RETURN_IF_ERROR(r.Uint("negative_cache_ttl_s", &t.negative_cache_ttl_s, 0, 3600));
  PH_RETURN_IF_ERROR(
      r.Uint("negative_cache_entries_max", &t.negative_cache_entries_max, 1, 10'000'000));
  PH_RETURN_IF_ERROR(r.NoneLeft());
  return t;
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t bytes_max) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot open " + path);
  std::string text;
  text.resize(bytes_max + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) return absl::DataLossError("cannot read " + path);
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > bytes_max) {
    return absl::ResourceExhaustedError(path + " is larger than " + std::to_string(bytes_max) +
                                        " bytes");
  }
  return text;
}

}  // namespace

absl::StatusOr<LdapConfig> ParseLdapConfig(std::string_view text) {
  if (text.size() > kLdapConfigBytesMax) {
    return absl::InvalidArgumentError("LDAP configuration larger than 1 MiB");
  }
  PH_ASSIGN_OR_RETURN(JsonValue root, ParseJson(text, {.bytes_max = kLdapConfigBytesMax}));
  if (!root.is_object()) return absl::InvalidArgumentError("LDAP configuration: not an object");
  for (const JsonValue::Member& m : root.members()) {
    if (m.first != "tenants") {
      return absl::InvalidArgumentError("LDAP configuration: unknown member \"" + m.first + "\"");
    }
  }
  const JsonValue* tenants = root.Find("tenants");
  if (tenants == nullptr || !tenants->is_array() || tenants->elements().size() > kLdapTenantsMax) {
    return absl::InvalidArgumentError(
        "LDAP configuration: \"tenants\" must be an array of at most 1000 objects");
  }
  LdapConfig config;
  absl::flat_hash_set<std::string> domains;
  for (size_t i = 0; i < tenants->elements().size(); ++i) {
    PH_ASSIGN_OR_RETURN(LdapTenantConfig t, ParseTenant(tenants->elements()[i], i));
    if (!domains.insert(t.domain).second) {
      return Invalid("tenants[" + std::to_string(i) + "]", "domain " + t.domain + " repeated");
    }
    config.tenants.push_back(std::move(t));
  }
  return config;
}

absl::StatusOr<LdapConfig> LoadLdapConfigFile(const std::string& path) {
  PH_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, kLdapConfigBytesMax));
  absl::StatusOr<LdapConfig> config = ParseLdapConfig(text);
  if (!config.ok()) {
    return absl::InvalidArgumentError(path + ": " + std::string(config.status().message()));
  }
  for (LdapTenantConfig& t : config->tenants) {
    if (t.bind_mode != LdapBindMode::kSearch) continue;
    PH_ASSIGN_OR_RETURN(std::string secret, ReadSmallFile(t.service_password_file, 4096));
    const size_t end = secret.find_first_of("\r\n");
    if (end != std::string::npos) secret.resize(end);
    if (secret.empty()) {
      return absl::InvalidArgumentError(t.service_password_file + ": empty password");
    }
    t.service_password = std::move(secret);
  }
  return config;
}

std::string EscapeLdapFilterValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (unsigned char c : value) {
    if (c == '*' || c == '(' || c == ')' || c == '\\' || !IsPrintableAscii(c)) {
      AppendHexEscape(out, c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

std::string EscapeLdapDnValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(value[i]);
    const bool edge_space = c == ' ' && (i == 0 || i + 1 == value.size());
    if (!IsPrintableAscii(c)) {
      AppendHexEscape(out, c);
    } else if (edge_space || (c == '#' && i == 0) || c == '"' || c == '+' || c == ',' || c == ';' ||
               c == '<' || c == '>' || c == '\\' || c == '=') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

absl::StatusOr<std::string> ExpandLdapTemplate(std::string_view tmpl, std::string_view login,
                                               LdapTemplateKind kind) {
  const size_t at = login.rfind('@');
  if (at == std::string_view::npos) return absl::InvalidArgumentError("login without a domain");
  auto escape = [kind](std::string_view v) {
    return kind == LdapTemplateKind::kDn ? EscapeLdapDnValue(v) : EscapeLdapFilterValue(v);
  };
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    if (tmpl[i] != '%') {
      out.push_back(tmpl[i]);
      continue;
    }
    if (i + 1 >= tmpl.size()) return absl::InvalidArgumentError("template ends in %");
    switch (tmpl[++i]) {
      case 'u':
        out += escape(login);
        break;
      case 'n':
        out += escape(login.substr(0, at));
        break;
      case 'd':
        out += escape(login.substr(at + 1));
        break;
      case '%':
        out.push_back('%');
        break;
      default:
        return absl::InvalidArgumentError("unknown %-sequence in template");
    }
  }
  return out;
}

}  // namespace posthaste::auth
