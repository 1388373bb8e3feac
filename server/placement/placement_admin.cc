#include "server/placement/placement_admin.h"

#include <algorithm>
#include <ostream>
#include <utility>

#include "absl/strings/ascii.h"
#include "base/strings.h"
#include "server/placement/directory.h"
#include "server/placement/directory_codec.h"
#include "server/placement/etcd_client.h"

namespace posthaste::server::placement {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr size_t kNameBytesMax = 255;

struct Parsed {
  std::string endpoints;
  std::string prefix = std::string(kDefaultDirectoryPrefix);
  std::vector<std::string> words;  // the command and its operands
};

absl::StatusOr<Parsed> Parse(const std::vector<std::string>& args) {
  Parsed parsed;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].rfind("--", 0) != 0) {
      parsed.words.push_back(args[i]);
      continue;
    }
    const std::string name(FlagName(args[i]));
    auto value = FlagValue(args, &i);
    if (!value.ok()) return value.status();
    if (name == "etcd_endpoints") {
      parsed.endpoints = *value;
    } else if (name == "etcd_prefix") {
      parsed.prefix = *value;
    } else {
      return absl::InvalidArgumentError("unknown flag --" + name);
    }
  }
  if (parsed.endpoints.empty()) return absl::InvalidArgumentError("--etcd_endpoints is required");
  if (parsed.prefix.empty() || parsed.prefix.front() != '/' || parsed.prefix.back() != '/') {
    return absl::InvalidArgumentError("--etcd_prefix must start and end with /");
  }
  if (parsed.words.empty()) return absl::InvalidArgumentError("missing command");
  return parsed;
}

// Names become etcd keys and HAProxy map lines: printable, no separators.
bool PlainName(std::string_view name) {
  if (name.empty() || name.size() > kNameBytesMax) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return c > ' ' && c < 0x7f && c != '/' && c != '#' && c != ',' && c != '"' && c != '\\';
  });
}

absl::Status CheckDomain(std::string_view domain) {
  if (!PlainName(domain) || domain.find('@') != std::string_view::npos ||
      domain.find('.') == std::string_view::npos) {
    return absl::InvalidArgumentError("not a domain: " + std::string(domain));
  }
  return absl::OkStatus();
}

absl::Status CheckAddress(std::string_view address) {
  const size_t at = address.find('@');
  if (!PlainName(address) || at == 0 || at == std::string_view::npos ||
      address.find('@', at + 1) != std::string_view::npos) {
    return absl::InvalidArgumentError("not an address: " + std::string(address));
  }
  return CheckDomain(address.substr(at + 1));
}

absl::Status CheckBackend(std::string_view backend) {
  if (!PlainName(backend)) {
    return absl::InvalidArgumentError("not a backend name: " + std::string(backend));
  }
  return absl::OkStatus();
}

// The key's current value and mod_revision (0: absent), read linearizably.
struct Current {
  int64_t mod_revision = 0;
  std::string value;
};

absl::StatusOr<Current> Read(EtcdClient& client, const std::string& key) {
  auto range = client.Range(key);
  if (!range.ok()) return range.status();
  Current current;
  if (!range->kvs.empty()) {
    current.mod_revision = range->kvs.front().mod_revision;
    current.value = range->kvs.front().value;
  }
  return current;
}

// Refuses to touch a placement a move is switching.
absl::Status CheckNotMoving(const std::string& what, const Current& current) {
  if (current.mod_revision == 0) return absl::OkStatus();
  auto entry = DecodePlacement(current.value);
  if (entry.ok() && !entry->moving_to.empty()) {
    return absl::FailedPreconditionError(what + " is being moved from " + entry->backend + " to " +
                                         entry->moving_to + "; let the move finish");
  }
  return absl::OkStatus();
}

absl::Status Guarded(EtcdClient& client, const std::string& key, int64_t mod_revision,
                     const EtcdOp& op) {
  auto swapped = client.CompareAndSwap(key, mod_revision, op);
  if (!swapped.ok()) return swapped.status();
  if (!*swapped) {
    return absl::AbortedError(key + " changed while this command ran; nothing written, look "
                              "again (placement list) and retry");
  }
  return absl::OkStatus();
}

absl::Status SetPlacement(EtcdClient& client, const Parsed& parsed, const std::string& what,
                          const std::string& key, const std::string& backend, std::ostream& out,
                          std::ostream& err) {
  if (absl::Status s = CheckBackend(backend); !s.ok()) return s;
  auto registered = client.Range(BackendKey(parsed.prefix, backend));
  if (!registered.ok()) return registered.status();
  if (registered->kvs.empty()) {
    err << "posthaste: placement: warning: backend " << backend
        << " is not registered now; " << what
        << " gets temporary failures until it registers\n";
  }
  auto current = Read(client, key);
  if (!current.ok()) return current.status();
  if (absl::Status s = CheckNotMoving(what, *current); !s.ok()) return s;
  if (absl::Status s = Guarded(client, key, current->mod_revision,
                               EtcdOp::Put(key, EncodePlacement({.backend = backend})));
      !s.ok()) {
    return s;
  }
  out << what << " -> " << backend << "\n";
  return absl::OkStatus();
}

