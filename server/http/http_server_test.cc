#include "server/http/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/testing/descriptor_table.h"
#include "gtest/gtest.h"

namespace posthaste::http {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A blocking client socket to 127.0.0.1:port, from `source` (another loopback address).
int Connect(uint16_t port, const char* source = nullptr) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{10, 0};  // no test waits on a read this long
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (source != nullptr) {
    sockaddr_in local{};
    local.sin_family = AF_INET;
    inet_pton(AF_INET, source, &local.sin_addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
      ADD_FAILURE() << "bind " << source;
    }
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ADD_FAILURE() << "connect";
  }
  return fd;
}

void SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return;  // the server may have closed: the reply tells
    data.remove_prefix(static_cast<size_t>(n));
  }
}

// Everything until EOF, a reset or the receive timeout.
std::string ReadAll(int fd) {
  std::string out;
  char buffer[65536];
  for (;;) {
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) return out;
    out.append(buffer, static_cast<size_t>(n));
  }
}

std::string Exchange(uint16_t port, std::string_view request, const char* source = nullptr) {
  const int fd = Connect(port, source);
  SendAll(fd, request);
  std::string reply = ReadAll(fd);
  close(fd);
  return reply;
}

int StatusOf(std::string_view reply) {
  if (reply.size() < 12 || reply.substr(0, 9) != "HTTP/1.1 ") return 0;
  return std::stoi(std::string(reply.substr(9, 3)));
}

std::string BodyOf(std::string_view reply) {
  const size_t end = reply.find("\r\n\r\n");
  return end == std::string_view::npos ? "" : std::string(reply.substr(end + 4));
}

HttpResponse Text(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.content_type = "text/plain";
  r.body = std::move(body);
  return r;
}

// A gate the /slow handler waits on, so tests can hold workers busy.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  int waiting = 0;
  void Wait() {
    std::unique_lock<std::mutex> lock(mu);
    ++waiting;
    cv.notify_all();
    cv.wait(lock, [this] { return open; });
  }
  void WaitForWaiters(int n) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::seconds(10), [&] { return waiting >= n; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu);
    open = true;
    cv.notify_all();
  }
};

constexpr std::string_view kGetHealth = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";

class HttpServerTest : public ::testing::Test {
 protected:
  void StartServer(HttpServerOptions options) {
    options.routes = {
        {"/healthz", false, RunOn::kEventLoop,
         [](const HttpRequest&) { return Text(200, "ok\n"); }},
        {"/echo", false, RunOn::kWorker,
         [](const HttpRequest& r) {
           return Text(200, absl::StrCat(r.method, " ", r.target, " ", r.body, " ", r.peer_ip));
         }},
        {"/slow", false, RunOn::kWorker,
         [this](const HttpRequest&) {
           gate_.Wait();
           return Text(200, "slow\n");
         }},
        {"/big", false, RunOn::kWorker,
         [](const HttpRequest&) { return Text(200, std::string(32 << 20, 'b')); }},
        {"/api/", true, RunOn::kWorker, [](const HttpRequest&) { return Text(200, "api\n"); }},
    };
    auto server = HttpServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    port_ = server_->port();
  }

  void TearDown() override {
    gate_.Open();
    server_.reset();
  }

  Gate gate_;
  std::unique_ptr<HttpServer> server_;
  uint16_t port_ = 0;
};

