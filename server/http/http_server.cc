#include "server/http/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/strings.h"
#include "server/reactor/net.h"

namespace posthaste::http {
namespace {

using Clock = std::chrono::steady_clock;

// epoll keys: the listener, the wake-up eventfd, then one per connection (never reused, so a
// stale event for a closed connection finds nothing).
constexpr uint64_t kListenerKey = 1;
constexpr uint64_t kWakeKey = 2;
constexpr uint64_t kFirstConnectionKey = 16;

constexpr int kEventsPerWait = 64;
constexpr int kAcceptsPerWake = 64;
constexpr int kReadsPerWake = 4;  // then other connections get their turn (level-triggered)
constexpr size_t kReadChunkBytes = 16 * 1024;
constexpr size_t kLingerDiscardBytesMax = 256 * 1024;
constexpr auto kAcceptErrorBackoff = std::chrono::milliseconds(100);
// Connections answered 503 on the reserve descriptor per back-off at the descriptor limit.
constexpr int kRefusalsPerBackoff = 16;
constexpr int kListenBacklog = 512;
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

enum class ConnState : uint8_t {
  kReadingHead,  // header deadline armed
  kReadingBody,  // body deadline armed
  kHandling,     // a worker has the request; no deadline, no reads
  kWriting,      // write deadline armed
  kLingering,    // response sent, our side shut down; discarding input until EOF or kLingerMs
};

struct Connection {
  Connection(uint64_t k, int f, std::string peer, const RequestLimits& limits)
      : key(k), fd(f), ip(std::move(peer)), parser(limits) {}
  const uint64_t key;
  const int fd;
  const std::string ip;
  Clock::time_point accepted_at;
  ConnState state = ConnState::kReadingHead;
  Clock::time_point deadline = Clock::time_point::max();  // max: none
  uint32_t interest = EPOLLIN;
  RequestParser parser;
  HttpRequest request;
  bool head_only = false;
  std::string out;
  size_t out_sent = 0;
  size_t discarded = 0;
};

struct Job {
  uint64_t key;
  HttpRequest request;
  const HttpHandler* handler;
};

struct Done {
  uint64_t key;
  HttpResponse response;
};

std::string PeerIp(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(addr).sin_addr, text, sizeof(text));
  } else if (addr.ss_family == AF_INET6) {
    const in6_addr& a6 = reinterpret_cast<const sockaddr_in6&>(addr).sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a6)) {
      inet_ntop(AF_INET, &a6.s6_addr[12], text, sizeof(text));
    } else {
      inet_ntop(AF_INET6, &a6, text, sizeof(text));
    }
  }
  return text;
}

HttpResponse PlainError(int status, std::string_view message) {
  HttpResponse r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.body = absl::StrCat(AbslView(message), "\n");
  return r;
}

}  // namespace

size_t HttpServerStats::StatusSlot(int status) {
  for (size_t i = 0; i < kCountedStatuses.size(); ++i) {
    if (kCountedStatuses[i] == status) return i;
  }
  return kCountedStatuses.size();
}

struct HttpServer::Impl {
  explicit Impl(HttpServerOptions o) : options(std::move(o)) {}
  ~Impl();

  absl::Status Open();
  void Run();

  // Event loop (loop thread only).
  void OnAcceptable();
  // At the descriptor limit: gives up the reserve descriptor to answer queued connections 503
  // (rather than leave them, a Prometheus scrape among them, waiting in the listen queue until
  // descriptors free up), then takes it back.
  void RefuseQueuedWithReserve();
  void Admit(int fd, const sockaddr_storage& addr);
  void Refuse(int fd, std::string_view message);
  bool EvictOldestHeadReader(Clock::time_point now);
  void OnConnectionEvent(Connection& c, uint32_t events);
  void ReadRequest(Connection& c);
  // Returns false once `c` stopped reading its request (answered, handed on or closed).
  bool ConsumeRequestBytes(Connection& c, std::string_view data);
  void Dispatch(Connection& c);
  void RespondError(Connection& c, int status, std::string_view message);
  void Respond(Connection& c, const HttpResponse& response);
  void ContinueWrite(Connection& c);
  void StartLinger(Connection& c);
  void Linger(Connection& c);
  void Close(Connection& c, bool abort = false);
  void SetDeadline(Connection& c, Clock::time_point deadline);
  void SetInterest(Connection& c, uint32_t events);
  void ExpireDeadlines(Clock::time_point now);
  int NextTimeoutMs(Clock::time_point now) const;
  void OnWake();
  void CloseAll();
  HttpResponse ErrorResponse(int status, std::string_view message) const;

