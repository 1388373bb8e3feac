#include "server/serve_options.h"

#include <arpa/inet.h>

#include <cstring>
#include <functional>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/strings.h"

namespace posthaste::server {
namespace {

absl::StatusOr<uint64_t> ParseUint(std::string_view flag, std::string_view text, uint64_t max) {
  const std::optional<uint64_t> value = ParseDecimalAtMost(text, max);
  if (!value.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", AbslView(flag), ": expected an integer 0..", max, ", got \"", AbslView(text), "\""));
  }
  return *value;
}

absl::StatusOr<bool> ParseBool(std::string_view flag, std::string_view text) {
  if (text == "true" || text == "1" || text == "yes") return true;
  if (text == "false" || text == "0" || text == "no") return false;
  return absl::InvalidArgumentError(
      absl::StrCat("--", AbslView(flag), ": expected true or false, got \"", AbslView(text), "\""));
}

// A value in [1, max] (a zero deadline or limit would refuse everything).
absl::Status PositiveU32(std::string_view flag, std::string_view text, uint64_t max,
                         uint32_t* field) {
  auto n = ParseUint(flag, text, max);
  if (!n.ok()) return n.status();
  if (*n == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", AbslView(flag), " must be in [1, ", max, "]"));
  }
  *field = static_cast<uint32_t>(*n);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Cidr> ParseCidr(std::string_view text) {
  Cidr cidr;
  std::string_view addr = text;
  std::optional<uint32_t> bits;
  if (size_t slash = text.find('/'); slash != std::string_view::npos) {
    addr = text.substr(0, slash);
    const std::optional<uint64_t> b = ParseDecimalAtMost(text.substr(slash + 1), 128);
    if (!b.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat("bad network \"", AbslView(text), "\""));
    }
    bits = static_cast<uint32_t>(*b);
  }
  std::string a(addr);
  in_addr v4;
  if (inet_pton(AF_INET, a.c_str(), &v4) == 1) {
    if (bits.has_value() && *bits > 32) {
      return absl::InvalidArgumentError(absl::StrCat("bad network \"", AbslView(text), "\""));
    }
    cidr.addr[10] = 0xff;
    cidr.addr[11] = 0xff;
    std::memcpy(cidr.addr + 12, &v4, 4);
    cidr.prefix_bits = 96 + bits.value_or(32);
    return cidr;
  }
  if (inet_pton(AF_INET6, a.c_str(), cidr.addr) == 1) {
    cidr.prefix_bits = bits.value_or(128);
    return cidr;
  }
  return absl::InvalidArgumentError(absl::StrCat("bad network \"", AbslView(text), "\""));
}

bool CidrContains(const Cidr& cidr, const uint8_t* addr16) {
  uint32_t bits = cidr.prefix_bits;
  for (int i = 0; i < 16 && bits > 0; ++i) {
    const uint32_t take = bits >= 8 ? 8 : bits;
    const uint8_t mask = static_cast<uint8_t>(0xff << (8 - take));
    if ((cidr.addr[i] & mask) != (addr16[i] & mask)) return false;
    bits -= take;
  }
  return true;
}

absl::StatusOr<HostPort> ParseHostPort(std::string_view text) {
  HostPort hp;
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected HOST:PORT, got \"", AbslView(text), "\""));
  }
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  hp.host = std::string(host);
  const std::optional<uint64_t> port = ParseDecimalAtMost(text.substr(colon + 1), 65535);
  if (!port.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat("bad port in \"", AbslView(text), "\""));
  }
  hp.port = static_cast<uint16_t>(*port);
  return hp;
}

