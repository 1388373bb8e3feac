#include "server/placement/directory_codec.h"

#include <arpa/inet.h>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/json.h"
#include "base/strings.h"

namespace posthaste::server::placement {
namespace {

constexpr std::string_view kBackends = "backends/";
constexpr std::string_view kTenants = "tenants/";
constexpr std::string_view kUsers = "users/";

std::string Lower(std::string_view text) { return absl::AsciiStrToLower(AbslView(text)); }

absl::Status Bad(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("directory value: ", AbslView(what)));
}

absl::StatusOr<JsonValue> ParseObject(std::string_view value) {
  auto parsed = ParseJson(value, {.bytes_max = 4096, .depth_max = 2, .values_max = 64});
  if (!parsed.ok()) return Bad(StdView(parsed.status().message()));
  if (!parsed->is_object()) return Bad("not an object");
  return parsed;
}

bool IsIpLiteral(const std::string& ip) {
  unsigned char buffer[16];
  return inet_pton(AF_INET, ip.c_str(), buffer) == 1 ||
         inet_pton(AF_INET6, ip.c_str(), buffer) == 1;
}

}  // namespace

std::string BackendKey(std::string_view prefix, std::string_view name) {
  return absl::StrCat(AbslView(prefix), AbslView(kBackends), AbslView(name));
}
std::string TenantKey(std::string_view prefix, std::string_view domain) {
  return absl::StrCat(AbslView(prefix), AbslView(kTenants), Lower(domain));
}
std::string UserKey(std::string_view prefix, std::string_view address) {
  return absl::StrCat(AbslView(prefix), AbslView(kUsers), Lower(address));
}

std::string EncodeBackend(const BackendEndpoint& b) {
  return absl::StrCat("{\"ip\":", JsonQuote(b.ip), ",\"pop3\":", b.pop3_port,
                      ",\"pop3s\":", b.pop3s_port, ",\"lmtp\":", b.lmtp_port,
                      ",\"admin\":", b.admin_port, "}");
}

std::string EncodePlacement(const PlacementEntry& e) {
  std::string out = absl::StrCat("{\"backend\":", JsonQuote(e.backend));
  if (!e.moving_to.empty()) absl::StrAppend(&out, ",\"moving_to\":", JsonQuote(e.moving_to));
  return out + "}";
}

absl::StatusOr<BackendEndpoint> DecodeBackend(std::string_view name, std::string_view value) {
  if (name.empty()) return Bad("backend without a name");
  auto object = ParseObject(value);
  if (!object.ok()) return object.status();
  BackendEndpoint b;
  b.name = std::string(name);
  const JsonValue* ip = object->Find("ip");
  if (ip == nullptr || !ip->is_string()) return Bad("backend without an ip");
  b.ip = std::string(ip->text());
  if (!IsIpLiteral(b.ip)) return Bad(absl::StrCat("backend ip \"", b.ip, "\" is not an address"));
  const std::pair<std::string_view, uint16_t*> ports[] = {{"pop3", &b.pop3_port},
                                                          {"pop3s", &b.pop3s_port},
                                                          {"lmtp", &b.lmtp_port},
                                                          {"admin", &b.admin_port}};
  for (const auto& [field, port] : ports) {
    const JsonValue* v = object->Find(field);
    if (v == nullptr) continue;
    const std::optional<int64_t> n = v->AsInt64();
    if (v->type() != JsonValue::Type::kNumber || !n.has_value() || *n < 0 || *n > 65535) {
      return Bad(absl::StrCat("backend port ", AbslView(field), " is not 0..65535"));
    }
    *port = static_cast<uint16_t>(*n);
  }
  return b;
}

absl::StatusOr<PlacementEntry> DecodePlacement(std::string_view value) {
  auto object = ParseObject(value);
  if (!object.ok()) return object.status();
  PlacementEntry e;
  const JsonValue* backend = object->Find("backend");
  if (backend == nullptr || !backend->is_string() || backend->text().empty()) {
    return Bad("placement without a backend");
  }
  e.backend = std::string(backend->text());
  if (const JsonValue* moving = object->Find("moving_to"); moving != nullptr) {
    if (!moving->is_string()) return Bad("moving_to is not a string");
    e.moving_to = std::string(moving->text());
  }
  return e;
}

absl::Status ApplyDirectoryKey(std::string_view prefix, std::string_view key,
                               std::string_view value, bool deleted, DirectorySnapshot* snapshot) {
  if (key.substr(0, prefix.size()) != prefix) return absl::OkStatus();
  const std::string_view rest = key.substr(prefix.size());
  const auto starts = [rest](std::string_view kind) { return rest.substr(0, kind.size()) == kind; };
  if (starts(kBackends)) {
    const std::string name(rest.substr(kBackends.size()));
    snapshot->backends.erase(name);
    if (deleted) return absl::OkStatus();
    auto backend = DecodeBackend(name, value);
    if (!backend.ok()) return backend.status();
    snapshot->backends[name] = *std::move(backend);
    return absl::OkStatus();
  }
  absl::flat_hash_map<std::string, PlacementEntry>* table = nullptr;
  std::string_view name;
  if (starts(kTenants)) {
    table = &snapshot->tenants;
    name = rest.substr(kTenants.size());
  } else if (starts(kUsers)) {
    table = &snapshot->users;
    name = rest.substr(kUsers.size());
  } else {
    return absl::OkStatus();
  }
  const std::string lowered = Lower(name);
  table->erase(lowered);
  if (deleted) return absl::OkStatus();
  auto entry = DecodePlacement(value);
  if (!entry.ok()) return entry.status();
  (*table)[lowered] = *std::move(entry);
  return absl::OkStatus();
}

}  // namespace posthaste::server::placement