  // Workers.
  bool Submit(Job job);
  void WorkerLoop();

  const HttpServerOptions options;
  int listen_fd = -1;
  int epoll_fd = -1;
  int wake_fd = -1;
  int reserve_fd = -1;          // an eventfd, held to be given up at the descriptor limit
  bool accept_failing = false;  // loop thread: an accept error episode is under way (logged)
  uint16_t port = 0;
  std::atomic<bool> stopping{false};
  HttpServerStats stats;
  std::thread loop_thread;
  std::vector<std::thread> worker_threads;

  std::mutex queue_mu;
  std::condition_variable queue_cv;
  std::deque<Job> queue;          // by queue_mu
  bool workers_stopping = false;  // by queue_mu

  std::mutex done_mu;
  std::vector<Done> done;  // by done_mu

  // Loop thread only.
  absl::flat_hash_map<uint64_t, std::unique_ptr<Connection>> connections;
  std::set<std::pair<Clock::time_point, uint64_t>> deadlines;
  absl::flat_hash_map<std::string, uint32_t> per_ip;
  uint64_t next_key = kFirstConnectionKey;
  Clock::time_point accept_paused_until = Clock::time_point::min();
  bool accept_paused = false;
};

HttpServer::Impl::~Impl() {
  if (wake_fd >= 0) close(wake_fd);
  if (reserve_fd >= 0) close(reserve_fd);
  if (epoll_fd >= 0) close(epoll_fd);
  if (listen_fd >= 0) close(listen_fd);
}

absl::Status HttpServer::Impl::Open() {
  reactor::ListenerOptions lo;
  lo.host = options.host;
  lo.port = options.port;
  lo.reuse_port = false;
  lo.backlog = kListenBacklog;
  auto fd = reactor::CreateListener(lo);
  if (!fd.ok()) return fd.status();
  listen_fd = *fd;
  auto bound = reactor::LocalPort(listen_fd);
  if (!bound.ok()) return bound.status();
  port = *bound;
  epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd < 0 || wake_fd < 0) return absl::InternalError("epoll_create1/eventfd failed");
  // An eventfd needs no file system (a chroot may lack /dev/null); any descriptor holds a slot.
  reserve_fd = eventfd(0, EFD_CLOEXEC);
  if (reserve_fd < 0) return absl::InternalError("eventfd for the reserve descriptor failed");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenerKey;
  if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev) != 0) {
    return absl::InternalError("epoll_ctl(listener) failed");
  }
  ev.data.u64 = kWakeKey;
  if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, wake_fd, &ev) != 0) {
    return absl::InternalError("epoll_ctl(eventfd) failed");
  }
  return absl::OkStatus();
}

HttpResponse HttpServer::Impl::ErrorResponse(int status, std::string_view message) const {
  HttpResponse r = options.error_response ? options.error_response(status, message)
                                          : PlainError(status, message);
  r.status = status;
  if (status == 503) r.headers.push_back({"Retry-After", "1"});
  return r;
}

