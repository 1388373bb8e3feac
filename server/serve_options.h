// ServeOptions: the settings of `posthaste serve`, parsed from its flags (ParseServeOptions).
//
// Threading: a plain value; after start-up it is read-only and shared by every shard.
#ifndef POSTHASTE_SERVER_SERVE_OPTIONS_H_
#define POSTHASTE_SERVER_SERVE_OPTIONS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/auth/password_hash.h"
#include "server/pop3/session.h"

namespace posthaste::server {

// An IPv4 or IPv6 network in CIDR form; IPv4 is kept as an IPv4-mapped IPv6 prefix.
struct Cidr {
  uint8_t addr[16] = {};
  uint32_t prefix_bits = 0;  // of the 128-bit form
};
absl::StatusOr<Cidr> ParseCidr(std::string_view text);
// `addr16`: a 16-byte IPv6 (or IPv4-mapped) address.
bool CidrContains(const Cidr& cidr, const uint8_t* addr16);

struct HostPort {
  std::string host;
  uint16_t port = 0;
};
// "HOST:PORT" or "[V6]:PORT"; port 0 allowed (the kernel picks).
absl::StatusOr<HostPort> ParseHostPort(std::string_view text);

enum class SendPathChoice : uint8_t { kAuto, kSplice, kSendZc, kCopy };

struct ServeOptions {
  std::string data_dir;
  HostPort pop3_listen{"0.0.0.0", 110};
  HostPort metrics_listen{"0.0.0.0", 9110};
  uint32_t shards = 0;  // 0: the CPUs the process may use (sched_getaffinity)
  // Each shard thread pins itself to one CPU of the allowed set. Right where that set is the
  // process's own (taskset, a Kubernetes pod with exclusive CPUs from the static CPU manager);
  // wrong in a shared CPU pool, where every process would pin to the same first CPUs.
  bool pin_shards = true;
  uint32_t auth_timeout_s = 60;
  uint32_t idle_timeout_s = 600;        // TRANSACTION idle (RFC 1939: at least 10 minutes)
  uint32_t send_stall_timeout_s = 120;  // no byte acknowledged by the peer for this long
  uint32_t drain_timeout_s = 10;
  // SIGTERM turns /readyz 503 at once but keeps the listeners accepting for this long before
  // the drain starts, so that a load balancer (a Kubernetes Service's endpoints) stops sending
  // new connections before they would be refused. 0: the drain starts at once.
  uint32_t drain_delay_s = 0;
  uint32_t max_connections_per_shard = 50'000;
  uint32_t max_connections_per_ip = 256;  // 0: unlimited
  uint32_t max_connections_per_user_ip = 10;
  // Exempt from the per-IP and per-user+IP limits. Default: loopback (a webmail or an nginx
  // mail proxy on the same host brings many users from one address); --trusted_networks=
  // (empty) trusts nothing.
  std::vector<Cidr> trusted_networks;
  // Proxies (HAProxy, nginx's mail proxy) whose connections start with a PROXY protocol header
  // (v1 or v2) naming the client, on the POP3, POP3S and LMTP listeners; the client's address
  // then counts for limits, logs and metrics. A connection from these networks without a whole
  // header within proxy_header_timeout_ms is closed; a header from anywhere else is refused.
  // They may also send XCLIENT (POP3) and, with proxy_plaintext_logins, log users in without
  // TLS (the proxy holds the client's TLS; nginx cannot speak TLS to its backends). Empty (the
  // default): no PROXY protocol, no XCLIENT. Separate from trusted_networks, whose loopback
  // default would otherwise make every local client send a header.
  std::vector<Cidr> proxy_networks;
  uint32_t proxy_header_timeout_ms = 5'000;
  bool proxy_plaintext_logins = true;
  pop3::InUsePolicy in_use_policy = pop3::InUsePolicy::kTakeover;
  uint32_t takeover_idle_s = 30;
  // The EXPIRE n retention job (server/retention): a pass every retention_period_s (0: none;
  // `posthaste store expire` still runs one), deleting at most retention_messages_per_second
  // (0: unthrottled).
  uint32_t retention_period_s = 3600;
  uint32_t retention_messages_per_second = 1000;
  bool plaintext_requires_tls = true;  // loopback peers are exempt
  // A failed login's delay: auth_failure_delay_ms doubled per recent failure of its address or
  // account up to auth_penalty_delay_max_ms; each auth_penalty_window_s without a failure halves
  // the count; each table holds at most *_max entries (server/auth/auth_penalties.h).
  uint32_t auth_failure_delay_ms = 2000;
  uint32_t auth_penalty_delay_max_ms = 15'000;
  uint32_t auth_penalty_window_s = 300;
  uint32_t auth_penalty_addresses_max = 65'536;
  uint32_t auth_penalty_accounts_max = 65'536;
  uint32_t auth_cache_ttl_s = 60;
  // At exit, hand the verification cache to the next process through systemd's descriptor
  // store (memory only; server/handoff/systemd_fd_store.h), and take it over at start.
  bool auth_cache_handoff = true;
  // The scheme and cost of the hashes the server writes (rehash at login; the dummy hash that
  // makes unknown users cost a verification). --password_scheme=SCHEME[:COST]; see
  // server/auth/password_hash.h (HashSetting, kDefaultHashSetting).
  auth::HashSetting password_scheme = auth::kDefaultHashSetting;
  // After a successful cold login against a hash of another scheme or cost, store a fresh
  // hash at password_scheme (server/pop3_service/auth_service.h).
  bool rehash_at_login = true;
  // Tenants whose passwords live in LDAP (server/auth/ldap_config.h; docs/DEPLOY.md "LDAP
  // passdb"): a JSON file, read at start-up. Empty: every tenant uses the store's hashes.
  std::string ldap_config;
  SendPathChoice send_path = SendPathChoice::kAuto;
  // kAuto (reactor::ChooseSendPath): bodies below copy_below_bytes go by the copying path
  // (read + send; 0 = never: bodies never pass through user memory by default), from
  // send_zc_min_bytes by SEND_ZC (0 = never: on loopback SEND_ZC measured slowest, see the
  // Reactor section of ARCHITECTURE.md; enable after measuring on the production NIC), the
  // rest by splice.
  uint64_t copy_below_bytes = 0;
  uint64_t send_zc_min_bytes = 0;
  uint32_t offload_threads = 0;  // CPU pool (password hashing); 0: max(2, shards)
  // glibc malloc arenas (base/malloc_arenas.h); 0: max(2, shards). MALLOC_ARENA_MAX in the
  // environment overrides both.
  uint32_t malloc_arenas = 0;
  // I/O pool: store calls that wait on the disk (LMTP checks and deliveries, maildrop opens,
  // TOP reads, QUIT commits). Its threads mostly sleep in fdatasync, and every one waiting can
  // join the store's next group commit, so it is sized for concurrent callers, not CPUs: 32
  // covers a default Postfix's 20 LMTP connections per destination plus POP3 commits
  // (docs/BENCHMARKS.md "LMTP deliveries").
  uint32_t io_threads = 32;
  // LMTP (server/lmtp_service/lmtp_shard.h): "off" for lmtp_listen disables it. Over-quota
  // recipients are refused with 452 4.2.2 (temporary: the MTA retries, the user may make room)
  // unless lmtp_over_quota_permanent (552 5.2.2: bounce at once).
  bool lmtp_enabled = true;
  HostPort lmtp_listen{"127.0.0.1", 24};
  bool lmtp_over_quota_permanent = false;
  uint32_t lmtp_idle_timeout_s = 300;  // RFC 5321 4.5.3.2.7: at least 5 minutes
  // JSON HTTP admin API (server/admin_api.h): off unless admin_listen is set; then
  // admin_token_file (the bearer token, one line) is required.
  std::string admin_listen;
  std::string admin_token_file;
  // Both HTTP listeners (metrics and admin API; server/http/http_server.h): the request head
  // must arrive within http_header_timeout_ms of the connection (408, however it trickles), the
  // body within http_body_timeout_ms of the head; at most http_connections_max connections
  // per listener and http_connections_per_ip from one client address (0: no per-IP limit).
  uint32_t http_header_timeout_ms = 5'000;
  uint32_t http_body_timeout_ms = 10'000;
  uint32_t http_connections_max = 256;
  uint32_t http_connections_per_ip = 16;
  std::string log_format = "text";
  // Tenants (domains) with their own metric label; the rest share "other". Chosen by accounts
  // at start-up, then every metrics_tenants_recompute_s by sessions since start-up (0: fixed
  // at start-up).
  uint32_t metrics_max_tenants = 20;
  uint32_t metrics_tenants_recompute_s = 60;
  // The re-download alarm (server/pop3_service/redownload_watch.h): a session that retrieves
  // more than redownload_alarm_percent of the messages of a mailbox of at least
  // redownload_alarm_messages_min messages is logged and counted (0 percent: off).
  uint32_t redownload_alarm_percent = 50;
  uint32_t redownload_alarm_messages_min = 500;
  // Per-session, per-tenant and per-command counting and command timing. Off only to measure
  // what it costs (the connection and byte counters stay).
  bool metrics_sessions = true;
  // RETR and TOP check a message's stored bytes against the CRC32C recorded at delivery (on
  // the I/O pool) before sending them; a damaged message gets "-ERR [SYS/PERM]". Off only to
  // measure what it costs.
  bool verify_stored_messages = true;
  std::string hostname;  // greeting/sign-off; default gethostname()

