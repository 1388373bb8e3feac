// Arbitrary bytes as an admin API request target: never a crash or an over-read, and whatever
// ParseAdminPath accepts is a name it would give again for the same resource:
//   - the target held no NUL, control or non-ASCII byte, raw or encoded, and no dot segment;
//   - an account's address is a valid address without '/', NUL or control characters, and
//     encoding it again (every byte outside [A-Za-z0-9@._-] as %XX) parses to the same address:
//     decoding happened once, and nothing was resolved or dropped on the way;
//   - likewise a tenant's domain, a session filter's user and a session id print back to a
//     target that names the same thing.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/admin/admin_path.h"
#include "storage/message_format.h"

namespace {

void Require(bool condition) {
  if (!condition) abort();
}

std::string Encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    const bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                       c == '@' || c == '.' || c == '_' || c == '-';
    if (plain) {
      out.push_back(static_cast<char>(c));
    } else {
      char hex[4];
      std::snprintf(hex, sizeof(hex), "%%%02X", c);
      out.append(hex);
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using posthaste::server::admin::AdminPath;
  using posthaste::server::admin::ParseAdminPath;
  const std::string_view target(reinterpret_cast<const char*>(data), size);
  auto path = ParseAdminPath(target);
  if (!path.ok()) return 0;
  Require(size <= posthaste::server::admin::kAdminTargetBytesMax);
  for (unsigned char c : target) Require(c > 0x20 && c < 0x7f);
  const std::string_view path_part = target.substr(0, target.find('?'));
  Require(path_part.find("//") == std::string_view::npos);
  Require(path_part.find("/./") == std::string_view::npos);
  Require(path_part.find("/../") == std::string_view::npos);
  Require(path_part.back() != '/');
  Require(target.find("%00") == std::string_view::npos);
  if (path->resource == AdminPath::Resource::kAccount) {
    const std::string& address = path->address;
    Require(posthaste::storage::ParseAddress(address).ok());
    for (unsigned char c : address) Require(c > 0x20 && c < 0x7f && c != '/' && c != '\\');
    auto again = ParseAdminPath("/api/v1/accounts/" + Encode(address));
    Require(again.ok() && again->resource == AdminPath::Resource::kAccount &&
            again->address == address);
  } else if (path->resource == AdminPath::Resource::kAccounts && path->domain.has_value()) {
    auto again = ParseAdminPath("/api/v1/accounts?domain=" + Encode(*path->domain));
    Require(again.ok() && again->domain == path->domain);
  } else if (path->resource == AdminPath::Resource::kTenant) {
    Require(path->domain.has_value());
    auto again = ParseAdminPath("/api/v1/tenants/" + Encode(*path->domain));
    Require(again.ok() && again->resource == AdminPath::Resource::kTenant &&
            again->domain == path->domain);
  } else if (path->resource == AdminPath::Resource::kSessions && path->user.has_value()) {
    Require(posthaste::storage::ParseAddress(*path->user).ok());
    for (unsigned char c : *path->user) Require(c > 0x20 && c < 0x7f && c != '/' && c != '\\');
    auto again = ParseAdminPath("/api/v1/sessions?user=" + Encode(*path->user));
    Require(again.ok() && again->user == path->user && !again->domain.has_value());
  } else if (path->resource == AdminPath::Resource::kSession) {
    auto again = ParseAdminPath("/api/v1/sessions/" + std::to_string(path->session_shard) + "-" +
                                std::to_string(path->session_connection));
    Require(again.ok() && again->session_shard == path->session_shard &&
            again->session_connection == path->session_connection);
  }
  return 0;
}
