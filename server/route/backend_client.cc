#include "server/route/backend_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "base/strings.h"

namespace posthaste::server::route {
namespace {

using Clock = std::chrono::steady_clock;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Milliseconds left before `deadline` (0 when past it).
int LeftMs(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// Waits for `events` on `fd` until the deadline. False on timeout or error.
bool WaitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const int left = LeftMs(deadline);
    if (left == 0) return false;
    pollfd p{fd, events, 0};
    const int ready = poll(&p, 1, left);
    if (ready < 0 && errno == EINTR) continue;
    return ready > 0;
  }
}

// "HTTP/1.x NNN ..." -> NNN, or 0.
int StatusOf(std::string_view reply) {
  if (reply.size() < 12 || reply.substr(0, 7) != "HTTP/1.") return 0;
  auto code = ParseDecimalAtMost(reply.substr(9, 3), 999);
  return code.has_value() ? static_cast<int>(*code) : 0;
}

}  // namespace

absl::StatusOr<BackendReply> PostToBackend(const BackendRequest& request) {
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(request.deadline_ms);
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = AF_INET;
  if (request.ip.find(':') != std::string::npos) {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
    v6->sin6_family = family = AF_INET6;
    v6->sin6_port = htons(request.port);
    if (inet_pton(AF_INET6, request.ip.c_str(), &v6->sin6_addr) != 1) {
      return absl::InvalidArgumentError("backend address is not an IP literal: " + request.ip);
    }
    length = sizeof(sockaddr_in6);
  } else {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
    v4->sin_family = AF_INET;
    v4->sin_port = htons(request.port);
    if (inet_pton(AF_INET, request.ip.c_str(), &v4->sin_addr) != 1) {
      return absl::InvalidArgumentError("backend address is not an IP literal: " + request.ip);
    }
    length = sizeof(sockaddr_in);
  }
  Fd fd(socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return absl::UnavailableError("socket() failed");
  const std::string where = request.ip + ":" + std::to_string(request.port);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&storage), length) != 0) {
    if (errno != EINPROGRESS) {
      return absl::UnavailableError("cannot connect to " + where + ": " + std::strerror(errno));
    }
    if (!WaitFor(fd.get(), POLLOUT, deadline)) {
      return absl::DeadlineExceededError("connecting to " + where + " took too long");
    }
    int error = 0;
    socklen_t error_length = sizeof(error);
    getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &error_length);
    if (error != 0) {
      return absl::UnavailableError("cannot connect to " + where + ": " + std::strerror(error));
    }
  }
  const std::string wire = "POST " + request.path + " HTTP/1.1\r\nHost: " + where +
                           "\r\nAuthorization: Bearer " + request.bearer_token +
                           "\r\nContent-Type: application/json\r\nContent-Length: " +
                           std::to_string(request.json_body.size()) +
                           "\r\nConnection: close\r\n\r\n" + request.json_body;
  size_t sent = 0;
  while (sent < wire.size()) {
    const ssize_t n = send(fd.get(), wire.data() + sent, wire.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!WaitFor(fd.get(), POLLOUT, deadline)) {
        return absl::DeadlineExceededError("sending to " + where + " took too long");
      }
      continue;
    }
    return absl::UnavailableError("sending to " + where + " failed");
  }
  std::string reply;
  for (;;) {
    char buffer[4096];
    const ssize_t n = recv(fd.get(), buffer, sizeof(buffer), 0);
    if (n > 0) {
      reply.append(buffer, static_cast<size_t>(n));
      if (reply.size() > request.reply_bytes_max) {
        return absl::UnavailableError("answer from " + where + " is too long");
      }
      continue;
    }
    if (n == 0) break;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!WaitFor(fd.get(), POLLIN, deadline)) {
        return absl::DeadlineExceededError("answer from " + where + " took too long");
      }
      continue;
    }
    return absl::UnavailableError("reading from " + where + " failed");
  }
  BackendReply out;
  out.status = StatusOf(reply);
  const size_t head_end = reply.find("\r\n\r\n");
  if (out.status == 0 || head_end == std::string::npos) {
    return absl::UnavailableError("answer from " + where + " is not HTTP");
  }
  out.body = reply.substr(head_end + 4);
  return out;
}

}  // namespace posthaste::server::route
