#include "server/serve.h"

#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ostream>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/strings.h"
#include "server/admin/admin_api.h"
#include "server/admin/admin_http.h"
#include "server/admin/admin_socket.h"
#include "server/pop3_service/auth_service.h"
#include "server/lmtp_service/lmtp_shard.h"
#include "server/metrics_gather.h"
#include "server/pop3_service/pop3_shard.h"
#include "server/reactor/net.h"
#include "server/reactor/shard.h"
#include "server/serve_options.h"
#include "server/pop3_service/tenant_policies.h"
#include "storage/mail_store.h"
#include "tls/ktls.h"
#include "tls/tls_context.h"

namespace posthaste::server {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

uint32_t AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  const int n = CPU_COUNT(&set);
  return n > 0 ? static_cast<uint32_t>(n) : 1;
}

// Each connection needs a socket (and a pipe while splicing): use the whole hard limit.
void RaiseFileLimit() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

std::string HostPortText(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

uint64_t OpenConnections(ServerContext& ctx) {
  uint64_t n = 0;
  for (auto& sc : ctx.shards) n += sc->connections.PublishedOpen();
  return n;
}

LmtpServiceOptions LmtpOptionsOf(const ServeOptions& options) {
  constexpr uint64_t kNsPerSecond = 1'000'000'000;
  LmtpServiceOptions o;
  o.listen_host = options.lmtp_listen.host;
  o.listen_port = options.lmtp_listen.port;
  o.shards = options.shards;
  o.hostname = options.hostname;
  o.idle_timeout_ns = uint64_t{options.lmtp_idle_timeout_s} * kNsPerSecond;
  o.send_stall_timeout_ns = uint64_t{options.send_stall_timeout_s} * kNsPerSecond;
  o.over_quota_permanent = options.lmtp_over_quota_permanent;
  o.max_connections_per_shard = options.max_connections_per_shard;
  return o;
}

// Closes every listener made so far (start-up failed).
void CloseListeners(ServerContext& ctx) {
  for (auto& sc : ctx.shards) {
    sc->listener.Close();
    sc->pop3s_listener.Close();
  }
}

// Reloads the certificates (SIGHUP or changed files) and says what happened. Sessions keep the
// snapshot they started with; a broken file keeps the previous certificate (TlsContextSet).
void ReloadCertificates(ServerContext& ctx, TlsContextSet& tls, std::string_view trigger) {
  TlsReloadReport report;
  absl::Status status = tls.Reload(&report);
  (status.ok() ? ctx.process.tls_reloads_ok : ctx.process.tls_reloads_failed).fetch_add(1);
  LogEvent(status.ok() ? LogLevel::kInfo : LogLevel::kWarning, "tls certificates reloaded",
           {{"trigger", std::string(trigger)},
            {"loaded", std::to_string(report.loaded)},
            {"unchanged", std::to_string(report.unchanged)},
            {"kept_old", std::to_string(report.kept_old)},
            {"removed", std::to_string(report.removed)},
            {"skipped", std::to_string(report.skipped)},
            {"error", status.ok() ? std::string() : std::string(status.message())}});
}

// Re-reads the tenant overrides when a tenant changed (admin socket, admin API); logs the
// result. A failed read keeps the previous overrides.
void RefreshTenantPolicies(TenantPolicyTable& table, storage::MailStore& store,
                           std::string_view trigger) {
  absl::StatusOr<bool> refreshed = table.RefreshIfChanged(store);
  if (!refreshed.ok()) {
    LogEvent(LogLevel::kWarning, "tenant policies not reloaded, keeping the previous ones",
             {{"trigger", std::string(trigger)},
              {"error", std::string(refreshed.status().message())}});
    return;
  }
  if (!*refreshed) return;
  const auto snapshot = table.Current();
  LogEvent(LogLevel::kInfo, "tenant policies loaded",
           {{"trigger", std::string(trigger)},
            {"plaintext_allow", std::to_string(snapshot->allowed)},
            {"plaintext_require_tls", std::to_string(snapshot->require_tls)}});
}

// The drain delay (--drain_delay_s): /readyz already answers 503 while the listeners keep
// accepting, so load balancers take this server out of rotation before its listeners close. A
// second SIGTERM/SIGINT ends the delay early; SIGHUP still reloads the certificates.
void WaitDrainDelay(const sigset_t& signals, uint32_t delay_s, ServerContext& ctx,
                    TlsContextSet* tls) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(delay_s);
  for (;;) {
    const int64_t left_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(end - std::chrono::steady_clock::now())
            .count();
    if (left_ns <= 0) return;
    timespec wait{static_cast<time_t>(left_ns / 1'000'000'000),
                  static_cast<long>(left_ns % 1'000'000'000)};
    siginfo_t info;
    const int sig = sigtimedwait(&signals, &info, &wait);
    if (sig == SIGTERM || sig == SIGINT) {
      LogEvent(LogLevel::kInfo, "drain delay cut short by a second signal",
               {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
      return;
    }
    if (sig == SIGHUP && tls != nullptr) ReloadCertificates(ctx, *tls, "SIGHUP");
  }
}

}  // namespace

int RunServe(const std::vector<std::string>& args, std::ostream& err,
             AdminCommandRunner admin_commands) {
  for (const std::string& arg : args) {
    if (arg == "--help" || arg == "-h") {
      err << "usage: " << ServeUsage() << "\n";
      return kExitUsage;
    }
  }
  absl::StatusOr<ServeOptions> parsed = ParseServeOptions(args);
  if (!parsed.ok()) {
    err << "posthaste: serve: " << parsed.status().message() << "\n"
        << "usage: " << ServeUsage() << "\n";
    return kExitUsage;
  }
  ServerContext ctx;
  ctx.options = *std::move(parsed);
  ServeOptions& options = ctx.options;
  SetLogFormat(options.log_format == "json" ? LogFormat::kJson : LogFormat::kText);
  if (options.hostname.empty()) {
    char name[256] = {};
    gethostname(name, sizeof(name) - 1);
    options.hostname = name[0] != '\0' ? name : "localhost";
  }
  if (options.shards == 0) options.shards = AllowedCpus();
  if (options.offload_threads == 0) options.offload_threads = std::max<uint32_t>(2, options.shards);
  RaiseFileLimit();

  // Signals are taken by sigwait on this thread; every thread started below inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);  // reloads certificates
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  storage::StoreOptions store_options;
  store_options.data_dir = options.data_dir;
  store_options.create_if_missing = true;
  auto store = storage::MailStore::Open(store_options);
  if (!store.ok()) {
    err << "posthaste: serve: " << store.status().message() << "\n";
    return kExitFailure;
  }
  ctx.store = store->get();
  TenantPolicyTable tenant_policies;
  if (absl::Status loaded = tenant_policies.Load(*ctx.store); !loaded.ok()) {
    err << "posthaste: serve: tenant policies: " << loaded.message() << "\n";
    return kExitFailure;
  }
  ctx.tenant_policies = &tenant_policies;
  // Metric labels for the largest tenants by accounts (fixed for this run; the rest: "other").
  if (options.metrics_max_tenants > 0) {
    auto accounts = ctx.store->ListAccounts();
    if (accounts.ok()) {
      absl::flat_hash_map<std::string, uint64_t> per_domain;
      for (const storage::AccountSummary& a : *accounts) {
        ++per_domain[a.address.substr(a.address.rfind('@') + 1)];
      }
      ctx.tenant_labels = std::make_shared<metrics::TenantLabels>(
          metrics::TenantLabels::Largest(per_domain, options.metrics_max_tenants));
    } else {
      LogEvent(LogLevel::kWarning, "listing tenants for metric labels failed",
               {{"error", accounts.status().ToString()}});
    }
  }
  AuthService auth(ctx.store, {.cache_ttl = absl::Seconds(options.auth_cache_ttl_s)});
  ctx.auth = &auth;

  // TLS: STLS and the pop3s listener only with a certificate.
  std::unique_ptr<TlsContextSet> tls;
  if (options.tls_configured()) {
    auto created = TlsContextSet::Create({.cert_path = options.tls_cert,
                                          .key_path = options.tls_key,
                                          .cert_dir = options.tls_cert_dir});
    if (!created.ok()) {
      err << "posthaste: serve: tls: " << created.status().message() << "\n";
      return kExitFailure;
    }
    tls = *std::move(created);
    ctx.tls = tls.get();
    ctx.ktls = ProbeKernelTls();
    LogEvent(LogLevel::kInfo, "tls ready",
             {{"certificates", std::to_string(tls->Current()->by_name.size() + 1)},
              {"cert_dir", options.tls_cert_dir},
              {"kernel_tls", ctx.ktls.reason},
              {"data_path", ctx.ktls.available ? "kernel" : "userspace"}});
  } else {
    LogEvent(LogLevel::kWarning,
             "tls off: no --tls_cert/--tls_key, so STLS is not offered and no pop3s listener "
             "is opened; plaintext logins are refused except from loopback and for tenants "
             "with plaintext_auth=allow",
             {{"plaintext_requires_tls", options.plaintext_requires_tls ? "true" : "false"}});
  }

  // Listeners: the first decides the port (0: the kernel picks), the others share it.
  for (uint32_t i = 0; i < options.shards; ++i) {
    auto fd = reactor::CreateListener({.host = options.pop3_listen.host,
                                       .port = i == 0 ? options.pop3_listen.port : ctx.pop3_port,
                                       .join_existing_group = i > 0});
    if (!fd.ok()) {
      err << "posthaste: serve: cannot listen on "
          << HostPortText(options.pop3_listen.host, options.pop3_listen.port) << ": "
          << fd.status().message() << "\n";
      CloseListeners(ctx);
      return kExitFailure;
    }
    if (i == 0) {
      auto port = reactor::LocalPort(*fd);
      if (!port.ok()) {
        err << "posthaste: serve: " << port.status().message() << "\n";
        close(*fd);
        return kExitFailure;
      }
      ctx.pop3_port = *port;
    }
    auto sc = std::make_unique<ShardContext>();
    sc->server = &ctx;
    sc->index = i;
    sc->listener.set_fd(*fd);
    sc->metrics = metrics::ShardMetrics(ctx.tenant_labels->size());
    ctx.shards.push_back(std::move(sc));
    if (options.pop3s_enabled) {
      auto tls_fd = reactor::CreateListener(
          {.host = options.pop3s_listen.host,
           .port = i == 0 ? options.pop3s_listen.port : ctx.pop3s_port,
           .join_existing_group = i > 0});
      if (!tls_fd.ok()) {
        err << "posthaste: serve: cannot listen on "
            << HostPortText(options.pop3s_listen.host, options.pop3s_listen.port) << ": "
            << tls_fd.status().message() << "\n";
        CloseListeners(ctx);
        return kExitFailure;
      }
      ctx.shards.back()->pop3s_listener.set_fd(*tls_fd);
      if (i == 0) {
        auto port = reactor::LocalPort(*tls_fd);
        if (!port.ok()) {
          err << "posthaste: serve: " << port.status().message() << "\n";
          CloseListeners(ctx);
          return kExitFailure;
        }
        ctx.pop3s_port = *port;
      }
    }
  }

  // Online administration: the CLI's commands reach this store through DIR/admin.sock.
  std::unique_ptr<admin::AdminSocketServer> admin_socket;
  if (admin_commands) {
    storage::MailStore* admin_store = ctx.store;
    TenantPolicyTable* policies = &tenant_policies;
    auto started_socket = admin::AdminSocketServer::Start(
        options.data_dir,
        [admin_commands, admin_store, policies](const admin::AdminRequest& request) {
          admin::AdminResponse response = admin_commands(request, *admin_store);
          // Before the answer: once the CLI returns, new logins see the change.
          RefreshTenantPolicies(*policies, *admin_store, "admin socket");
          return response;
        });
    if (!started_socket.ok()) {
      err << "posthaste: serve: " << started_socket.status().message() << "\n";
      CloseListeners(ctx);
      return kExitFailure;
    }
    admin_socket = *std::move(started_socket);
  }

  LmtpService lmtp;
  if (options.lmtp_enabled) {
    if (absl::Status listening = lmtp.Listen(LmtpOptionsOf(ctx.options), *ctx.store); !listening.ok()) {
      err << "posthaste: serve: " << listening.message() << "\n";
      CloseListeners(ctx);
      return kExitFailure;
    }
  }

  reactor::ReactorOptions reactor_options;
  reactor_options.shards = options.shards;
  reactor_options.pin_threads = options.pin_shards;
  reactor_options.offload.threads = options.offload_threads;
  reactor_options.offload_io.threads = options.io_threads;
  // Bursts of logins (10,000 sessions connecting at once) queue work and cross-shard
  // messages; the queues stay bounded and count refusals.
  reactor_options.offload.queue_capacity = 65536;
  reactor_options.offload_io.queue_capacity = 65536;
  reactor_options.inbox_capacity = 16384;
  auto reactor = reactor::Reactor::Create(reactor_options);
  if (!reactor.ok()) {
    err << "posthaste: serve: " << reactor.status().message() << "\n";
    CloseListeners(ctx);
    lmtp.CloseListeners();
    return kExitFailure;
  }
  ctx.reactor = reactor->get();
  std::string ring_mode;
  absl::Status started = ctx.reactor->Start([&ctx, &ring_mode, &lmtp](reactor::Shard& shard) {
    ShardContext& sc = *ctx.shards[shard.index()];
    sc.shard = &shard;
    if (shard.index() == 0) ring_mode = std::string(shard.ring().setup_mode_name());
    sc.StartListening();
    if (!lmtp.shards.empty()) {
      lmtp.shards[shard.index()]->StartListening(shard, sc.metrics, sc.counter_blocks);
    }
  });
  if (!started.ok()) {
    err << "posthaste: serve: " << started.message() << "\n";
    return kExitFailure;
  }

  ShardMetricsGather shard_metrics(ctx.reactor, ctx.tenant_labels->size(),
                                   [&ctx](uint32_t i) { return CopyShardMetrics(*ctx.shards[i]); });
  auto metrics_http = admin::AdminHttp::Start(
      options,
      {.tenant_labels = ctx.tenant_labels,
       .shards = [&shard_metrics](
                     std::vector<metrics::ShardCopy>* out) { return shard_metrics.Copy(out); },
       .process_counters =
           [&ctx] {
             return std::vector<metrics::CounterBlockCopy>{
                 metrics::CounterBlockCopy::OfAtomics(ProcessCounterTable(), ctx.process)};
           },
       .store = ctx.store,
       .draining = &ctx.draining});
  if (!metrics_http.ok()) {
    err << "posthaste: serve: " << metrics_http.status().message() << "\n";
    ctx.reactor->Stop();
    ctx.reactor->Wait();
    return kExitFailure;
  }
  std::unique_ptr<admin::AdminApi> admin_api;
  if (!options.admin_listen.empty()) {
    auto api = admin::AdminApi::Start(options, ctx.store);
    if (!api.ok()) {
      err << "posthaste: serve: " << api.status().message() << "\n";
      ctx.reactor->Stop();
      ctx.reactor->Wait();
      return kExitFailure;
    }
    admin_api = *std::move(api);
    (*metrics_http)->AddListenerStats("admin_api", &admin_api->http_stats());
  }
  LogEvent(LogLevel::kInfo, "listening",
           {{"pop3", HostPortText(options.pop3_listen.host, ctx.pop3_port)},
            {"pop3s", options.pop3s_enabled
                          ? HostPortText(options.pop3s_listen.host, ctx.pop3s_port)
                          : std::string("off")},
            {"stls", ctx.tls != nullptr ? "on" : "off"},
            {"metrics", HostPortText(options.metrics_listen.host, (*metrics_http)->port())},
            {"lmtp", options.lmtp_enabled ? HostPortText(options.lmtp_listen.host, lmtp.port)
                                          : std::string("off")},
            {"admin_api", admin_api ? HostPortText(ParseHostPort(options.admin_listen)->host,
                                                   admin_api->port())
                                    : std::string("off")},
            {"shards", std::to_string(options.shards)},
            {"ring", ring_mode},
            {"data_dir", options.data_dir}});

  // The main thread waits for signals; with TLS it also checks the certificate files (a
  // Kubernetes Secret update swaps the `..data` symlink: new inodes) and rotates ticket keys.
  int sig = 0;
  uint64_t waited_s = 0;
  for (;;) {
    timespec tick{1, 0};
    siginfo_t info;
    sig = sigtimedwait(&signals, &info, &tick);
    if (sig == SIGHUP) {
      if (tls != nullptr) {
        ReloadCertificates(ctx, *tls, "SIGHUP");
      } else {
        LogEvent(LogLevel::kInfo, "SIGHUP: no certificates configured, nothing to reload");
      }
      continue;
    }
    if (sig == SIGTERM || sig == SIGINT) break;
    RefreshTenantPolicies(tenant_policies, *ctx.store, "periodic check");
    if (tls == nullptr) continue;
    ++waited_s;
    if (options.tls_reload_check_s > 0 && waited_s % options.tls_reload_check_s == 0 &&
        tls->NeedsReload()) {
      ReloadCertificates(ctx, *tls, "files changed");
    }
    if (tls->MaybeRotateTicketKeys(absl::Now())) {
      LogEvent(LogLevel::kInfo, "tls ticket keys rotated");
    }
  }
  ctx.draining.store(true);
  LogEvent(LogLevel::kInfo, "draining",
           {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"},
            {"open_connections", std::to_string(OpenConnections(ctx) + lmtp.OpenConnections())},
            {"drain_delay_s", std::to_string(options.drain_delay_s)},
            {"drain_timeout_s", std::to_string(options.drain_timeout_s)}});
  if (options.drain_delay_s > 0) {
    WaitDrainDelay(signals, options.drain_delay_s, ctx, tls.get());
    LogEvent(LogLevel::kInfo, "drain delay over, closing listeners",
             {{"open_connections",
               std::to_string(OpenConnections(ctx) + lmtp.OpenConnections())}});
  }
  for (auto& sc : ctx.shards) {
    ShardContext* shard_ctx = sc.get();
    ctx.reactor->shard(sc->index).inbox().Post([shard_ctx] { shard_ctx->StopAccepting(); });
  }
  for (auto& ls : lmtp.shards) {
    LmtpShard* lmtp_shard = ls.get();
    ctx.reactor->shard(ls->index).inbox().Post([lmtp_shard] { lmtp_shard->StopAccepting(); });
  }
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(options.drain_timeout_s);
  while (OpenConnections(ctx) + lmtp.OpenConnections() > 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const uint64_t left = OpenConnections(ctx) + lmtp.OpenConnections();
  ctx.reactor->Stop();  // OnStop hooks close what is left, without committing
  ctx.reactor->Wait();
  metrics_http->reset();
  admin_api.reset();
  admin_socket.reset();  // waits for admin commands still running
  LogEvent(LogLevel::kInfo, "stopped", {{"closed_at_drain_timeout", std::to_string(left)}});
  return kExitOk;
}

}  // namespace posthaste::server
