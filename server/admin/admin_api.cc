#include "server/admin/admin_api.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <fstream>
#include <optional>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/strings.h"
#include "server/admin/admin_http.h"
#include "server/admin/admin_path.h"
#include "server/admin/admin_reply.h"
#include "server/admin/admin_store.h"
#include "server/admin/admin_tenants.h"
#include "server/admin/json_body.h"
#include "server/auth/password_hash.h"
#include "server/auth/scram.h"
#include "server/http/http_server.h"
#include "storage/migration/mailbox_transfer.h"
#include "storage/store_error.h"

namespace posthaste::server::admin {
namespace {

constexpr size_t kTokenBytesMin = 16;

// Mailbox pages for moves: what one GET .../mailbox returns (one message may pass it), and the
// most a PUT .../mailbox may carry besides the store's largest message.
constexpr uint64_t kMovePageBytes = storage::migration::kTransferPageBytesDefault;
constexpr uint64_t kMovePageFramingBytes = 64 << 10;

// Password hashing is CPU-bound and store writes wait on the disk: a few at once, the rest
// queue (bounded; 503 beyond).
constexpr uint32_t kWorkers = 4;
constexpr uint32_t kWorkerQueueMax = 32;

std::string UsageJson(const storage::AccountUsage& u) {
  return absl::StrCat("{\"address\":", JsonString(u.display_address),
                      ",\"disabled\":", u.disabled ? "true" : "false",
                      ",\"held\":", u.held ? "true" : "false", ",\"messages\":", u.stats.messages,
                      ",\"octets\":", u.stats.octets, ",\"quota_messages\":", u.quota.messages,
                      ",\"quota_octets\":", u.quota.octets,
                      ",\"effective_quota_messages\":", u.effective_quota.messages,
                      ",\"effective_quota_octets\":", u.effective_quota.octets,
                      ",\"max_message_bytes\":", u.message_bytes_max, "}\n");
}

class AccountsHandler {
 public:
  AccountsHandler(storage::MailStore* store, std::string token, AdminApiHooks hooks,
                  uint32_t auth_failure_delay_ms, auth::HashSetting password_scheme)
      : store_(store),
        token_(std::move(token)),
        verify_password_(std::move(hooks.verify_password)),
        end_sessions_(std::move(hooks.end_sessions)),
        sessions_(hooks.sessions),
        tenants_(store, std::move(hooks.tenants_changed)),
        store_routes_(store),
        auth_failure_delay_ms_(auth_failure_delay_ms),
        password_scheme_(password_scheme) {}

  // Every request on the admin listener, on one of its workers (thread-safe: the store is).
  http::HttpResponse Serve(const http::HttpRequest& request) {
    AdminExchange exchange{request, {}};
    Handle(&exchange, request.method);
    return std::move(exchange.response);
  }

  // On the listener's event loop, from the request head alone, before any of the body is read
  // (http::HttpServerOptions::head_check): the refusals that need no body. Without it a client
  // without the token could make the listener read (and hold) a body of up to a mailbox page
  // and the largest message before hearing 401. Cheap: two SHA-256 of short strings and the
  // target's parse.
  std::optional<http::HttpResponse> CheckHead(const http::HttpRequest& head) const {
    AdminExchange exchange{head, {}};
    if (!RefuseFromHead(&exchange)) return std::nullopt;
    return std::move(exchange.response);
  }

 private:
  // The setting of new hashes for `address`'s tenant (its own, else the server's).
  auth::HashSetting SettingFor(std::string_view address) {
    const size_t at = address.rfind('@');
    if (at == std::string_view::npos) return password_scheme_;
    absl::StatusOr<storage::TenantInfo> tenant = store_->GetTenant(address.substr(at + 1));
    return tenant.ok() ? auth::TenantHashSetting(tenant->policy.password_scheme, password_scheme_)
                       : password_scheme_;
  }