  // TLS. With --tls_cert/--tls_key (the default certificate, also for clients without SNI)
  // STLS is offered on pop3_listen and implicit TLS is served on pop3s_listen; without them
  // neither (logged at start-up). --tls_cert_dir adds per-tenant certificates chosen by SNI.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_cert_dir;
  HostPort pop3s_listen{"0.0.0.0", 995};
  bool pop3s_enabled = true;        // --pop3s_listen=off turns implicit TLS off
  bool pop3s_listen_given = false;  // set explicitly: an error without a certificate
  // Certificate files are checked for changes (inode, mtime, size) this often; 0: SIGHUP only.
  uint32_t tls_reload_check_s = 10;
  bool tls_configured() const { return !tls_cert.empty(); }
  // OAUTHBEARER and XOAUTH2 (server/auth/oauth_tenants.h): the per-tenant issuers, audiences
  // and JWKS files; empty: no OAuth. The JWKS files are re-read when they change (checked every
  // tls_reload_check_s, and at SIGHUP).
  std::string oauth_config;

  // The placement directory (docs/ARCHITECTURE.md, "Placement directory in etcd"): with
  // etcd_endpoints (comma-separated http:// client URLs) the server registers itself as
  // <etcd_prefix>backends/<backend_name> under a lease of etcd_lease_ttl_s once it is ready,
  // with advertise_ip (an IP literal) and the ports its listeners got, and withdraws when it
  // drains. Empty etcd_endpoints: no registration.
  std::string etcd_endpoints;
  std::string etcd_prefix = "/posthaste/";
  std::string backend_name;  // default: hostname
  std::string advertise_ip;
  uint32_t etcd_lease_ttl_s = 5;
};

// Parses `args` (flags after "serve"). InvalidArgument naming the bad flag.
absl::StatusOr<ServeOptions> ParseServeOptions(const std::vector<std::string>& args);
std::string ServeUsage();

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_SERVE_OPTIONS_H_
