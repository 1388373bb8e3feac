#include "server/serve.h"

#include <openssl/mem.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ostream>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "base/malloc_arenas.h"
#include "base/strings.h"
#include "metrics/tenant_series.h"
#include "server/admin/admin_api.h"
#include "server/admin/admin_http.h"
#include "server/admin/admin_socket.h"
#include "server/auth/ldap_config.h"
#include "server/auth/ldap_counters.h"
#include "server/auth/ldap_passdb.h"
#include "server/auth/oauth_tenants.h"
#include "server/auth/sasl_mechanisms.h"
#include "server/counters.h"
#include "server/handoff/systemd_fd_store.h"
#include "server/live_sessions.h"
#include "server/lmtp_service/lmtp_shard.h"
#include "server/metrics_gather.h"
#include "server/placement/backend_registration.h"
#include "server/pop3_service/auth_service.h"
#include "server/pop3_service/pop3_shard.h"
#include "server/pop3_service/tenant_policies.h"
#include "server/reactor/net.h"
#include "server/reactor/shard.h"
#include "server/serve_options.h"
#include "server/shard/service_shard.h"
#include "storage/mail_store.h"
#include "tls/ktls.h"
#include "tls/tls_context.h"

namespace posthaste::server {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
// SIGUSR2: drained and stopped so that the service manager starts it again (the systemd unit
// lists this status in RestartForceExitStatus=), keeping the auth cache (below). EX_TEMPFAIL.
constexpr int kExitRestart = 75;
// The systemd file descriptor store name of the auth cache handed to the next process.
constexpr std::string_view kAuthCacheFdName = "posthaste-auth-cache";
constexpr size_t kAuthCacheHandoffBytesMax = size_t{1} << 30;

std::string_view StopSignalName(int sig) {
  return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "SIGUSR2";
}
// How long holding an account for a move waits for its POP3 sessions to end: one message to
// the user's owner shard and one to the holder's, so far more than a busy shard needs. A hold
// not answered by then gets 503 and the mover asks again.
constexpr absl::Duration kEndSessionsForMoveWait = absl::Seconds(10);

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

uint64_t OpenConnections(Pop3Service& ctx) {
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
  if (!options.proxy_networks.empty()) {
    o.from_proxy = [networks = options.proxy_networks](const uint8_t* addr16) {
      for (const Cidr& cidr : networks) {
        if (CidrContains(cidr, addr16)) return true;
      }
      return false;
    };
    o.proxy_header_timeout_ns = uint64_t{options.proxy_header_timeout_ms} * 1'000'000;
  }
  return o;
}

// Closes every listener made so far (start-up failed).
void CloseListeners(Pop3Service& ctx) {
  for (auto& sc : ctx.shards) {
    sc->listener.Close();
    sc->pop3s_listener.Close();
  }
}

// Reloads the certificates (SIGHUP or changed files) and says what happened. Sessions keep the
// snapshot they started with; a broken file keeps the previous certificate (TlsContextSet).
void ReloadCertificates(ProcessCounters& process, TlsContextSet& tls, std::string_view trigger) {
  TlsReloadReport report;
  absl::Status status = tls.Reload(&report);
  (status.ok() ? process.tls_reloads_ok : process.tls_reloads_failed).fetch_add(1);
  LogEvent(status.ok() ? LogLevel::kInfo : LogLevel::kWarning, "tls certificates reloaded",
           {{"trigger", std::string(trigger)},
            {"loaded", std::to_string(report.loaded)},
            {"unchanged", std::to_string(report.unchanged)},
            {"kept_old", std::to_string(report.kept_old)},
            {"removed", std::to_string(report.removed)},
            {"skipped", std::to_string(report.skipped)},
            {"error", status.ok() ? std::string() : std::string(status.message())}});
}

// Re-reads the OAuth tenants' JWKS files that changed and says what happened; a file that no
// longer parses keeps the tenant's previous keys (OAuthRegistry).
void ReloadOAuthKeys(auth::OAuthRegistry& oauth, std::string_view trigger) {
  const auth::OAuthReloadReport report = oauth.ReloadChanged();
  if (report.reloaded.empty() && report.errors.empty()) return;
  LogEvent(report.errors.empty() ? LogLevel::kInfo : LogLevel::kWarning, "oauth keys reloaded",
           {{"trigger", std::string(trigger)},
            {"reloaded", absl::StrJoin(report.reloaded, ",")},
            {"errors", absl::StrJoin(report.errors, "; ")}});
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
void WaitDrainDelay(const sigset_t& signals, uint32_t delay_s, ProcessCounters& process,
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
    if (sig == SIGHUP && tls != nullptr) ReloadCertificates(process, *tls, "SIGHUP");
  }
}

// The maildrop lock as the retention job takes it: at the user's owner shard, while the reactor
// runs (before and after, nothing is held and every mailbox counts as in use).
class ServerMaildropGuard final : public retention::MailboxGuard {
 public:
  explicit ServerMaildropGuard(Pop3Service& service) : service_(service) {}
  void SetReactor(reactor::Reactor* reactor) { reactor_.store(reactor); }

