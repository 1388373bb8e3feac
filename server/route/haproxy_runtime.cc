#include "server/route/haproxy_runtime.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "base/strings.h"

namespace posthaste::server::route {
namespace {

constexpr std::string_view kPrepareReplyPrefix = "New version created: ";

// One non-interactive exchange: connect, send `line` and a newline, read until HAProxy closes.
absl::StatusOr<std::string> Exchange(const std::string& socket_path, const std::string& line,
                                     uint32_t timeout_ms) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError("--haproxy_socket path is too long");
  }
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return absl::InternalError(std::string("socket: ") + std::strerror(errno));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  auto fail = [fd](std::string what) {
    const int error = errno;
    close(fd);
    return absl::UnavailableError("HAProxy runtime API: " + what + ": " + std::strerror(error));
  };
  // Waits for `events` until the deadline; false on timeout (errno set).
  auto wait = [fd, deadline](short events) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      errno = ETIMEDOUT;
      return false;
    }
    pollfd p{.fd = fd, .events = events, .revents = 0};
    const int n = poll(&p, 1, static_cast<int>(left.count()));
    if (n == 0) errno = ETIMEDOUT;
    return n > 0;
  };
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return fail("connect " + socket_path);
  }
  const std::string request = line + "\n";
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait(POLLOUT)) return fail("send");
    } else {
      return fail("send");
    }
  }
  std::string reply;
  char buffer[4096];
  while (true) {
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n == 0) break;
    if (n > 0) {
      reply.append(buffer, static_cast<size_t>(n));
      if (reply.size() > kHaproxyReplyBytesMax) {
        close(fd);
        return absl::ResourceExhaustedError("HAProxy runtime API: reply too long");
      }
    } else if (errno == EAGAIN || errno == EINTR) {
      if (!wait(POLLIN)) return fail("reply");
    } else {
      return fail("recv");
    }
  }
  close(fd);
  return reply;
}

}  // namespace

std::vector<std::pair<std::string, std::string>> HaproxyMapEntries(std::string_view map_text) {
  std::vector<std::pair<std::string, std::string>> entries;
  size_t start = 0;
  while (start < map_text.size()) {
    size_t end = map_text.find('\n', start);
    if (end == std::string_view::npos) end = map_text.size();
    const std::string_view line = map_text.substr(start, end - start);
    start = end + 1;
    if (line.empty() || line.front() == '#') continue;
    const size_t space = line.find(' ');
    if (space == std::string_view::npos || space == 0 || space + 1 == line.size()) continue;
    entries.emplace_back(std::string(line.substr(0, space)), std::string(line.substr(space + 1)));
  }
  return entries;
}

std::vector<std::string> HaproxyMapCommitLines(
    std::string_view map_path, int64_t version,
    const std::vector<std::pair<std::string, std::string>>& entries) {
  const std::string at = "@" + std::to_string(version) + " " + std::string(map_path);
  std::vector<std::string> lines;
  std::string line;
  for (const auto& [key, value] : entries) {
    std::string command = "add map " + at + " " + key + " " + value;
    if (!line.empty() && line.size() + 1 + command.size() > kHaproxyCommandLineBytesMax) {
      lines.push_back(std::move(line));
      line.clear();
    }
    if (!line.empty()) line += ";";
    line += command;
  }
  std::string commit = "commit map " + at;
  if (!line.empty() && line.size() + 1 + commit.size() > kHaproxyCommandLineBytesMax) {
    lines.push_back(std::move(line));
    line.clear();
  }
  if (!line.empty()) line += ";";
  line += commit;
  lines.push_back(std::move(line));
  return lines;
}

absl::StatusOr<int64_t> ParsePrepareMapReply(std::string_view reply) {
  const size_t end = reply.find('\n');
  const std::string_view first = reply.substr(0, end);
  if (first.substr(0, kPrepareReplyPrefix.size()) != kPrepareReplyPrefix) {
    return absl::InvalidArgumentError("HAProxy refused 'prepare map': " +
                                      std::string(first.substr(0, 200)));
  }
  auto version = ParseDecimalAtMost(first.substr(kPrepareReplyPrefix.size()), INT64_MAX);
  if (!version.has_value()) {
    return absl::InvalidArgumentError("HAProxy's 'prepare map' reply has no version");
  }
  return static_cast<int64_t>(*version);
}

absl::Status CheckSilentReply(std::string_view reply) {
  const size_t text = reply.find_first_not_of("\r\n");
  if (text == std::string_view::npos) return absl::OkStatus();
  const size_t end = reply.find('\n', text);
  return absl::FailedPreconditionError(
      "HAProxy refused a map update: " +
      std::string(reply.substr(text, std::min<size_t>(end == std::string_view::npos
                                                          ? reply.size() - text
                                                          : end - text,
                                                      200))));
}

absl::Status PushHaproxyMap(const std::string& socket_path, const std::string& map_path,
                            std::string_view map_text, uint32_t timeout_ms) {
  auto prepared = Exchange(socket_path, "prepare map " + map_path, timeout_ms);
  if (!prepared.ok()) return prepared.status();
  auto version = ParsePrepareMapReply(*prepared);
  if (!version.ok()) return version.status();
  for (const std::string& line :
       HaproxyMapCommitLines(map_path, *version, HaproxyMapEntries(map_text))) {
    auto reply = Exchange(socket_path, line, timeout_ms);
    if (!reply.ok()) return reply.status();
    if (absl::Status checked = CheckSilentReply(*reply); !checked.ok()) return checked;
  }
  return absl::OkStatus();
}

}  // namespace posthaste::server::route
