// lmtpload: durable LMTP deliveries per second against an LMTP server (posthaste serve
// --lmtp_listen). N connections (one thread each, blocking sockets) each say LHLO once, then
// loop: MAIL FROM, RCPT TO (R recipients) and DATA in one write (PIPELINING), the message, and
// read the per-recipient replies. A delivery counts when every recipient answered 250 after
// DATA (for posthaste: each copy durable). Counts only after --warmup_s, for --duration_s.
//
//   lmtpload --port=P [--host=127.0.0.1] [--connections=1] [--duration_s=5] [--warmup_s=1]
//            [--users=64] [--user_pattern=user%d@bench.test] [--message_bytes=4096]
//            [--recipients=1]
// Prints one line: connections, deliveries/s, copies/s, latency p50/p99 (ms), failures.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  int connections = 1;
  double duration_s = 5;
  double warmup_s = 1;
  int users = 64;
  std::string user_pattern = "user%d@bench.test";
  size_t message_bytes = 4096;
  int recipients = 1;
};

struct ThreadResult {
  uint64_t deliveries = 0;
  uint64_t failures = 0;
  std::vector<double> latencies_ms;
  std::string error;
};

class Conn {
 public:
  explicit Conn(int fd) : fd_(fd) {}
  ~Conn() { close(fd_); }
  bool Send(const std::string& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      const ssize_t n = send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  // One reply (multi-line replies folded); returns its code, or -1.
  int Reply() {
    for (;;) {
      const size_t eol = buffer_.find("\r\n");
      if (eol != std::string::npos) {
        const std::string line = buffer_.substr(0, eol);
        buffer_.erase(0, eol + 2);
        if (line.size() < 3) return -1;
        if (line.size() > 3 && line[3] == '-') continue;
        return std::atoi(line.substr(0, 3).c_str());
      }
      char chunk[4096];
      const ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
      if (n <= 0) return -1;
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }

 private:
  int fd_;
  std::string buffer_;
};

int Connect(const Options& o) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(o.port));
  inet_pton(AF_INET, o.host.c_str(), &addr.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

std::string User(const Options& o, int i) {
  char buf[256];
  snprintf(buf, sizeof(buf), o.user_pattern.c_str(), i);
  return buf;
}

std::string Message(size_t bytes) {
  std::string m = "From: load@bench.test\r\nSubject: lmtpload\r\n\r\n";
  while (m.size() + 2 < bytes) {
    const size_t line = std::min<size_t>(76, bytes - m.size() - 2);
    m.append(line, 'x');
    m += "\r\n";
  }
  return m + ".\r\n";
}

void Run(const Options& o, int index, Clock::time_point start, Clock::time_point end,
         ThreadResult* result) {
  const int fd = Connect(o);
  if (fd < 0) {
    result->error = "connect failed";
    return;
  }
  Conn conn(fd);
  if (conn.Reply() != 220 || !conn.Send("LHLO lmtpload\r\n") || conn.Reply() != 250) {
    result->error = "greeting/LHLO failed";
    return;
  }
  const std::string message = Message(o.message_bytes);
  uint64_t round = 0;
  while (Clock::now() < end) {
    std::string envelope = "MAIL FROM:<load@bench.test>\r\n";
    for (int r = 0; r < o.recipients; ++r) {
      const int user = static_cast<int>((index * 7919 + round * o.recipients + r) % o.users);
      envelope += "RCPT TO:<" + User(o, user) + ">\r\n";
    }
    envelope += "DATA\r\n";
    ++round;
    const auto t0 = Clock::now();
    if (!conn.Send(envelope)) {
      result->error = "send failed";
      return;
    }
    bool ok = conn.Reply() == 250;
    for (int r = 0; r < o.recipients; ++r) ok = conn.Reply() == 250 && ok;
    if (conn.Reply() != 354) {
      result->error = "DATA refused";
      return;
    }
    if (!conn.Send(message)) {
      result->error = "send failed";
      return;
    }
    for (int r = 0; r < o.recipients; ++r) ok = conn.Reply() == 250 && ok;
    const auto t1 = Clock::now();
    if (t0 < start) continue;  // warm-up
    if (ok) {
      ++result->deliveries;
      result->latencies_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    } else {
      ++result->failures;
    }
  }
  conn.Send("QUIT\r\n");
  conn.Reply();
}

bool Flag(const char* arg, const char* name, std::string* value) {
  const size_t n = strlen(name);
  if (strncmp(arg, "--", 2) != 0 || strncmp(arg + 2, name, n) != 0 || arg[2 + n] != '=') {
    return false;
  }
  *value = arg + 3 + n;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    if (Flag(argv[i], "host", &v)) {
      o.host = v;
    } else if (Flag(argv[i], "port", &v)) {
      o.port = std::atoi(v.c_str());
    } else if (Flag(argv[i], "connections", &v)) {
      o.connections = std::atoi(v.c_str());
    } else if (Flag(argv[i], "duration_s", &v)) {
      o.duration_s = std::atof(v.c_str());
    } else if (Flag(argv[i], "warmup_s", &v)) {
      o.warmup_s = std::atof(v.c_str());
    } else if (Flag(argv[i], "users", &v)) {
      o.users = std::atoi(v.c_str());
    } else if (Flag(argv[i], "user_pattern", &v)) {
      o.user_pattern = v;
    } else if (Flag(argv[i], "message_bytes", &v)) {
      o.message_bytes = static_cast<size_t>(std::atol(v.c_str()));
    } else if (Flag(argv[i], "recipients", &v)) {
      o.recipients = std::atoi(v.c_str());
    } else {
      fprintf(stderr, "lmtpload: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (o.port <= 0 || o.connections <= 0 || o.users <= 0 || o.recipients <= 0) {
    fprintf(stderr, "lmtpload: need --port and positive counts\n");
    return 2;
  }
  const auto start = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(o.warmup_s));
  const auto end = start + std::chrono::duration_cast<Clock::duration>(
                               std::chrono::duration<double>(o.duration_s));
  std::vector<ThreadResult> results(static_cast<size_t>(o.connections));
  std::vector<std::thread> threads;
  for (int i = 0; i < o.connections; ++i) {
    threads.emplace_back(Run, std::cref(o), i, start, end, &results[static_cast<size_t>(i)]);
  }
  for (auto& t : threads) t.join();
  uint64_t deliveries = 0, failures = 0;
  std::vector<double> latencies;
  for (const ThreadResult& r : results) {
    if (!r.error.empty()) {
      fprintf(stderr, "lmtpload: %s\n", r.error.c_str());
      return 1;
    }
    deliveries += r.deliveries;
    failures += r.failures;
    latencies.insert(latencies.end(), r.latencies_ms.begin(), r.latencies_ms.end());
  }
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double p) {
    return latencies.empty() ? 0.0 : latencies[static_cast<size_t>(p * (latencies.size() - 1))];
  };
  printf(
      "connections=%d recipients=%d message_bytes=%zu deliveries_per_s=%.1f copies_per_s=%.1f "
      "p50_ms=%.2f p99_ms=%.2f failures=%llu\n",
      o.connections, o.recipients, o.message_bytes, deliveries / o.duration_s,
      deliveries * o.recipients / o.duration_s, pct(0.5), pct(0.99),
      static_cast<unsigned long long>(failures));
  return failures == 0 ? 0 : 1;
}
