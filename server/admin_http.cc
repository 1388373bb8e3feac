#include "server/admin_http.h"

#include <CivetServer.h>

#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/strings.h"

namespace posthaste::server {
namespace {

constexpr auto kScrapeWait = std::chrono::seconds(2);

void Reply(mg_connection* conn, int code, std::string_view reason, std::string_view content_type,
           std::string_view body) {
  mg_printf(conn,
            "HTTP/1.1 %d %.*s\r\nContent-Type: %.*s\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            code, static_cast<int>(reason.size()), reason.data(),
            static_cast<int>(content_type.size()), content_type.data(), body.size());
  mg_write(conn, body.data(), body.size());
}

class Handler : public CivetHandler {
 public:
  using Fn = bool (*)(ServerContext*, mg_connection*);
  Handler(ServerContext* ctx, Fn fn) : ctx_(ctx), fn_(fn) {}
  bool handleGet(CivetServer*, mg_connection* conn) override { return fn_(ctx_, conn); }

 private:
  ServerContext* ctx_;
  Fn fn_;
};

bool Healthz(ServerContext*, mg_connection* conn) {
  Reply(conn, 200, "OK", "text/plain", "ok\n");
  return true;
}

bool Readyz(ServerContext* ctx, mg_connection* conn) {
  if (ctx->draining.load()) {
    Reply(conn, 503, "Service Unavailable", "text/plain", "draining\n");
  } else {
    Reply(conn, 200, "OK", "text/plain", "ready\n");
  }
  return true;
}

bool Metrics(ServerContext* ctx, mg_connection* conn) {
  Reply(conn, 200, "OK", "text/plain; version=0.0.4", AdminHttp::MetricsText(ctx));
  return true;
}

void Add(ShardStats& sum, const ShardStats& s) {
#define PH_SUM(field) sum.field += s.field
  PH_SUM(connections_accepted);
  PH_SUM(connections_open);
  PH_SUM(connections_closed);
  PH_SUM(sessions_authenticated);
  PH_SUM(auth_failures);
  PH_SUM(auth_cache_hits);
  PH_SUM(maildrops_opened);
  PH_SUM(commits_ok);
  PH_SUM(commits_failed);
  PH_SUM(in_use_refusals);
  PH_SUM(takeovers);
  PH_SUM(limit_per_shard);
  PH_SUM(limit_per_ip);
  PH_SUM(limit_per_user_ip);
  PH_SUM(timeouts_auth);
  PH_SUM(timeouts_idle);
  PH_SUM(timeouts_send_stall);
  PH_SUM(commands);
  PH_SUM(lines_too_long);
  PH_SUM(offload_rejected);
  PH_SUM(post_rejected);
  PH_SUM(send.plain_bytes);
  PH_SUM(send.zc_bytes);
  PH_SUM(send.splice_bytes);
  PH_SUM(send.copy_bytes);
  PH_SUM(send.zc_fallback_bytes);
  PH_SUM(send.zc_fallbacks);
  PH_SUM(send.partial_sends);
  PH_SUM(send.socket_full_waits);
  PH_SUM(send.zc_notifs);
  PH_SUM(send.zc_notifs_copied);
  PH_SUM(send.streams_ok);
  PH_SUM(send.streams_failed);
  PH_SUM(tls.sessions);
  PH_SUM(tls.handshakes_completed);
  PH_SUM(tls.handshakes_resumed);
  PH_SUM(tls.handshake_errors);
  PH_SUM(tls.record_errors);
  PH_SUM(tls.certificate_errors);
  PH_SUM(tls.limit_errors);
  PH_SUM(tls.internal_errors);
  PH_SUM(tls.plaintext_bytes_encrypted);
  PH_SUM(tls_path.kernel_tls_sessions);
  PH_SUM(tls_path.userspace_sessions);
  PH_SUM(tls_path.kernel_tls_errors);
  PH_SUM(tls_stls_started);
  PH_SUM(tls_implicit_accepted);
  PH_SUM(tls_body_bytes);
#undef PH_SUM
}

}  // namespace

struct AdminHttp::Impl {
  std::unique_ptr<CivetServer> server;
  std::vector<std::unique_ptr<Handler>> handlers;
};

absl::StatusOr<std::unique_ptr<AdminHttp>> AdminHttp::Start(ServerContext* ctx) {
  auto admin = std::unique_ptr<AdminHttp>(new AdminHttp());
  admin->impl_ = std::make_unique<Impl>();
  const HostPort& listen = ctx->options.metrics_listen;
  const std::string host =
      listen.host.find(':') != std::string::npos ? "[" + listen.host + "]" : listen.host;
  std::vector<std::string> options = {"listening_ports", absl::StrCat(host, ":", listen.port),
                                      "num_threads", "2"};
  try {
    admin->impl_->server = std::make_unique<CivetServer>(options);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot serve HTTP on ", host, ":", listen.port, ": ", e.what()));
  }
  auto add = [&](const char* uri, Handler::Fn fn) {
    admin->impl_->handlers.push_back(std::make_unique<Handler>(ctx, fn));
    admin->impl_->server->addHandler(uri, admin->impl_->handlers.back().get());
  };
  add("/healthz", Healthz);
  add("/readyz", Readyz);
  add("/metrics", Metrics);
  std::vector<int> ports = admin->impl_->server->getListeningPorts();
  if (ports.empty() || ports[0] <= 0) {
    return absl::InternalError("HTTP server reports no listening port");
  }
  admin->port_ = static_cast<uint16_t>(ports[0]);
  return admin;
}

AdminHttp::~AdminHttp() {
  if (impl_ && impl_->server) impl_->server->close();
}

ShardStats AdminHttp::CollectStats(ServerContext* ctx, uint32_t* shards_answered) {
  struct Collect {
    std::mutex mu;
    std::condition_variable cv;
    uint32_t replies = 0;
    ShardStats sum;
  };
  auto collect = std::make_shared<Collect>();
  uint32_t posted = 0;
  for (auto& sc : ctx->shards) {
    ShardContext* shard_ctx = sc.get();
    if (ctx->reactor->shard(shard_ctx->index).inbox().Post([collect, shard_ctx] {
          std::lock_guard<std::mutex> lock(collect->mu);
          Add(collect->sum, shard_ctx->stats);
          ++collect->replies;
          collect->cv.notify_all();
        })) {
      ++posted;
    }
  }
  std::unique_lock<std::mutex> lock(collect->mu);
  collect->cv.wait_for(lock, kScrapeWait, [&] { return collect->replies == posted; });
  if (shards_answered != nullptr) *shards_answered = collect->replies;
  return collect->sum;
}

std::string AdminHttp::MetricsText(ServerContext* ctx) {
  uint32_t answered = 0;
  const ShardStats s = CollectStats(ctx, &answered);
  std::string out;
  auto metric = [&](std::string_view name, std::string_view type, std::string_view help,
                    uint64_t value, std::string_view labels = "") {
    absl::StrAppend(&out, "# HELP ", AbslView(name), " ", AbslView(help), "\n# TYPE ",
                    AbslView(name), " ", AbslView(type), "\n", AbslView(name), AbslView(labels),
                    " ", value, "\n");
  };
  auto sample = [&](std::string_view name, std::string_view labels, uint64_t value) {
    absl::StrAppend(&out, AbslView(name), AbslView(labels), " ", value, "\n");
  };
  metric("posthaste_shards", "gauge", "Reactor shards.", ctx->shards.size());
  metric("posthaste_shards_answering", "gauge", "Shards that answered this scrape.", answered);
  metric("posthaste_ready", "gauge", "1 when serving, 0 while draining.", ctx->draining ? 0 : 1);
  metric("posthaste_pop3_connections_accepted_total", "counter", "POP3 connections accepted.",
         s.connections_accepted);
  metric("posthaste_pop3_connections", "gauge", "POP3 connections open.", s.connections_open);
  metric("posthaste_pop3_sessions_authenticated_total", "counter", "Successful logins.",
         s.sessions_authenticated);
  metric("posthaste_pop3_auth_failures_total", "counter", "Failed logins.", s.auth_failures);
  metric("posthaste_pop3_auth_cache_hits_total", "counter",
         "Logins verified from the password verification cache.", s.auth_cache_hits);
  metric("posthaste_pop3_maildrops_opened_total", "counter", "Maildrops opened.",
         s.maildrops_opened);
  metric("posthaste_pop3_commits_total", "counter", "QUIT commits.", s.commits_ok,
         "{result=\"ok\"}");
  sample("posthaste_pop3_commits_total", "{result=\"failed\"}", s.commits_failed);
  metric("posthaste_pop3_in_use_refusals_total", "counter", "Logins refused with [IN-USE].",
         s.in_use_refusals);
  metric("posthaste_pop3_takeovers_total", "counter", "Idle sessions ended for a newcomer.",
         s.takeovers);
  metric("posthaste_pop3_limit_rejections_total", "counter", "Connections refused by a limit.",
         s.limit_per_shard, "{limit=\"per_shard\"}");
  sample("posthaste_pop3_limit_rejections_total", "{limit=\"per_ip\"}", s.limit_per_ip);
  sample("posthaste_pop3_limit_rejections_total", "{limit=\"per_user_ip\"}", s.limit_per_user_ip);
  metric("posthaste_pop3_timeouts_total", "counter", "Connections closed by a timeout.",
         s.timeouts_auth, "{timeout=\"authorization\"}");
  sample("posthaste_pop3_timeouts_total", "{timeout=\"idle\"}", s.timeouts_idle);
  sample("posthaste_pop3_timeouts_total", "{timeout=\"send_stall\"}", s.timeouts_send_stall);
  metric("posthaste_pop3_body_bytes_total", "counter",
         "Message body bytes by the send path submitted (RETR/TOP).", s.send.splice_bytes,
         "{path=\"splice\"}");
  sample("posthaste_pop3_body_bytes_total", "{path=\"send_zc\"}", s.send.zc_bytes);
  sample("posthaste_pop3_body_bytes_total", "{path=\"copy\"}", s.send.copy_bytes);
  // SEND_ZC chunks the kernel refused to pin (locked-memory limits), sent by a plain send.
  sample("posthaste_pop3_body_bytes_total", "{path=\"send_zc_refused_copy\"}",
         s.send.zc_fallback_bytes);
  // Sealed by the userspace TLS engine straight from the mapped segment.
  sample("posthaste_pop3_body_bytes_total", "{path=\"tls_userspace\"}", s.tls_body_bytes);
  metric("posthaste_pop3_reply_bytes_total", "counter", "Reply bytes sent by plain send.",
         s.send.plain_bytes);
  metric("posthaste_pop3_streams_total", "counter", "Message streams.", s.send.streams_ok,
         "{result=\"ok\"}");
  sample("posthaste_pop3_streams_total", "{result=\"failed\"}", s.send.streams_failed);
  metric("posthaste_pop3_zc_notifications_copied_total", "counter",
         "SEND_ZC notifications reporting the kernel copied anyway (always on loopback).",
         s.send.zc_notifs_copied);
  metric("posthaste_pop3_commands_total", "counter", "Command lines of closed sessions.",
         s.commands);
  metric("posthaste_pop3_command_line_too_long_total", "counter",
         "Command lines over 255 octets (closed sessions).", s.lines_too_long);
  // TLS (server/pop3_connection.cc, tls/): per-session data path, outcomes, reloads.
  metric("posthaste_tls_sessions_total", "counter",
         "TLS sessions past the handshake by data path (kernel TLS or the userspace engine).",
         s.tls_path.kernel_tls_sessions, "{path=\"ktls\"}");
  sample("posthaste_tls_sessions_total", "{path=\"userspace\"}", s.tls_path.userspace_sessions);
  metric("posthaste_tls_ktls_errors_total", "counter",
         "Sessions where kernel TLS was available but enabling it failed.",
         s.tls_path.kernel_tls_errors);
  metric("posthaste_tls_connections_total", "counter", "TLS connections started, by how.",
         s.tls_implicit_accepted, "{mode=\"implicit\"}");
  sample("posthaste_tls_connections_total", "{mode=\"stls\"}", s.tls_stls_started);
  metric("posthaste_tls_handshakes_total", "counter", "TLS handshakes completed (closed sessions).",
         s.tls.handshakes_completed);
  metric("posthaste_tls_handshakes_resumed_total", "counter",
         "TLS handshakes that resumed a session ticket (closed sessions).",
         s.tls.handshakes_resumed);
  metric("posthaste_tls_errors_total", "counter", "TLS connections closed by an error, by kind.",
         s.tls.handshake_errors, "{kind=\"handshake\"}");
  sample("posthaste_tls_errors_total", "{kind=\"record\"}", s.tls.record_errors);
  sample("posthaste_tls_errors_total", "{kind=\"certificate\"}", s.tls.certificate_errors);
  sample("posthaste_tls_errors_total", "{kind=\"limit\"}", s.tls.limit_errors);
  sample("posthaste_tls_errors_total", "{kind=\"internal\"}", s.tls.internal_errors);
  metric("posthaste_tls_plaintext_bytes_total", "counter",
         "Plaintext bytes sealed by the userspace TLS engine (closed sessions).",
         s.tls.plaintext_bytes_encrypted);
  metric("posthaste_tls_reloads_total", "counter", "Certificate reloads, by result.",
         ctx->tls_reloads_ok.load(), "{result=\"ok\"}");
  sample("posthaste_tls_reloads_total", "{result=\"failed\"}", ctx->tls_reloads_failed.load());
  metric("posthaste_offload_rejected_total", "counter", "Jobs refused by a full offload queue.",
         s.offload_rejected);
  metric("posthaste_inbox_rejected_total", "counter", "Cross-shard messages refused (full).",
         s.post_rejected);
  return out;
}

}  // namespace posthaste::server