TEST_F(HttpServerTest, RoutesOnLoopAndWorkers) {
  StartServer({});
  std::string reply = Exchange(port_, kGetHealth);
  EXPECT_EQ(StatusOf(reply), 200) << reply;
  EXPECT_EQ(BodyOf(reply), "ok\n");
  EXPECT_NE(reply.find("\r\nConnection: close\r\n"), std::string::npos);
  reply = Exchange(port_, "POST /echo?x=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody");
  EXPECT_EQ(BodyOf(reply), "POST /echo?x=1 body 127.0.0.1") << reply;
  EXPECT_EQ(StatusOf(Exchange(port_, "GET /api/v1/x HTTP/1.1\r\nHost: t\r\n\r\n")), 200);
  EXPECT_EQ(StatusOf(Exchange(port_, "GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n")), 404);
  EXPECT_EQ(StatusOf(Exchange(port_, "GET /healthz/ HTTP/1.1\r\nHost: t\r\n\r\n")), 404);
  reply = Exchange(port_, "HEAD /healthz HTTP/1.0\r\n\r\n");
  EXPECT_EQ(StatusOf(reply), 200);
  EXPECT_NE(reply.find("Content-Length: 3\r\n"), std::string::npos);
  EXPECT_EQ(BodyOf(reply), "");
  EXPECT_EQ(server_->stats().responses[HttpServerStats::StatusSlot(200)].load(), 4u);
  EXPECT_EQ(server_->stats().responses[HttpServerStats::StatusSlot(404)].load(), 2u);
}

TEST_F(HttpServerTest, BadRequestsAnsweredAndClosed) {
  HttpServerOptions options;
  options.error_response = [](int status, std::string_view message) {
    return Text(status, absl::StrCat("custom ", message.size() > 0 ? "message" : ""));
  };
  StartServer(std::move(options));
  const std::string reply = Exchange(port_, "GET / HTTP/1.1\nHost: t\n\n");
  EXPECT_EQ(StatusOf(reply), 400);
  EXPECT_EQ(BodyOf(reply), "custom message");
  EXPECT_EQ(StatusOf(Exchange(port_,
                              "GET /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: "
                              "chunked\r\n\r\n0\r\n\r\n")),
            501);
  EXPECT_EQ(StatusOf(Exchange(port_, "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\n")), 414);
  EXPECT_EQ(StatusOf(Exchange(
                port_, "GET / HTTP/1.1\r\nHost: t\r\nX: " + std::string(20000, 'a') + "\r\n\r\n")),
            431);
}

TEST_F(HttpServerTest, OversizedBodyGets413EvenWhileTheClientSendsIt) {
  HttpServerOptions options;
  options.limits.body_bytes_max = 1000;
  StartServer(std::move(options));
  // The whole body is sent before reading: lingering keeps the answer from being reset away.
  const std::string reply =
      Exchange(port_, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\n\r\n" +
                          std::string(70000, 'x'));
  EXPECT_EQ(StatusOf(reply), 413) << reply.substr(0, 100);
}