void HttpServer::Impl::Run() {
  epoll_event events[kEventsPerWait];
  while (!stopping.load(std::memory_order_acquire)) {
    const int n = epoll_wait(epoll_fd, events, kEventsPerWait, NextTimeoutMs(Clock::now()));
    if (n < 0 && errno != EINTR) {
      LogEvent(LogLevel::kError, "http: epoll_wait failed",
               {{"listener", options.name}, {"errno", std::to_string(errno)}});
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    for (int i = 0; i < n; ++i) {
      const uint64_t key = events[i].data.u64;
      if (key == kListenerKey) {
        OnAcceptable();
      } else if (key == kWakeKey) {
        OnWake();
      } else if (auto it = connections.find(key); it != connections.end()) {
        OnConnectionEvent(*it->second, events[i].events);
      }
    }
    ExpireDeadlines(Clock::now());
  }
  CloseAll();
}

int HttpServer::Impl::NextTimeoutMs(Clock::time_point now) const {
  Clock::time_point next = Clock::time_point::max();
  if (!deadlines.empty()) next = deadlines.begin()->first;
  if (accept_paused && accept_paused_until < next) next = accept_paused_until;
  if (next == Clock::time_point::max()) return -1;
  if (next <= now) return 0;
  // Round up: waking a little early would only spin until the deadline.
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(next - now).count();
  return static_cast<int>(std::min<int64_t>(ms, 60'000));
}

void HttpServer::Impl::OnAcceptable() {
  for (int i = 0; i < kAcceptsPerWake; ++i) {
    sockaddr_storage addr{};
    socklen_t addr_len = sizeof(addr);
    const int fd = accept4(listen_fd, reinterpret_cast<sockaddr*>(&addr), &addr_len,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      if (accept_failing) {
        accept_failing = false;
        LogEvent(LogLevel::kInfo, "http: accepting again", {{"listener", options.name}});
      }
      Admit(fd, addr);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    // Out of descriptors or memory: a level-triggered listener would wake us at once again,
    // so stop watching it for a moment. Logged once per episode, not once per back-off.
    const int error = errno;
    if (!accept_failing) {
      accept_failing = true;
      LogEvent(LogLevel::kWarning, "http: accept failed, pausing",
               {{"listener", options.name}, {"error", std::strerror(error)}});
    }
    if (error == EMFILE || error == ENFILE) RefuseQueuedWithReserve();
    epoll_event ev{};
    ev.data.u64 = kListenerKey;
    epoll_ctl(epoll_fd, EPOLL_CTL_MOD, listen_fd, &ev);
    accept_paused = true;
    accept_paused_until = Clock::now() + kAcceptErrorBackoff;
    return;
  }
}

void HttpServer::Impl::RefuseQueuedWithReserve() {
  if (reserve_fd < 0) reserve_fd = eventfd(0, EFD_CLOEXEC);  // a slot freed since?
  if (reserve_fd < 0) return;
  close(reserve_fd);
  reserve_fd = -1;
  for (int i = 0; i < kRefusalsPerBackoff; ++i) {
    sockaddr_storage addr{};
    socklen_t addr_len = sizeof(addr);
    const int fd = accept4(listen_fd, reinterpret_cast<sockaddr*>(&addr), &addr_len,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) break;  // the queue is empty, or another thread took the freed slot
    // Descriptors may have freed up meanwhile: if the reserve can be taken back beside this
    // connection, it is served, not refused.
    reserve_fd = eventfd(0, EFD_CLOEXEC);
    if (reserve_fd >= 0) {
      Admit(fd, addr);
      return;
    }
    stats.refused_descriptors.fetch_add(1, std::memory_order_relaxed);
    Refuse(fd, "server at capacity, try again later");
  }
  // Another thread may take the slot meanwhile: then the next back-off tries again.
  reserve_fd = eventfd(0, EFD_CLOEXEC);
}

void HttpServer::Impl::Admit(int fd, const sockaddr_storage& addr) {
  std::string ip = PeerIp(addr);
  auto ip_it = per_ip.find(ip);
  if (options.connections_per_ip_max > 0 && ip_it != per_ip.end() &&
      ip_it->second >= options.connections_per_ip_max) {
    stats.refused_per_ip.fetch_add(1, std::memory_order_relaxed);
    Refuse(fd, "too many connections from your address");
    return;
  }
  const Clock::time_point now = Clock::now();
  if (connections.size() >= options.connections_max && !EvictOldestHeadReader(now)) {
    stats.refused_full.fetch_add(1, std::memory_order_relaxed);
    Refuse(fd, "too many connections");
    return;
  }
  const uint64_t key = next_key++;
  auto c = std::make_unique<Connection>(key, fd, ip, options.limits);
  c->accepted_at = now;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = key;
  if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    close(fd);
    return;
  }
  ++per_ip[ip];
  Connection& conn = *c;
  connections.emplace(key, std::move(c));
  stats.connections_accepted.fetch_add(1, std::memory_order_relaxed);
  stats.connections_open.fetch_add(1, std::memory_order_relaxed);
  SetDeadline(conn, now + std::chrono::milliseconds(options.header_timeout_ms));
}

void HttpServer::Impl::Refuse(int fd, std::string_view message) {
  // Read what already arrived so that closing does not turn into a reset that could destroy
  // the answer before the client reads it (best effort: nothing here may block).
  char sink[4096];
  while (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0) {
  }
  const std::string reply = SerializeResponse(ErrorResponse(503, message), false);
  [[maybe_unused]] ssize_t sent = send(fd, reply.data(), reply.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  shutdown(fd, SHUT_WR);
  close(fd);
}

bool HttpServer::Impl::EvictOldestHeadReader(Clock::time_point now) {
  Connection* oldest = nullptr;
  for (auto& [key, c] : connections) {
    if (c->state != ConnState::kReadingHead) continue;
    if (oldest == nullptr || c->accepted_at < oldest->accepted_at) oldest = c.get();
  }
  if (oldest == nullptr ||
      now - oldest->accepted_at < std::chrono::milliseconds(HttpServer::kEvictAfterMs)) {
    return false;
  }
  stats.evicted.fetch_add(1, std::memory_order_relaxed);
  Close(*oldest, /*abort=*/true);
  return true;
}

void HttpServer::Impl::OnConnectionEvent(Connection& c, uint32_t events) {
  switch (c.state) {
    case ConnState::kReadingHead:
    case ConnState::kReadingBody:
      ReadRequest(c);
      return;
    case ConnState::kHandling:
      if (events & (EPOLLERR | EPOLLHUP)) Close(c);
      return;
    case ConnState::kWriting:
      ContinueWrite(c);
      return;
    case ConnState::kLingering:
      Linger(c);
      return;
  }
}

void HttpServer::Impl::ReadRequest(Connection& c) {
  char buffer[kReadChunkBytes];
  for (int i = 0; i < kReadsPerWake; ++i) {
    const ssize_t n = recv(c.fd, buffer, sizeof(buffer), 0);
    if (n > 0) {
      if (!ConsumeRequestBytes(c, std::string_view(buffer, static_cast<size_t>(n)))) return;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    Close(c);  // the client left (or failed) before finishing its request: nobody to answer
    return;
  }
}

bool HttpServer::Impl::ConsumeRequestBytes(Connection& c, std::string_view data) {
  if (c.state == ConnState::kReadingHead) {
    size_t used = 0;
    switch (c.parser.Feed(data, &used)) {
      case RequestParser::Result::kNeedMore:
        return true;
      case RequestParser::Result::kError:
        RespondError(c, c.parser.error_status(), c.parser.error_reason());
        return false;
      case RequestParser::Result::kDone:
        break;
    }
    data.remove_prefix(used);
    c.request = c.parser.TakeRequest();
    c.request.peer_ip = c.ip;
    c.head_only = c.request.method == "HEAD";
    if (options.head_check) {
      if (std::optional<HttpResponse> refusal = options.head_check(c.request)) {
        Respond(c, *refusal);  // then lingers: a body sent anyway is discarded, bounded
        return false;
      }
    }
    if (c.request.content_length == 0) {
      Dispatch(c);
      return false;
    }
    c.state = ConnState::kReadingBody;
    c.request.body.reserve(c.request.content_length);
    SetDeadline(c, Clock::now() + std::chrono::milliseconds(options.body_timeout_ms));
    if (c.request.expects_continue && c.request.version_minor == 1 && data.empty()) {
      // A fresh socket's send buffer always has room for these few bytes.
      [[maybe_unused]] ssize_t sent =
          send(c.fd, kContinue.data(), kContinue.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    }
  }
  const uint64_t missing = c.request.content_length - c.request.body.size();
  c.request.body.append(data.data(), std::min<uint64_t>(missing, data.size()));
  if (c.request.body.size() < c.request.content_length) return true;
  Dispatch(c);  // anything after the body is ignored: one request per connection
  return false;
}

void HttpServer::Impl::Dispatch(Connection& c) {
  const std::string_view path = c.request.path();
  const HttpRoute* route = nullptr;
  for (const HttpRoute& r : options.routes) {
    if (r.prefix ? path.substr(0, r.path.size()) == r.path : path == r.path) {
      route = &r;
      break;
    }
  }
  if (route == nullptr) {
    RespondError(c, 404, "no such resource");
    return;
  }
  if (route->run_on == RunOn::kEventLoop) {
    Respond(c, route->handler(c.request));
    return;
  }
  c.state = ConnState::kHandling;
  SetDeadline(c, Clock::time_point::max());
  SetInterest(c, 0);
  if (!Submit(Job{c.key, std::move(c.request), &route->handler})) {
    stats.worker_queue_full.fetch_add(1, std::memory_order_relaxed);
    RespondError(c, 503, "busy, try again");
  }
}

void HttpServer::Impl::RespondError(Connection& c, int status, std::string_view message) {
  Respond(c, ErrorResponse(status, message));
}

void HttpServer::Impl::Respond(Connection& c, const HttpResponse& response) {
  stats.responses[HttpServerStats::StatusSlot(response.status)].fetch_add(
      1, std::memory_order_relaxed);
  c.out = SerializeResponse(response, c.head_only);
  c.out_sent = 0;
  c.state = ConnState::kWriting;
  c.request = HttpRequest();
  SetDeadline(c, Clock::now() + std::chrono::milliseconds(options.write_timeout_ms));
  ContinueWrite(c);
}

void HttpServer::Impl::ContinueWrite(Connection& c) {
  while (c.out_sent < c.out.size()) {
    const ssize_t n =
        send(c.fd, c.out.data() + c.out_sent, c.out.size() - c.out_sent, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      SetInterest(c, EPOLLOUT);
      return;
    }
    Close(c);
    return;
  }
  StartLinger(c);
}

void HttpServer::Impl::StartLinger(Connection& c) {
  shutdown(c.fd, SHUT_WR);
  std::string().swap(c.out);
  c.state = ConnState::kLingering;
  SetDeadline(c, Clock::now() + std::chrono::milliseconds(HttpServer::kLingerMs));
  SetInterest(c, EPOLLIN);
}

void HttpServer::Impl::Linger(Connection& c) {
  char sink[kReadChunkBytes];
  for (int i = 0; i < kReadsPerWake; ++i) {
    const ssize_t n = recv(c.fd, sink, sizeof(sink), 0);
    if (n > 0) {
      c.discarded += static_cast<size_t>(n);
      if (c.discarded > kLingerDiscardBytesMax) {
        Close(c, /*abort=*/true);
        return;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    Close(c);  // EOF: the client has read the answer and closed
    return;
  }
}

void HttpServer::Impl::Close(Connection& c, bool abort) {
  SetDeadline(c, Clock::time_point::max());
  if (abort) {
    reactor::AbortSocket(c.fd);  // also removes it from the epoll set
  } else {
    close(c.fd);
  }
  if (auto it = per_ip.find(c.ip); it != per_ip.end() && --it->second == 0) per_ip.erase(it);
  stats.connections_open.fetch_sub(1, std::memory_order_relaxed);
  connections.erase(c.key);  // destroys c
}

void HttpServer::Impl::SetDeadline(Connection& c, Clock::time_point deadline) {
  if (c.deadline != Clock::time_point::max()) deadlines.erase({c.deadline, c.key});
  c.deadline = deadline;
  if (deadline != Clock::time_point::max()) deadlines.insert({deadline, c.key});
}

void HttpServer::Impl::SetInterest(Connection& c, uint32_t events) {
  if (c.interest == events) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = c.key;
  epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c.fd, &ev);
  c.interest = events;
}

void HttpServer::Impl::ExpireDeadlines(Clock::time_point now) {
  if (accept_paused && now >= accept_paused_until) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kListenerKey;
    epoll_ctl(epoll_fd, EPOLL_CTL_MOD, listen_fd, &ev);
    accept_paused = false;
  }
  while (!deadlines.empty() && deadlines.begin()->first <= now) {
    auto it = connections.find(deadlines.begin()->second);
    if (it == connections.end()) {  // cannot happen: Close() removes the deadline
      deadlines.erase(deadlines.begin());
      continue;
    }
    Connection& c = *it->second;
    switch (c.state) {
      case ConnState::kReadingHead:
        stats.header_timeouts.fetch_add(1, std::memory_order_relaxed);
        RespondError(c, 408, "request head not received in time");
        break;
      case ConnState::kReadingBody:
        stats.body_timeouts.fetch_add(1, std::memory_order_relaxed);
        RespondError(c, 408, "request body not received in time");
        break;
      case ConnState::kWriting:
        stats.write_timeouts.fetch_add(1, std::memory_order_relaxed);
        Close(c, /*abort=*/true);
        break;
      case ConnState::kHandling:  // never has a deadline
      case ConnState::kLingering:
        Close(c);
        break;
    }
  }
}

void HttpServer::Impl::OnWake() {
  uint64_t count = 0;
  [[maybe_unused]] ssize_t n = read(wake_fd, &count, sizeof(count));
  std::vector<Done> finished;
  {
    std::lock_guard<std::mutex> lock(done_mu);
    finished.swap(done);
  }
  for (Done& d : finished) {
    auto it = connections.find(d.key);
    if (it == connections.end() || it->second->state != ConnState::kHandling) continue;
    Respond(*it->second, d.response);
  }
}

void HttpServer::Impl::CloseAll() {
  while (!connections.empty()) Close(*connections.begin()->second, /*abort=*/true);
  epoll_ctl(epoll_fd, EPOLL_CTL_DEL, listen_fd, nullptr);
  close(listen_fd);
  listen_fd = -1;
}

bool HttpServer::Impl::Submit(Job job) {
  {
    std::lock_guard<std::mutex> lock(queue_mu);
    if (queue.size() >= options.worker_queue_max) return false;
    queue.push_back(std::move(job));
  }
  queue_cv.notify_one();
  return true;
}

void HttpServer::Impl::WorkerLoop() {
  for (;;) {
    std::optional<Job> job;
    {
      std::unique_lock<std::mutex> lock(queue_mu);
      queue_cv.wait(lock, [this] { return workers_stopping || !queue.empty(); });
      if (workers_stopping) return;
      job.emplace(std::move(queue.front()));
      queue.pop_front();
    }
    HttpResponse response = (*job->handler)(job->request);
    {
      std::lock_guard<std::mutex> lock(done_mu);
      done.push_back(Done{job->key, std::move(response)});
    }
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd, &one, sizeof(one));
  }
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options) {
  if (options.connections_max < 1 || options.connections_max > HttpServerOptions::kConnectionsMax ||
      options.workers < 1 || options.workers > HttpServerOptions::kWorkersMax ||
      options.header_timeout_ms < 1 ||
      options.header_timeout_ms > HttpServerOptions::kTimeoutMsMax || options.body_timeout_ms < 1 ||
      options.body_timeout_ms > HttpServerOptions::kTimeoutMsMax || options.write_timeout_ms < 1 ||
      options.write_timeout_ms > HttpServerOptions::kTimeoutMsMax ||
      options.limits.request_line_bytes_max < 16 ||
      options.limits.head_bytes_max < options.limits.request_line_bytes_max) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad options for the HTTP listener ", options.name));
  }
  auto impl = std::make_unique<Impl>(std::move(options));
  if (absl::Status opened = impl->Open(); !opened.ok()) {
    return absl::Status(opened.code(), absl::StrCat("cannot serve HTTP (", impl->options.name,
                                                    ") on ", impl->options.host, ":",
                                                    impl->options.port, ": ", opened.message()));
  }
  Impl* raw = impl.get();
  const std::string thread_name = ("http-" + raw->options.name).substr(0, 15);
  for (uint32_t i = 0; i < raw->options.workers; ++i) {
    raw->worker_threads.emplace_back([raw] { raw->WorkerLoop(); });
    pthread_setname_np(raw->worker_threads.back().native_handle(), thread_name.c_str());
  }
  raw->loop_thread = std::thread([raw] { raw->Run(); });
  pthread_setname_np(raw->loop_thread.native_handle(), thread_name.c_str());
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::~HttpServer() {
  Impl& impl = *impl_;
  impl.stopping.store(true, std::memory_order_release);
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(impl.wake_fd, &one, sizeof(one));
  if (impl.loop_thread.joinable()) impl.loop_thread.join();
  {
    std::lock_guard<std::mutex> lock(impl.queue_mu);
    impl.workers_stopping = true;
    impl.queue.clear();
  }
  impl.queue_cv.notify_all();
  for (std::thread& t : impl.worker_threads) t.join();
}

uint16_t HttpServer::port() const { return impl_->port; }

const HttpServerStats& HttpServer::stats() const { return impl_->stats; }

}  // namespace posthaste::http
