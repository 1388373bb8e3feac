#include "server/placement/testing/etcd_cluster.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/placement/etcd_client.h"

namespace posthaste::server::placement::testing {
namespace {

// A port the kernel considers free now (bound to 0, then released): the usual small race
// with other processes is acceptable in tests.
absl::StatusOr<uint16_t> FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) close(fd);
    return absl::InternalError(absl::StrCat("free port: ", std::strerror(errno)));
  }
  close(fd);
  return ntohs(addr.sin_port);
}

std::string FindEtcd() {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "";
  dirs += ":/usr/bin:/usr/local/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    const std::string candidate = dirs.substr(start, end - start) + "/etcd";
    if (end > start && access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return "";
}

std::string TempRoot() {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp";
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdCluster>> EtcdCluster::Start(int members,
                                                                absl::Duration start_timeout) {
  std::unique_ptr<EtcdCluster> cluster(new EtcdCluster());
  cluster->binary_ = FindEtcd();
  if (cluster->binary_.empty()) {
    return absl::FailedPreconditionError(
        "no etcd binary: install Debian's etcd-server (tools/lib/deps.sh, PH_TEST_PACKAGES)");
  }
  const std::string root =
      absl::StrCat(TempRoot(), "/etcd-", getpid(), "-", absl::ToUnixNanos(absl::Now()));
  if (mkdir(root.c_str(), 0700) != 0) {
    return absl::InternalError(absl::StrCat("mkdir ", root, ": ", std::strerror(errno)));
  }
  std::vector<std::string> peers;
  for (int i = 0; i < members; ++i) {
    Member m;
    m.name = absl::StrCat("m", i);
    auto client = FreePort();
    auto peer = FreePort();
    if (!client.ok()) return client.status();
    if (!peer.ok()) return peer.status();
    if (*client == *peer) return absl::InternalError("the same free port twice");
    m.client_port = *client;
    m.peer_port = *peer;
    m.data_dir = absl::StrCat(root, "/", m.name);
    peers.push_back(absl::StrCat(m.name, "=http://127.0.0.1:", m.peer_port));
    cluster->endpoints_.push_back({.host = "127.0.0.1", .port = m.client_port});
    cluster->members_.push_back(std::move(m));
  }
  cluster->initial_cluster_ = absl::StrJoin(peers, ",");
  for (Member& m : cluster->members_) {
    if (absl::Status s = cluster->Spawn(m); !s.ok()) return s;
  }
  if (absl::Status s = cluster->WaitHealthy(start_timeout); !s.ok()) return s;
  return cluster;
}

absl::Status EtcdCluster::Spawn(Member& m) {
  const std::string client_url = absl::StrCat("http://127.0.0.1:", m.client_port);
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", m.peer_port);
  const std::string log_path = m.data_dir + ".log";
  std::vector<std::string> args = {
      binary_,
      "--name=" + m.name,
      "--data-dir=" + m.data_dir,
      "--listen-client-urls=" + client_url,
      "--advertise-client-urls=" + client_url,
      "--listen-peer-urls=" + peer_url,
      "--initial-advertise-peer-urls=" + peer_url,
      "--initial-cluster=" + initial_cluster_,
      "--initial-cluster-state=new",
      "--initial-cluster-token=posthaste-test",
      "--heartbeat-interval=50",
      "--election-timeout=500",
      "--logger=zap",
      "--log-outputs=" + log_path,
      "--log-level=warn",
  };
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    // The member must not outlive a test that crashes or times out.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    const int null_fd = open("/dev/null", O_RDWR);
    dup2(null_fd, 0);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  m.pid = pid;
  return absl::OkStatus();
}

absl::Status EtcdCluster::WaitHealthy(absl::Duration timeout) {
  EtcdClient client({.endpoints = endpoints_, .request_timeout = absl::Milliseconds(500)});
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last;
  while (absl::Now() < deadline) {
    auto range = client.Range("/health-check");
    if (range.ok()) return absl::OkStatus();
    last = range.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("etcd cluster not healthy after ", absl::FormatDuration(timeout), ": ",
                   last.message(), " (member logs beside ", members_[0].data_dir, ")"));
}

void EtcdCluster::Kill(int i) {
  Member& m = members_[static_cast<size_t>(i)];
  if (m.pid <= 0) return;
  kill(m.pid, SIGKILL);
  waitpid(m.pid, nullptr, 0);
  m.pid = -1;
}

absl::Status EtcdCluster::Restart(int i) {
  Member& m = members_[static_cast<size_t>(i)];
  if (m.pid > 0) return absl::FailedPreconditionError("member still running");
  return Spawn(m);
}

std::string EtcdCluster::EndpointsFlag() const {
  std::vector<std::string> urls;
  for (const HttpEndpoint& e : endpoints_) urls.push_back(e.ToString());
  return absl::StrJoin(urls, ",");
}

EtcdCluster::~EtcdCluster() {
  for (size_t i = 0; i < members_.size(); ++i) Kill(static_cast<int>(i));
}

}  // namespace posthaste::server::placement::testing
