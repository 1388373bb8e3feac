#include "server/admin/admin_socket.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/log.h"

namespace posthaste::server::admin {
namespace {

// A client that connects and then sends nothing does not hold a worker for long.
constexpr int kReadTimeoutS = 60;

std::string SocketPath(const std::string& data_dir) {
  return absl::StrCat(data_dir, "/", std::string(kAdminSocketName));
}

// A socket address naming DIR/admin.sock. sun_path holds only 108 bytes, so a longer path is
// reached through an O_PATH descriptor of DIR ("/proc/self/fd/N/admin.sock"), which `dir_fd`
// keeps open until the bind or connect is done.
class SocketAddress {
 public:
  explicit SocketAddress(const std::string& data_dir) {
    addr_.sun_family = AF_UNIX;
    std::string path = SocketPath(data_dir);
    if (path.size() >= sizeof(addr_.sun_path)) {
      dir_fd_ = open(data_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (dir_fd_ < 0) return;
      path = absl::StrCat("/proc/self/fd/", dir_fd_, "/", std::string(kAdminSocketName));
    }
    std::memcpy(addr_.sun_path, path.data(), path.size());
    valid_ = true;
  }
  ~SocketAddress() {
    if (dir_fd_ >= 0) close(dir_fd_);
  }
  bool valid() const { return valid_; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&addr_); }
  socklen_t size() const { return sizeof(addr_); }

 private:
  sockaddr_un addr_{};
  int dir_fd_ = -1;
  bool valid_ = false;
};

bool WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void SetReadTimeout(int fd, int seconds) {
  timeval tv{};
  tv.tv_sec = seconds;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

}  // namespace

absl::StatusOr<std::unique_ptr<AdminSocketServer>> AdminSocketServer::Start(
    const std::string& data_dir, AdminCommandFn run) {
  const std::string path = SocketPath(data_dir);
  SocketAddress addr(data_dir);
  if (!addr.valid()) {
    return absl::InternalError(
        absl::StrCat("admin socket: cannot open ", data_dir, ": ", strerror(errno)));
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("admin socket: ", strerror(errno)));
  unlink(path.c_str());  // stale: the caller holds the data directory's lock
  if (bind(fd, addr.get(), addr.size()) != 0 || chmod(path.c_str(), 0600) != 0 ||
      listen(fd, 16) != 0) {
    const int e = errno;
    close(fd);
    unlink(path.c_str());
    return absl::InternalError(absl::StrCat("admin socket ", path, ": ", strerror(e)));
  }
  const int stop_fd = eventfd(0, EFD_CLOEXEC);
  if (stop_fd < 0) {
    close(fd);
    unlink(path.c_str());
    return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  }
  std::unique_ptr<AdminSocketServer> server(
      new AdminSocketServer(path, fd, stop_fd, std::move(run)));
  server->accept_thread_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  return server;
}

AdminSocketServer::AdminSocketServer(std::string path, int listen_fd, int stop_fd,
                                     AdminCommandFn run)
    : path_(std::move(path)), listen_fd_(listen_fd), stop_fd_(stop_fd), run_(std::move(run)) {}

AdminSocketServer::~AdminSocketServer() {
  stopping_.store(true);
  const uint64_t one = 1;
  (void)!write(stop_fd_, &one, sizeof(one));
  accept_thread_.join();
  {
    // Unblock requests still being read; commands already running finish.
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& worker : workers_) {
      if (!worker->done.load()) shutdown(worker->fd, SHUT_RD);
    }
  }
  ReapFinished(/*all=*/true);
  close(listen_fd_);
  close(stop_fd_);
  unlink(path_.c_str());
}

void AdminSocketServer::ReapFinished(bool all) {
  std::vector<std::unique_ptr<Worker>> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = workers_.begin(); it != workers_.end();) {
      if (all || (*it)->done.load()) {
        finished.push_back(std::move(*it));
        it = workers_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& worker : finished) worker->thread.join();
}

void AdminSocketServer::AcceptLoop() {
  while (!stopping_.load()) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      LogEvent(LogLevel::kError, "admin socket poll failed", {{"error", strerror(errno)}});
      return;
    }
    if (fds[1].revents != 0 || stopping_.load()) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    ReapFinished(/*all=*/false);
    // Defence in depth beside the 0600 mode: only root or the server's own user.
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        (cred.uid != 0 && cred.uid != geteuid())) {
      WriteAll(fd, EncodeAdminResponse({1, "", "posthaste: admin socket: permission denied\n"}));
      close(fd);
      continue;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (workers_.size() >= static_cast<size_t>(kAdminConcurrentMax)) {
      WriteAll(fd, EncodeAdminResponse({1, "",
                                        "posthaste: the server is busy with other admin commands; "
                                        "try again\n"}));
      close(fd);
      continue;
    }
    auto worker = std::make_unique<Worker>();
    worker->fd = fd;
    Worker* w = worker.get();
    workers_.push_back(std::move(worker));
    w->thread = std::thread([this, w] { Serve(w); });
  }
}

void AdminSocketServer::Serve(Worker* worker) {
  const int fd = worker->fd;
  SetReadTimeout(fd, kReadTimeoutS);
  std::string buffer;
  char chunk[1 << 16];
  std::optional<AdminResponse> response;
  for (;;) {
    const ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // closed, timed out or shut down before a whole request
    buffer.append(chunk, static_cast<size_t>(n));
    auto decoded = DecodeAdminRequest(buffer);
    if (!decoded.ok()) {
      response =
          AdminResponse{2, "", absl::StrCat("posthaste: ", decoded.status().message(), "\n")};
      break;
    }
    if (decoded->has_value()) {
      buffer.clear();
      response = run_((*decoded)->request);
      break;
    }
  }
  if (response.has_value()) WriteAll(fd, EncodeAdminResponse(*response));
  close(fd);
  worker->done.store(true);
}

absl::StatusOr<std::optional<int>> ConnectAdminSocket(const std::string& data_dir) {
  using Result = std::optional<int>;
  const std::string path = SocketPath(data_dir);
  SocketAddress addr(data_dir);
  if (!addr.valid()) return Result();  // no data directory: the command reports it
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  if (connect(fd, addr.get(), addr.size()) != 0) {
    const int e = errno;
    close(fd);
    if (e == ENOENT || e == ECONNREFUSED || e == ENOTDIR) return Result();  // no server
    return absl::UnavailableError(
        absl::StrCat("cannot reach the running server at ", path, ": ", strerror(e)));
  }
  return Result(fd);
}

absl::StatusOr<AdminResponse> ExchangeAdminCommand(int fd, const AdminRequest& request) {
  // A failed write is not final: the server may have refused early (busy, permission) and
  // its answer is still there to read.
  WriteAll(fd, EncodeAdminRequest(request));
  shutdown(fd, SHUT_WR);
  std::string buffer;
  char chunk[1 << 16];
  for (;;) {
    const ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buffer.append(chunk, static_cast<size_t>(n));
  }
  close(fd);
  auto decoded = DecodeAdminResponse(buffer);
  if (!decoded.ok()) return decoded.status();
  if (!decoded->has_value()) {
    return absl::UnavailableError("the running server closed the admin connection early");
  }
  return **std::move(decoded);
}

}  // namespace posthaste::server::admin
