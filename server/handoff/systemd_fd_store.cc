#include "server/handoff/systemd_fd_store.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace posthaste::server::handoff {
namespace {

constexpr int kListenFdsStart = 3;  // SD_LISTEN_FDS_START

absl::Status Errno(std::string_view what) {
  return absl::InternalError(std::string(what) + ": " + std::strerror(errno));
}

// Sends one notification datagram to $NOTIFY_SOCKET, with `fd` attached when it is >= 0.
absl::Status Notify(std::string_view text, int fd) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') {
    return absl::FailedPreconditionError("NOTIFY_SOCKET is not set");
  }
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const size_t path_len = std::strlen(path);
  if (path_len >= sizeof(address.sun_path))
    return absl::InvalidArgumentError("NOTIFY_SOCKET too long");
  std::memcpy(address.sun_path, path, path_len);
  if (address.sun_path[0] == '@') address.sun_path[0] = '\0';  // abstract namespace
  const int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return Errno("notify socket");
  iovec iov{const_cast<char*>(text.data()), text.size()};
  msghdr message{};
  message.msg_name = &address;
  message.msg_namelen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path_len);
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(header), &fd, sizeof(int));
  }
  const ssize_t sent = sendmsg(sock, &message, MSG_NOSIGNAL);
  const int saved = errno;
  close(sock);
  errno = saved;
  if (sent < 0) return Errno("sending to NOTIFY_SOCKET");
  return absl::OkStatus();
}

void ClearListenEnvironment() {
  unsetenv("LISTEN_PID");
  unsetenv("LISTEN_FDS");
  unsetenv("LISTEN_FDNAMES");
}

}  // namespace

bool NotifySocketPresent() {
  const char* path = std::getenv("NOTIFY_SOCKET");
  return path != nullptr && path[0] != '\0';
}

absl::Status StoreBlob(std::string_view name, std::string_view blob) {
  if (!NotifySocketPresent()) return absl::FailedPreconditionError("NOTIFY_SOCKET is not set");
  const std::string memfd_name(name);
  const int fd = memfd_create(memfd_name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return Errno("memfd_create");
  size_t done = 0;
  while (done < blob.size()) {
    const ssize_t n = write(fd, blob.data() + done, blob.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const absl::Status status = Errno("writing the memfd");
      close(fd);
      return status;
    }
    done += static_cast<size_t>(n);
  }
  // Sealed: whoever reads it later reads exactly this.
  if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    const absl::Status status = Errno("sealing the memfd");
    close(fd);
    return status;
  }
  const absl::Status sent = Notify("FDSTORE=1\nFDNAME=" + std::string(name), fd);
  close(fd);  // systemd holds its own copy now
  return sent;
}

absl::StatusOr<std::optional<std::string>> TakeBlob(std::string_view name, size_t bytes_max) {
  const char* pid_text = std::getenv("LISTEN_PID");
  const char* fds_text = std::getenv("LISTEN_FDS");
  const char* names_text = std::getenv("LISTEN_FDNAMES");
  int64_t pid = 0;
  uint32_t count = 0;
  if (pid_text == nullptr || fds_text == nullptr || !absl::SimpleAtoi(pid_text, &pid) ||
      pid != getpid() || !absl::SimpleAtoi(fds_text, &count) || count == 0 || count > 64) {
    return std::optional<std::string>();
  }
  const std::vector<std::string> names =
      names_text == nullptr ? std::vector<std::string>() : absl::StrSplit(names_text, ':');
  ClearListenEnvironment();
  int found = -1;
  for (uint32_t i = 0; i < count; ++i) {
    const int fd = kListenFdsStart + static_cast<int>(i);
    fcntl(fd, F_SETFD, FD_CLOEXEC);  // no child inherits what was handed to this process
    if (i < names.size() && names[i] == name) found = fd;
  }
  if (found < 0) return std::optional<std::string>();
  std::string blob;
  std::vector<char> buffer(64 * 1024);
  absl::Status error;
  for (;;) {
    const ssize_t n = pread(found, buffer.data(), buffer.size(), static_cast<off_t>(blob.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = Errno("reading the handed-over descriptor");
      break;
    }
    if (n == 0) break;
    if (blob.size() + static_cast<size_t>(n) > bytes_max) {
      error = absl::ResourceExhaustedError("handed-over blob too large");
      break;
    }
    blob.append(buffer.data(), static_cast<size_t>(n));
  }
  close(found);
  // Forget it either way: a stale copy must not come back at a later start.
  (void)Notify("FDSTOREREMOVE=1\nFDNAME=" + std::string(name), -1);
  if (!error.ok()) return error;
  return std::optional<std::string>(std::move(blob));
}

}  // namespace posthaste::server::handoff