  // Replies and returns true when the head alone refuses the request: the bearer token (401),
  // the target (400/404), the method (405), then a body longer than the resource takes (413;
  // only PUT .../mailbox carries more than a JSON object). Runs again on the worker (cheap),
  // so Handle never depends on the listener having run it.
  bool RefuseFromHead(AdminExchange* conn) const {
    const http::HttpRequest& request = conn->request;
    const std::string* authorization = request.FindHeader("Authorization");
    if (authorization == nullptr || !BearerTokenMatches(*authorization, token_)) {
      return ReplyError(conn, 401, "Unauthorized", "missing or wrong bearer token",
                        "WWW-Authenticate: Bearer realm=\"posthaste\"\r\n");
    }
    const std::string_view method = request.method;
    bool large_body = false;
    if (request.target == kVerifyPath && verify_password_) {
      if (method != "POST") {
        return ReplyError(conn, 405, "Method Not Allowed", "use POST", "Allow: POST\r\n");
      }
    } else {
      // The target exactly as sent, still percent-encoded: ParseAdminPath decodes it exactly
      // once, and refuses rather than resolves.
      absl::StatusOr<AdminPath> path = ParseAdminPath(request.target);
      if (!path.ok()) return ReplyStatus(conn, path.status());
      const std::string_view allowed = AllowedMethods(path->resource);
      const absl::string_view allow = AbslView(allowed);
      if (!absl::StrContains(absl::StrCat(", ", allow, ","),
                             absl::StrCat(", ", AbslView(method), ","))) {
        return ReplyError(conn, 405, "Method Not Allowed", absl::StrCat("use ", allow),
                          absl::StrCat("Allow: ", allow, "\r\n"));
      }
      large_body = path->resource == AdminPath::Resource::kMailbox && method == "PUT";
    }
    if (!large_body && request.content_length > kJsonBodyBytesMax) {
      return ReplyError(conn, 413, "Payload Too Large",
                        absl::StrCat("body over ", kJsonBodyBytesMax, " bytes"));
    }
    return false;
  }

  // What each resource takes, as the Allow header lists it.
  static std::string_view AllowedMethods(AdminPath::Resource resource) {
    using Resource = AdminPath::Resource;
    switch (resource) {
      case Resource::kAccounts:
      case Resource::kTenants:
        return "GET, POST";
      case Resource::kMailbox:
        return "GET, PUT";
      case Resource::kHold:
        return "PUT";
      case Resource::kSessions:
      case Resource::kStoreUsage:
        return "GET";
      case Resource::kSession:
        return "DELETE";
      case Resource::kStoreCheck:
      case Resource::kStoreCompaction:
        return "GET, POST";
      case Resource::kAccount:
      case Resource::kTenant:
        break;
    }
    return "GET, PATCH, DELETE";
  }

  bool Handle(AdminExchange* conn, std::string_view method) {
    if (RefuseFromHead(conn)) return true;
    if (conn->request.target == kVerifyPath && verify_password_) return Verify(conn);
    absl::StatusOr<AdminPath> path = ParseAdminPath(conn->request.target);
    if (!path.ok()) return ReplyStatus(conn, path.status());  // refused above already
    const std::string& address = path->address;
    using Resource = AdminPath::Resource;
    using JobKind = StoreRoutes::JobKind;
    switch (path->resource) {
      case Resource::kAccounts:
        return method == "GET" ? List(conn, path->domain) : Create(conn);
      case Resource::kMailbox:
        return method == "GET" ? ExportPage(conn, address, path->after_seq)
                               : ImportPage(conn, address);
      case Resource::kHold:
        return Hold(conn, address);
      case Resource::kTenants:
        return method == "GET" ? tenants_.List(conn) : tenants_.Create(conn);
      case Resource::kTenant:
        if (method == "GET") return tenants_.Show(conn, *path->domain);
        if (method == "PATCH") return tenants_.Update(conn, *path->domain);
        return tenants_.Delete(conn, *path->domain);
      case Resource::kSessions:
        return ListSessions(conn, {.tenant = path->domain, .user = path->user});
      case Resource::kSession:
        return EndSession(conn, path->session_shard, path->session_connection);
      case Resource::kStoreUsage:
        return store_routes_.Usage(conn);
      case Resource::kStoreCheck:
      case Resource::kStoreCompaction: {
        const JobKind kind =
            path->resource == Resource::kStoreCheck ? JobKind::kCheck : JobKind::kCompaction;
        return method == "GET" ? store_routes_.ShowJob(conn, kind)
                               : store_routes_.StartJob(conn, kind);
      }
      case Resource::kAccount:
        break;
    }
    if (method == "GET") return Show(conn, address);
    if (method == "PATCH") return Update(conn, address);
    return Delete(conn, address);
  }

