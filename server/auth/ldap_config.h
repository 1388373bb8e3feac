// The LDAP passdb's configuration (`serve --ldap_config=FILE`) and the escaping its templates
// need.
//
// The file is one JSON object, {"tenants": [ {...}, ... ]}, one entry per mail domain whose
// passwords live in a directory (docs/DEPLOY.md, "LDAP passdb", lists every member). A tenant's
// logins are `local@domain`; templates expand %u (the whole login), %n (the local part),
// %d (the domain) and %% (a percent sign), each value escaped for where it lands: RFC 4514
// (distinguished names) in `user_dn`, RFC 4515 (search filters) in `filter`, so no login can
// change a template's structure.
//
// Pure functions; thread-safe. The file is operator input, still parsed strictly with limits:
// fuzzed by //server/auth:ldap_config_fuzzer.
#ifndef POSTHASTE_SERVER_AUTH_LDAP_CONFIG_H_
#define POSTHASTE_SERVER_AUTH_LDAP_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace posthaste::auth {

enum class LdapBindMode : uint8_t {
  kDirect,  // bind as user_dn (the template expanded): one round trip
  kSearch,  // bind as the service, search base_dn with filter, then bind as the entry found
};

enum class LdapTls : uint8_t {
  kNone,      // ldap:// in clear (loopback or a trusted network only)
  kStartTls,  // ldap:// then StartTLS (RFC 4513 section 3), the server certificate checked
  kLdaps,     // ldaps:// URIs, TLS from the first byte, the server certificate checked
};

struct LdapTenantConfig {
  std::string domain;             // lower case; logins `local@domain` go to this directory
  std::vector<std::string> uris;  // tried in order (ldap:// or ldaps://, host and port only)
  LdapTls tls = LdapTls::kNone;
  std::string ca_file;  // PEM bundle for the server certificate; empty: the system store
  LdapBindMode bind_mode = LdapBindMode::kDirect;
  std::string user_dn;     // kDirect: DN template, e.g. uid=%n,ou=people,dc=example,dc=org
  std::string service_dn;  // kSearch: who searches
  std::string service_password_file;  // kSearch: its password (the file's first line)
  std::string service_password;       // read from service_password_file by LoadLdapConfigFile
  std::string base_dn;                // kSearch: where to search (subtree)
  std::string filter;                 // kSearch: filter template, e.g. (&(objectClass=..)(mail=%u))
  // The attribute whose first value names the mailbox (an address of this domain); empty: the
  // login itself is the mailbox.
  std::string mailbox_attribute;
  // A successful directory login without a mailbox in the store creates one (quota: the tenant
  // default); false: such logins fail until `posthaste user add` provisions the mailbox.
  bool auto_create = true;

  // Limits: every wait has a deadline; the pool has a size.
  uint32_t connections_max = 4;          // open connections to this directory
  uint32_t pool_wait_timeout_ms = 1000;  // waiting for a free connection
  uint32_t connect_timeout_ms = 2000;    // TCP (and TLS) connect
  uint32_t bind_timeout_ms = 3000;       // one bind's answer (StartTLS too)
  uint32_t search_timeout_ms = 3000;     // one search's answer (also sent as its time limit)
  // Circuit breaker: this many transport failures in a row stop asking the directory for
  // breaker_open_ms; then one login probes it.
  uint32_t breaker_failures_max = 3;
  uint32_t breaker_open_ms = 5000;
  // Negative cache: a wrong password for a login is answered from memory for this long.
  uint32_t negative_cache_ttl_s = 10;  // 0 disables it
  uint32_t negative_cache_entries_max = 10000;
};

struct LdapConfig {
  std::vector<LdapTenantConfig> tenants;  // domains distinct
};

inline constexpr size_t kLdapConfigBytesMax = 1 << 20;
inline constexpr size_t kLdapTenantsMax = 1000;
inline constexpr size_t kLdapUrisMax = 8;
inline constexpr size_t kLdapTemplateBytesMax = 1024;

// Parses the file's text. InvalidArgument naming the tenant and member for anything unknown,
// missing, out of range or inconsistent (a kSearch tenant without a filter, a template with an
// unknown %-sequence, ldaps:// without tls "ldaps"...). Does not read service_password_file.
absl::StatusOr<LdapConfig> ParseLdapConfig(std::string_view text);

// Reads and parses `path`, then reads each kSearch tenant's service_password_file.
absl::StatusOr<LdapConfig> LoadLdapConfigFile(const std::string& path);

// RFC 4515 section 3: `value` as a filter assertion value: '*', '(', ')', '\' and NUL become
// \2a, \28, \29, \5c, \00; so are all other bytes outside printable ASCII.
std::string EscapeLdapFilterValue(std::string_view value);

// RFC 4514 section 2.4: `value` as an attribute value inside a DN: a leading space or '#', a
// trailing space, and '"', '+', ',', ';', '<', '>', '\', '=' are backslash-escaped; NUL and
// bytes outside printable ASCII become \XX.
std::string EscapeLdapDnValue(std::string_view value);

enum class LdapTemplateKind : uint8_t { kDn, kFilter };

// `tmpl` with %u, %n, %d and %% expanded for `login` (local@domain), each value escaped for
// `kind`. InvalidArgument for an unknown %-sequence or a login without '@'.
absl::StatusOr<std::string> ExpandLdapTemplate(std::string_view tmpl, std::string_view login,
                                               LdapTemplateKind kind);

}  // namespace posthaste::auth

#endif  // POSTHASTE_SERVER_AUTH_LDAP_CONFIG_H_
