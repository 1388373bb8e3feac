// Runs the real pop3load binary against a small in-test POP3 server on 127.0.0.1 port 0 and
// checks its JSON: sessions complete and are counted, RETR bytes add up, -ERR replies are counted
// by kind, idle sessions are held, and --server_pid reads this process's CPU. The fake server
// sends every multi-line reply in 7-byte pieces, so the client's parser sees fragmentation.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace {

// The two messages every user has (wire form, dot-stuffed, no terminator).
const std::string kMessage1 = "Subject: one\r\n\r\n..dot\r\nbody\r\n";
const std::string kMessage2 = "Subject: two\r\n\r\nline\r\n";

class FakePop3Server {
 public:
  FakePop3Server() {
    listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(listener_, 512), 0);
    EXPECT_EQ(getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }
  ~FakePop3Server() {
    stop_ = true;
    acceptor_.join();
    // Session threads see stop_ within one poll interval (50 ms); bounded wait.
    for (int i = 0; i < 200 && active_ > 0; ++i) usleep(10'000);
    close(listener_);
  }
  int port() const { return port_; }

 private:
  void AcceptLoop() {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const int fd = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      ++active_;
      std::thread([this, fd] {
        Session(fd);
        --active_;
      }).detach();
    }
  }

  static void SendAll(int fd, const std::string& data, size_t piece) {
    for (size_t at = 0; at < data.size(); at += piece) {
      const size_t n = std::min(piece, data.size() - at);
      if (send(fd, data.data() + at, n, MSG_NOSIGNAL) != static_cast<ssize_t>(n)) return;
    }
  }

  void Session(int fd) {
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    SendAll(fd, "+OK fake ready\r\n", 1 << 20);
    std::string in;
    char buffer[4096];
    while (!stop_) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      in.append(buffer, static_cast<size_t>(n));
      size_t eol;
      bool quit = false;
      while ((eol = in.find("\r\n")) != std::string::npos) {
        const std::string line = in.substr(0, eol);
        in.erase(0, eol + 2);
        if (line.rfind("USER ", 0) == 0) {
          SendAll(fd, "+OK\r\n", 1 << 20);
        } else if (line.rfind("PASS ", 0) == 0) {
          SendAll(fd, line == "PASS good" ? "+OK in\r\n" : "-ERR [AUTH] no\r\n", 1 << 20);
        } else if (line == "STAT") {
          SendAll(fd, "+OK 2 " + std::to_string(kMessage1.size() + kMessage2.size()) + "\r\n",
                  1 << 20);
        } else if (line == "UIDL") {
          SendAll(fd, "+OK\r\n1 a\r\n2 b\r\n.\r\n", 7);
        } else if (line == "LIST") {
          SendAll(fd, "+OK\r\n1 10\r\n2 20\r\n.\r\n", 7);
        } else if (line == "RETR 1") {
          SendAll(fd, "+OK\r\n" + kMessage1 + ".\r\n", 7);
        } else if (line == "RETR 2") {
          SendAll(fd, "+OK\r\n" + kMessage2 + ".\r\n", 7);
        } else if (line == "QUIT") {
          SendAll(fd, "+OK bye\r\n", 1 << 20);
          quit = true;
          break;
        } else {
          SendAll(fd, "-ERR what\r\n", 1 << 20);
        }
      }
      if (quit) break;
    }
    close(fd);
  }

  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::atomic<int> active_{0};
};