absl::Status ClearUser(EtcdClient& client, const Parsed& parsed, const std::string& address,
                       std::ostream& out) {
  const std::string key = UserKey(parsed.prefix, address);
  auto current = Read(client, key);
  if (!current.ok()) return current.status();
  if (current->mod_revision == 0) {
    return absl::NotFoundError(address + " has no override");
  }
  if (absl::Status s = CheckNotMoving(address, *current); !s.ok()) return s;
  if (absl::Status s = Guarded(client, key, current->mod_revision, EtcdOp::Delete(key));
      !s.ok()) {
    return s;
  }
  out << address << " override cleared\n";
  return absl::OkStatus();
}

template <typename Map>
std::vector<std::string> SortedKeys(const Map& map) {
  std::vector<std::string> keys;
  keys.reserve(map.size());
  for (const auto& [key, value] : map) keys.push_back(key);
  std::sort(keys.begin(), keys.end());
  return keys;
}

std::string PlacementText(const PlacementEntry& entry) {
  return entry.moving_to.empty() ? entry.backend
                                 : entry.backend + "\tmoving_to=" + entry.moving_to;
}

absl::Status List(EtcdClient& client, const Parsed& parsed, std::ostream& out,
                  std::ostream& err) {
  auto range = client.Range(parsed.prefix, {.range_end = PrefixRangeEnd(parsed.prefix)});
  if (!range.ok()) return range.status();
  DirectorySnapshot snapshot;
  snapshot.revision = range->revision;
  for (const EtcdKeyValue& kv : range->kvs) {
    absl::Status applied = ApplyDirectoryKey(parsed.prefix, kv.key, kv.value, false, &snapshot);
    if (!applied.ok()) err << "posthaste: placement: warning: " << kv.key << ": "
                           << applied.message() << "\n";
  }
  for (const std::string& name : SortedKeys(snapshot.backends)) {
    const BackendEndpoint& b = snapshot.backends.at(name);
    out << "backend\t" << name << "\t" << b.ip << "\tpop3=" << b.pop3_port
        << "\tpop3s=" << b.pop3s_port << "\tlmtp=" << b.lmtp_port << "\tadmin=" << b.admin_port
        << "\n";
  }
  for (const std::string& domain : SortedKeys(snapshot.tenants)) {
    out << "tenant\t" << domain << "\t" << PlacementText(snapshot.tenants.at(domain)) << "\n";
  }
  for (const std::string& address : SortedKeys(snapshot.users)) {
    out << "user\t" << address << "\t" << PlacementText(snapshot.users.at(address)) << "\n";
  }
  out << "revision\t" << snapshot.revision << "\n";
  return absl::OkStatus();
}

// The operands a command takes, or -1 for an unknown command.
int Operands(std::string_view command) {
  if (command == "set-tenant" || command == "set-user") return 2;
  if (command == "clear-user") return 1;
  if (command == "list") return 0;
  return -1;
}

}  // namespace

std::string PlacementUsage() {
  return "usage: posthaste placement --etcd_endpoints=URL,... [--etcd_prefix=/posthaste/] "
         "COMMAND\n"
         "  set-tenant DOMAIN BACKEND   place a tenant on a backend\n"
         "  set-user ADDRESS BACKEND    place one user (overrides its tenant)\n"
         "  clear-user ADDRESS          remove a user's override\n"
         "  list                        backends, tenants and overrides\n";
}

int RunPlacementCommand(const std::vector<std::string>& args, std::ostream& out,
                        std::ostream& err) {
  for (const std::string& arg : args) {
    if (arg == "--help" || arg == "-h" || arg == "help") {
      out << PlacementUsage();
      return kExitOk;
    }
  }
  auto parsed = Parse(args);
  if (!parsed.ok()) {
    err << "posthaste: placement: " << parsed.status().message() << "\n" << PlacementUsage();
    return kExitUsage;
  }
  const std::string& command = parsed->words.front();
  const int operands = Operands(command);
  if (operands < 0) {
    err << "posthaste: placement: unknown command " << command << "\n" << PlacementUsage();
    return kExitUsage;
  }
  if (static_cast<int>(parsed->words.size()) != operands + 1) {
    err << "posthaste: placement: " << command << " takes " << operands << " operand"
        << (operands == 1 ? "" : "s") << "\n"
        << PlacementUsage();
    return kExitUsage;
  }
  auto endpoints = ParseEtcdEndpoints(parsed->endpoints);
  if (!endpoints.ok()) {
    err << "posthaste: placement: " << endpoints.status().message() << "\n";
    return kExitUsage;
  }
  EtcdClient client(EtcdClientOptions{.endpoints = *std::move(endpoints)});
  absl::Status done;
  if (command == "list") {
    done = List(client, *parsed, out, err);
  } else if (command == "set-tenant") {
    const std::string domain = absl::AsciiStrToLower(parsed->words[1]);
    done = CheckDomain(domain);
    if (done.ok()) {
      done = SetPlacement(client, *parsed, "tenant " + domain, TenantKey(parsed->prefix, domain),
                          parsed->words[2], out, err);
    }
  } else if (command == "set-user") {
    const std::string address = absl::AsciiStrToLower(parsed->words[1]);
    done = CheckAddress(address);
    if (done.ok()) {
      done = SetPlacement(client, *parsed, "user " + address, UserKey(parsed->prefix, address),
                          parsed->words[2], out, err);
    }
  } else {
    const std::string address = absl::AsciiStrToLower(parsed->words[1]);
    done = CheckAddress(address);
    if (done.ok()) done = ClearUser(client, *parsed, address, out);
  }
  if (!done.ok()) {
    err << "posthaste: placement: " << done.message() << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace posthaste::server::placement
