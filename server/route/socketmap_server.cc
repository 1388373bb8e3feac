#include "server/route/socketmap_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "base/log.h"
#include "base/strings.h"
#include "server/reactor/net.h"

namespace posthaste::server::route {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kListenBacklog = 128;
constexpr size_t kReadChunkBytes = 4096;
// The poll loop wakes at least this often to enforce deadlines.
constexpr int kPollTickMs = 200;

// "lmtp:inet:IP:PORT" (an IPv6 literal in brackets, as Postfix's inet syntax needs).
std::string LmtpNexthop(const placement::BackendEndpoint& backend) {
  const bool v6 = backend.ip.find(':') != std::string::npos;
  return "lmtp:inet:" + (v6 ? "[" + backend.ip + "]" : backend.ip) + ":" +
         std::to_string(backend.lmtp_port);
}

// Postfix asks for the full address first, then (when that is not found) the bare domain: a
// domain resolves to its tenant's placement, never to a user's override.
absl::StatusOr<placement::Route> ResolveKey(const placement::DirectorySnapshot& snapshot,
                                            const std::string& key) {
  if (key.find('@') != std::string::npos) return snapshot.Resolve(key);
  auto tenant = snapshot.tenants.find(absl::AsciiStrToLower(AbslView(key)));
  if (tenant == snapshot.tenants.end()) return absl::NotFoundError("no placement");
  auto backend = snapshot.backends.find(tenant->second.backend);
  if (backend == snapshot.backends.end()) return absl::UnavailableError("backend down");
  return placement::Route{.backend = &backend->second, .moving = !tenant->second.moving_to.empty()};
}

// True for "local<delimiter>extension@domain" (any of the delimiter characters, as Postfix
// allows several).
bool HasExtension(const std::string& key, const std::string& delimiters) {
  const size_t at = key.rfind('@');
  if (delimiters.empty() || at == std::string::npos) return false;
  return key.find_first_of(delimiters) < at;
}

}  // namespace

std::string SocketmapAnswer(const placement::DirectorySnapshot& snapshot,
                            const SocketmapRequest& request, const SocketmapServerOptions& options,
                            RouteCounters* counters) {
  if (request.name != options.map_name) {
    counters->socketmap_perm_unknown_map++;
    return SocketmapPerm("unknown map " + request.name);
  }
  if (HasExtension(request.key, options.recipient_delimiter) &&
      !snapshot.users.contains(absl::AsciiStrToLower(AbslView(request.key)))) {
    counters->socketmap_notfound++;
    return SocketmapNotFound();
  }
  absl::StatusOr<placement::Route> route = ResolveKey(snapshot, request.key);
  if (!route.ok()) {
    if (route.status().code() == absl::StatusCode::kNotFound) {
      counters->socketmap_notfound++;
      return SocketmapNotFound();
    }
    counters->socketmap_temp_backend_down++;
    return SocketmapTemp("mailbox backend unavailable, try again later");
  }
  if (route->moving) {
    counters->socketmap_temp_moving++;
    return SocketmapTemp("mailbox is moving, try again later");
  }
  if (route->backend->lmtp_port == 0) {
    counters->socketmap_temp_backend_down++;
    return SocketmapTemp("mailbox backend has no LMTP listener registered");
  }
  counters->socketmap_ok++;
  return SocketmapOk(LmtpNexthop(*route->backend));
}

struct SocketmapServer::Impl {
  // One Postfix connection: its parser, unsent answers, and its deadlines.
  struct Connection {
    int fd = -1;
    SocketmapRequestParser parser;
    std::string output;
    size_t output_sent = 0;
    Clock::time_point idle_since;
    Clock::time_point request_started;
    bool had_partial = false;
    explicit Connection(int fd, size_t request_bytes_max)
        : fd(fd), parser(request_bytes_max), idle_since(Clock::now()) {}
    size_t unsent() const { return output.size() - output_sent; }
  };

  SocketmapServerOptions options;
  const placement::DirectorySource* source = nullptr;
  RouteCounters* counters = nullptr;
  int listen_fd = -1;
  int wake_fd = -1;
  uint16_t port = 0;
  std::vector<std::unique_ptr<Connection>> connections;
  std::thread thread;

  ~Impl() {
    if (thread.joinable()) {
      const uint64_t one = 1;
      (void)!write(wake_fd, &one, sizeof(one));
      thread.join();
    }
    for (auto& c : connections) close(c->fd);
    if (wake_fd >= 0) close(wake_fd);
    if (listen_fd >= 0) close(listen_fd);
  }

  void Accept() {
    for (;;) {
      const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;  // EAGAIN, or an error the next readiness retries
      if (connections.size() >= options.connections_max) {
        counters->socketmap_refused_full++;
        close(fd);
        continue;
      }
      connections.push_back(std::make_unique<Connection>(fd, options.request_bytes_max));
    }
  }

  // Sends what it can. False when the connection is gone.
  bool Flush(Connection* c) {
    while (c->unsent() > 0) {
      const ssize_t n = send(c->fd, c->output.data() + c->output_sent, c->unsent(), MSG_NOSIGNAL);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      if (n <= 0) return false;
      c->output_sent += static_cast<size_t>(n);
    }
    c->output.clear();
    c->output_sent = 0;
    return true;
  }