// Runs pop3load with `args`; returns its stdout (the JSON object).
std::string RunPop3load(const std::vector<std::string>& args) {
  int out[2];
  EXPECT_EQ(pipe(out), 0);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    close(out[1]);
    std::vector<char*> argv;
    std::string binary = "tools/bench/pop3load";
    argv.push_back(binary.data());
    std::vector<std::string> copy = args;
    for (std::string& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(out[1]);
  std::string text;
  char buffer[4096];
  ssize_t n;
  while ((n = read(out[0], buffer, sizeof(buffer))) > 0)
    text.append(buffer, static_cast<size_t>(n));
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << text;
  return text;
}

// The number after "\"key\":" in `json` (first occurrence at or after `from`), or -1.
double NumberAfter(const std::string& json, const std::string& key, size_t from = 0) {
  const size_t at = json.find("\"" + key + "\":", from);
  if (at == std::string::npos) return -1;
  return std::stod(json.substr(at + key.size() + 3));
}

TEST(Pop3loadTest, SessionsScenarioCompletesSessions) {
  FakePop3Server server;
  const std::string json = RunPop3load(
      {"--server=127.0.0.1:" + std::to_string(server.port()), "--scenario=sessions",
       "--connections=4", "--users=8", "--password=good", "--duration_s=1", "--warmup_s=0.2",
       "--source_ips=127.0.0.1,127.0.0.2", "--server_pid=" + std::to_string(getpid())});
  const double sessions = NumberAfter(json, "sessions");
  EXPECT_GT(sessions, 0) << json;
  EXPECT_EQ(NumberAfter(json, "total"), 0) << json;
  // Every completed session retrieved both messages (body bytes exclude the terminator); a few
  // RETRs of sessions still running when the interval ended may add up to one session's worth
  // per connection.
  const double per_session = static_cast<double>(kMessage1.size() + kMessage2.size());
  EXPECT_GE(NumberAfter(json, "body_bytes"), sessions * per_session - 4 * per_session) << json;
  EXPECT_NE(json.find("\"RETR\":{\"count\":"), std::string::npos) << json;
  EXPECT_NE(json.find("\"cpu_s\":"), std::string::npos) << json;
}

TEST(Pop3loadTest, PipelinedBigMailboxScenario) {
  FakePop3Server server;
  const std::string json = RunPop3load({"--server=127.0.0.1:" + std::to_string(server.port()),
                                        "--scenario=bigmailbox", "--connections=2", "--pipeline=8",
                                        "--password=good", "--duration_s=0.5", "--warmup_s=0"});
  EXPECT_GT(NumberAfter(json, "sessions"), 0) << json;
  EXPECT_EQ(NumberAfter(json, "total"), 0) << json;
  EXPECT_NE(json.find("\"LIST\":{\"count\":"), std::string::npos) << json;
}

TEST(Pop3loadTest, ErrRepliesAreCountedByCommand) {
  FakePop3Server server;
  const std::string json =
      RunPop3load({"--server=127.0.0.1:" + std::to_string(server.port()), "--scenario=sessions",
                   "--connections=2", "--password=bad", "--duration_s=0.5", "--warmup_s=0"});
  EXPECT_EQ(NumberAfter(json, "sessions"), 0) << json;
  EXPECT_GT(NumberAfter(json, "ERR_PASS"), 0) << json;
  EXPECT_GT(NumberAfter(json, "total"), 0) << json;
}

TEST(Pop3loadTest, IdleSessionsAreHeld) {
  FakePop3Server server;
  const std::string json =
      RunPop3load({"--server=127.0.0.1:" + std::to_string(server.port()), "--scenario=idle",
                   "--connections=50", "--password=good", "--duration_s=30", "--hold_s=0.2",
                   "--server_pid=" + std::to_string(getpid())});
  EXPECT_EQ(NumberAfter(json, "connections_held"), 50) << json;
  EXPECT_GE(NumberAfter(json, "time_to_all_logged_in_s"), 0) << json;
  EXPECT_NE(json.find("\"pss_bytes_per_session\":"), std::string::npos) << json;
}

TEST(Pop3loadTest, RefusedConnectionsAreErrorsNotHangs) {
  int port = 0;
  {
    FakePop3Server server;  // learn a free port, then close it
    port = server.port();
  }
  const std::string json =
      RunPop3load({"--server=127.0.0.1:" + std::to_string(port), "--scenario=sessions",
                   "--connections=1", "--password=good", "--duration_s=0.3", "--warmup_s=0"});
  EXPECT_GT(NumberAfter(json, "connect_ECONNREFUSED"), 0) << json;
}

}  // namespace
