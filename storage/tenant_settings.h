// TenantServiceSettings: what a provider sets per domain for the tenant's POP3 service
// (`posthaste tenant policy DOMAIN --login_delay_s=... --expire_days=...`), stored in the tenant
// record (index_codec.h, tagged fields) and read by the server. Every field left at its default
// follows the server's setting, so a default-constructed value changes nothing.
#ifndef POSTHASTE_STORAGE_TENANT_SETTINGS_H_
#define POSTHASTE_STORAGE_TENANT_SETTINGS_H_

#include <cstdint>
#include <optional>
#include <string>

namespace posthaste::storage {

struct TenantServiceSettings {
  // RFC 2449 EXPIRE NEVER.
  static constexpr uint32_t kExpireNever = UINT32_MAX;

  // RFC 2449 LOGIN-DELAY: the least number of seconds between two logins of one user.
  std::optional<uint32_t> login_delay_s;
  // RFC 2449 EXPIRE: days a retrieved message is kept (the retention job deletes older ones);
  // 0: retrieved messages are deleted at QUIT; kExpireNever: kept until the user deletes them.
  std::optional<uint32_t> expire_days;
  // Octets of RETR and TOP answers one user may download per UTC day; 0: no limit.
  uint64_t daily_download_bytes = 0;
  // POP3 clients see only the newest this many messages; 0: all of them.
  uint32_t list_newest = 0;
  // Seconds a session may stay idle; 0: the server's --idle_timeout_s.
  uint32_t idle_timeout_s = 0;
  // Sessions one user may hold at once across the server; 0: the server's limit.
  uint32_t connections_per_user = 0;
  // The login mechanisms the tenant's users may use, as the server spells them (upper case,
  // comma-separated, sorted: "APOP,PLAIN,SCRAM-SHA-256,USER"); empty: every mechanism the server
  // offers. Opaque here: the server checks the names. At most kLoginMechanismsBytesMax bytes.
  std::string login_mechanisms;
  // The language of response texts before a client chooses one with LANG (RFC 6856 tag, e.g.
  // "de"); empty: English. At most kLanguageTagBytesMax bytes.
  std::string lang;

  bool operator==(const TenantServiceSettings&) const = default;
};

inline constexpr size_t kLoginMechanismsBytesMax = 256;
inline constexpr size_t kLanguageTagBytesMax = 35;

}  // namespace posthaste::storage

#endif  // POSTHASTE_STORAGE_TENANT_SETTINGS_H_