  // Reads and answers. False when the connection is to be closed.
  bool Serve(Connection* c) {
    char buffer[kReadChunkBytes];
    while (c->unsent() <= options.output_bytes_max) {
      const ssize_t n = recv(c->fd, buffer, sizeof(buffer), 0);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n <= 0) return false;  // closed by Postfix, or an error
      c->parser.Feed(std::string_view(buffer, static_cast<size_t>(n)));
      if (!Answer(c)) return false;
    }
    return Flush(c);
  }

  bool Answer(Connection* c) {
    SocketmapRequest request;
    std::string error;
    std::shared_ptr<const placement::DirectorySnapshot> snapshot;
    for (;;) {
      switch (c->parser.Next(&request, &error)) {
        case SocketmapRequestParser::Result::kNeedMore:
          if (c->parser.mid_request() && !c->had_partial) {
            c->had_partial = true;
            c->request_started = Clock::now();
          }
          return true;
        case SocketmapRequestParser::Result::kError:
          counters->socketmap_framing_errors++;
          LogEvent(LogLevel::kInfo, "socketmap request refused", {{"error", error}});
          return false;
        case SocketmapRequestParser::Result::kRequest:
          if (snapshot == nullptr) snapshot = source->Current();
          c->output += SocketmapAnswer(*snapshot, request, options, counters);
          c->idle_since = Clock::now();
          c->had_partial = false;
          break;
      }
    }
  }

  // Closes the connections past a deadline.
  void EnforceDeadlines() {
    const Clock::time_point now = Clock::now();
    for (size_t i = 0; i < connections.size();) {
      Connection* c = connections[i].get();
      bool expired = false;
      if (c->parser.mid_request() && c->had_partial &&
          now - c->request_started > std::chrono::milliseconds(options.request_timeout_ms)) {
        counters->socketmap_request_timeouts++;
        expired = true;
      } else if (!c->parser.mid_request() &&
                 now - c->idle_since > std::chrono::milliseconds(options.idle_timeout_ms)) {
        counters->socketmap_idle_timeouts++;
        expired = true;
      }
      if (expired) {
        CloseAt(i);
      } else {
        ++i;
      }
    }
  }

  void CloseAt(size_t i) {
    close(connections[i]->fd);
    connections[i] = std::move(connections.back());
    connections.pop_back();
  }

  void Run() {
    std::vector<pollfd> fds;
    for (;;) {
      fds.clear();
      fds.push_back({wake_fd, POLLIN, 0});
      fds.push_back({listen_fd, POLLIN, 0});
      for (const auto& c : connections) {
        short events = 0;
        if (c->unsent() <= options.output_bytes_max) events |= POLLIN;
        if (c->unsent() > 0) events |= POLLOUT;
        fds.push_back({c->fd, events, 0});
      }
      const int ready = poll(fds.data(), fds.size(), kPollTickMs);
      if (ready < 0 && errno != EINTR) {
        LogEvent(LogLevel::kError, "socketmap poll failed", {{"errno", std::to_string(errno)}});
        return;
      }
      if (ready > 0) {
        if (fds[0].revents != 0) return;  // stop
        // Connections first (indexes match `fds` until one closes), then the listener.
        for (size_t i = connections.size(); i-- > 0;) {
          const short revents = fds[i + 2].revents;
          if (revents == 0) continue;
          Connection* c = connections[i].get();
          bool keep = true;
          if (revents & (POLLERR | POLLNVAL)) keep = false;
          if (keep && (revents & POLLOUT)) keep = Flush(c);
          if (keep && (revents & (POLLIN | POLLHUP))) keep = Serve(c);
          if (!keep) CloseAt(i);
        }
        if (fds[1].revents & POLLIN) Accept();
      }
      EnforceDeadlines();
    }
  }
};

SocketmapServer::SocketmapServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SocketmapServer::~SocketmapServer() = default;
uint16_t SocketmapServer::port() const { return impl_->port; }

absl::StatusOr<std::unique_ptr<SocketmapServer>> SocketmapServer::Start(
    SocketmapServerOptions options, const placement::DirectorySource* source,
    RouteCounters* counters) {
  if (source == nullptr || counters == nullptr) {
    return absl::InvalidArgumentError("socketmap: a directory source and counters are needed");
  }
  if (options.connections_max == 0 || options.request_bytes_max == 0 ||
      options.request_bytes_max > SocketmapRequestParser::kRequestBytesMaxLimit ||
      options.idle_timeout_ms == 0 || options.request_timeout_ms == 0 || options.map_name.empty()) {
    return absl::InvalidArgumentError("socketmap: a limit is 0 or out of range");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  impl->source = source;
  impl->counters = counters;
  reactor::ListenerOptions lo;
  lo.host = impl->options.host;
  lo.port = impl->options.port;
  lo.reuse_port = false;
  lo.backlog = kListenBacklog;
  auto fd = reactor::CreateListener(lo);
  if (!fd.ok()) return fd.status();
  impl->listen_fd = *fd;
  auto bound = reactor::LocalPort(impl->listen_fd);
  if (!bound.ok()) return bound.status();
  impl->port = *bound;
  impl->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (impl->wake_fd < 0) return absl::InternalError("socketmap: eventfd failed");
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->Run(); });
  return std::unique_ptr<SocketmapServer>(new SocketmapServer(std::move(impl)));
}

}  // namespace posthaste::server::route
