// Test helpers for running `posthaste serve` and talking to it over raw sockets. Test-only.
//
// ServeProcess starts the real binary on 127.0.0.1 port 0 for POP3 and HTTP, waits for its
// "listening" log line and parses the ports; its stderr is collected by a reader thread.
// Stop() sends SIGTERM and waits (bounded) for the exit status; the destructor SIGKILLs a
// server still running. RawClient is a blocking TCP client with bounded waits.
//
// Threading: use each object from one test thread.
#ifndef POSTHASTE_TESTS_SERVE_HARNESS_H_
#define POSTHASTE_TESTS_SERVE_HARNESS_H_

#include <sys/types.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace posthaste::testing {

class ServeProcess {
 public:
  // Starts `posthaste serve --data_dir=DIR --pop3_listen=127.0.0.1:0
  // --metrics_listen=127.0.0.1:0 EXTRA...`. Returns false (with the log in log()) when it did
  // not report listening within `timeout_ms`. May be called again once the previous server
  // has exited.
  bool Start(const std::string& data_dir, const std::vector<std::string>& extra_flags,
             int timeout_ms = 20000);
  ~ServeProcess();

  uint16_t pop3_port() const { return pop3_port_; }
  uint16_t metrics_port() const { return metrics_port_; }
  pid_t pid() const { return pid_; }
  std::string log();  // stderr so far
  void Signal(int sig);
  // Waits up to timeout_ms for the process to exit; its exit code, or nullopt (still running,
  // or killed by a signal: then *signal_out is set).
  std::optional<int> Wait(int timeout_ms, int* signal_out = nullptr);
  // SIGTERM, then Wait.
  std::optional<int> Stop(int timeout_ms = 30000) {
    Signal(15);
    return Wait(timeout_ms);
  }
  bool running();

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int status_ = 0;
  int err_fd_ = -1;
  uint16_t pop3_port_ = 0;
  uint16_t metrics_port_ = 0;
  std::thread reader_;
  std::mutex mu_;
  std::string log_;  // guarded by mu_
};

class RawClient {
 public:
  RawClient() = default;
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool Connect(uint16_t port);  // to 127.0.0.1
  bool ConnectTo(const std::string& ipv4, uint16_t port);
  bool SendAll(std::string_view bytes);
  // One line including CRLF; empty on timeout or EOF.
  std::string ReadLine(int timeout_ms = 10000);
  // A multi-line response body after its status line: lines up to ".\r\n" (raw, dot-stuffed,
  // with the terminator). Empty on timeout/EOF.
  std::string ReadMultiline(int timeout_ms = 30000);
  // Up to `n` raw bytes (fewer on EOF/timeout).
  std::string ReadBytes(size_t n, int timeout_ms = 10000);
  // True when the peer closed (EOF or reset) within timeout_ms, reading and dropping data.
  bool WaitClosed(int timeout_ms = 10000);
  // Sends a command and returns its one-line reply.
  std::string Command(std::string_view line, int timeout_ms = 10000);
  void Close();
  // Closes with RST (SO_LINGER 0).
  void Reset();
  int fd() const { return fd_; }

 private:
  bool Fill(int timeout_ms);
  int fd_ = -1;
  std::string buffered_;
  bool eof_ = false;
};

// GET http://127.0.0.1:port/path; returns the status code (0 on failure) and the body.
int HttpGet(uint16_t port, std::string_view path, std::string* body);

// The value of one Prometheus sample line `name{labels} value` (labels as written), or -1.
double MetricValue(const std::string& text, std::string_view name_and_labels);

// Removes POP3 dot-stuffing and the terminator from a multi-line body.
std::string DotUnstuff(std::string_view body);

}  // namespace posthaste::testing

#endif  // POSTHASTE_TESTS_SERVE_HARNESS_H_
