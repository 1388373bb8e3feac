#include "server/route/route_service.h"

#include <signal.h>

#include <fstream>
#include <memory>
#include <ostream>
#include <utility>

#include "base/log.h"
#include "base/strings.h"
#include "server/http/http_server.h"
#include "server/placement/directory_cache.h"
#include "server/placement/etcd_client.h"
#include "server/route/auth_http.h"
#include "server/route/directory_file.h"
#include "server/route/haproxy_map.h"
#include "server/route/route_counters.h"
#include "server/route/socketmap_server.h"

namespace posthaste::server::route {
namespace {

constexpr size_t kTokenBytesMin = 16;
constexpr uint32_t kAuthHttpConnectionsMax = 1024;
constexpr absl::Duration kFirstLoadWait = absl::Seconds(10);

struct HostPortText {
  std::string host;
  uint16_t port = 0;
};

// "HOST:PORT" or "[V6]:PORT"; the host must be an IP literal (the listeners bind literals).
absl::StatusOr<HostPortText> SplitHostPort(const std::string& flag, const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::InvalidArgumentError("--" + flag + " must be HOST:PORT");
  }
  HostPortText out;
  out.host = text.substr(0, colon);
  if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  auto port = ParseDecimalAtMost(std::string_view(text).substr(colon + 1), 65535);
  if (!port.has_value()) return absl::InvalidArgumentError("--" + flag + ": bad port");
  out.port = static_cast<uint16_t>(*port);
  return out;
}

struct FlagSpec {
  std::string_view name;
  std::string RouteOptions::*text = nullptr;
  uint32_t RouteOptions::*number = nullptr;
  uint32_t min = 0;
  uint32_t max = 0;
  std::string_view help;
};

const std::vector<FlagSpec>& Flags() {
  static const std::vector<FlagSpec> flags = {
      {"directory_file", &RouteOptions::directory_file, nullptr, 0, 0,
       "FILE: the placement directory as JSON (server/route/directory_file.h)"},
      {"etcd_endpoints", &RouteOptions::etcd_endpoints, nullptr, 0, 0,
       "URL,...: etcd client URLs; the directory is read and watched there"},
      {"etcd_prefix", &RouteOptions::etcd_prefix, nullptr, 0, 0,
       "/PREFIX/: the directory's key prefix in etcd (default /posthaste/)"},
      {"auth_http_listen", &RouteOptions::auth_http_listen, nullptr, 0, 0,
       "HOST:PORT: nginx auth_http endpoint (also /metrics, /healthz, /readyz)"},
      {"admin_token_file", &RouteOptions::admin_token_file, nullptr, 0, 0,
       "FILE: the backends' admin API token, to verify passwords (with auth_http)"},
      {"socketmap_listen", &RouteOptions::socketmap_listen, nullptr, 0, 0,
       "HOST:PORT: Postfix socketmap for transport_maps"},
      {"socketmap_map_name", &RouteOptions::socketmap_map_name, nullptr, 0, 0,
       "NAME: the socketmap name answered (default transport)"},
      {"socketmap_recipient_delimiter", &RouteOptions::socketmap_recipient_delimiter, nullptr, 0, 0,
       "CHARS: Postfix's recipient_delimiter (default +; empty: none)"},
      {"haproxy_map", &RouteOptions::haproxy_map, nullptr, 0, 0,
       "FILE: HAProxy tenant map, rewritten when the directory changes"},
      {"haproxy_socket", &RouteOptions::haproxy_socket, nullptr, 0, 0,
       "PATH: HAProxy's runtime API socket; map changes are pushed there too (with --haproxy_map)"},
      {"metrics_listen", &RouteOptions::metrics_listen, nullptr, 0, 0,
       "HOST:PORT: a separate listener for /metrics, /healthz, /readyz"},
      {"verify_timeout_ms", nullptr, &RouteOptions::verify_timeout_ms, 100, 60'000,
       "deadline of one password verification by a backend (default 3000)"},
      {"auth_login_attempts_max", nullptr, &RouteOptions::auth_login_attempts_max, 1, 100,
       "attempts per client connection before nginx is told to close it (default 10)"},
      {"auth_http_workers", nullptr, &RouteOptions::auth_http_workers, 1,
       http::HttpServerOptions::kWorkersMax, "verifications running at once (default 8)"},
      {"socketmap_connections_max", nullptr, &RouteOptions::socketmap_connections_max, 1, 10'000,
       "open socketmap connections (default 64)"},
      {"socketmap_idle_timeout_s", nullptr, &RouteOptions::socketmap_idle_timeout_s, 1, 86'400,
       "idle socketmap connections are closed after this (default 300)"},
  };
  return flags;
}

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot read --admin_token_file " + path);
  std::string token;
  std::getline(in, token);
  if (!token.empty() && token.back() == '\r') token.pop_back();
  if (token.size() < kTokenBytesMin) {
    return absl::InvalidArgumentError("the token in " + path + " is too short");
  }
  return token;
}