  bool TryHold(const std::string& account) override {
    reactor::Reactor* reactor = reactor_.load();
    if (reactor == nullptr) return false;
    return HoldMaildropForMaintenance(service_, *reactor, account, kHoldWait);
  }
  void Release(const std::string& account) override {
    reactor::Reactor* reactor = reactor_.load();
    if (reactor != nullptr) ReleaseMaildropForMaintenance(service_, *reactor, account);
  }

 private:
  static constexpr absl::Duration kHoldWait = absl::Seconds(5);
  Pop3Service& service_;
  std::atomic<reactor::Reactor*> reactor_{nullptr};
};

// One `posthaste serve` run, in the order it happens: open the store, TLS and the listeners,
// start the shards and the HTTP endpoints, wait for a stop signal, drain, stop. Members are
// declared in the order they are built, so they are destroyed in reverse.
class Server {
 public:
  Server(ServeOptions options, std::ostream& err, AdminCommandRunner admin_commands)
      : err_(err), admin_commands_(std::move(admin_commands)) {
    ctx_.options = std::move(options);
  }

  int Run() {
    ApplyDefaults();
    BlockSignals();
    if (!OpenStore() || !StartTls() || !MakeShards() || !OpenPop3Listeners() ||
        !MakeRetentionJob() || !StartAdminSocket() || !StartLmtp()) {
      CloseListeners(ctx_);
      lmtp_.CloseListeners();
      return kExitFailure;
    }
    if (!StartReactor()) return kExitFailure;
    if (!StartHttp()) {
      reactor_->Stop();
      reactor_->Wait();
      return kExitFailure;
    }
    LogListening();
    StartRetention();
    if (!StartRegistration()) {
      StopRetention();
      reactor_->Stop();
      reactor_->Wait();
      return kExitFailure;
    }
    const int sig = WaitForStopSignal();
    Drain(sig);
    HandOffAuthCache();
    return sig == SIGUSR2 ? kExitRestart : kExitOk;
  }

 private:
  bool Fail(absl::string_view what) {
    err_ << "posthaste: serve: " << what << "\n";
    return false;
  }

  void ApplyDefaults() {
    ServeOptions& options = ctx_.options;
    SetLogFormat(options.log_format == "json" ? LogFormat::kJson : LogFormat::kText);
    if (options.hostname.empty()) {
      char name[256] = {};
      gethostname(name, sizeof(name) - 1);
      options.hostname = name[0] != '\0' ? name : "localhost";
    }
    if (options.shards == 0) options.shards = AllowedCpus();
    if (options.offload_threads == 0) {
      options.offload_threads = std::max<uint32_t>(2, options.shards);
    }
    // Before any thread starts: threads take their arena at their first allocation.
    if (options.malloc_arenas == 0) options.malloc_arenas = std::max<uint32_t>(2, options.shards);
    LimitMallocArenas(static_cast<int>(options.malloc_arenas));
    RaiseFileLimit();
  }