TEST_F(HttpServerTest, ExpectContinue) {
  StartServer({});
  const int fd = Connect(port_);
  SendAll(fd,
          "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
  char interim[64] = {};
  const ssize_t n = recv(fd, interim, sizeof(interim), 0);
  EXPECT_EQ(std::string(interim, n > 0 ? n : 0), "HTTP/1.1 100 Continue\r\n\r\n");
  SendAll(fd, "ok");
  const std::string reply = ReadAll(fd);
  close(fd);
  EXPECT_EQ(StatusOf(reply), 200);
  EXPECT_EQ(BodyOf(reply), "POST /echo ok 127.0.0.1");
}

TEST_F(HttpServerTest, HeaderDeadlineIsAbsoluteEvenForATrickle) {
  HttpServerOptions options;
  options.header_timeout_ms = 500;
  StartServer(std::move(options));
  const auto start = Clock::now();
  const int stalled = Connect(port_);
  SendAll(stalled, "GET /x HTTP/1.1\r\nX-A: a");
  const int trickle = Connect(port_);
  std::atomic<bool> stop{false};
  std::thread trickler([&] {
    const std::string head = "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaa";
    for (size_t i = 0; i < head.size() && !stop.load(); ++i) {
      if (send(trickle, &head[i], 1, MSG_NOSIGNAL) != 1) return;
      std::this_thread::sleep_for(milliseconds(50));
    }
  });
  // Meanwhile the loop answers others at once.
  EXPECT_EQ(StatusOf(Exchange(port_, kGetHealth)), 200);
  const std::string stalled_reply = ReadAll(stalled);
  const auto stalled_after = Clock::now() - start;
  const std::string trickle_reply = ReadAll(trickle);
  const auto trickle_after = Clock::now() - start;
  stop = true;
  trickler.join();
  close(stalled);
  close(trickle);
  EXPECT_EQ(StatusOf(stalled_reply), 408) << stalled_reply;
  EXPECT_EQ(StatusOf(trickle_reply), 408) << trickle_reply;
  // Closed at the deadline (not before, and not extended by the trickle's progress).
  EXPECT_GE(stalled_after, milliseconds(450));
  EXPECT_LT(stalled_after, milliseconds(3000));
  EXPECT_GE(trickle_after, milliseconds(450));
  EXPECT_LT(trickle_after, milliseconds(3000));
  EXPECT_EQ(server_->stats().header_timeouts.load(), 2u);
}

TEST_F(HttpServerTest, BodyDeadline) {
  HttpServerOptions options;
  options.body_timeout_ms = 300;
  StartServer(std::move(options));
  const int fd = Connect(port_);
  SendAll(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
  const std::string reply = ReadAll(fd);
  close(fd);
  EXPECT_EQ(StatusOf(reply), 408);
  EXPECT_EQ(server_->stats().body_timeouts.load(), 1u);
}

TEST_F(HttpServerTest, LoopRoutesAnswerWhileWorkersAreBusyAndTheQueueIsBounded) {
  HttpServerOptions options;
  options.workers = 1;
  options.worker_queue_max = 1;
  StartServer(std::move(options));
  const std::string slow = "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n";
  const int running = Connect(port_);
  SendAll(running, slow);
  gate_.WaitForWaiters(1);
  const int queued = Connect(port_);
  SendAll(queued, slow);
  // Let the loop queue it: an answered probe shows the loop got past it.
  EXPECT_EQ(StatusOf(Exchange(port_, kGetHealth)), 200);
  EXPECT_EQ(StatusOf(Exchange(port_, slow)), 503);  // the queue is full
  EXPECT_EQ(StatusOf(Exchange(port_, kGetHealth)), 200);
  EXPECT_EQ(server_->stats().worker_queue_full.load(), 1u);
  gate_.Open();
  EXPECT_EQ(StatusOf(ReadAll(running)), 200);
  EXPECT_EQ(StatusOf(ReadAll(queued)), 200);
  close(running);
  close(queued);
}

TEST_F(HttpServerTest, PerIpLimit) {
  HttpServerOptions options;
  options.connections_per_ip_max = 3;
  StartServer(std::move(options));
  std::vector<int> idle;
  for (int i = 0; i < 3; ++i) {
    idle.push_back(Connect(port_));
    SendAll(idle.back(), "GET /x HTTP/1.1\r\n");
  }
  // Each accepted connection is counted before the next is accepted: the 4th is over.
  while (server_->stats().connections_open.load() < 3) std::this_thread::sleep_for(milliseconds(5));
  const std::string refused = Exchange(port_, kGetHealth);
  EXPECT_TRUE(refused.empty() || StatusOf(refused) == 503) << refused;
  EXPECT_EQ(server_->stats().refused_per_ip.load(), 1u);
  // Another address is not affected.
  EXPECT_EQ(StatusOf(Exchange(port_, kGetHealth, "127.0.0.2")), 200);
  close(idle.back());
  idle.pop_back();
  while (server_->stats().connections_open.load() > 2) std::this_thread::sleep_for(milliseconds(5));
  EXPECT_EQ(StatusOf(Exchange(port_, kGetHealth)), 200);
  for (int fd : idle) close(fd);
}

TEST_F(HttpServerTest, AtTheDescriptorLimitQueuedClientsGet503AndAcceptingResumes) {
  StartServer({});
  constexpr int kClients = 3;
  std::vector<int> clients;
  for (int i = 0; i < kClients + 1; ++i) {
    clients.push_back(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    timeval tv{10, 0};
    setsockopt(clients.back(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);

  // The server's accept gets EMFILE from here on.
  testing::DescriptorTableFull table_full;
  ASSERT_TRUE(table_full.full());

  for (int i = 0; i < kClients; ++i) {
    ASSERT_EQ(connect(clients[i], reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    SendAll(clients[i], kGetHealth);
  }
  for (int i = 0; i < kClients; ++i) {
    const std::string reply = ReadAll(clients[i]);
    EXPECT_EQ(StatusOf(reply), 503) << "client " << i << ": " << reply;
    EXPECT_NE(reply.find("capacity"), std::string::npos) << reply;
  }
  EXPECT_EQ(server_->stats().refused_descriptors.load(), static_cast<uint64_t>(kClients));
  EXPECT_EQ(server_->stats().connections_accepted.load(), 0u);

  // Descriptors free again: the next request is served, nobody restarted anything.
  table_full.Release();
  ASSERT_EQ(connect(clients[kClients], reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  SendAll(clients[kClients], kGetHealth);
  const std::string served = ReadAll(clients[kClients]);
  EXPECT_EQ(StatusOf(served), 200) << served;
  for (int c : clients) close(c);
}

TEST_F(HttpServerTest, FullListenerEvictsTheOldestHeadReader) {
  HttpServerOptions options;
  options.connections_max = 3;
  options.connections_per_ip_max = 0;
  StartServer(std::move(options));
  std::vector<int> idle;
  for (int i = 0; i < 3; ++i) {
    idle.push_back(Connect(port_));
    SendAll(idle.back(), "GET /x HTTP/1.1\r\n");
    std::this_thread::sleep_for(milliseconds(20));
  }
  while (server_->stats().connections_open.load() < 3) std::this_thread::sleep_for(milliseconds(5));
  // Too young to evict: refused.
  const std::string refused = Exchange(port_, kGetHealth);
  EXPECT_TRUE(refused.empty() || StatusOf(refused) == 503) << refused;
  EXPECT_EQ(server_->stats().refused_full.load(), 1u);
  std::this_thread::sleep_for(milliseconds(HttpServer::kEvictAfterMs + 100));
  EXPECT_EQ(StatusOf(Exchange(port_, kGetHealth)), 200);
  EXPECT_EQ(server_->stats().evicted.load(), 1u);
  // The first (oldest) was the one closed.
  EXPECT_EQ(ReadAll(idle[0]), "");
  for (int fd : idle) close(fd);
}

TEST_F(HttpServerTest, WriteDeadlineAbortsAReaderThatNeverReads) {
  HttpServerOptions options;
  options.write_timeout_ms = 300;
  StartServer(std::move(options));
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  SendAll(fd, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (server_->stats().write_timeouts.load() == 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_EQ(server_->stats().write_timeouts.load(), 1u);
  EXPECT_EQ(server_->stats().connections_open.load(), 0u);
  close(fd);
}

TEST_F(HttpServerTest, StopsWithStalledClientsAndABusyWorker) {
  HttpServerOptions options;
  options.workers = 1;
  StartServer(std::move(options));
  const int stalled = Connect(port_);
  SendAll(stalled, "GET / HTTP/1.1\r\n");
  const int busy = Connect(port_);
  SendAll(busy, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
  gate_.WaitForWaiters(1);
  std::thread opener([this] {
    std::this_thread::sleep_for(milliseconds(100));
    gate_.Open();
  });
  server_.reset();  // waits for the running handler, closes both connections
  opener.join();
  EXPECT_EQ(ReadAll(stalled), "");
  EXPECT_EQ(ReadAll(busy), "");
  close(stalled);
  close(busy);
}

// Stopping must not wait for the event loop's next deadline: the destructor wakes the loop. Here
// that deadline is a stalled client's 30 s header timeout, so a loop left asleep in epoll_wait
// would hold the destructor (and `posthaste serve`'s shutdown) for 30 s.
TEST_F(HttpServerTest, StopWakesTheLoopInsteadOfWaitingForItsNextDeadline) {
  constexpr uint32_t kDeadlineMs = 30'000;
  HttpServerOptions options;
  options.header_timeout_ms = kDeadlineMs;
  options.body_timeout_ms = kDeadlineMs;
  options.write_timeout_ms = kDeadlineMs;
  StartServer(std::move(options));
  const int stalled = Connect(port_);
  SendAll(stalled, "GET / HTTP/1.1\r\n");
  // The loop has accepted it (its header deadline is armed) and gone back to sleep.
  const Clock::time_point give_up = Clock::now() + std::chrono::seconds(10);
  while (server_->stats().connections_open.load() == 0 && Clock::now() < give_up) {
    std::this_thread::sleep_for(milliseconds(1));
  }
  ASSERT_EQ(server_->stats().connections_open.load(), 1u);
  std::this_thread::sleep_for(milliseconds(50));
  const Clock::time_point start = Clock::now();
  server_.reset();
  const Clock::duration took = Clock::now() - start;
  // A correctness bound (the wake-up happened), not a speed one.
  EXPECT_LT(took, milliseconds(kDeadlineMs / 3));
  EXPECT_EQ(ReadAll(stalled), "");
  close(stalled);
}

// The head check answers from the head alone: a refused request announcing a large body gets
// its answer although the client sends nothing after the head (without the check the server
// would wait for the body and answer 408 at the body deadline), and no handler runs. A request
// the check lets through still sends its body and reaches its handler.
TEST_F(HttpServerTest, HeadCheckRefusesBeforeTheBody) {
  HttpServerOptions options;
  options.limits.body_bytes_max = 64 << 20;
  options.body_timeout_ms = 60'000;  // far beyond the client's receive timeout
  std::atomic<int> checks{0};
  options.head_check = [&checks](const HttpRequest& head) -> std::optional<HttpResponse> {
    ++checks;
    const std::string* key = head.FindHeader("X-Key");
    if (key != nullptr && *key == "right") return std::nullopt;
    return Text(401, "no\n");
  };
  StartServer(std::move(options));
  const int fd = Connect(port_);
  SendAll(fd, "PUT /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 50000000\r\n\r\n");
  const std::string reply = ReadAll(fd);  // EOF follows the answer: the server shut down its side
  close(fd);
  EXPECT_EQ(StatusOf(reply), 401) << reply;
  EXPECT_EQ(BodyOf(reply), "no\n");
  EXPECT_EQ(server_->stats().body_timeouts.load(), 0u);
  // Expect: 100-continue gets the refusal instead of the go-ahead.
  const std::string expecting = Exchange(
      port_, "PUT /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n");
  EXPECT_EQ(StatusOf(expecting), 401) << expecting;
  EXPECT_EQ(expecting.find("100 Continue"), std::string::npos);
  const std::string passed = Exchange(
      port_, "PUT /echo HTTP/1.1\r\nHost: t\r\nX-Key: right\r\nContent-Length: 4\r\n\r\nbody");
  EXPECT_EQ(StatusOf(passed), 200) << passed;
  EXPECT_EQ(BodyOf(passed), "PUT /echo body 127.0.0.1");
  EXPECT_EQ(checks.load(), 3);
}

TEST(HttpServerOptionsTest, BadOptionsAndBusyPort) {
  HttpServerOptions options;
  options.workers = 0;
  EXPECT_FALSE(HttpServer::Start(options).ok());
  options = HttpServerOptions();
  options.host = "not-an-address";
  EXPECT_FALSE(HttpServer::Start(options).ok());
  auto first = HttpServer::Start(HttpServerOptions());
  ASSERT_TRUE(first.ok());
  options = HttpServerOptions();
  options.port = (*first)->port();
  EXPECT_FALSE(HttpServer::Start(options).ok());
}

}  // namespace
}  // namespace posthaste::http