// The answers the listener makes itself, in the auth_http shape (nginx reads only headers).
http::HttpResponse ListenerError(int status, std::string_view message) {
  http::HttpResponse r;
  r.status = status;
  r.content_type = "text/plain";
  r.body = std::string(message) + "\n";
  return r;
}

class RouteService {
 public:
  explicit RouteService(RouteOptions options) : options_(std::move(options)) {}

  absl::Status Start() {
    if (absl::Status loaded = LoadDirectory(); !loaded.ok()) return loaded;
    if (!options_.auth_http_listen.empty()) {
      auto token = ReadToken(options_.admin_token_file);
      if (!token.ok()) return token.status();
      verifier_ = HttpBackendVerifier(*std::move(token), options_.verify_timeout_ms);
      auto listen = SplitHostPort("auth_http_listen", options_.auth_http_listen);
      if (!listen.ok()) return listen.status();
      http::HttpServerOptions http = ListenerOptions("auth_http", *listen);
      // Every request comes from the few nginx proxies, one connection per login attempt: a
      // per-address limit would refuse logins under load. The total stays bounded.
      http.connections_per_ip_max = 0;
      http.connections_max = kAuthHttpConnectionsMax;
      http.workers = options_.auth_http_workers;
      http.worker_queue_max = options_.auth_http_workers * 4;
      AuthHttpOptions auth;
      auth.login_attempts_max = options_.auth_login_attempts_max;
      http.routes.push_back({"/", /*prefix=*/true, http::RunOn::kWorker,
                             [this, auth](const http::HttpRequest& request) {
                               return AnswerAuthHttp(request, *source_->Current(), verifier_, auth,
                                                     &counters_);
                             }});
      auto server = http::HttpServer::Start(std::move(http));
      if (!server.ok()) return server.status();
      auth_http_ = *std::move(server);
    }
    if (!options_.metrics_listen.empty()) {
      auto listen = SplitHostPort("metrics_listen", options_.metrics_listen);
      if (!listen.ok()) return listen.status();
      auto server = http::HttpServer::Start(ListenerOptions("route_metrics", *listen));
      if (!server.ok()) return server.status();
      metrics_ = *std::move(server);
    }
    if (!options_.socketmap_listen.empty()) {
      auto listen = SplitHostPort("socketmap_listen", options_.socketmap_listen);
      if (!listen.ok()) return listen.status();
      SocketmapServerOptions socketmap;
      socketmap.host = listen->host;
      socketmap.port = listen->port;
      socketmap.map_name = options_.socketmap_map_name;
      socketmap.recipient_delimiter = options_.socketmap_recipient_delimiter;
      socketmap.connections_max = options_.socketmap_connections_max;
      socketmap.idle_timeout_ms = options_.socketmap_idle_timeout_s * 1000;
      auto server = SocketmapServer::Start(std::move(socketmap), source_.get(), &counters_);
      if (!server.ok()) return server.status();
      socketmap_ = *std::move(server);
    }
    if (!options_.haproxy_map.empty()) {
      auto writer = HaproxyMapWriter::Start(options_.haproxy_map, source_.get(), &counters_,
                                            /*poll_interval_ms=*/200, options_.haproxy_socket);
      if (!writer.ok()) return writer.status();
      haproxy_ = *std::move(writer);
    }
    LogEvent(LogLevel::kInfo, "route listening",
             {{"auth_http", Where(options_.auth_http_listen, auth_http_ ? auth_http_->port() : 0)},
              {"socketmap", Where(options_.socketmap_listen, socketmap_ ? socketmap_->port() : 0)},
              {"metrics", Where(options_.metrics_listen, metrics_ ? metrics_->port() : 0)},
              {"haproxy_map", options_.haproxy_map.empty() ? "off" : options_.haproxy_map},
              {"directory_revision", std::to_string(source_->Current()->revision)}});
    return absl::OkStatus();
  }

