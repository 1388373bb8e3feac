// The admin socket: DIR/admin.sock (AF_UNIX stream, mode 0600, and the peer's uid must be root
// or the server's) through which the CLI runs `user ...`, `tenant ...`, `deliver`, `import` and
// `compact` against a running server, which holds the data directory's lock. Wire format:
// admin_protocol.h. One request per connection; each runs on its own thread (never a reactor
// thread), at most kAdminConcurrentMax at a time.
//
// Threading: AdminSocketServer runs an accept thread plus one thread per request; `run` is
// called on those threads concurrently and must be thread-safe (MailStore is). The destructor
// stops accepting, unblocks waiting reads, waits for running commands and removes the socket.
#ifndef POSTHASTE_SERVER_ADMIN_ADMIN_SOCKET_H_
#define POSTHASTE_SERVER_ADMIN_ADMIN_SOCKET_H_

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "server/admin/admin_protocol.h"

namespace posthaste::server::admin {

inline constexpr int kAdminConcurrentMax = 8;

using AdminCommandFn = std::function<AdminResponse(const AdminRequest&)>;

class AdminSocketServer {
 public:
  // Binds DIR/admin.sock (removing a stale one: the caller holds the data directory's lock).
  static absl::StatusOr<std::unique_ptr<AdminSocketServer>> Start(const std::string& data_dir,
                                                                  AdminCommandFn run);
  ~AdminSocketServer();
  AdminSocketServer(const AdminSocketServer&) = delete;
  AdminSocketServer& operator=(const AdminSocketServer&) = delete;

  const std::string& path() const { return path_; }

 private:
  struct Worker {
    std::thread thread;
    int fd = -1;
    std::atomic<bool> done{false};
  };

  AdminSocketServer(std::string path, int listen_fd, int stop_fd, AdminCommandFn run);
  void AcceptLoop();
  void Serve(Worker* worker);
  void ReapFinished(bool all);

  const std::string path_;
  const int listen_fd_;
  const int stop_fd_;  // eventfd: wakes the accept loop at shutdown
  const AdminCommandFn run_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;  // guards workers_
  std::vector<std::unique_ptr<Worker>> workers_;
  std::thread accept_thread_;
};

// The CLI side. Connects to DIR/admin.sock: the connected fd, std::nullopt when no server
// listens there (no socket, or a stale one: run the command offline), or an error.
absl::StatusOr<std::optional<int>> ConnectAdminSocket(const std::string& data_dir);
// Sends `request` on a connected fd (closed afterwards) and reads the server's response.
absl::StatusOr<AdminResponse> ExchangeAdminCommand(int fd, const AdminRequest& request);

}  // namespace posthaste::server::admin

#endif  // POSTHASTE_SERVER_ADMIN_ADMIN_SOCKET_H_
