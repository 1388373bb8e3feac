#include "tests/serve_harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>

#include "tests/subprocess.h"

namespace posthaste::testing {
namespace {

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

// The port of `key=HOST:PORT` in a log line.
uint16_t PortAfter(const std::string& line, std::string_view key) {
  size_t at = line.find(" " + std::string(key) + "=");
  if (at == std::string::npos) return 0;
  size_t end = line.find(' ', at + 1);
  std::string value = line.substr(at, end == std::string::npos ? std::string::npos : end - at);
  size_t colon = value.rfind(':');
  if (colon == std::string::npos) return 0;
  return static_cast<uint16_t>(std::atoi(value.c_str() + colon + 1));
}

}  // namespace

bool ServeProcess::Start(const std::string& data_dir, const std::vector<std::string>& extra_flags,
                         int timeout_ms) {
  // Restartable: forget the previous (exited) process.
  if (pid_ > 0 && running()) return false;
  if (reader_.joinable()) reader_.join();
  if (err_fd_ >= 0) close(err_fd_);
  err_fd_ = -1;
  pid_ = -1;
  exited_ = false;
  pop3_port_ = metrics_port_ = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    log_.clear();
  }
  int err_pipe[2];
  if (pipe2(err_pipe, O_CLOEXEC) != 0) return false;
  std::vector<std::string> argv = {RunfilePath("server/posthaste"), "serve",
                                   "--data_dir=" + data_dir, "--pop3_listen=127.0.0.1:0",
                                   "--metrics_listen=127.0.0.1:0", "--lmtp_listen=127.0.0.1:0"};
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  pid_ = fork();
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int null_fd = open("/dev/null", O_RDWR);
    dup2(null_fd, 0);
    dup2(null_fd, 1);
    dup2(err_pipe[1], 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(err_pipe[1]);
  err_fd_ = err_pipe[0];
  reader_ = std::thread([this] {
    char buf[4096];
    for (;;) {
      ssize_t n = read(err_fd_, buf, sizeof(buf));
      if (n <= 0) break;
      std::lock_guard<std::mutex> lock(mu_);
      log_.append(buf, static_cast<size_t>(n));
    }
  });
  const int64_t deadline = NowMs() + timeout_ms;
  while (NowMs() < deadline && running()) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      size_t at = log_.find(" listening ");
      if (at != std::string::npos) {
        size_t end = log_.find('\n', at);
        if (end != std::string::npos) {
          std::string line = log_.substr(at, end - at);
          pop3_port_ = PortAfter(line, "pop3");
          metrics_port_ = PortAfter(line, "metrics");
          return pop3_port_ != 0 && metrics_port_ != 0;
        }
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

ServeProcess::~ServeProcess() {
  if (pid_ > 0 && running()) {
    kill(pid_, SIGKILL);
    Wait(10000);
  }
  if (reader_.joinable()) reader_.join();
  if (err_fd_ >= 0) close(err_fd_);
}

std::string ServeProcess::log() {
  std::lock_guard<std::mutex> lock(mu_);
  return log_;
}

void ServeProcess::Signal(int sig) {
  if (pid_ > 0 && !exited_) kill(pid_, sig);
}

bool ServeProcess::running() {
  if (pid_ <= 0 || exited_) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    exited_ = true;
    status_ = status;
    return false;
  }
  return true;
}

std::optional<int> ServeProcess::Wait(int timeout_ms, int* signal_out) {
  const int64_t deadline = NowMs() + timeout_ms;
  while (running() && NowMs() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!exited_) return std::nullopt;
  if (WIFSIGNALED(status_)) {
    if (signal_out != nullptr) *signal_out = WTERMSIG(status_);
    return std::nullopt;
  }
  return WEXITSTATUS(status_);
}

RawClient::~RawClient() { Close(); }

bool RawClient::Connect(uint16_t port) { return ConnectTo("127.0.0.1", port); }

bool RawClient::ConnectTo(const std::string& ipv4, uint16_t port) {
  Close();
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (inet_pton(AF_INET, ipv4.c_str(), &addr.sin_addr) != 1) {
    Close();
    return false;
  }
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    Close();
    return false;
  }
  buffered_.clear();
  eof_ = false;
  return true;
}

bool RawClient::SendAll(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool RawClient::Fill(int timeout_ms) {
  if (eof_ || fd_ < 0) return false;
  pollfd p{fd_, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return false;
  char buf[65536];
  ssize_t n = recv(fd_, buf, sizeof(buf), 0);
  if (n <= 0) {
    eof_ = true;
    return false;
  }
  buffered_.append(buf, static_cast<size_t>(n));
  return true;
}

std::string RawClient::ReadLine(int timeout_ms) {
  const int64_t deadline = NowMs() + timeout_ms;
  for (;;) {
    size_t lf = buffered_.find('\n');
    if (lf != std::string::npos) {
      std::string line = buffered_.substr(0, lf + 1);
      buffered_.erase(0, lf + 1);
      return line;
    }
    const int64_t left = deadline - NowMs();
    if (left <= 0 || !Fill(static_cast<int>(left))) return "";
  }
}

std::string RawClient::ReadMultiline(int timeout_ms) {
  const int64_t deadline = NowMs() + timeout_ms;
  size_t scan = 0;
  for (;;) {
    // The body ends at a line that is exactly ".\r\n".
    for (;;) {
      size_t lf = buffered_.find('\n', scan);
      if (lf == std::string::npos) break;
      const size_t line_start = scan;
      scan = lf + 1;
      if (scan - line_start == 3 && buffered_.compare(line_start, 3, ".\r\n") == 0) {
        std::string body = buffered_.substr(0, scan);
        buffered_.erase(0, scan);
        return body;
      }
    }
    const int64_t left = deadline - NowMs();
    if (left <= 0 || !Fill(static_cast<int>(left))) return "";
  }
}

std::string RawClient::ReadBytes(size_t n, int timeout_ms) {
  const int64_t deadline = NowMs() + timeout_ms;
  while (buffered_.size() < n) {
    const int64_t left = deadline - NowMs();
    if (left <= 0 || !Fill(static_cast<int>(left))) break;
  }
  std::string out = buffered_.substr(0, std::min(n, buffered_.size()));
  buffered_.erase(0, out.size());
  return out;
}

bool RawClient::WaitClosed(int timeout_ms) {
  const int64_t deadline = NowMs() + timeout_ms;
  while (!eof_) {
    const int64_t left = deadline - NowMs();
    if (left <= 0) return false;
    Fill(static_cast<int>(left));
    buffered_.clear();
  }
  return true;
}

std::string RawClient::Command(std::string_view line, int timeout_ms) {
  std::string out(line);
  out += "\r\n";
  if (!SendAll(out)) return "";
  return ReadLine(timeout_ms);
}

void RawClient::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void RawClient::Reset() {
  if (fd_ < 0) return;
  linger l{1, 0};
  setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  Close();
}

int HttpGet(uint16_t port, std::string_view path, std::string* body) {
  RawClient c;
  if (!c.Connect(port)) return 0;
  std::string req =
      "GET " + std::string(path) + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (!c.SendAll(req)) return 0;
  std::string status = c.ReadLine(10000);
  if (status.size() < 12) return 0;
  const int code = std::atoi(status.c_str() + 9);
  for (;;) {
    std::string header = c.ReadLine(10000);
    if (header.empty() || header == "\r\n") break;
  }
  std::string rest;
  for (;;) {
    std::string chunk = c.ReadBytes(1 << 20, 2000);
    if (chunk.empty()) break;
    rest += chunk;
  }
  if (body != nullptr) *body = rest;
  return code;
}

double MetricValue(const std::string& text, std::string_view name_and_labels) {
  size_t pos = 0;
  while ((pos = text.find(name_and_labels, pos)) != std::string::npos) {
    const bool line_start = pos == 0 || text[pos - 1] == '\n';
    const size_t after = pos + name_and_labels.size();
    if (line_start && after < text.size() && text[after] == ' ') {
      return std::strtod(text.c_str() + after + 1, nullptr);
    }
    pos = after;
  }
  return -1;
}

std::string DotUnstuff(std::string_view body) {
  std::string out;
  out.reserve(body.size());
  size_t pos = 0;
  while (pos < body.size()) {
    size_t lf = body.find('\n', pos);
    size_t end = lf == std::string_view::npos ? body.size() : lf + 1;
    std::string_view line = body.substr(pos, end - pos);
    if (line == ".\r\n") break;
    if (!line.empty() && line[0] == '.') line.remove_prefix(1);
    out.append(line);
    pos = end;
  }
  return out;
}

}  // namespace posthaste::testing