std::string ServeUsage() {
  return "posthaste serve --data_dir=DIR [--pop3_listen=0.0.0.0:110] "
         "[--metrics_listen=0.0.0.0:9110] [--shards=N] [--pin_shards=true] [--auth_timeout_s=60] "
         "[--idle_timeout_s=600] [--send_stall_timeout_s=120] [--drain_delay_s=0] "
         "[--drain_timeout_s=10] "
         "[--max_connections_per_shard=50000] [--max_connections_per_ip=256] "
         "[--max_connections_per_user_ip=10] [--trusted_networks=127.0.0.0/8,::1] "
         "[--in_use_policy=takeover|refuse] [--takeover_idle_s=30] "
         "[--plaintext_requires_tls=true] [--auth_failure_delay_ms=2000] "
         "[--auth_cache_ttl_s=60] [--send_path=auto|splice|send_zc|copy] "
         "[--copy_below_bytes=0] [--send_zc_min_bytes=0] [--offload_threads=N] [--io_threads=32] "
         "[--log_format=text|json] [--metrics_max_tenants=20] [--metrics_sessions=true] "
         "[--lmtp_listen=127.0.0.1:24|off] "
         "[--lmtp_over_quota=temporary|permanent] [--lmtp_idle_timeout_s=300] "
         "[--admin_listen=HOST:PORT --admin_token_file=FILE] "
         "[--http_header_timeout_ms=5000] [--http_body_timeout_ms=10000] "
         "[--http_connections_max=256] [--http_connections_per_ip=16] "
         "[--hostname=NAME] [--tls_cert=PEM --tls_key=PEM] [--tls_cert_dir=DIR] "
         "[--pop3s_listen=0.0.0.0:995|off] [--tls_reload_check_s=10]";
}