  // GET /api/v1/sessions: what the shards report (SessionDirectory), within its deadline.
  bool ListSessions(AdminExchange* conn, const LiveSessionFilter& filter) {
    if (sessions_ == nullptr) {
      return ReplyError(conn, 503, "Service Unavailable", "live sessions are not available");
    }
    absl::StatusOr<LiveSessionList> list = sessions_->List(filter);
    if (!list.ok()) return ReplyStatus(conn, list.status());
    std::string body = "{\"sessions\":[";
    for (size_t i = 0; i < list->sessions.size(); ++i) {
      const LiveSession& s = list->sessions[i];
      absl::StrAppend(&body, i == 0 ? "" : ",", "{\"id\":\"", s.shard, "-", s.connection,
                      "\",\"shard\":", s.shard, ",\"user\":", JsonString(s.user),
                      ",\"tenant\":", JsonString(s.tenant), ",\"peer\":", JsonString(s.peer),
                      ",\"started_unix_ms\":", s.started_unix_ms,
                      ",\"state\":", JsonString(s.state), ",\"tls\":", s.tls ? "true" : "false",
                      ",\"bytes_sent\":", s.bytes_sent, "}");
    }
    absl::StrAppend(&body, "],\"truncated\":", list->truncated ? "true" : "false",
                    ",\"shards_unanswered\":", list->shards_unanswered, "}\n");
    Reply(conn, 200, "OK", body);
    return true;
  }

  // DELETE /api/v1/sessions/SHARD-CONN: ends it without committing.
  bool EndSession(AdminExchange* conn, uint32_t shard, uint64_t connection) {
    if (sessions_ == nullptr) {
      return ReplyError(conn, 503, "Service Unavailable", "live sessions are not available");
    }
    absl::Status ended = sessions_->End(shard, connection);
    if (!ended.ok()) return ReplyStatus(conn, ended);
    conn->response.status = 204;
    return true;
  }

  bool List(AdminExchange* conn, const std::optional<std::string>& domain) {
    std::optional<std::string_view> filter;
    if (domain.has_value()) filter = *domain;
    auto accounts = store_->ListAccounts(filter);
    if (!accounts.ok()) return ReplyStatus(conn, accounts.status());
    std::string body = "{\"accounts\":[";
    for (size_t i = 0; i < accounts->size(); ++i) {
      const storage::AccountSummary& a = (*accounts)[i];
      absl::StrAppend(&body, i == 0 ? "" : ",", "{\"address\":", JsonString(a.display_address),
                      ",\"disabled\":", a.disabled ? "true" : "false",
                      ",\"messages\":", a.stats.messages, ",\"octets\":", a.stats.octets, "}");
    }
    body += "]}\n";
    Reply(conn, 200, "OK", body);
    return true;
  }

  bool Show(AdminExchange* conn, const std::string& address) {
    auto usage = store_->GetUsage(address);
    if (!usage.ok()) return ReplyStatus(conn, usage.status());
    Reply(conn, 200, "OK", UsageJson(*usage));
    return true;
  }

  absl::StatusOr<JsonObject> Body(AdminExchange* conn, bool* replied) {
    std::optional<std::string> body = ReadBody(conn);
    if (!body.has_value()) {
      *replied = true;
      return absl::InvalidArgumentError("body");
    }
    return ParseJsonObject(*body);
  }