  // Signals are taken by sigwait on this thread; every thread started later inherits the mask.
  void BlockSignals() {
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGTERM);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGHUP);  // reloads certificates
    sigaddset(&signals_, SIGUSR2);  // drains and exits for a restart (kExitRestart)
    pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
    signal(SIGPIPE, SIG_IGN);
  }

  bool OpenStore() {
    const ServeOptions& options = ctx_.options;
    storage::StoreOptions store_options;
    store_options.data_dir = options.data_dir;
    store_options.create_if_missing = true;
    auto store = storage::MailStore::Open(store_options);
    if (!store.ok()) return Fail(store.status().message());
    store_ = *std::move(store);
    ctx_.store = store_.get();
    if (absl::Status loaded = tenant_policies_.Load(*ctx_.store); !loaded.ok()) {
      return Fail(absl::StrCat("tenant policies: ", loaded.message()));
    }
    ctx_.tenant_policies = &tenant_policies_;
    ChooseTenantLabels();
    if (!options.ldap_config.empty()) {
      absl::StatusOr<auth::LdapConfig> ldap = auth::LoadLdapConfigFile(options.ldap_config);
      if (!ldap.ok()) return Fail(absl::StrCat("ldap_config: ", ldap.status().message()));
      ldap_ = std::make_unique<auth::LdapDirectory>(*std::move(ldap));
    }
    auth_ = std::make_unique<AuthService>(
        ctx_.store, AuthServiceOptions{.cache_ttl = absl::Seconds(options.auth_cache_ttl_s),
                                       .hash_setting = options.password_scheme,
                                       .rehash_at_login = options.rehash_at_login,
                                       .ldap = ldap_.get()});
    ctx_.auth = auth_.get();
    if (options.auth_cache_handoff) TakeAuthCache();
    // Fake SCRAM salts must not change across restarts (a changing salt tells a prober the
    // user does not exist), so the secret they come from lives beside the store.
    absl::StatusOr<std::string> secret =
        auth::LoadOrCreateSaslSecret(options.data_dir + "/sasl-secret");
    if (!secret.ok()) return Fail(secret.status().message());
    ctx_.sasl.scram_secret = *std::move(secret);
    ctx_.sasl.hostname = options.hostname;
    if (!options.oauth_config.empty()) {
      absl::StatusOr<std::vector<auth::OAuthTenantConfig>> tenants =
          auth::LoadOAuthConfigFile(options.oauth_config);
      if (!tenants.ok()) return Fail(tenants.status().message());
      const size_t count = tenants->size();
      absl::StatusOr<std::unique_ptr<auth::OAuthRegistry>> registry =
          auth::OAuthRegistry::Create(*std::move(tenants));
      if (!registry.ok()) return Fail(registry.status().message());
      oauth_ = *std::move(registry);
      ctx_.sasl.oauth = oauth_.get();
      LogEvent(LogLevel::kInfo, "oauth tenants loaded",
               {{"config", options.oauth_config}, {"tenants", std::to_string(count)}});
    }
    return true;
  }

  // Metric labels for the largest tenants: by accounts at start-up, then by sessions
  // (RecomputeTenantLabels); the rest are "other".
  void ChooseTenantLabels() {
    absl::flat_hash_map<std::string, uint64_t> per_domain;
    if (ctx_.options.metrics_max_tenants > 0) {
      auto accounts = ctx_.store->ListAccounts();
      if (accounts.ok()) {
        for (const storage::AccountSummary& a : *accounts) {
          ++per_domain[absl::AsciiStrToLower(a.address.substr(a.address.rfind('@') + 1))];
        }
      } else {
        LogEvent(LogLevel::kWarning, "listing tenants for metric labels failed",
                 {{"error", accounts.status().ToString()}});
      }
    }
    tenant_ranking_ = std::make_unique<metrics::TenantLabelRanking>(
        std::move(per_domain), ctx_.options.metrics_max_tenants);
    tenant_labels_.Publish(tenant_ranking_->Rank());
  }

  // Every --metrics_tenants_recompute_s: adds the shards' logins since the last time to the
  // ranking and publishes the labels when the set changed (shards take them up at their next
  // login or scrape). Blocks up to ShardMetricsGather::kWait for the shards' counts.
  void RecomputeTenantLabels() {
    if (tenant_logins_ == nullptr || ctx_.options.metrics_max_tenants == 0) return;
    tenant_ranking_->AddLogins(tenant_logins_->Take());
    metrics::TenantLabels labels = tenant_ranking_->Rank();
    const auto current = tenant_labels_.Current();
    if (labels.labels() == current->labels()) return;
    std::vector<std::string> added;
    for (size_t slot = metrics::TenantLabels::kNone + 1; slot < labels.size(); ++slot) {
      const std::string& label = labels.labels()[slot];
      if (current->SlotOf(label) == metrics::TenantLabels::kOther) added.push_back(label);
    }
    LogEvent(
        LogLevel::kInfo, "tenant metric labels changed",
        {{"tenants", std::to_string(labels.size() - 2)}, {"added", absl::StrJoin(added, ",")}});
    tenant_labels_.Publish(std::move(labels));
  }

  // STLS and the pop3s listener only with a certificate.
  bool StartTls() {
    const ServeOptions& options = ctx_.options;
    if (!options.tls_configured()) {
      LogEvent(LogLevel::kWarning,
               "tls off: no --tls_cert/--tls_key, so STLS is not offered and no pop3s listener "
               "is opened; plaintext logins are refused except from loopback and for tenants "
               "with plaintext_auth=allow",
               {{"plaintext_requires_tls", options.plaintext_requires_tls ? "true" : "false"}});
      return true;
    }
    auto created = TlsContextSet::Create({.cert_path = options.tls_cert,
                                          .key_path = options.tls_key,
                                          .cert_dir = options.tls_cert_dir});
    if (!created.ok()) return Fail(absl::StrCat("tls: ", created.status().message()));
    tls_ = *std::move(created);
    ktls_ = ProbeKernelTls();
    LogEvent(LogLevel::kInfo, "tls ready",
             {{"certificates", std::to_string(tls_->Current()->by_name.size() + 1)},
              {"cert_dir", options.tls_cert_dir},
              {"kernel_tls", ktls_.reason},
              {"data_path", ktls_.available ? "kernel" : "userspace"}});
    return true;
  }

  // One protocol-neutral shard per reactor shard; the services' per-shard state sits beside it.
  bool MakeShards() {
    shards_ = std::make_unique<ServiceShards>(
        ServiceShardOptions{
            .tls = tls_.get(),
            .ktls = ktls_,
            .tenant_labels = &tenant_labels_,
            // Labels given over the run: a ranking that changes keeps its old series.
            .tenant_series_max = 2 + 4 * size_t{ctx_.options.metrics_max_tenants}},
        ctx_.options.shards);
    return true;
  }

  // One shard's share of a listening address: the first shard's decides the port (0: the
  // kernel picks), the others join it.
  bool OpenListener(uint32_t shard, const HostPort& address, uint16_t* port, int* fd_out) {
    auto fd = reactor::CreateListener({.host = address.host,
                                       .port = shard == 0 ? address.port : *port,
                                       .join_existing_group = shard > 0});
    if (!fd.ok()) {
      return Fail(absl::StrCat("cannot listen on ", HostPortText(address.host, address.port),
                               ": ", fd.status().message()));
    }
    if (shard == 0) {
      auto local = reactor::LocalPort(*fd);
      if (!local.ok()) {
        close(*fd);
        return Fail(local.status().message());
      }
      *port = *local;
    }
    *fd_out = *fd;
    return true;
  }

  bool OpenPop3Listeners() {
    const ServeOptions& options = ctx_.options;
    for (uint32_t i = 0; i < options.shards; ++i) {
      int fd = -1;
      if (!OpenListener(i, options.pop3_listen, &ctx_.pop3_port, &fd)) return false;
      auto sc = std::make_unique<Pop3Shard>(ctx_, (*shards_)[i]);
      sc->listener.set_fd(fd);
      ctx_.shards.push_back(std::move(sc));
      if (!options.pop3s_enabled) continue;
      if (!OpenListener(i, options.pop3s_listen, &ctx_.pop3s_port, &fd)) return false;
      ctx_.shards.back()->pop3s_listener.set_fd(fd);
    }
    return true;
  }

  // The EXPIRE n retention job: made before the admin socket (`store expire` runs its passes),
  // its thread started once the reactor runs (it takes maildrop locks through the shards).
  bool MakeRetentionJob() {
    retention_guard_ = std::make_unique<ServerMaildropGuard>(ctx_);
    retention_job_ = std::make_unique<retention::RetentionJob>(
        *ctx_.store, retention_guard_.get(),
        retention::RetentionOptions{
            .messages_per_second = ctx_.options.retention_messages_per_second,
            .cursor_name = "retention"},
        &retention_stats_);
    return true;
  }

  void StartRetention() {
    retention_guard_->SetReactor(reactor_.get());
    if (ctx_.options.retention_period_s == 0) return;
    retention_thread_ = std::make_unique<retention::RetentionThread>(
        *retention_job_, absl::Seconds(ctx_.options.retention_period_s));
    retention_thread_->Start();
  }

  // Before the shards stop: a pass in progress ends at its next batch (its cursor kept).
  void StopRetention() {
    if (retention_thread_ != nullptr) retention_thread_->Stop();
    retention_guard_->SetReactor(nullptr);
  }

  // Online administration: the CLI's commands reach this store through DIR/admin.sock.
  bool StartAdminSocket() {
    if (!admin_commands_) return true;
    storage::MailStore* store = ctx_.store;
    TenantPolicyTable* policies = &tenant_policies_;
    retention::RetentionJob* retention = retention_job_.get();
    auto started = admin::AdminSocketServer::Start(
        ctx_.options.data_dir, [commands = admin_commands_, store, policies,
                                retention](const admin::AdminRequest& request) {
          admin::AdminResponse response = commands(request, *store, retention);
          // Before the answer: once the CLI returns, new logins see the change.
          RefreshTenantPolicies(*policies, *store, "admin socket");
          return response;
        });
    if (!started.ok()) return Fail(started.status().message());
    admin_socket_ = *std::move(started);
    return true;
  }

  bool StartLmtp() {
    if (!ctx_.options.lmtp_enabled) return true;
    absl::Status listening = lmtp_.Listen(LmtpOptionsOf(ctx_.options), *ctx_.store);
    return listening.ok() || Fail(listening.message());
  }

  bool StartReactor() {
    const ServeOptions& options = ctx_.options;
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
      CloseListeners(ctx_);
      lmtp_.CloseListeners();
      return Fail(reactor.status().message());
    }
    reactor_ = *std::move(reactor);
    absl::Status started = reactor_->Start([this](reactor::Shard& shard) {
      ServiceShard& service_shard = (*shards_)[shard.index()];
      service_shard.Start(shard);
      if (shard.index() == 0) ring_mode_ = std::string(shard.ring().setup_mode_name());
      ctx_.shards[shard.index()]->StartListening();
      if (!lmtp_.shards.empty()) lmtp_.shards[shard.index()]->StartListening(service_shard);
    });
    return started.ok() || Fail(started.message());
  }

  // The metrics and health endpoint, and the admin API when asked for.
  bool StartHttp() {
    const ServeOptions& options = ctx_.options;
    shard_metrics_ = std::make_unique<ShardMetricsGather>(
        reactor_.get(), [this](uint32_t i) { return CopyShardMetrics((*shards_)[i]); });
    tenant_logins_ = std::make_unique<TenantLoginGather>(reactor_.get(), shards_.get());
    auto metrics_http = admin::AdminHttp::Start(
        options, {.shards = [gather = shard_metrics_.get()](
                                std::vector<metrics::ShardCopy>* out) { return gather->Copy(out); },
                  .process_counters =
                      [this] {
                        std::vector<metrics::CounterBlockCopy> blocks{
                            metrics::CounterBlockCopy::OfAtomics(ProcessCounterTable(), process_),
                            metrics::CounterBlockCopy::OfAtomics(OffloadPoolCounterTable(),
                                                                 reactor_->offload().stats())
                                .WithLabel("pool", "cpu"),
                            metrics::CounterBlockCopy::OfAtomics(OffloadPoolCounterTable(),
                                                                 reactor_->offload_io().stats())
                                .WithLabel("pool", "io"),
                            metrics::CounterBlockCopy::OfAtomics(retention::RetentionCounterTable(),
                                                                 retention_stats_)};
                        if (ldap_ != nullptr) {
                          for (const auto& passdb : ldap_->passdbs()) {
                            blocks.push_back(metrics::CounterBlockCopy::OfAtomics(
                                                 auth::LdapCounterTable(), passdb->stats())
                                                 .WithLabel("tenant", passdb->config().domain));
                          }
                        }
                        return blocks;
                      },
                  .store = ctx_.store,
                  .draining = &draining_});
    if (!metrics_http.ok()) return Fail(metrics_http.status().message());
    metrics_http_ = *std::move(metrics_http);
    if (options.admin_listen.empty()) return true;
    live_sessions_ = std::make_unique<LiveSessions>(&ctx_, reactor_.get());
    admin::AdminApiHooks hooks;
    // /api/v1/auth/verify (for `posthaste route`) checks logins exactly as POP3 does.
    hooks.verify_password = [this](std::string_view user, std::string_view password) {
      const AuthVerdict verdict = auth_->Verify(user, password);
      admin::PasswordCheck check;
      check.address = verdict.address;
      switch (verdict.code) {
        case AuthVerdict::Code::kOk:
          check.result = admin::PasswordCheck::Result::kOk;
          break;
        case AuthVerdict::Code::kBadCredentials:
          check.result = admin::PasswordCheck::Result::kBadCredentials;
          break;
        case AuthVerdict::Code::kTempFailure:
          check.result = admin::PasswordCheck::Result::kTempFailure;
          break;
      }
      return check;
    };
    // A held account's POP3 sessions end before the hold is answered (live moves).
    hooks.end_sessions = [this](std::string_view account) {
      return EndPop3SessionsForMove(ctx_, *reactor_, account, kEndSessionsForMoveWait);
    };
    hooks.sessions = live_sessions_.get();
    // Before the answer, as for the admin socket: new logins see a tenant change at once.
    hooks.tenants_changed = [this] {
      RefreshTenantPolicies(tenant_policies_, *ctx_.store, "admin api");
    };
    auto api = admin::AdminApi::Start(options, ctx_.store, std::move(hooks));
    if (!api.ok()) return Fail(api.status().message());
    admin_api_ = *std::move(api);
    metrics_http_->AddListenerStats("admin_api", &admin_api_->http_stats());
    return true;
  }

  // The one line the integration tests and operators read the ports from.
  void LogListening() {
    const ServeOptions& options = ctx_.options;
    LogEvent(LogLevel::kInfo, "listening",
             {{"pop3", HostPortText(options.pop3_listen.host, ctx_.pop3_port)},
              {"pop3s", options.pop3s_enabled
                            ? HostPortText(options.pop3s_listen.host, ctx_.pop3s_port)
                            : std::string("off")},
              {"stls", tls_ != nullptr ? "on" : "off"},
              {"metrics", HostPortText(options.metrics_listen.host, metrics_http_->port())},
              {"lmtp", options.lmtp_enabled ? HostPortText(options.lmtp_listen.host, lmtp_.port)
                                            : std::string("off")},
              {"admin_api", admin_api_ ? HostPortText(ParseHostPort(options.admin_listen)->host,
                                                      admin_api_->port())
                                       : std::string("off")},
              {"shards", std::to_string(options.shards)},
              {"ring", ring_mode_},
              {"data_dir", options.data_dir}});
  }

  // With --etcd_endpoints: the backend's entry in the placement directory, written (under a
  // lease, from the registration's own thread) once the listeners are up, withdrawn first
  // thing in the drain.
  bool StartRegistration() {
    const ServeOptions& options = ctx_.options;
    if (options.etcd_endpoints.empty()) return true;
    auto endpoints = placement::ParseEtcdEndpoints(options.etcd_endpoints);
    if (!endpoints.ok()) {
      return Fail(absl::StrCat("--etcd_endpoints: ", endpoints.status().message()));
    }
    placement::BackendEndpoint self{
        .name = options.backend_name.empty() ? options.hostname : options.backend_name,
        .ip = options.advertise_ip,
        .pop3_port = ctx_.pop3_port,
        .pop3s_port = options.pop3s_enabled ? ctx_.pop3s_port : uint16_t{0},
        .lmtp_port = options.lmtp_enabled ? lmtp_.port : uint16_t{0},
        .admin_port = admin_api_ ? admin_api_->port() : uint16_t{0}};
    registration_ = std::make_unique<placement::BackendRegistration>(
        placement::EtcdClientOptions{.endpoints = *std::move(endpoints)},
        placement::BackendRegistrationOptions{
            .prefix = options.etcd_prefix,
            .backend = self,
            .ttl_s = static_cast<int64_t>(options.etcd_lease_ttl_s)});
    registration_->Start();
    return true;
  }

  // The main thread waits for signals; with TLS it also checks the certificate files (a
  // Kubernetes Secret update swaps the `..data` symlink: new inodes) and rotates ticket keys.
  // Returns SIGTERM, SIGINT or SIGUSR2.
  int WaitForStopSignal() {
    uint64_t waited_s = 0;
    for (;;) {
      timespec tick{1, 0};
      siginfo_t info;
      const int sig = sigtimedwait(&signals_, &info, &tick);
      if (sig == SIGHUP) {
        if (oauth_ != nullptr) ReloadOAuthKeys(*oauth_, "SIGHUP");
        if (tls_ != nullptr) {
          ReloadCertificates(process_, *tls_, "SIGHUP");
        } else {
          LogEvent(LogLevel::kInfo, "SIGHUP: no certificates configured, nothing to reload");
        }
        continue;
      }
      if (sig == SIGTERM || sig == SIGINT || sig == SIGUSR2) return sig;
      RefreshTenantPolicies(tenant_policies_, *ctx_.store, "periodic check");
      ++waited_s;
      const uint32_t recompute_s = ctx_.options.metrics_tenants_recompute_s;
      if (recompute_s > 0 && waited_s % recompute_s == 0) RecomputeTenantLabels();
      const uint32_t check_s = ctx_.options.tls_reload_check_s;
      const bool check_files = check_s > 0 && waited_s % check_s == 0;
      if (check_files && oauth_ != nullptr) ReloadOAuthKeys(*oauth_, "files changed");
      if (tls_ == nullptr) continue;
      if (check_files && tls_->NeedsReload()) {
        ReloadCertificates(process_, *tls_, "files changed");
      }
      if (tls_->MaybeRotateTicketKeys(absl::Now())) {
        LogEvent(LogLevel::kInfo, "tls ticket keys rotated");
      }
    }
  }

  // The auth cache the previous process left in systemd's descriptor store, if any
  // (server/handoff/systemd_fd_store.h): the users it verified need no cold login now.
  void TakeAuthCache() {
    absl::StatusOr<std::optional<std::string>> blob =
        handoff::TakeBlob(kAuthCacheFdName, kAuthCacheHandoffBytesMax);
    if (!blob.ok()) {
      LogEvent(LogLevel::kWarning, "auth cache hand-over unreadable, starting cold",
               {{"error", std::string(blob.status().message())}});
      return;
    }
    if (!blob->has_value()) return;
    absl::StatusOr<size_t> taken = auth_->ImportCacheFromHandoff(**blob);
    OPENSSL_cleanse((*blob)->data(), (*blob)->size());
    if (!taken.ok()) {
      LogEvent(LogLevel::kWarning, "auth cache hand-over refused, starting cold",
               {{"error", std::string(taken.status().message())}});
      return;
    }
    LogEvent(LogLevel::kInfo, "auth cache taken over", {{"entries", std::to_string(*taken)}});
  }

  // After the drain (no verification runs any more): the cache to systemd's descriptor store
  // for the next process, when systemd listens.
  void HandOffAuthCache() {
    if (!ctx_.options.auth_cache_handoff || !handoff::NotifySocketPresent()) return;
    std::string blob = auth_->ExportCacheForHandoff();
    const absl::Status stored = handoff::StoreBlob(kAuthCacheFdName, blob);
    OPENSSL_cleanse(blob.data(), blob.size());
    if (!stored.ok()) {
      LogEvent(LogLevel::kWarning, "auth cache not handed over",
               {{"error", std::string(stored.message())}});
      return;
    }
    LogEvent(LogLevel::kInfo, "auth cache handed over", {{"bytes", std::to_string(blob.size())}});
  }

  uint64_t OpenConnectionsNow() { return OpenConnections(ctx_) + lmtp_.OpenConnections(); }

  // /readyz turns 503, the drain delay passes, the listeners close, sessions get up to
  // --drain_timeout_s to finish, then the shards stop (what is left is closed without commit).
  void Drain(int sig) {
    const ServeOptions& options = ctx_.options;
    draining_.store(true);
    // Proxies stop choosing this backend before its listeners close.
    if (registration_ != nullptr) registration_->Withdraw().IgnoreError();
    LogEvent(LogLevel::kInfo, "draining",
             {{"signal", std::string(StopSignalName(sig))},
              {"open_connections", std::to_string(OpenConnectionsNow())},
              {"drain_delay_s", std::to_string(options.drain_delay_s)},
              {"drain_timeout_s", std::to_string(options.drain_timeout_s)}});
    if (options.drain_delay_s > 0) {
      WaitDrainDelay(signals_, options.drain_delay_s, process_, tls_.get());
      LogEvent(LogLevel::kInfo, "drain delay over, closing listeners",
               {{"open_connections", std::to_string(OpenConnectionsNow())}});
    }
    for (auto& sc : ctx_.shards) {
      Pop3Shard* shard_ctx = sc.get();
      reactor_->shard(sc->index).inbox().Post([shard_ctx] { shard_ctx->StopAccepting(); });
    }
    for (auto& ls : lmtp_.shards) {
      LmtpShard* lmtp_shard = ls.get();
      reactor_->shard(ls->index).inbox().Post([lmtp_shard] { lmtp_shard->StopAccepting(); });
    }
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(options.drain_timeout_s);
    while (OpenConnectionsNow() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const uint64_t left = OpenConnectionsNow();
    StopRetention();
    reactor_->Stop();  // OnStop hooks close what is left, without committing
    reactor_->Wait();
    metrics_http_.reset();
    admin_api_.reset();
    admin_socket_.reset();  // waits for admin commands still running
    LogEvent(LogLevel::kInfo, "stopped", {{"closed_at_drain_timeout", std::to_string(left)}});
  }

  std::ostream& err_;
  const AdminCommandRunner admin_commands_;
  sigset_t signals_;
  // Process-wide counters, e.g. certificate reloads (main thread writes; the HTTP thread reads).
  ProcessCounters process_;
  std::atomic<bool> draining_{false};  // set once by the main thread; /readyz reads it
  // The tenant metric labels the shards read (declared before them) and how they are chosen.
  metrics::TenantLabelTable tenant_labels_;
  std::unique_ptr<metrics::TenantLabelRanking> tenant_ranking_;
  // One protocol-neutral shard per reactor shard: outlives the services' per-shard state and
  // the reactor (declared before both).
  std::unique_ptr<ServiceShards> shards_;
  Pop3Service ctx_;
  std::unique_ptr<storage::MailStore> store_;
  TenantPolicyTable tenant_policies_;
  std::unique_ptr<auth::LdapDirectory> ldap_;  // before auth_, which uses it
  std::unique_ptr<AuthService> auth_;
  std::unique_ptr<auth::OAuthRegistry> oauth_;  // null without --oauth_config
  std::unique_ptr<TlsContextSet> tls_;
  KtlsCapability ktls_;
  // The retention job: its counters and lock outlive the admin socket and the thread that use
  // them (declared before both).
  retention::RetentionStats retention_stats_;
  std::unique_ptr<ServerMaildropGuard> retention_guard_;
  std::unique_ptr<retention::RetentionJob> retention_job_;
  std::unique_ptr<admin::AdminSocketServer> admin_socket_;
  LmtpService lmtp_;
  std::unique_ptr<reactor::Reactor> reactor_;
  std::string ring_mode_;
  std::unique_ptr<ShardMetricsGather> shard_metrics_;
  std::unique_ptr<TenantLoginGather> tenant_logins_;
  std::unique_ptr<admin::AdminHttp> metrics_http_;
  std::unique_ptr<LiveSessions> live_sessions_;  // the admin API's; outlived by the reactor
  std::unique_ptr<admin::AdminApi> admin_api_;
  std::unique_ptr<placement::BackendRegistration> registration_;
  std::unique_ptr<retention::RetentionThread> retention_thread_;  // stopped in Drain
};

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
  Server server(*std::move(parsed), err, std::move(admin_commands));
  return server.Run();
}

}  // namespace posthaste::server