absl::StatusOr<ServeOptions> ParseServeOptions(const std::vector<std::string>& args) {
  ServeOptions o;
  o.trusted_networks = {*ParseCidr("127.0.0.0/8"), *ParseCidr("::1")};
  using Setter = std::function<absl::Status(std::string_view)>;
  auto u32 = [](std::string_view name, uint32_t* field, uint64_t max = UINT32_MAX) -> Setter {
    return [name, field, max](std::string_view v) -> absl::Status {
      auto n = ParseUint(name, v, max);
      if (!n.ok()) return n.status();
      *field = static_cast<uint32_t>(*n);
      return absl::OkStatus();
    };
  };
  // A deadline of 0 would mean "never" to some checks and "at once" to others: refused.
  auto deadline_s = [](std::string_view name, uint32_t* field) -> Setter {
    return [name, field](std::string_view v) -> absl::Status {
      auto n = ParseUint(name, v, 86400);
      if (!n.ok()) return n.status();
      if (*n == 0)
        return absl::InvalidArgumentError(
            absl::StrCat("--", std::string(name), " must be at least 1"));
      *field = static_cast<uint32_t>(*n);
      return absl::OkStatus();
    };
  };
  const std::map<std::string, Setter, std::less<>> setters = {
      {"data_dir",
       [&](std::string_view v) {
         o.data_dir = std::string(v);
         return absl::OkStatus();
       }},
      {"pop3_listen",
       [&](std::string_view v) -> absl::Status {
         auto hp = ParseHostPort(v);
         if (!hp.ok())
           return absl::InvalidArgumentError(
               absl::StrCat("--pop3_listen: ", hp.status().message()));
         o.pop3_listen = *hp;
         return absl::OkStatus();
       }},
      {"metrics_listen",
       [&](std::string_view v) -> absl::Status {
         auto hp = ParseHostPort(v);
         if (!hp.ok())
           return absl::InvalidArgumentError(
               absl::StrCat("--metrics_listen: ", hp.status().message()));
         o.metrics_listen = *hp;
         return absl::OkStatus();
       }},
      {"shards", u32("shards", &o.shards, 1024)},
      {"pin_shards",
       [&](std::string_view v) -> absl::Status {
         auto b = ParseBool("pin_shards", v);
         if (!b.ok()) return b.status();
         o.pin_shards = *b;
         return absl::OkStatus();
       }},
      {"auth_timeout_s", deadline_s("auth_timeout_s", &o.auth_timeout_s)},
      {"idle_timeout_s", deadline_s("idle_timeout_s", &o.idle_timeout_s)},
      {"send_stall_timeout_s", deadline_s("send_stall_timeout_s", &o.send_stall_timeout_s)},
      {"drain_timeout_s", u32("drain_timeout_s", &o.drain_timeout_s, 86400)},
      {"drain_delay_s", u32("drain_delay_s", &o.drain_delay_s, 3600)},
      {"max_connections_per_shard",
       u32("max_connections_per_shard", &o.max_connections_per_shard, 10'000'000)},
      {"max_connections_per_ip", u32("max_connections_per_ip", &o.max_connections_per_ip)},
      {"max_connections_per_user_ip",
       u32("max_connections_per_user_ip", &o.max_connections_per_user_ip)},
      {"trusted_networks",
       [&](std::string_view v) -> absl::Status {
         o.trusted_networks.clear();
         for (absl::string_view part : absl::StrSplit(AbslView(v), ',', absl::SkipEmpty())) {
           auto cidr = ParseCidr(StdView(part));
           if (!cidr.ok())
             return absl::InvalidArgumentError(
                 absl::StrCat("--trusted_networks: ", cidr.status().message()));
           o.trusted_networks.push_back(*cidr);
         }
         return absl::OkStatus();
       }},
      {"in_use_policy",
       [&](std::string_view v) -> absl::Status {
         if (v == "takeover") {
           o.in_use_policy = pop3::InUsePolicy::kTakeover;
         } else if (v == "refuse") {
           o.in_use_policy = pop3::InUsePolicy::kRefuse;
         } else {
           return absl::InvalidArgumentError("--in_use_policy: expected takeover or refuse");
         }
         return absl::OkStatus();
       }},
      {"takeover_idle_s", u32("takeover_idle_s", &o.takeover_idle_s, 86400)},
      {"plaintext_requires_tls",
       [&](std::string_view v) -> absl::Status {
         auto b = ParseBool("plaintext_requires_tls", v);
         if (!b.ok()) return b.status();
         o.plaintext_requires_tls = *b;
         return absl::OkStatus();
       }},
      {"auth_failure_delay_ms", u32("auth_failure_delay_ms", &o.auth_failure_delay_ms, 60'000)},
      {"auth_cache_ttl_s", u32("auth_cache_ttl_s", &o.auth_cache_ttl_s, 86400)},
      {"send_path",
       [&](std::string_view v) -> absl::Status {
         if (v == "auto") {
           o.send_path = SendPathChoice::kAuto;
         } else if (v == "splice") {
           o.send_path = SendPathChoice::kSplice;
         } else if (v == "send_zc") {
           o.send_path = SendPathChoice::kSendZc;
         } else if (v == "copy") {
           o.send_path = SendPathChoice::kCopy;
         } else {
           return absl::InvalidArgumentError("--send_path: expected auto, splice, send_zc or copy");
         }
         return absl::OkStatus();
       }},
      {"copy_below_bytes",
       [&](std::string_view v) -> absl::Status {
         auto n = ParseUint("copy_below_bytes", v, UINT64_MAX);
         if (!n.ok()) return n.status();
         o.copy_below_bytes = *n;
         return absl::OkStatus();
       }},
      {"send_zc_min_bytes",
       [&](std::string_view v) -> absl::Status {
         auto n = ParseUint("send_zc_min_bytes", v, UINT64_MAX);
         if (!n.ok()) return n.status();
         o.send_zc_min_bytes = *n;
         return absl::OkStatus();
       }},
      {"offload_threads", u32("offload_threads", &o.offload_threads, 256)},
      {"io_threads",
       [&](std::string_view v) -> absl::Status {
         auto n = ParseUint("io_threads", v, 256);
         if (!n.ok()) return n.status();
         if (*n == 0) return absl::InvalidArgumentError("--io_threads must be in [1, 256]");
         o.io_threads = static_cast<uint32_t>(*n);
         return absl::OkStatus();
       }},
      {"lmtp_listen",
       [&](std::string_view v) -> absl::Status {
         if (v == "off") {
           o.lmtp_enabled = false;
           return absl::OkStatus();
         }
         auto hp = ParseHostPort(v);
         if (!hp.ok())
           return absl::InvalidArgumentError(
               absl::StrCat("--lmtp_listen: ", hp.status().message()));
         o.lmtp_enabled = true;
         o.lmtp_listen = *hp;
         return absl::OkStatus();
       }},
      {"lmtp_over_quota",
       [&](std::string_view v) -> absl::Status {
         if (v != "temporary" && v != "permanent") {
           return absl::InvalidArgumentError("--lmtp_over_quota: expected temporary or permanent");
         }
         o.lmtp_over_quota_permanent = v == "permanent";
         return absl::OkStatus();
       }},
      {"lmtp_idle_timeout_s", deadline_s("lmtp_idle_timeout_s", &o.lmtp_idle_timeout_s)},
      {"admin_listen",
       [&](std::string_view v) -> absl::Status {
         auto hp = ParseHostPort(v);
         if (!hp.ok())
           return absl::InvalidArgumentError(
               absl::StrCat("--admin_listen: ", hp.status().message()));
         o.admin_listen = std::string(v);
         return absl::OkStatus();
       }},
      {"http_header_timeout_ms",
       [&](std::string_view v) -> absl::Status {
         return PositiveU32("http_header_timeout_ms", v, 3'600'000, &o.http_header_timeout_ms);
       }},
      {"http_body_timeout_ms",
       [&](std::string_view v) -> absl::Status {
         return PositiveU32("http_body_timeout_ms", v, 3'600'000, &o.http_body_timeout_ms);
       }},
      {"http_connections_max",
       [&](std::string_view v) -> absl::Status {
         return PositiveU32("http_connections_max", v, 100'000, &o.http_connections_max);
       }},
      {"http_connections_per_ip", u32("http_connections_per_ip", &o.http_connections_per_ip)},
      {"admin_token_file",
       [&](std::string_view v) {
         o.admin_token_file = std::string(v);
         return absl::OkStatus();
       }},
      {"log_format",
       [&](std::string_view v) -> absl::Status {
         if (v != "text" && v != "json") {
           return absl::InvalidArgumentError("--log_format: expected text or json");
         }
         o.log_format = std::string(v);
         return absl::OkStatus();
       }},
      {"metrics_max_tenants", u32("metrics_max_tenants", &o.metrics_max_tenants, 10'000)},
      {"metrics_sessions",
       [&](std::string_view v) -> absl::Status {
         auto b = ParseBool("metrics_sessions", v);
         if (!b.ok()) return b.status();
         o.metrics_sessions = *b;
         return absl::OkStatus();
       }},
      {"hostname",
       [&](std::string_view v) {
         o.hostname = std::string(v);
         return absl::OkStatus();
       }},
      {"tls_cert",
       [&](std::string_view v) {
         o.tls_cert = std::string(v);
         return absl::OkStatus();
       }},
      {"tls_key",
       [&](std::string_view v) {
         o.tls_key = std::string(v);
         return absl::OkStatus();
       }},
      {"tls_cert_dir",
       [&](std::string_view v) {
         o.tls_cert_dir = std::string(v);
         return absl::OkStatus();
       }},
      {"pop3s_listen",
       [&](std::string_view v) -> absl::Status {
         o.pop3s_listen_given = true;
         if (v == "off" || v.empty()) {
           o.pop3s_enabled = false;
           return absl::OkStatus();
         }
         auto hp = ParseHostPort(v);
         if (!hp.ok())
           return absl::InvalidArgumentError(
               absl::StrCat("--pop3s_listen: ", hp.status().message()));
         o.pop3s_listen = *hp;
         o.pop3s_enabled = true;
         return absl::OkStatus();
       }},
      {"tls_reload_check_s", u32("tls_reload_check_s", &o.tls_reload_check_s, 86400)},
  };
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg.size() < 3 || arg.substr(0, 2) != "--") {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument \"", AbslView(arg), "\""));
    }
    arg.remove_prefix(2);
    std::string_view name = arg.substr(0, arg.find('='));
    auto it = setters.find(name);
    if (it == setters.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", AbslView(name)));
    }
    std::string value;
    if (name.size() < arg.size()) {
      value = std::string(arg.substr(name.size() + 1));
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("flag --", AbslView(name), " needs a value"));
    }
    if (absl::Status s = it->second(value); !s.ok()) return s;
  }
  if (o.data_dir.empty()) return absl::InvalidArgumentError("--data_dir is required");
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (!o.tls_cert_dir.empty() && o.tls_cert.empty()) {
    // Clients without SNI (and names with no certificate) need a certificate too.
    return absl::InvalidArgumentError(
        "--tls_cert_dir needs --tls_cert and --tls_key (the default certificate)");
  }
  if (o.pop3s_listen_given && o.pop3s_enabled && o.tls_cert.empty()) {
    return absl::InvalidArgumentError("--pop3s_listen needs --tls_cert and --tls_key");
  }
  if (o.tls_cert.empty()) o.pop3s_enabled = false;
  if (!o.admin_listen.empty() && o.admin_token_file.empty()) {
    return absl::InvalidArgumentError("--admin_listen needs --admin_token_file");
  }
  return o;
}

}  // namespace posthaste::server