  // --directory_file, or a DirectoryCache on --etcd_endpoints. The cache's first load is
  // waited for a bounded time only: without etcd the service still starts (not ready, every
  // answer a temporary failure) and picks the directory up once etcd answers.
  absl::Status LoadDirectory() {
    if (!options_.directory_file.empty()) {
      auto directory = FileDirectory::Load(options_.directory_file);
      if (!directory.ok()) return directory.status();
      file_directory_ = directory->get();
      source_ = *std::move(directory);
      return absl::OkStatus();
    }
    auto endpoints = placement::ParseEtcdEndpoints(options_.etcd_endpoints);
    if (!endpoints.ok()) return endpoints.status();
    auto cache = std::make_unique<placement::DirectoryCache>(
        placement::EtcdClientOptions{.endpoints = *std::move(endpoints)},
        placement::DirectoryCacheOptions{.prefix = options_.etcd_prefix});
    if (!cache->WaitLoaded(kFirstLoadWait)) {
      LogEvent(LogLevel::kWarning, "directory not loaded from etcd yet",
               {{"etcd_endpoints", options_.etcd_endpoints}});
    }
    directory_cache_ = cache.get();
    source_ = std::move(cache);
    return absl::OkStatus();
  }

  // SIGHUP: reads --directory_file again; a bad file keeps the current snapshot.
  void ReloadDirectory() {
    if (file_directory_ == nullptr) return;
    absl::Status reloaded = file_directory_->Reload();
    if (!reloaded.ok()) {
      LogEvent(LogLevel::kWarning, "directory file not reloaded", {{"error", reloaded.ToString()}});
      return;
    }
    LogEvent(LogLevel::kInfo, "directory file reloaded",
             {{"revision", std::to_string(source_->Current()->revision)}});
  }

  void Stop() {
    auth_http_.reset();
    metrics_.reset();
    socketmap_.reset();
    haproxy_.reset();
  }

 private:
  static std::string Where(const std::string& flag, uint16_t port) {
    if (flag.empty()) return "off";
    return flag.substr(0, flag.rfind(':')) + ":" + std::to_string(port);
  }

  // A listener with the operations routes; auth_http adds its own route after them.
  http::HttpServerOptions ListenerOptions(std::string name, const HostPortText& listen) {
    http::HttpServerOptions http;
    http.name = std::move(name);
    http.host = listen.host;
    http.port = listen.port;
    http.error_response = ListenerError;
    http.routes.push_back(
        {"/healthz", false, http::RunOn::kEventLoop, [](const http::HttpRequest&) {
           return http::HttpResponse{.status = 200, .content_type = "text/plain", .body = "ok\n"};
         }});
    http.routes.push_back(
        {"/readyz", false, http::RunOn::kEventLoop, [this](const http::HttpRequest&) {
           // Ready once a directory with at least one backend is loaded.
           const bool ready = !source_->Current()->backends.empty();
           return http::HttpResponse{.status = ready ? 200 : 503,
                                     .content_type = "text/plain",
                                     .body = ready ? "ready\n" : "no directory\n"};
         }});
    http.routes.push_back(
        {"/metrics", false, http::RunOn::kEventLoop, [this](const http::HttpRequest&) {
           return http::HttpResponse{
               .status = 200,
               .content_type = "text/plain; version=0.0.4",
               .body = RouteMetricsText(counters_, source_->stale(), source_->Current()->revision) +
                       DirectoryCacheMetricsText()};
         }});
    return http;
  }

  // The etcd cache's own counters (none with --directory_file).
  std::string DirectoryCacheMetricsText() const {
    if (directory_cache_ == nullptr) return "";
    const placement::DirectoryCacheStats stats = directory_cache_->stats();
    std::string out;
    auto row = [&out](std::string_view name, std::string_view type, std::string_view help,
                      uint64_t value) {
      out.append("# HELP ").append(name).append(" ").append(help).append("\n");
      out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
      out.append(name).append(" ").append(std::to_string(value)).append("\n");
    };
    row("posthaste_directory_revision", "gauge", "etcd revision of the cached directory",
        static_cast<uint64_t>(stats.revision));
    row("posthaste_directory_stale", "gauge", "1 while etcd cannot confirm the cache is current",
        stats.stale ? 1 : 0);
    row("posthaste_directory_reloads_total", "counter", "full loads of the directory from etcd",
        stats.reloads);
    row("posthaste_directory_watch_events_total", "counter", "key changes applied from the watch",
        stats.watch_events);
    row("posthaste_directory_watch_restarts_total", "counter", "watch streams reopened",
        stats.watch_restarts);
    row("posthaste_directory_errors_total", "counter", "failed etcd loads, watches and probes",
        stats.errors);
    row("posthaste_directory_bad_values_total", "counter", "directory values that did not decode",
        stats.bad_values);
    return out;
  }

