// tls_retr_load: RETR throughput over implicit TLS (or plain, for comparison) against a POP3
// server, with the server's CPU time read from /proc, so the figure is per server core.
//
//   tls_retr_load --server=127.0.0.1:PORT --user=U --password=P [--message=1]
//       [--duration_s=10] [--warmup_s=1] [--tls=true] [--server_pid=PID]
//
// One connection (BoringSSL client, certificate not verified: it measures, it does not
// trust), logs in with USER/PASS, then repeats `RETR N` and reads each reply to its
// terminator for the duration. Prints one JSON object: bytes received, wall MB/s, the
// server's CPU seconds (utime+stime of PID over the measured interval) and MB per server CPU
// second, the negotiated TLS version and cipher. MB = 10^6 bytes.
//
// Threading: single-threaded, blocking sockets. Exit status 1 on any protocol or I/O error.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Flags {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string user;
  std::string password;
  int message = 1;
  double duration_s = 10;
  double warmup_s = 1;
  bool tls = true;
  long server_pid = 0;
};

[[noreturn]] void Die(const std::string& what) {
  std::cerr << "tls_retr_load: " << what << "\n";
  ERR_print_errors_fp(stderr);
  std::exit(1);
}

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) != 0 || eq == std::string::npos) Die("bad argument " + arg);
    const std::string name = arg.substr(2, eq - 2);
    const std::string value = arg.substr(eq + 1);
    if (name == "server") {
      const size_t colon = value.rfind(':');
      if (colon == std::string::npos) Die("--server wants HOST:PORT");
      f.host = value.substr(0, colon);
      f.port = std::atoi(value.c_str() + colon + 1);
    } else if (name == "user") {
      f.user = value;
    } else if (name == "password") {
      f.password = value;
    } else if (name == "message") {
      f.message = std::atoi(value.c_str());
    } else if (name == "duration_s") {
      f.duration_s = std::atof(value.c_str());
    } else if (name == "warmup_s") {
      f.warmup_s = std::atof(value.c_str());
    } else if (name == "tls") {
      f.tls = value == "true" || value == "1";
    } else if (name == "server_pid") {
      f.server_pid = std::atol(value.c_str());
    } else {
      Die("unknown flag --" + name);
    }
  }
  if (f.port <= 0 || f.user.empty()) Die("--server and --user are required");
  return f;
}

// utime + stime of `pid` in seconds; 0 when unknown.
double ProcessCpuSeconds(long pid) {
  if (pid <= 0) return 0;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(text.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {  // fields 14 and 15 (1-based)
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

class Connection {
 public:
  Connection(const Flags& flags) : tls_(flags.tls) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(flags.port));
    if (inet_pton(AF_INET, flags.host.c_str(), &addr.sin_addr) != 1) Die("bad host");
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      Die(std::string("connect: ") + strerror(errno));
    }
    const int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (tls_) {
      ctx_ = SSL_CTX_new(TLS_method());
      SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
      ssl_ = SSL_new(ctx_);
      SSL_set_fd(ssl_, fd_);
      SSL_set_tlsext_host_name(ssl_, "localhost");
      if (SSL_connect(ssl_) != 1) Die("TLS handshake failed");
    }
  }
  ~Connection() {
    if (ssl_ != nullptr) SSL_free(ssl_);
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
    close(fd_);
  }

  std::string version() const { return tls_ ? SSL_get_version(ssl_) : "none"; }
  std::string cipher() const {
    return tls_ ? SSL_CIPHER_standard_name(SSL_get_current_cipher(ssl_)) : "none";
  }

  void Write(const std::string& text) {
    if (tls_) {
      if (SSL_write(ssl_, text.data(), static_cast<int>(text.size())) <= 0) Die("SSL_write");
    } else if (send(fd_, text.data(), text.size(), MSG_NOSIGNAL) !=
               static_cast<ssize_t>(text.size())) {
      Die("send");
    }
  }

  // Appends what arrives to buffer_; returns the bytes read.
  size_t Fill() {
    char chunk[256 * 1024];
    const int n = tls_ ? SSL_read(ssl_, chunk, sizeof(chunk))
                       : static_cast<int>(recv(fd_, chunk, sizeof(chunk), 0));
    if (n <= 0) Die("connection closed by the server");
    buffer_.append(chunk, static_cast<size_t>(n));
    return static_cast<size_t>(n);
  }

  std::string ReadLine() {
    size_t eol;
    while ((eol = buffer_.find("\r\n")) == std::string::npos) Fill();
    std::string line = buffer_.substr(0, eol);
    buffer_.erase(0, eol + 2);
    return line;
  }

  std::string Command(const std::string& command) {
    Write(command + "\r\n");
    std::string reply = ReadLine();
    if (reply.rfind("+OK", 0) != 0) Die(command.substr(0, 4) + " answered " + reply);
    return reply;
  }

  // RETR: reads the multi-line reply to its terminator; returns the bytes received.
  uint64_t Retr(int message) {
    Command("RETR " + std::to_string(message));
    uint64_t total = 0;
    for (;;) {
      // The body ends with "\r\n.\r\n"; the first line's CRLF was consumed with the status.
      if (buffer_.size() >= 3 && buffer_.compare(0, 3, ".\r\n") == 0) {
        buffer_.erase(0, 3);
        return total + 3;
      }
      const size_t end = buffer_.find("\r\n.\r\n");
      if (end != std::string::npos) {
        total += end + 5;
        buffer_.erase(0, end + 5);
        return total;
      }
      // Keep the last 4 bytes: the terminator may straddle reads.
      if (buffer_.size() > 4) {
        total += buffer_.size() - 4;
        buffer_.erase(0, buffer_.size() - 4);
      }
      Fill();
    }
  }

 private:
  bool tls_;
  int fd_ = -1;
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  std::string buffer_;
};

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);
  Connection conn(flags);
  const std::string greeting = conn.ReadLine();
  if (greeting.rfind("+OK", 0) != 0) Die("greeting: " + greeting);
  conn.Command("USER " + flags.user);
  conn.Command("PASS " + flags.password);

  using Clock = std::chrono::steady_clock;
  const auto warm_end = Clock::now() + std::chrono::duration<double>(flags.warmup_s);
  while (Clock::now() < warm_end) conn.Retr(flags.message);

  const double cpu_start = ProcessCpuSeconds(flags.server_pid);
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration<double>(flags.duration_s);
  uint64_t bytes = 0;
  uint64_t retrs = 0;
  while (Clock::now() < end) {
    bytes += conn.Retr(flags.message);
    ++retrs;
  }
  const double wall = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu = ProcessCpuSeconds(flags.server_pid) - cpu_start;
  conn.Command("QUIT");
  std::printf(
      "{\"tls\": %s, \"version\": \"%s\", \"cipher\": \"%s\", \"retrs\": %llu, \"bytes\": %llu, "
      "\"wall_s\": %.3f, \"mb_per_s\": %.1f, \"server_cpu_s\": %.3f, "
      "\"mb_per_server_cpu_s\": %.1f}\n",
      flags.tls ? "true" : "false", conn.version().c_str(), conn.cipher().c_str(),
      static_cast<unsigned long long>(retrs), static_cast<unsigned long long>(bytes), wall,
      static_cast<double>(bytes) / wall / 1e6, cpu,
      cpu > 0 ? static_cast<double>(bytes) / cpu / 1e6 : 0.0);
  return 0;
}
