#include "server/serve_options.h"

#include <arpa/inet.h>

#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
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

using FlagSetter = std::function<absl::Status(std::string_view)>;

FlagSetter StringFlag(std::string* field) {
  return [field](std::string_view v) {
    *field = std::string(v);
    return absl::OkStatus();
  };
}

FlagSetter BoolFlag(std::string_view name, bool* field) {
  return [name, field](std::string_view v) -> absl::Status {
    absl::StatusOr<bool> b = ParseBool(name, v);
    if (!b.ok()) return b.status();
    *field = *b;
    return absl::OkStatus();
  };
}

template <typename Int>
FlagSetter IntFlag(std::string_view name, Int* field, uint64_t max) {
  return [name, field, max](std::string_view v) -> absl::Status {
    absl::StatusOr<uint64_t> n = ParseUint(name, v, max);
    if (!n.ok()) return n.status();
    *field = static_cast<Int>(*n);
    return absl::OkStatus();
  };
}

// A value in [1, max]: a zero deadline or limit would refuse everything.
FlagSetter PositiveFlag(std::string_view name, uint32_t* field, uint64_t max) {
  return [name, field, max](std::string_view v) { return PositiveU32(name, v, max, field); };
}

// A deadline of 0 would mean "never" to some checks and "at once" to others: refused.
FlagSetter DeadlineFlag(std::string_view name, uint32_t* field) {
  return [name, field](std::string_view v) -> absl::Status {
    absl::StatusOr<uint64_t> n = ParseUint(name, v, 86400);
    if (!n.ok()) return n.status();
    if (*n == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--", AbslView(name), " must be at least 1"));
    }
    *field = static_cast<uint32_t>(*n);
    return absl::OkStatus();
  };
}

FlagSetter HostPortFlag(std::string_view name, HostPort* field) {
  return [name, field](std::string_view v) -> absl::Status {
    absl::StatusOr<HostPort> hp = ParseHostPort(v);
    if (!hp.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", AbslView(name), ": ", hp.status().message()));
    }
    *field = *hp;
    return absl::OkStatus();
  };
}

// One of a fixed set of words ("expected a, b or c" otherwise).
template <typename T>
FlagSetter ChoiceFlag(std::string_view name, T* field,
                      std::vector<std::pair<std::string_view, T>> choices) {
  return [name, field, choices = std::move(choices)](std::string_view v) -> absl::Status {
    std::string expected;
    for (size_t i = 0; i < choices.size(); ++i) {
      if (choices[i].first == v) {
        *field = choices[i].second;
        return absl::OkStatus();
      }
      if (i > 0) absl::StrAppend(&expected, i + 1 == choices.size() ? " or " : ", ");
      absl::StrAppend(&expected, AbslView(choices[i].first));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("--", AbslView(name), ": expected ", expected));
  };
}

// HOST:PORT, or "off" (then *enabled is false).
FlagSetter ListenFlag(std::string_view name, HostPort* field, bool* enabled,
                      bool* given = nullptr) {
  return [name, field, enabled, given](std::string_view v) -> absl::Status {
    if (given != nullptr) *given = true;
    if (v == "off" || (given != nullptr && v.empty())) {
      *enabled = false;
      return absl::OkStatus();
    }
    if (absl::Status s = HostPortFlag(name, field)(v); !s.ok()) return s;
    *enabled = true;
    return absl::OkStatus();
  };
}

// The serve flags: each name with how its value is checked and where it goes.
// A comma-separated list of networks (ParseCidr each); empty clears the list.
FlagSetter CidrListFlag(std::string_view name, std::vector<Cidr>* out) {
  return [name, out](std::string_view v) -> absl::Status {
    out->clear();
    for (absl::string_view part : absl::StrSplit(AbslView(v), ',', absl::SkipEmpty())) {
      absl::StatusOr<Cidr> cidr = ParseCidr(StdView(part));
      if (!cidr.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", AbslView(name), ": ", cidr.status().message()));
      }
      out->push_back(*cidr);
    }
    return absl::OkStatus();
  };
}

