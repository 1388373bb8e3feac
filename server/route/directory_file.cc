#include "server/route/directory_file.h"

#include <arpa/inet.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "base/strings.h"
#include "server/admin/json_body.h"

namespace posthaste::server::route {
namespace {

using admin::JsonObject;
using admin::JsonScalar;

absl::Status Bad(std::string_view key, std::string_view why) {
  return absl::InvalidArgumentError("directory file: \"" + std::string(key) +
                                    "\": " + std::string(why));
}

size_t SkipSpace(std::string_view text, size_t at) {
  while (at < text.size() &&
         (text[at] == ' ' || text[at] == '\t' || text[at] == '\n' || text[at] == '\r')) {
    ++at;
  }
  return at;
}

// The end (one past) of the JSON string starting at text[at] == '"', or npos.
size_t StringEnd(std::string_view text, size_t at) {
  for (size_t i = at + 1; i < text.size(); ++i) {
    if (text[i] == '\\') {
      ++i;
    } else if (text[i] == '"') {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

// The end (one past) of the flat object starting at text[at] == '{', or npos. Values are flat
// (json_body.h refuses nesting), so the first '}' outside a string ends it.
size_t ObjectEnd(std::string_view text, size_t at) {
  for (size_t i = at + 1; i < text.size(); ++i) {
    if (text[i] == '"') {
      i = StringEnd(text, i);
      if (i == std::string_view::npos) return i;
      --i;
    } else if (text[i] == '}') {
      return i + 1;
    }
  }
  return std::string_view::npos;
}

absl::StatusOr<std::string> StringMember(const JsonObject& o, std::string_view key,
                                         std::string_view name, bool required) {
  auto it = o.find(name);
  if (it == o.end()) {
    if (required) return Bad(key, "\"" + std::string(name) + "\" is required");
    return std::string();
  }
  if (it->second.type != JsonScalar::Type::kString) {
    return Bad(key, "\"" + std::string(name) + "\" must be a string");
  }
  return it->second.string;
}

absl::StatusOr<uint16_t> PortMember(const JsonObject& o, std::string_view key,
                                    std::string_view name) {
  auto it = o.find(name);
  if (it == o.end()) return uint16_t{0};
  if (it->second.type != JsonScalar::Type::kInteger || it->second.integer > 65535) {
    return Bad(key, "\"" + std::string(name) + "\" must be a port number");
  }
  return static_cast<uint16_t>(it->second.integer);
}

absl::Status AddEntry(std::string_view key, const JsonObject& value,
                      placement::DirectorySnapshot* snapshot) {
  const size_t slash = key.find('/');
  if (slash == std::string_view::npos || slash + 1 == key.size()) {
    return Bad(key, "not backends/NAME, tenants/DOMAIN or users/ADDRESS");
  }
  const std::string_view kind = key.substr(0, slash);
  const std::string name = absl::AsciiStrToLower(AbslView(key.substr(slash + 1)));
  if (kind == "backends") {
    placement::BackendEndpoint backend;
    backend.name = std::string(key.substr(slash + 1));
    auto ip = StringMember(value, key, "ip", true);
    if (!ip.ok()) return ip.status();
    unsigned char probe[16];
    if (inet_pton(AF_INET, ip->c_str(), probe) != 1 &&
        inet_pton(AF_INET6, ip->c_str(), probe) != 1) {
      return Bad(key, "\"ip\" must be an IP address literal");
    }
    backend.ip = *ip;
    for (auto [field, port] :
         {std::pair{"pop3", &backend.pop3_port}, std::pair{"pop3s", &backend.pop3s_port},
          std::pair{"lmtp", &backend.lmtp_port}, std::pair{"admin", &backend.admin_port}}) {
      auto parsed = PortMember(value, key, field);
      if (!parsed.ok()) return parsed.status();
      *port = *parsed;
    }
    snapshot->backends[backend.name] = std::move(backend);
    return absl::OkStatus();
  }
  if (kind != "tenants" && kind != "users") {
    return Bad(key, "not backends/NAME, tenants/DOMAIN or users/ADDRESS");
  }
  placement::PlacementEntry entry;
  auto backend = StringMember(value, key, "backend", true);
  if (!backend.ok()) return backend.status();
  auto moving_to = StringMember(value, key, "moving_to", false);
  if (!moving_to.ok()) return moving_to.status();
  entry.backend = *backend;
  entry.moving_to = *moving_to;
  if (kind == "tenants") {
    snapshot->tenants[name] = std::move(entry);
  } else {
    snapshot->users[name] = std::move(entry);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<placement::DirectorySnapshot> ParseDirectoryFile(std::string_view text) {
  placement::DirectorySnapshot snapshot;
  snapshot.revision = 1;
  size_t at = SkipSpace(text, 0);
  if (at == text.size() || text[at] != '{') {
    return absl::InvalidArgumentError("directory file: not a JSON object");
  }
  at = SkipSpace(text, at + 1);
  bool first = true;
  for (;;) {
    if (at < text.size() && text[at] == '}') break;
    if (!first) {
      if (at == text.size() || text[at] != ',') {
        return absl::InvalidArgumentError("directory file: expected ',' at offset " +
                                          std::to_string(at));
      }
      at = SkipSpace(text, at + 1);
    }
    first = false;
    if (at == text.size() || text[at] != '"') {
      return absl::InvalidArgumentError("directory file: expected a key at offset " +
                                        std::to_string(at));
    }
    const size_t key_end = StringEnd(text, at);
    if (key_end == std::string_view::npos) {
      return absl::InvalidArgumentError("directory file: unterminated key");
    }
    // Keys are plain ASCII paths: no escapes to decode.
    const std::string_view key = text.substr(at + 1, key_end - at - 2);
    if (key.find('\\') != std::string_view::npos) return Bad(key, "escapes are not allowed");
    at = SkipSpace(text, key_end);
    if (at == text.size() || text[at] != ':') return Bad(key, "expected ':'");
    at = SkipSpace(text, at + 1);
    if (at == text.size() || text[at] != '{') return Bad(key, "the value must be an object");
    const size_t value_end = ObjectEnd(text, at);
    if (value_end == std::string_view::npos) return Bad(key, "unterminated value");
    auto value = admin::ParseJsonObject(text.substr(at, value_end - at));
    if (!value.ok()) return Bad(key, StdView(value.status().message()));
    if (absl::Status added = AddEntry(key, *value, &snapshot); !added.ok()) return added;
    at = SkipSpace(text, value_end);
  }
  if (SkipSpace(text, at + 1) != text.size()) {
    return absl::InvalidArgumentError("directory file: bytes after the object");
  }
  return snapshot;
}

namespace {

absl::StatusOr<placement::DirectorySnapshot> ReadDirectoryFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot read --directory_file " + path);
  std::ostringstream contents;
  contents << in.rdbuf();
  if (contents.str().size() > kDirectoryFileBytesMax) {
    return absl::InvalidArgumentError("--directory_file " + path + " is too large");
  }
  return ParseDirectoryFile(contents.str());
}

}  // namespace

absl::StatusOr<std::unique_ptr<FileDirectory>> FileDirectory::Load(const std::string& path) {
  auto snapshot = ReadDirectoryFile(path);
  if (!snapshot.ok()) return snapshot.status();
  return std::unique_ptr<FileDirectory>(new FileDirectory(
      path, std::make_shared<const placement::DirectorySnapshot>(*std::move(snapshot))));
}

std::shared_ptr<const placement::DirectorySnapshot> FileDirectory::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_;
}

absl::Status FileDirectory::Reload() {
  auto snapshot = ReadDirectoryFile(path_);
  if (!snapshot.ok()) return snapshot.status();
  std::lock_guard<std::mutex> lock(mu_);
  snapshot->revision = snapshot_->revision + 1;
  snapshot_ = std::make_shared<const placement::DirectorySnapshot>(*std::move(snapshot));
  return absl::OkStatus();
}

}  // namespace posthaste::server::route