  bool Create(AdminExchange* conn) {
    bool replied = false;
    absl::StatusOr<JsonObject> body = Body(conn, &replied);
    if (replied) return true;
    if (!body.ok()) return ReplyStatus(conn, body.status());
    absl::Status allowed =
        OnlyFields(*body, {"address", "password", "quota_messages", "quota_octets"});
    if (!allowed.ok()) return ReplyStatus(conn, allowed);
    auto address = StringField(*body, "address");
    auto password = StringField(*body, "password");
    auto quota_messages = IntegerField(*body, "quota_messages");
    auto quota_octets = IntegerField(*body, "quota_octets");
    for (const absl::Status& s :
         {address.status(), password.status(), quota_messages.status(), quota_octets.status()}) {
      if (!s.ok()) return ReplyStatus(conn, s);
    }
    if (!address->has_value() || !password->has_value()) {
      return ReplyError(conn, 400, "Bad Request", "\"address\" and \"password\" are required");
    }
    auto hash = auth::HashPassword(**password, SettingFor(**address));
    if (!hash.ok()) return ReplyError(conn, 400, "Bad Request", StdView(hash.status().message()));
    auto scram = auth::MakeScramVerifiers(**password);
    if (!scram.ok()) return ReplyStatus(conn, scram.status());
    auto created =
        store_->CreateAccount(**address, *hash, {.sha1 = scram->sha1, .sha256 = scram->sha256});
    if (!created.ok()) return ReplyStatus(conn, created.status());
    if (quota_messages->has_value() || quota_octets->has_value()) {
      absl::Status set = store_->SetQuota(created->address,
                                          {quota_messages->value_or(0), quota_octets->value_or(0)});
      if (!set.ok()) return ReplyStatus(conn, set);
    }
    auto usage = store_->GetUsage(created->address);
    if (!usage.ok()) return ReplyStatus(conn, usage.status());
    Reply(conn, 201, "Created", UsageJson(*usage));
    return true;
  }

  bool Update(AdminExchange* conn, const std::string& address) {
    bool replied = false;
    absl::StatusOr<JsonObject> body = Body(conn, &replied);
    if (replied) return true;
    if (!body.ok()) return ReplyStatus(conn, body.status());
    absl::Status allowed =
        OnlyFields(*body, {"password", "disabled", "quota_messages", "quota_octets"});
    if (!allowed.ok()) return ReplyStatus(conn, allowed);
    auto password = StringField(*body, "password");
    auto disabled = BoolField(*body, "disabled");
    auto quota_messages = IntegerField(*body, "quota_messages");
    auto quota_octets = IntegerField(*body, "quota_octets");
    for (const absl::Status& s :
         {password.status(), disabled.status(), quota_messages.status(), quota_octets.status()}) {
      if (!s.ok()) return ReplyStatus(conn, s);
    }
    // Everything is validated (and the password hashed) before anything changes.
    auto account = store_->GetAccount(address);
    if (!account.ok()) return ReplyStatus(conn, account.status());
    std::optional<std::string> hash;
    storage::ScramVerifiers scram;
    if (password->has_value()) {
      auto hashed = auth::HashPassword(**password, SettingFor(account->address));
      if (!hashed.ok()) {
        return ReplyError(conn, 400, "Bad Request", StdView(hashed.status().message()));
      }
      hash = *std::move(hashed);
      auto verifiers = auth::MakeScramVerifiers(**password);
      if (!verifiers.ok()) return ReplyStatus(conn, verifiers.status());
      scram = {.sha1 = verifiers->sha1, .sha256 = verifiers->sha256};
    }
    if (hash.has_value()) {
      if (absl::Status s = store_->SetPasswordHash(address, *hash, scram); !s.ok()) {
        return ReplyStatus(conn, s);
      }
    }
    if (disabled->has_value()) {
      if (absl::Status s = store_->SetDisabled(address, **disabled); !s.ok()) {
        return ReplyStatus(conn, s);
      }
    }
    if (quota_messages->has_value() || quota_octets->has_value()) {
      storage::AccountQuota quota = account->quota;
      if (quota_messages->has_value()) quota.messages = **quota_messages;
      if (quota_octets->has_value()) quota.octets = **quota_octets;
      if (absl::Status s = store_->SetQuota(address, quota); !s.ok()) return ReplyStatus(conn, s);
    }
    return Show(conn, address);
  }

  // GET .../mailbox?after=N: one page of the mailbox (storage/migration/mailbox_transfer.h).
  bool ExportPage(AdminExchange* conn, const std::string& address, uint64_t after_seq) {
    std::string page;
    auto exported = storage::migration::ExportMailboxPage(
        *store_, address, storage::migration::ExportPageOptions{after_seq, kMovePageBytes}, &page);
    if (!exported.ok()) return ReplyStatus(conn, exported.status());
    conn->response.status = 200;
    conn->response.content_type = "application/octet-stream";
    conn->response.body = std::move(page);
    return true;
  }