std::map<std::string, FlagSetter, std::less<>> ServeFlags(ServeOptions& o) {
  std::map<std::string, FlagSetter, std::less<>> flags = {
      {"data_dir", StringFlag(&o.data_dir)},
      {"pop3_listen", HostPortFlag("pop3_listen", &o.pop3_listen)},
      {"metrics_listen", HostPortFlag("metrics_listen", &o.metrics_listen)},
      {"shards", IntFlag("shards", &o.shards, 1024)},
      {"pin_shards", BoolFlag("pin_shards", &o.pin_shards)},
      {"auth_timeout_s", DeadlineFlag("auth_timeout_s", &o.auth_timeout_s)},
      {"idle_timeout_s", DeadlineFlag("idle_timeout_s", &o.idle_timeout_s)},
      {"send_stall_timeout_s", DeadlineFlag("send_stall_timeout_s", &o.send_stall_timeout_s)},
      {"drain_timeout_s", IntFlag("drain_timeout_s", &o.drain_timeout_s, 86400)},
      {"drain_delay_s", IntFlag("drain_delay_s", &o.drain_delay_s, 3600)},
      {"max_connections_per_shard",
       IntFlag("max_connections_per_shard", &o.max_connections_per_shard, 10'000'000)},
      {"max_connections_per_ip",
       IntFlag("max_connections_per_ip", &o.max_connections_per_ip, UINT32_MAX)},
      {"max_connections_per_user_ip",
       IntFlag("max_connections_per_user_ip", &o.max_connections_per_user_ip, UINT32_MAX)},
      {"in_use_policy", ChoiceFlag<pop3::InUsePolicy>("in_use_policy", &o.in_use_policy,
                                                      {{"takeover", pop3::InUsePolicy::kTakeover},
                                                       {"refuse", pop3::InUsePolicy::kRefuse}})},
      {"takeover_idle_s", IntFlag("takeover_idle_s", &o.takeover_idle_s, 86400)},
      {"retention_period_s", IntFlag("retention_period_s", &o.retention_period_s, 86400 * 7)},
      {"retention_messages_per_second",
       IntFlag("retention_messages_per_second", &o.retention_messages_per_second, 1'000'000)},
      {"plaintext_requires_tls", BoolFlag("plaintext_requires_tls", &o.plaintext_requires_tls)},
      {"auth_failure_delay_ms", IntFlag("auth_failure_delay_ms", &o.auth_failure_delay_ms, 60'000)},
      {"auth_penalty_delay_max_ms",
       IntFlag("auth_penalty_delay_max_ms", &o.auth_penalty_delay_max_ms, 600'000)},
      {"auth_penalty_window_s",
       PositiveFlag("auth_penalty_window_s", &o.auth_penalty_window_s, 86400)},
      {"auth_penalty_addresses_max",
       PositiveFlag("auth_penalty_addresses_max", &o.auth_penalty_addresses_max, 16'777'216)},
      {"auth_penalty_accounts_max",
       PositiveFlag("auth_penalty_accounts_max", &o.auth_penalty_accounts_max, 16'777'216)},
      {"auth_cache_ttl_s", IntFlag("auth_cache_ttl_s", &o.auth_cache_ttl_s, 86400)},
      {"auth_cache_handoff", BoolFlag("auth_cache_handoff", &o.auth_cache_handoff)},
      {"password_scheme",
       [&o](std::string_view v) -> absl::Status {
         absl::StatusOr<auth::HashSetting> setting = auth::ParseHashSetting(v);
         if (!setting.ok()) {
           return absl::InvalidArgumentError(
               absl::StrCat("--password_scheme: ", setting.status().message()));
         }
         o.password_scheme = *setting;
         return absl::OkStatus();
       }},
      {"rehash_at_login", BoolFlag("rehash_at_login", &o.rehash_at_login)},
      {"ldap_config", StringFlag(&o.ldap_config)},
      {"send_path", ChoiceFlag<SendPathChoice>("send_path", &o.send_path,
                                               {{"auto", SendPathChoice::kAuto},
                                                {"splice", SendPathChoice::kSplice},
                                                {"send_zc", SendPathChoice::kSendZc},
                                                {"copy", SendPathChoice::kCopy}})},
      {"copy_below_bytes", IntFlag("copy_below_bytes", &o.copy_below_bytes, UINT64_MAX)},
      {"send_zc_min_bytes", IntFlag("send_zc_min_bytes", &o.send_zc_min_bytes, UINT64_MAX)},
      {"offload_threads", IntFlag("offload_threads", &o.offload_threads, 256)},
      {"malloc_arenas", IntFlag("malloc_arenas", &o.malloc_arenas, 1024)},
      {"io_threads", PositiveFlag("io_threads", &o.io_threads, 256)},
      {"lmtp_listen", ListenFlag("lmtp_listen", &o.lmtp_listen, &o.lmtp_enabled)},
      {"lmtp_over_quota", ChoiceFlag<bool>("lmtp_over_quota", &o.lmtp_over_quota_permanent,
                                           {{"temporary", false}, {"permanent", true}})},
      {"lmtp_idle_timeout_s", DeadlineFlag("lmtp_idle_timeout_s", &o.lmtp_idle_timeout_s)},
      {"http_header_timeout_ms",
       PositiveFlag("http_header_timeout_ms", &o.http_header_timeout_ms, 3'600'000)},
      {"http_body_timeout_ms",
       PositiveFlag("http_body_timeout_ms", &o.http_body_timeout_ms, 3'600'000)},
      {"http_connections_max",
       PositiveFlag("http_connections_max", &o.http_connections_max, 100'000)},
      {"http_connections_per_ip",
       IntFlag("http_connections_per_ip", &o.http_connections_per_ip, UINT32_MAX)},
      {"admin_token_file", StringFlag(&o.admin_token_file)},
      {"log_format",
       ChoiceFlag<std::string>("log_format", &o.log_format, {{"text", "text"}, {"json", "json"}})},
      {"metrics_max_tenants", IntFlag("metrics_max_tenants", &o.metrics_max_tenants, 10'000)},
      {"metrics_tenants_recompute_s",
       IntFlag("metrics_tenants_recompute_s", &o.metrics_tenants_recompute_s, 86400)},
      {"metrics_sessions", BoolFlag("metrics_sessions", &o.metrics_sessions)},
      {"verify_stored_messages", BoolFlag("verify_stored_messages", &o.verify_stored_messages)},
      {"redownload_alarm_percent",
       IntFlag("redownload_alarm_percent", &o.redownload_alarm_percent, 100)},
      {"redownload_alarm_messages_min",
       IntFlag("redownload_alarm_messages_min", &o.redownload_alarm_messages_min, UINT32_MAX)},
      {"hostname", StringFlag(&o.hostname)},
      {"tls_cert", StringFlag(&o.tls_cert)},
      {"tls_key", StringFlag(&o.tls_key)},
      {"tls_cert_dir", StringFlag(&o.tls_cert_dir)},
      {"oauth_config", StringFlag(&o.oauth_config)},
      {"pop3s_listen",
       ListenFlag("pop3s_listen", &o.pop3s_listen, &o.pop3s_enabled, &o.pop3s_listen_given)},
      {"tls_reload_check_s", IntFlag("tls_reload_check_s", &o.tls_reload_check_s, 86400)},
  };
  flags["trusted_networks"] = CidrListFlag("trusted_networks", &o.trusted_networks);
  flags["proxy_networks"] = CidrListFlag("proxy_networks", &o.proxy_networks);
  flags["proxy_header_timeout_ms"] =
      PositiveFlag("proxy_header_timeout_ms", &o.proxy_header_timeout_ms, 60'000);
  flags["proxy_plaintext_logins"] = BoolFlag("proxy_plaintext_logins", &o.proxy_plaintext_logins);
  // Checked as HOST:PORT, kept as given (the admin API resolves it when it starts).
  flags["admin_listen"] = [&o](std::string_view v) -> absl::Status {
    HostPort checked;
    if (absl::Status s = HostPortFlag("admin_listen", &checked)(v); !s.ok()) return s;
    o.admin_listen = std::string(v);
    return absl::OkStatus();
  };
  flags["etcd_endpoints"] = StringFlag(&o.etcd_endpoints);
  flags["etcd_prefix"] = StringFlag(&o.etcd_prefix);
  flags["backend_name"] = StringFlag(&o.backend_name);
  flags["advertise_ip"] = StringFlag(&o.advertise_ip);
  flags["etcd_lease_ttl_s"] = DeadlineFlag("etcd_lease_ttl_s", &o.etcd_lease_ttl_s);
  return flags;
}

// The placement directory's flags go together; the URLs themselves are parsed when the
// registration starts (server/placement/etcd_client.h, ParseEtcdEndpoints).
absl::Status CheckEtcdFlags(const ServeOptions& o) {
  if (o.etcd_endpoints.empty()) {
    if (!o.advertise_ip.empty() || !o.backend_name.empty()) {
      return absl::InvalidArgumentError("--advertise_ip and --backend_name need --etcd_endpoints");
    }
    return absl::OkStatus();
  }
  for (absl::string_view url : absl::StrSplit(AbslView(o.etcd_endpoints), ',')) {
    if (!absl::StartsWith(url, "http://") || url.size() <= 7) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--etcd_endpoints: expected http://HOST:PORT[,http://HOST:PORT...], got \"", url, "\""));
    }
  }
  unsigned char buffer[16];
  if (inet_pton(AF_INET, o.advertise_ip.c_str(), buffer) != 1 &&
      inet_pton(AF_INET6, o.advertise_ip.c_str(), buffer) != 1) {
    return absl::InvalidArgumentError(
        "--etcd_endpoints needs --advertise_ip=ADDRESS (an IP literal: proxies connect to it)");
  }
  if (o.etcd_prefix.empty() || o.etcd_prefix.front() != '/' || o.etcd_prefix.back() != '/') {
    return absl::InvalidArgumentError("--etcd_prefix must start and end with /");
  }
  if (o.backend_name.find_first_of("/ ") != std::string::npos) {
    return absl::InvalidArgumentError("--backend_name must not hold '/' or spaces");
  }
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
         "[--proxy_networks=CIDR,...] [--proxy_header_timeout_ms=5000] "
         "[--proxy_plaintext_logins=true] "
         "[--in_use_policy=takeover|refuse] [--takeover_idle_s=30] "
         "[--retention_period_s=3600] [--retention_messages_per_second=1000] "
         "[--plaintext_requires_tls=true] [--auth_failure_delay_ms=2000] "
         "[--auth_penalty_delay_max_ms=15000] [--auth_penalty_window_s=300] "
         "[--auth_penalty_addresses_max=65536] [--auth_penalty_accounts_max=65536] "
         "[--auth_cache_ttl_s=60] [--auth_cache_handoff=true] [--password_scheme=yescrypt:3] "
         "[--rehash_at_login=true] "
         "[--ldap_config=FILE] [--send_path=auto|splice|send_zc|copy] "
         "[--copy_below_bytes=0] [--send_zc_min_bytes=0] [--offload_threads=N] [--io_threads=32] [--malloc_arenas=N] "
         "[--log_format=text|json] [--metrics_max_tenants=20] [--metrics_tenants_recompute_s=60] "
         "[--metrics_sessions=true] [--verify_stored_messages=true] "
         "[--redownload_alarm_percent=50] "
         "[--redownload_alarm_messages_min=500] "
         "[--lmtp_listen=127.0.0.1:24|off] "
         "[--lmtp_over_quota=temporary|permanent] [--lmtp_idle_timeout_s=300] "
         "[--admin_listen=HOST:PORT --admin_token_file=FILE] "
         "[--http_header_timeout_ms=5000] [--http_body_timeout_ms=10000] "
         "[--http_connections_max=256] [--http_connections_per_ip=16] "
         "[--hostname=NAME] [--tls_cert=PEM --tls_key=PEM] [--tls_cert_dir=DIR] "
         "[--oauth_config=FILE] "
         "[--pop3s_listen=0.0.0.0:995|off] [--tls_reload_check_s=10] "
         "[--etcd_endpoints=http://HOST:PORT,... --advertise_ip=IP [--backend_name=NAME] "
         "[--etcd_prefix=/posthaste/] [--etcd_lease_ttl_s=5]]";
}

absl::StatusOr<ServeOptions> ParseServeOptions(const std::vector<std::string>& args) {
  ServeOptions o;
  o.trusted_networks = {*ParseCidr("127.0.0.0/8"), *ParseCidr("::1")};
  const std::map<std::string, FlagSetter, std::less<>> setters = ServeFlags(o);
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg.size() < 3 || arg.substr(0, 2) != "--") {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument \"", AbslView(arg), "\""));
    }
    const std::string_view name = FlagName(arg);
    auto it = setters.find(name);
    if (it == setters.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", AbslView(name)));
    }
    absl::StatusOr<std::string> value = FlagValue(args, &i);
    if (!value.ok()) return value.status();
    if (absl::Status s = it->second(*value); !s.ok()) return s;
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
  if (absl::Status s = CheckEtcdFlags(o); !s.ok()) return s;
  return o;
}

}  // namespace posthaste::server
