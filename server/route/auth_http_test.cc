#include "server/route/auth_http.h"

#include <atomic>
#include <string>

#include "gtest/gtest.h"
#include "server/http/http_server.h"

namespace posthaste::server::route {
namespace {

using placement::BackendEndpoint;
using placement::DirectorySnapshot;

DirectorySnapshot Directory() {
  DirectorySnapshot s;
  s.revision = 3;
  s.backends["b1"] =
      BackendEndpoint{.name = "b1", .ip = "10.0.0.1", .pop3_port = 110, .admin_port = 8080};
  s.backends["b2"] =
      BackendEndpoint{.name = "b2", .ip = "10.0.0.2", .pop3_port = 1110, .admin_port = 8080};
  s.tenants["one.example"] = {.backend = "b1"};
  s.tenants["moving.example"] = {.backend = "b1", .moving_to = "b2"};
  s.tenants["down.example"] = {.backend = "b9"};
  s.users["boss@one.example"] = {.backend = "b2"};
  return s;
}

http::HttpRequest Request(std::string user, std::string pass, std::string method = "plain",
                          std::string protocol = "pop3", std::string attempt = "1") {
  http::HttpRequest r;
  r.method = "GET";
  r.target = "/auth";
  r.headers = {{"Host", "localhost"},          {"Auth-Method", method},
               {"Auth-User", std::move(user)}, {"Auth-Pass", std::move(pass)},
               {"Auth-Protocol", protocol},    {"Auth-Login-Attempt", attempt},
               {"Client-IP", "192.0.2.42"},    {"Client-Host", "[UNAVAILABLE]"}};
  return r;
}

std::string Header(const http::HttpResponse& r, std::string_view name) {
  for (const auto& h : r.headers) {
    if (h.name == name) return h.value;
  }
  return "<absent>";
}

// A verifier that knows one password and records what it was asked.
struct FakeVerifier {
  std::string password = "right pass%";
  BackendVerdict::Code fail_with = BackendVerdict::Code::kBadCredentials;
  std::string last_user;
  std::string last_backend;
  int calls = 0;
  BackendVerifier AsFunction() {
    return [this](const BackendEndpoint& b, std::string_view user, std::string_view pass) {
      ++calls;
      last_user = std::string(user);
      last_backend = b.name;
      if (pass == password) return BackendVerdict{.code = BackendVerdict::Code::kOk};
      return BackendVerdict{.code = fail_with, .failure_delay_ms = 2500};
    };
  }
};

class AuthHttpTest : public ::testing::Test {
 protected:
  http::HttpResponse Answer(const http::HttpRequest& r) {
    return AnswerAuthHttp(r, directory_, verifier_.AsFunction(), options_, &counters_);
  }
  DirectorySnapshot directory_ = Directory();
  FakeVerifier verifier_;
  AuthHttpOptions options_;
  RouteCounters counters_;
};

TEST_F(AuthHttpTest, GoodLoginGoesToTheOwningBackendWithDecodedCredentials) {
  // nginx percent-encodes the user and password (a space, a '%').
  http::HttpResponse r = Answer(Request("Alice@One.Example", "right%20pass%25"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(Header(r, "Auth-Status"), "OK");
  EXPECT_EQ(Header(r, "Auth-Server"), "10.0.0.1");
  EXPECT_EQ(Header(r, "Auth-Port"), "110");
  EXPECT_EQ(Header(r, "Auth-Wait"), "<absent>");
  EXPECT_EQ(verifier_.last_user, "Alice@One.Example");
  EXPECT_EQ(verifier_.last_backend, "b1");
  EXPECT_EQ(counters_.auth_ok.load(), 1u);
}

TEST_F(AuthHttpTest, UserOverrideWinsOverTenant) {
  http::HttpResponse r = Answer(Request("boss@one.example", "right%20pass%25", "login"));
  EXPECT_EQ(Header(r, "Auth-Server"), "10.0.0.2");
  EXPECT_EQ(Header(r, "Auth-Port"), "1110");
}

// An unknown user is asked about at a backend like a wrong password (so it takes as long), and
// both answers are the same headers: text and the backend's Auth-Wait.
TEST_F(AuthHttpTest, WrongPasswordAndUnknownUserLookAlikeAndWait) {
  http::HttpResponse wrong = Answer(Request("alice@one.example", "nope"));
  http::HttpResponse unknown = Answer(Request("alice@nowhere.example", "nope"));
  EXPECT_EQ(wrong.status, unknown.status);
  EXPECT_EQ(wrong.headers.size(), unknown.headers.size());
  EXPECT_EQ(Header(wrong, "Auth-Status"), Header(unknown, "Auth-Status"));
  EXPECT_NE(Header(wrong, "Auth-Status"), "OK");
  EXPECT_EQ(Header(wrong, "Auth-Wait"), "3");  // the backend's 2500 ms, rounded up
  EXPECT_EQ(Header(unknown, "Auth-Wait"), "3");
  EXPECT_EQ(Header(wrong, "Auth-Server"), "<absent>");
  EXPECT_EQ(verifier_.calls, 2);  // the unknown user was checked at a backend too
  EXPECT_EQ(verifier_.last_user, "alice@nowhere.example");
  EXPECT_TRUE(directory_.backends.contains(verifier_.last_backend));
  EXPECT_EQ(counters_.auth_bad_credentials.load(), 1u);
  EXPECT_EQ(counters_.auth_unknown_user.load(), 1u);
  // Users of one unknown domain are asked at one backend.
  Answer(Request("bob@nowhere.example", "nope"));
  const std::string first = verifier_.last_backend;
  Answer(Request("carol@NOWHERE.example", "nope"));
  EXPECT_EQ(verifier_.last_backend, first);
}

// The directory decides who may log in: a backend that knows an unplaced user does not let it
// through. With no backend to ask, the configured wait is used.
TEST_F(AuthHttpTest, UnplacedUserIsNeverLetIn) {
  http::HttpResponse r = Answer(Request("alice@nowhere.example", "right%20pass%25"));
  EXPECT_EQ(Header(r, "Auth-Status"), "[AUTH] Invalid login or password");
  EXPECT_EQ(Header(r, "Auth-Wait"), "2");
  EXPECT_EQ(Header(r, "Auth-Server"), "<absent>");
  directory_.backends.clear();
  r = Answer(Request("alice@nowhere.example", "nope"));
  EXPECT_EQ(Header(r, "Auth-Status"), "[AUTH] Invalid login or password");
  EXPECT_EQ(Header(r, "Auth-Wait"), "2");
  EXPECT_EQ(verifier_.calls, 1);
  EXPECT_EQ(counters_.auth_ok.load(), 0u);
}

TEST_F(AuthHttpTest, MovingDownAndUnreachableAreTemporary) {
  for (const char* user : {"x@moving.example", "x@down.example"}) {
    http::HttpResponse r = Answer(Request(user, "right%20pass%25"));
    EXPECT_NE(Header(r, "Auth-Status").find("[SYS/TEMP]"), std::string::npos) << user;
    EXPECT_EQ(Header(r, "Auth-Wait"), "3") << user;
  }
  EXPECT_EQ(verifier_.calls, 0);
  verifier_.fail_with = BackendVerdict::Code::kUnavailable;
  http::HttpResponse r = Answer(Request("alice@one.example", "other"));
  EXPECT_NE(Header(r, "Auth-Status").find("[SYS/TEMP]"), std::string::npos);
  EXPECT_EQ(counters_.auth_temp_moving.load(), 1u);
  EXPECT_EQ(counters_.auth_temp_backend_down.load(), 1u);
  EXPECT_EQ(counters_.auth_temp_verify_failed.load(), 1u);
}

TEST_F(AuthHttpTest, RefusalsThatCloseTheConnection) {
  // Other protocols, digest methods, bad headers, too many attempts: no Auth-Wait.
  const http::HttpRequest requests[] = {
      Request("alice@one.example", "right%20pass%25", "plain", "imap"),
      Request("alice@one.example", "right%20pass%25", "plain", "smtp"),
      Request("alice@one.example", "abcdef", "apop"),
      Request("alice@one.example", "abcdef", "cram-md5"),
      Request("alice@one.example", "bad%zz"),
      Request("", "x"),
      Request("alice@one.example", "right%20pass%25", "plain", "pop3", "many"),
      Request("alice@one.example", "right%20pass%25", "plain", "pop3", "11"),
  };
  for (const http::HttpRequest& request : requests) {
    http::HttpResponse r = Answer(request);
    EXPECT_NE(Header(r, "Auth-Status"), "OK");
    EXPECT_EQ(Header(r, "Auth-Wait"), "<absent>");
  }
  EXPECT_EQ(verifier_.calls, 0);
  EXPECT_EQ(counters_.auth_attempts_exhausted.load(), 1u);
  EXPECT_EQ(Header(Answer(requests[1]), "Auth-Error-Code"), "535 5.7.8");
}

// The real verifier against a stand-in backend admin API on loopback.
TEST(HttpBackendVerifierTest, AsksTheBackendAndReadsItsVerdict) {
  std::atomic<int> seen{0};
  http::HttpServerOptions options;
  options.routes = {
      {"/api/v1/auth/verify", false, http::RunOn::kWorker, [&seen](const http::HttpRequest& r) {
         ++seen;
         http::HttpResponse out;
         out.content_type = "application/json";
         const std::string* auth = r.FindHeader("Authorization");
         if (auth == nullptr || *auth != "Bearer token-0123456789abcdef") {
           out.status = 401;
           return out;
         }
         out.body = r.body.find("\"password\":\"good\"") != std::string::npos
                        ? "{\"result\":\"ok\",\"address\":\"a@b.example\"}"
                        : "{\"result\":\"bad_credentials\",\"failure_delay_ms\":1500}";
         return out;
       }}};
  auto server = http::HttpServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  const BackendEndpoint backend{
      .name = "b", .ip = "127.0.0.1", .pop3_port = 110, .admin_port = (*server)->port()};
  BackendVerifier verify = HttpBackendVerifier("token-0123456789abcdef", 5'000);
  EXPECT_EQ(verify(backend, "a@b.example", "good").code, BackendVerdict::Code::kOk);
  BackendVerdict bad = verify(backend, "a@b.example", "bad");
  EXPECT_EQ(bad.code, BackendVerdict::Code::kBadCredentials);
  EXPECT_EQ(bad.failure_delay_ms, 1500u);
  BackendVerifier wrong_token = HttpBackendVerifier("another-token-0123456789", 5'000);
  EXPECT_EQ(wrong_token(backend, "a@b.example", "good").code, BackendVerdict::Code::kUnavailable);
  EXPECT_EQ(seen.load(), 3);
  const uint16_t port = (*server)->port();
  server->reset();  // nobody listens there now
  const BackendEndpoint gone{.name = "b", .ip = "127.0.0.1", .admin_port = port};
  EXPECT_EQ(verify(gone, "a@b.example", "good").code, BackendVerdict::Code::kUnavailable);
}

}  // namespace
}  // namespace posthaste::server::route