  // PUT .../mailbox: stores one page (durably) before answering; idempotent.
  bool ImportPage(AdminExchange* conn, const std::string& address) {
    auto imported = storage::migration::ImportMailboxPage(*store_, address, conn->request.body);
    if (!imported.ok()) {
      if (imported.status().code() == absl::StatusCode::kDataLoss) {
        return ReplyError(conn, 400, "Bad Request", StdView(imported.status().message()));
      }
      return ReplyStatus(conn, imported.status());
    }
    Reply(conn, 200, "OK",
          absl::StrCat("{\"imported\":", imported->imported, ",\"skipped\":", imported->skipped,
                       ",\"deleted\":", imported->deleted,
                       ",\"next_after_seq\":", imported->next_after_seq,
                       ",\"complete\":", imported->complete ? "true" : "false", "}\n"));
    return true;
  }

  // PUT .../hold {"held":true|false}: holds deliveries, deletion commits and logins for a move
  // (MailStore::HoldAccount, durable); answers once those in flight are done and the account's
  // POP3 sessions have ended without committing, so the mover's copy taken after this answer
  // is final and nobody reads the old copy any more.
  bool Hold(AdminExchange* conn, const std::string& address) {
    bool replied = false;
    absl::StatusOr<JsonObject> body = Body(conn, &replied);
    if (replied) return true;
    if (!body.ok()) return ReplyStatus(conn, body.status());
    absl::Status allowed = OnlyFields(*body, {"held"});
    if (!allowed.ok()) return ReplyStatus(conn, allowed);
    auto held = BoolField(*body, "held");
    if (!held.ok()) return ReplyStatus(conn, held.status());
    if (!held->has_value()) return ReplyError(conn, 400, "Bad Request", "\"held\" is required");
    absl::Status set = store_->HoldAccount(address, **held);
    if (!set.ok()) return ReplyStatus(conn, set);
    if (**held && end_sessions_) {
      auto account = store_->GetAccount(address);
      if (!account.ok()) return ReplyStatus(conn, account.status());
      absl::Status ended = end_sessions_(account->address);
      if (!ended.ok()) {
        return ReplyError(conn, 503, "Service Unavailable",
                          absl::StrCat("held, but its POP3 sessions have not ended yet (",
                                       ended.message(), "); ask again"));
      }
    }
    Reply(conn, 200, "OK", absl::StrCat("{\"held\":", **held ? "true" : "false", "}\n"));
    return true;
  }

  bool Delete(AdminExchange* conn, const std::string& address) {
    absl::Status deleted = store_->DeleteAccount(address);
    if (!deleted.ok()) return ReplyStatus(conn, deleted);
    conn->response.status = 204;
    return true;
  }

  // POST /api/v1/auth/verify: the server's own login check (auth service, cache), for the
  // route service. Every verdict is a 200 with "result"; a malformed request is a 400.
  bool Verify(AdminExchange* conn) {
    bool replied = false;
    absl::StatusOr<JsonObject> body = Body(conn, &replied);
    if (replied) return true;
    if (!body.ok()) return ReplyStatus(conn, body.status());
    absl::Status allowed = OnlyFields(*body, {"user", "password"});
    if (!allowed.ok()) return ReplyStatus(conn, allowed);
    auto user = StringField(*body, "user");
    auto password = StringField(*body, "password");
    for (const absl::Status& s : {user.status(), password.status()}) {
      if (!s.ok()) return ReplyStatus(conn, s);
    }
    if (!user->has_value() || !password->has_value()) {
      return ReplyError(conn, 400, "Bad Request", "\"user\" and \"password\" are required");
    }
    const PasswordCheck check = verify_password_(**user, **password);
    switch (check.result) {
      case PasswordCheck::Result::kOk:
        Reply(conn, 200, "OK",
              absl::StrCat("{\"result\":\"ok\",\"address\":", JsonString(check.address), "}\n"));
        return true;
      case PasswordCheck::Result::kBadCredentials:
        Reply(conn, 200, "OK",
              absl::StrCat("{\"result\":\"bad_credentials\",\"failure_delay_ms\":",
                           auth_failure_delay_ms_, "}\n"));
        return true;
      case PasswordCheck::Result::kTempFailure:
        break;
    }
    Reply(conn, 200, "OK", "{\"result\":\"temp_failure\"}\n");
    return true;
  }

  static constexpr std::string_view kVerifyPath = "/api/v1/auth/verify";

