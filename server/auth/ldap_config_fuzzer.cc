// Arbitrary text into the LDAP configuration parser: never a crash or a hang; an accepted
// configuration obeys the limits the passdb relies on (distinct lower-case domains, 1..8 URIs,
// bounded timeouts and pool), and its templates expand for any login without error. Also any
// input's bytes through both escapers: the results hold no byte that could end a filter value
// or a DN attribute value.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "server/auth/ldap_config.h"

namespace {

using posthaste::auth::LdapTemplateKind;

void CheckEscapes(std::string_view text) {
  const std::string filter = posthaste::auth::EscapeLdapFilterValue(text);
  for (char c : filter) {
    if (c == '(' || c == ')' || c == '*' || c == '\0') abort();
  }
  const std::string dn = posthaste::auth::EscapeLdapDnValue(text);
  for (size_t i = 0; i < dn.size(); ++i) {
    const char c = dn[i];
    if (c == '\0') abort();
    if (c == '\\') {
      ++i;  // the escaped byte, or the first hex digit
      continue;
    }
    if (c == ',' || c == '+' || c == ';' || c == '=' || c == '<' || c == '>' || c == '"') abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  CheckEscapes(text);
  auto config = posthaste::auth::ParseLdapConfig(text);
  if (!config.ok()) return 0;
  std::set<std::string> domains;
  for (const auto& t : config->tenants) {
    if (!domains.insert(t.domain).second) abort();
    for (char c : t.domain) {
      if (c >= 'A' && c <= 'Z') abort();
    }
    if (t.uris.empty() || t.uris.size() > posthaste::auth::kLdapUrisMax) abort();
    if (t.connections_max == 0 || t.connections_max > 256) abort();
    if (t.bind_timeout_ms == 0 || t.bind_timeout_ms > 60'000) abort();
    const std::string login = std::string(text.substr(0, 40)) + "@" + t.domain;
    if (!posthaste::auth::ExpandLdapTemplate(t.user_dn, login, LdapTemplateKind::kDn).ok()) {
      abort();
    }
    if (!posthaste::auth::ExpandLdapTemplate(t.filter, login, LdapTemplateKind::kFilter).ok()) {
      abort();
    }
  }
  return 0;
}
