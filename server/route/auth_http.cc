#include "server/route/auth_http.h"

#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "base/log.h"
#include "base/strings.h"
#include "server/admin/json_body.h"
#include "server/route/backend_client.h"

namespace posthaste::server::route {
namespace {

constexpr std::string_view kBadLogin = "[AUTH] Invalid login or password";
constexpr std::string_view kTemporary = "[SYS/TEMP] Mailbox temporarily unavailable, try later";
constexpr std::string_view kMoving = "[SYS/TEMP] Mailbox is being moved, try again shortly";
constexpr size_t kCredentialBytesMax = 1024;

std::string Lower(const std::string* value) {
  if (value == nullptr) return "";
  return absl::AsciiStrToLower(AbslView(*value));
}

http::HttpResponse Refuse(std::string_view status, std::optional<uint32_t> wait_s) {
  http::HttpResponse response;
  response.status = 200;
  response.headers.push_back({"Auth-Status", std::string(status)});
  if (wait_s.has_value()) response.headers.push_back({"Auth-Wait", std::to_string(*wait_s)});
  return response;
}

// At least 1: the wait is what keeps the client's connection open for another attempt.
uint32_t WaitSeconds(uint32_t ms) { return std::max<uint32_t>(1, (ms + 999) / 1000); }

// The backend asked about a user the directory does not place (so that the answer takes as
// long as a wrong password's: the backend's verify endpoint runs its dummy hash for accounts it
// lacks): one of the live backends with an admin port, the same one for every user of a domain,
// as a tenant's placement would be. Null when none is registered.
const placement::BackendEndpoint* DecoyBackend(const placement::DirectorySnapshot& snapshot,
                                               std::string_view user) {
  std::vector<const placement::BackendEndpoint*> live;
  for (const auto& [name, backend] : snapshot.backends) {
    if (backend.admin_port != 0) live.push_back(&backend);
  }
  if (live.empty()) return nullptr;
  std::sort(live.begin(), live.end(),
            [](const auto* a, const auto* b) { return a->name < b->name; });
  const size_t at = user.rfind('@');
  const std::string domain =
      absl::AsciiStrToLower(AbslView(at == std::string_view::npos ? user : user.substr(at + 1)));
  return live[std::hash<std::string>()(domain) % live.size()];
}

}  // namespace

AuthHttpQuery ParseAuthHttpQuery(const http::HttpRequest& request, std::string* error) {
  AuthHttpQuery query;
  error->clear();
  query.method = Lower(request.FindHeader("Auth-Method"));
  query.protocol = Lower(request.FindHeader("Auth-Protocol"));
  const std::string* ip = request.FindHeader("Client-IP");
  if (ip != nullptr) query.client_ip = *ip;
  const std::string* attempt = request.FindHeader("Auth-Login-Attempt");
  if (attempt != nullptr) {
    auto n = ParseDecimalAtMost(*attempt, 1'000'000);
    if (!n.has_value()) {
      *error = "Auth-Login-Attempt is not a number";
      return query;
    }
    query.login_attempt = static_cast<uint32_t>(*n);
  }
  const std::string* user = request.FindHeader("Auth-User");
  const std::string* pass = request.FindHeader("Auth-Pass");
  if (user == nullptr || pass == nullptr) {
    *error = "Auth-User and Auth-Pass are required";
    return query;
  }
  auto decoded_user = http::PercentDecode(*user, /*plus_is_space=*/false);
  auto decoded_pass = http::PercentDecode(*pass, /*plus_is_space=*/false);
  if (!decoded_user.has_value() || !decoded_pass.has_value()) {
    *error = "Auth-User or Auth-Pass is badly percent-encoded";
    return query;
  }
  query.user = *std::move(decoded_user);
  query.password = *std::move(decoded_pass);
  if (query.user.empty() || query.user.size() > kCredentialBytesMax ||
      query.password.size() > kCredentialBytesMax ||
      query.user.find_first_of(std::string_view("\0\r\n", 3)) != std::string::npos) {
    *error = "Auth-User or Auth-Pass is empty, too long or holds a control character";
  }
  return query;
}

http::HttpResponse AnswerAuthHttp(const http::HttpRequest& request,
                                  const placement::DirectorySnapshot& snapshot,
                                  const BackendVerifier& verifier, const AuthHttpOptions& options,
                                  RouteCounters* counters) {
  std::string error;
  const AuthHttpQuery query = ParseAuthHttpQuery(request, &error);
  if (!error.empty()) {
    counters->auth_refused_request++;
    return Refuse("[AUTH] " + error, std::nullopt);
  }
  if (query.protocol != "pop3") {
    counters->auth_refused_request++;
    http::HttpResponse r = Refuse("Only POP3 is served here", std::nullopt);
    if (query.protocol == "smtp") r.headers.push_back({"Auth-Error-Code", "535 5.7.8"});
    return r;
  }
  // APOP and CRAM-MD5 send a digest the backend's admin API cannot check; EXTERNAL sends none.
  if (query.method != "plain" && query.method != "login") {
    counters->auth_refused_request++;
    return Refuse("[AUTH] Use USER/PASS or AUTH PLAIN", std::nullopt);
  }
  if (query.login_attempt > options.login_attempts_max) {
    counters->auth_attempts_exhausted++;
    return Refuse(kBadLogin, std::nullopt);
  }
  absl::StatusOr<placement::Route> route = snapshot.Resolve(query.user);
  if (!route.ok()) {
    if (route.status().code() == absl::StatusCode::kNotFound) {
      counters->auth_unknown_user++;
      // Asked like a wrong password, so that the answer (text, Auth-Wait, time taken) does not
      // tell an unknown user from a known one. Never OK: the directory places nobody here.
      const placement::BackendEndpoint* decoy = DecoyBackend(snapshot, query.user);
      if (decoy == nullptr) return Refuse(kBadLogin, options.unknown_user_wait_s);
      const BackendVerdict verdict = verifier(*decoy, query.user, query.password);
      if (verdict.code == BackendVerdict::Code::kUnavailable) {
        return Refuse(kTemporary, options.temporary_wait_s);
      }
      return Refuse(kBadLogin, verdict.code == BackendVerdict::Code::kBadCredentials
                                   ? WaitSeconds(verdict.failure_delay_ms)
                                   : options.unknown_user_wait_s);
    }
    counters->auth_temp_backend_down++;
    return Refuse(kTemporary, options.temporary_wait_s);
  }
  if (route->moving) {
    counters->auth_temp_moving++;
    return Refuse(kMoving, options.temporary_wait_s);
  }
  const placement::BackendEndpoint& backend = *route->backend;
  if (backend.pop3_port == 0 || backend.admin_port == 0) {
    counters->auth_temp_backend_down++;
    return Refuse(kTemporary, options.temporary_wait_s);
  }
  const BackendVerdict verdict = verifier(backend, query.user, query.password);
  switch (verdict.code) {
    case BackendVerdict::Code::kBadCredentials:
      counters->auth_bad_credentials++;
      return Refuse(kBadLogin, WaitSeconds(verdict.failure_delay_ms));
    case BackendVerdict::Code::kUnavailable:
      counters->auth_temp_verify_failed++;
      return Refuse(kTemporary, options.temporary_wait_s);
    case BackendVerdict::Code::kOk:
      break;
  }
  counters->auth_ok++;
  http::HttpResponse response;
  response.status = 200;
  response.headers = {{"Auth-Status", "OK"},
                      {"Auth-Server", backend.ip},
                      {"Auth-Port", std::to_string(backend.pop3_port)}};
  return response;
}

BackendVerifier HttpBackendVerifier(std::string admin_token, uint32_t deadline_ms) {
  return [token = std::move(admin_token), deadline_ms](const placement::BackendEndpoint& backend,
                                                       std::string_view user,
                                                       std::string_view password) {
    BackendRequest request;
    request.ip = backend.ip;
    request.port = backend.admin_port;
    request.path = "/api/v1/auth/verify";
    request.bearer_token = token;
    request.json_body = "{\"user\":" + admin::JsonString(user) +
                        ",\"password\":" + admin::JsonString(password) + "}";
    request.deadline_ms = deadline_ms;
    BackendVerdict verdict;
    absl::StatusOr<BackendReply> reply = PostToBackend(request);
    if (!reply.ok()) {
      LogEvent(LogLevel::kWarning, "password verification failed",
               {{"backend", backend.name}, {"error", reply.status().ToString()}});
      return verdict;  // kUnavailable
    }
    auto object = admin::ParseJsonObject(reply->body);
    if (reply->status != 200 || !object.ok()) {
      LogEvent(LogLevel::kWarning, "password verification refused",
               {{"backend", backend.name}, {"status", std::to_string(reply->status)}});
      return verdict;
    }
    auto result = object->find("result");
    if (result == object->end()) return verdict;
    if (result->second.string == "ok") {
      verdict.code = BackendVerdict::Code::kOk;
    } else if (result->second.string == "bad_credentials") {
      verdict.code = BackendVerdict::Code::kBadCredentials;
      auto delay = object->find("failure_delay_ms");
      if (delay != object->end() && delay->second.integer < 600'000) {
        verdict.failure_delay_ms = static_cast<uint32_t>(delay->second.integer);
      }
    }
    return verdict;
  };
}

}  // namespace posthaste::server::route