  storage::MailStore* const store_;
  const std::string token_;
  const PasswordVerifier verify_password_;
  const SessionEnder end_sessions_;
  SessionDirectory* const sessions_;
  TenantRoutes tenants_;
  StoreRoutes store_routes_;  // owns the jobs' threads: joined when the handler goes
  const uint32_t auth_failure_delay_ms_;
  const auth::HashSetting password_scheme_;  // --password_scheme: tenants without their own
};

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read --admin_token_file ", path));
  std::string token;
  std::getline(in, token);
  if (!token.empty() && token.back() == '\r') token.pop_back();
  if (token.size() < kTokenBytesMin) {
    return absl::InvalidArgumentError(
        absl::StrCat("the token in ", path, " is shorter than ", kTokenBytesMin, " bytes"));
  }
  return token;
}

}  // namespace

bool BearerTokenMatches(std::string_view header, std::string_view token) {
  constexpr std::string_view kScheme = "bearer ";
  if (header.size() < kScheme.size() ||
      !absl::EqualsIgnoreCase(AbslView(header.substr(0, kScheme.size())), AbslView(kScheme))) {
    return false;
  }
  std::string_view given = header.substr(kScheme.size());
  while (!given.empty() && given.front() == ' ') given.remove_prefix(1);
  while (!given.empty() && given.back() == ' ') given.remove_suffix(1);
  // Digests first: equal lengths, so neither the contents nor the length leak through timing.
  uint8_t a[SHA256_DIGEST_LENGTH];
  uint8_t b[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(given.data()), given.size(), a);
  SHA256(reinterpret_cast<const uint8_t*>(token.data()), token.size(), b);
  return CRYPTO_memcmp(a, b, sizeof(a)) == 0 && !token.empty();
}

struct AdminApi::Impl {
  std::unique_ptr<AccountsHandler> handler;
  std::unique_ptr<http::HttpServer> server;  // destroyed first: stops the threads using `handler`
  ~Impl() { server.reset(); }
};

AdminApi::~AdminApi() = default;

const http::HttpServerStats& AdminApi::http_stats() const { return impl_->server->stats(); }

absl::StatusOr<std::unique_ptr<AdminApi>> AdminApi::Start(const ServeOptions& options,
                                                          storage::MailStore* store,
                                                          AdminApiHooks hooks) {
  auto token = ReadToken(options.admin_token_file);
  if (!token.ok()) return token.status();
  auto listen = ParseHostPort(options.admin_listen);
  if (!listen.ok()) return listen.status();
  auto api = std::unique_ptr<AdminApi>(new AdminApi());
  api->impl_ = std::make_unique<Impl>();
  api->impl_->handler =
      std::make_unique<AccountsHandler>(store, *std::move(token), std::move(hooks),
                                        options.auth_failure_delay_ms, options.password_scheme);
  AccountsHandler* handler = api->impl_->handler.get();
  http::HttpServerOptions http_options = HttpListenerOptions(options, "admin_api", *listen);
  http_options.workers = kWorkers;
  http_options.worker_queue_max = kWorkerQueueMax;
  // JSON bodies are held to kJsonBodyBytesMax by their handlers; a mailbox page for a move may
  // be as long as one page and the largest message the store takes.
  http_options.limits.body_bytes_max =
      kMovePageBytes + store->options().message_bytes_max + kMovePageFramingBytes;
  // The listener's own answers (400, 408, 413, 503, ...) are JSON like the handlers' errors.
  http_options.error_response = [](int status, std::string_view message) {
    http::HttpResponse r;
    r.status = status;
    r.content_type = "application/json";
    r.body = absl::StrCat("{\"error\":", JsonString(message), "}\n");
    return r;
  };
  // Every path comes to the handler, so a target that would clean into another path
  // ("/api/v1/accounts/../x") still gets the API's 400.
  http_options.routes = {{"/", /*prefix=*/true, http::RunOn::kWorker,
                          [handler](const http::HttpRequest& r) { return handler->Serve(r); }}};
  http_options.head_check = [handler](const http::HttpRequest& head) {
    return handler->CheckHead(head);
  };
  auto server = http::HttpServer::Start(std::move(http_options));
  if (!server.ok()) return server.status();  // names the listener, address and error
  api->impl_->server = *std::move(server);
  api->port_ = api->impl_->server->port();
  return api;
}

}  // namespace posthaste::server::admin