  const RouteOptions options_;
  RouteCounters counters_;
  std::unique_ptr<placement::DirectorySource> source_;
  FileDirectory* file_directory_ = nullptr;  // source_ when it is a file; SIGHUP reloads it
  placement::DirectoryCache* directory_cache_ = nullptr;  // source_ when it is etcd
  BackendVerifier verifier_;
  std::unique_ptr<http::HttpServer> auth_http_;
  std::unique_ptr<http::HttpServer> metrics_;
  std::unique_ptr<SocketmapServer> socketmap_;
  std::unique_ptr<HaproxyMapWriter> haproxy_;
};

}  // namespace

absl::StatusOr<RouteOptions> ParseRouteOptions(const std::vector<std::string>& args) {
  RouteOptions options;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].rfind("--", 0) != 0) {
      return absl::InvalidArgumentError("unexpected argument " + args[i]);
    }
    const std::string name(FlagName(args[i]));
    const FlagSpec* spec = nullptr;
    for (const FlagSpec& f : Flags()) {
      if (f.name == name) spec = &f;
    }
    if (spec == nullptr) return absl::InvalidArgumentError("unknown flag --" + name);
    auto value = FlagValue(args, &i);
    if (!value.ok()) return value.status();
    if (spec->text != nullptr) {
      options.*(spec->text) = *value;
      continue;
    }
    auto number = ParseDecimalAtMost(*value, spec->max);
    if (!number.has_value() || *number < spec->min) {
      return absl::InvalidArgumentError("--" + name + " must be a number from " +
                                        std::to_string(spec->min) + " to " +
                                        std::to_string(spec->max));
    }
    options.*(spec->number) = static_cast<uint32_t>(*number);
  }
  if (options.directory_file.empty() == options.etcd_endpoints.empty()) {
    return absl::InvalidArgumentError("give one of --directory_file and --etcd_endpoints");
  }
  if (options.etcd_prefix.empty() || options.etcd_prefix.front() != '/' ||
      options.etcd_prefix.back() != '/') {
    return absl::InvalidArgumentError("--etcd_prefix must start and end with /");
  }
  if (!options.haproxy_socket.empty() && options.haproxy_map.empty()) {
    return absl::InvalidArgumentError("--haproxy_socket needs --haproxy_map");
  }
  if (options.auth_http_listen.empty() && options.socketmap_listen.empty() &&
      options.haproxy_map.empty()) {
    return absl::InvalidArgumentError(
        "nothing to do: give --auth_http_listen, --socketmap_listen or --haproxy_map");
  }
  if (!options.auth_http_listen.empty() && options.admin_token_file.empty()) {
    return absl::InvalidArgumentError("--auth_http_listen needs --admin_token_file");
  }
  return options;
}

std::string RouteUsage() {
  std::string usage =
      "usage: posthaste route (--directory_file=FILE | --etcd_endpoints=URL,...) [flags]\n";
  for (const FlagSpec& f : Flags()) {
    usage += "  --" + std::string(f.name) + "  " + std::string(f.help) + "\n";
  }
  return usage;
}

int RunRoute(const std::vector<std::string>& args, std::ostream& err) {
  for (const std::string& arg : args) {
    if (arg == "--help" || arg == "-h") {
      err << RouteUsage();
      return 0;
    }
  }
  auto options = ParseRouteOptions(args);
  if (!options.ok()) {
    err << "posthaste: route: " << options.status().message() << "\n" << RouteUsage();
    return 2;
  }
  // Signals are taken by sigwait here; the threads started below inherit the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  RouteService service(*std::move(options));
  if (absl::Status started = service.Start(); !started.ok()) {
    err << "posthaste: route: " << started.message() << "\n";
    service.Stop();
    return 1;
  }
  int sig = 0;
  while (sigwait(&signals, &sig) == 0 && sig != SIGTERM && sig != SIGINT) {
    if (sig == SIGHUP) service.ReloadDirectory();
  }
  LogEvent(LogLevel::kInfo, "route stopping", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  service.Stop();
  return 0;
}

}  // namespace posthaste::server::route
