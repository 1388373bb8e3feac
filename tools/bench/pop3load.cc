// pop3load: a POP3 load generator for comparing posthaste with other servers (tools/bench).
//
// One epoll event loop per thread (--threads), each driving its share of --connections
// non-blocking client connections through a scenario (--scenario):
//   sessions    every connection loops: connect, USER/PASS, STAT, UIDL, RETR 1..n, QUIT
//   bulk        persistent sessions RETR-ing their messages over and over
//   idle        N sessions log in and stay idle; reports when all are in, holds --hold_s
//   bigmailbox  login, STAT, UIDL, LIST, QUIT, looping (meant for one 10,000-message mailbox)
//   latency     sessions as above started at a fixed rate (--rate sessions/s), for latency
// and --baseline: a sender thread writing 1 MiB chunks over loopback TCP to a reader thread that
// copies them (MB/s), the raw ceiling for bulk.
//
// Server-side cost is read from /proc (--server_pid: process-tree roots) before and after the
// measured interval: CPU seconds per session and per GB, PSS per idle session.
// Output: one JSON object on stdout. Progress and problems go to stderr.
//
// Limits: every loop is bounded by the run time, the connection count (at most
// kConnectionsMax), or a per-iteration batch size; the program always stops by itself.
// Each connection always uses the same user or cycles through users no other connection uses,
// so servers that lock a maildrop per session (RFC 1939 section 8) never see two sessions of one
// user at once.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/strings.h"
#include "tools/bench/latency_histogram.h"
#include "tools/bench/pop3_response_parser.h"
#include "tools/bench/proc_stats.h"

ABSL_FLAG(std::string, scenario, "sessions", "sessions | bulk | idle | bigmailbox | latency");
ABSL_FLAG(bool, baseline, false,
          "measure the raw loopback TCP baseline (sender thread -> copying reader) instead");
ABSL_FLAG(std::string, server, "127.0.0.1:1110", "POP3 server address, IPv4:port");
ABSL_FLAG(int, threads, 1, "event-loop threads (one per core given to the load generator)");
ABSL_FLAG(int, connections, 32, "concurrent connections (idle: sessions to hold)");
ABSL_FLAG(int, pipeline, 1, "commands in flight per connection after STAT (1 = no pipelining)");
ABSL_FLAG(std::string, source_ips, "127.0.0.1",
          "comma-separated loopback source addresses, used round-robin (ports per address "
          "are limited; 127.0.0.0/8 is all loopback)");
ABSL_FLAG(double, duration_s, 10,
          "measured interval (idle: the most time allowed for all sessions to log in)");
ABSL_FLAG(double, warmup_s, 1, "run before measuring (not for idle)");
ABSL_FLAG(double, hold_s, 5, "idle: how long to hold the sessions once all are logged in");
ABSL_FLAG(double, rate, 0, "latency: sessions started per second (all threads together)");
ABSL_FLAG(int, users, 0, "number of users (default: --connections)");
ABSL_FLAG(int, first_user, 1, "the number of the first user");
ABSL_FLAG(std::string, user_pattern, "user%d@bench.test", "user name; %d is the user number");
ABSL_FLAG(std::string, password, "", "password of every user");
ABSL_FLAG(std::string, server_pid, "",
          "comma-separated PIDs of the server; each is a process-tree root (all descendants "
          "count), e.g. Dovecot's master");
ABSL_FLAG(double, command_timeout_s, 15, "a command (or connect) without progress this long fails");
ABSL_FLAG(int, login_concurrency, 200, "idle: the most sessions logging in at once");
ABSL_FLAG(std::string, label, "", "free text copied into the JSON output (e.g. the server name)");
ABSL_FLAG(int, baseline_sender_cpu, -1, "baseline: pin the sender thread to this CPU (-1: no)");
ABSL_FLAG(int, baseline_reader_cpu, -1, "baseline: pin the reader thread to this CPU (-1: no)");
ABSL_FLAG(int, baseline_chunk_bytes, 1 << 20, "baseline: bytes per write");

namespace posthaste::bench {
namespace {

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24  // Linux 4.2; older libc headers lack the name
#endif

constexpr int kConnectionsMax = 200'000;
constexpr int kThreadsMax = 64;
constexpr int kPipelineMax = 64;
constexpr size_t kReadBufferBytes = 256 * 1024;
constexpr int kReadsPerEventMax = 16;       // fairness between connections
constexpr int kStartsPerIterationMax = 64;  // connect() calls per loop iteration
constexpr int kEpollEventsMax = 512;
constexpr int64_t kErrorBackoffNs = 20'000'000;
constexpr int64_t kTimeoutScanNs = 250'000'000;

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

enum class Scenario { kSessions, kBulk, kIdle, kBigMailbox, kLatency };

std::optional<Scenario> ParseScenario(std::string_view name) {
  if (name == "sessions") return Scenario::kSessions;
  if (name == "bulk") return Scenario::kBulk;
  if (name == "idle") return Scenario::kIdle;
  if (name == "bigmailbox") return Scenario::kBigMailbox;
  if (name == "latency") return Scenario::kLatency;
  return std::nullopt;
}

enum class Verb : uint8_t { kGreeting, kUser, kPass, kStat, kUidl, kList, kRetr, kQuit, kCount };
constexpr const char* kVerbNames[] = {"greeting", "USER", "PASS", "STAT",
                                      "UIDL",     "LIST", "RETR", "QUIT"};
constexpr size_t kVerbCount = static_cast<size_t>(Verb::kCount);

struct Config {
  Scenario scenario = Scenario::kSessions;
  sockaddr_in server{};
  int threads = 1;
  int connections = 1;
  int pipeline = 1;
  std::vector<in_addr> source_ips;
  int users = 1;
  int first_user = 1;
  std::string user_pattern;
  std::string password;
  int64_t command_timeout_ns = 0;
  int login_concurrency = 1;
  double rate = 0;
};

// Counters a thread keeps; merged by main after the threads are joined (except the atomics,
// which main reads while the threads run).
struct ThreadStats {
  uint64_t sessions = 0;        // completed in the measured interval
  uint64_t body_bytes = 0;      // RETR body bytes completed in the measured interval
  uint64_t bytes_read = 0;      // everything read, whole run
  uint64_t rate_shortfall = 0;  // latency: starts skipped for want of a free connection
  LatencyHistogram session_ns;
  std::array<LatencyHistogram, kVerbCount> command_ns;
  std::map<std::string, uint64_t> errors;  // whole run
  std::atomic<int64_t> open{0};
  std::atomic<int64_t> logged_in{0};  // sessions past PASS and not closed
  int64_t open_max = 0;
};

struct Shared {
  std::atomic<bool> measuring{false};
  std::atomic<bool> stop{false};
};

class Worker {
 public:
  Worker(const Config& config, Shared* shared, int slot_begin, int slot_end)
      : config_(config),
        shared_(shared),
        slot_begin_(slot_begin),
        conns_(static_cast<size_t>(slot_end - slot_begin)),
        read_buffer_(new char[kReadBufferBytes]) {}

  ~Worker() {
    if (epoll_fd_ >= 0) close(epoll_fd_);
  }

  ThreadStats& stats() { return stats_; }

  void Run() {
    epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) {
      CountError(absl::StrCat("epoll_create_", ErrnoName(errno)));
      return;
    }
    for (size_t i = 0; i < conns_.size(); ++i) {
      conns_[i].slot = slot_begin_ + static_cast<int>(i);
      free_.push_back(static_cast<uint32_t>(i));
    }
    const int64_t start = NowNs();
    next_rate_start_ns_ = start;
    const double per_thread_rate = config_.rate / config_.threads;
    rate_interval_ns_ = per_thread_rate > 0 ? static_cast<int64_t>(1e9 / per_thread_rate) : 0;
    int64_t next_scan = start + kTimeoutScanNs;
    std::vector<epoll_event> events(kEpollEventsMax);
    while (!shared_->stop.load(std::memory_order_relaxed)) {
      int64_t now = NowNs();
      StartSessions(now);
      const int n = epoll_wait(epoll_fd_, events.data(), kEpollEventsMax, WaitMs(now));
      if (n < 0 && errno != EINTR) {
        CountError(absl::StrCat("epoll_wait_", ErrnoName(errno)));
        break;
      }
      for (int i = 0; i < n; ++i) OnEvent(events[static_cast<size_t>(i)]);
      now = NowNs();
      if (now >= next_scan) {
        ScanTimeouts(now);
        next_scan = now + kTimeoutScanNs;
      }
    }
    for (Conn& conn : conns_) {
      if (conn.fd >= 0) Close(conn);
    }
  }

 private:
  enum class Phase : uint8_t { kFree, kConnecting, kLogin, kCommands, kHolding, kQuitting };

  struct InFlight {
    Verb verb;
    int64_t sent_ns;
  };

  struct Conn {
    int fd = -1;
    int slot = 0;
    Phase phase = Phase::kFree;
    uint32_t user_round = 0;  // sessions started on this slot
    int user = 0;             // the user number of the current session
    Pop3ResponseParser parser;
    std::string out;
    size_t out_sent = 0;
    bool epoll_out = false;
    std::array<InFlight, kPipelineMax + 4> inflight{};
    size_t inflight_head = 0;
    size_t inflight_count = 0;
    uint64_t messages = 0;   // from STAT
    uint64_t next_step = 0;  // position in the scenario's command plan
    int64_t session_start_ns = 0;
    int64_t last_progress_ns = 0;
    int64_t next_start_ns = 0;  // earliest restart after an error
    bool logged_in = false;
  };

  static std::string ErrnoName(int err) {
    switch (err) {
      case ECONNREFUSED:
        return "ECONNREFUSED";
      case ECONNRESET:
        return "ECONNRESET";
      case ETIMEDOUT:
        return "ETIMEDOUT";
      case EADDRNOTAVAIL:
        return "EADDRNOTAVAIL";
      case EADDRINUSE:
        return "EADDRINUSE";
      case EMFILE:
        return "EMFILE";
      case ENFILE:
        return "ENFILE";
      case EPIPE:
        return "EPIPE";
      case ENOBUFS:
        return "ENOBUFS";
      default:
        return absl::StrCat("errno", err);
    }
  }

  void CountError(const std::string& kind) { ++stats_.errors[kind]; }

  int WaitMs(int64_t now) const {
    int64_t wait_ns = 50'000'000;
    if (config_.scenario == Scenario::kLatency && rate_interval_ns_ > 0) {
      wait_ns = std::min(wait_ns, std::max<int64_t>(0, next_rate_start_ns_ - now));
    }
    if (!free_.empty() && config_.scenario != Scenario::kLatency) wait_ns = 1'000'000;
    return static_cast<int>((wait_ns + 999'999) / 1'000'000);
  }

  // Starts sessions on free connections as the scenario allows; at most
  // kStartsPerIterationMax per call.
  void StartSessions(int64_t now) {
    if (config_.scenario == Scenario::kLatency) {
      if (rate_interval_ns_ == 0) return;
      int started = 0;
      while (next_rate_start_ns_ <= now && started < kStartsPerIterationMax) {
        next_rate_start_ns_ += rate_interval_ns_;
        ++started;
        std::optional<uint32_t> index = TakeFree(now);
        if (!index.has_value()) {
          if (shared_->measuring.load(std::memory_order_relaxed)) ++stats_.rate_shortfall;
          continue;
        }
        Start(conns_[*index], now);
      }
      // Far behind (the machine stalled): do not burst to catch up.
      if (next_rate_start_ns_ < now - 1'000'000'000) next_rate_start_ns_ = now;
      return;
    }
    int started = 0;
    while (started < kStartsPerIterationMax) {
      if (config_.scenario == Scenario::kIdle && logging_in_ >= idle_login_slots()) return;
      std::optional<uint32_t> index = TakeFree(now);
      if (!index.has_value()) return;
      Start(conns_[*index], now);
      ++started;
    }
  }

  int64_t idle_login_slots() const {
    return std::max<int64_t>(1, config_.login_concurrency / config_.threads);
  }

  // Pops a free connection whose restart time has come.
  std::optional<uint32_t> TakeFree(int64_t now) {
    const size_t scan = std::min<size_t>(free_.size(), 16);
    for (size_t i = 0; i < scan; ++i) {
      const uint32_t index = free_[free_.size() - 1 - i];
      if (conns_[index].next_start_ns <= now) {
        free_.erase(free_.end() - 1 - static_cast<std::ptrdiff_t>(i));
        return index;
      }
    }
    return std::nullopt;
  }

  int UserFor(Conn& conn) {
    // Slot s cycles through users s, s + C, s + 2C, ... (0-based) below --users.
    const int c = config_.connections;
    const int cycle = std::max(1, (config_.users - conn.slot + c - 1) / c);
    const int index =
        conn.slot + static_cast<int>(conn.user_round % static_cast<uint32_t>(cycle)) * c;
    ++conn.user_round;
    return config_.first_user + index;
  }

  std::string UserName(int user) const {
    std::string name = config_.user_pattern;
    const size_t at = name.find("%d");
    if (at != std::string::npos) name.replace(at, 2, std::to_string(user));
    return name;
  }

  void Start(Conn& conn, int64_t now) {
    conn.user = UserFor(conn);
    conn.session_start_ns = now;
    conn.last_progress_ns = now;
    conn.messages = 0;
    conn.next_step = 0;
    conn.logged_in = false;
    conn.parser = Pop3ResponseParser();
    conn.out.clear();
    conn.out_sent = 0;
    conn.inflight_head = 0;
    conn.inflight_count = 0;
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      CountError(absl::StrCat("socket_", ErrnoName(errno)));
      Release(conn, now + kErrorBackoffNs);
      return;
    }
    conn.fd = fd;
    conn.phase = Phase::kConnecting;
    ++stats_.open;
    stats_.open_max = std::max(stats_.open_max, stats_.open.load(std::memory_order_relaxed));
    if (config_.scenario == Scenario::kIdle) ++logging_in_;
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    const std::vector<in_addr>& sources = config_.source_ips;
    if (!sources.empty()) {
      // Choose the port at connect() time, per destination: each source address then has the
      // whole ephemeral range for this server.
      setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
      sockaddr_in local{};
      local.sin_family = AF_INET;
      local.sin_addr = sources[static_cast<size_t>(conn.slot) % sources.size()];
      if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
        Fail(conn, now, absl::StrCat("bind_", ErrnoName(errno)));
        return;
      }
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
    ev.data.u32 = static_cast<uint32_t>(&conn - conns_.data());
    conn.epoll_out = true;
    if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
      CountError(absl::StrCat("epoll_ctl_", ErrnoName(errno)));
      Fail(conn, now, "");
      return;
    }
    // The greeting's latency is counted from here: it covers connect + accept + greeting.
    PushInFlight(conn, Verb::kGreeting, ResponseShape::kSingleLine, now);
    const int rc =
        connect(fd, reinterpret_cast<const sockaddr*>(&config_.server), sizeof(config_.server));
    if (rc != 0 && errno != EINPROGRESS) {
      Fail(conn, now, absl::StrCat("connect_", ErrnoName(errno)));
    }
  }

  void PushInFlight(Conn& conn, Verb verb, ResponseShape shape, int64_t now) {
    conn.parser.Expect(shape);
    conn.inflight[(conn.inflight_head + conn.inflight_count) % conn.inflight.size()] = {verb, now};
    ++conn.inflight_count;
  }

  void Send(Conn& conn, Verb verb, std::string_view line, ResponseShape shape, int64_t now) {
    conn.out.append(line.data(), line.size());
    conn.out.append("\r\n");
    PushInFlight(conn, verb, shape, now);
  }

  // Closes the socket and counts the connection gone.
  void Close(Conn& conn) {
    if (conn.fd < 0) return;
    close(conn.fd);
    conn.fd = -1;
    --stats_.open;
    if (conn.logged_in) --stats_.logged_in;
    if (config_.scenario == Scenario::kIdle && !conn.logged_in && conn.phase != Phase::kFree) {
      --logging_in_;
    }
    conn.logged_in = false;
  }

  void Release(Conn& conn, int64_t next_start_ns) {
    conn.phase = Phase::kFree;
    conn.next_start_ns = next_start_ns;
    free_.push_back(static_cast<uint32_t>(&conn - conns_.data()));
  }

  // Ends a session in error: counts `kind` (unless empty), closes, frees the slot for a retry.
  void Fail(Conn& conn, int64_t now, const std::string& kind) {
    if (!kind.empty()) CountError(kind);
    Close(conn);
    Release(conn, now + kErrorBackoffNs);
  }

  void ScanTimeouts(int64_t now) {
    for (Conn& conn : conns_) {
      if (conn.fd < 0 || conn.phase == Phase::kHolding || conn.phase == Phase::kFree) continue;
      if (now - conn.last_progress_ns <= config_.command_timeout_ns) continue;
      const char* what =
          conn.phase == Phase::kConnecting ? "connect"
          : conn.inflight_count > 0
              ? kVerbNames[static_cast<size_t>(conn.inflight[conn.inflight_head].verb)]
              : "idle";
      Fail(conn, now, absl::StrCat("timeout_", what));
    }
  }

  void OnEvent(const epoll_event& ev) {
    Conn& conn = conns_[ev.data.u32];
    if (conn.fd < 0) return;
    const int64_t now = NowNs();
    if (conn.phase == Phase::kConnecting) {
      if ((ev.events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(conn.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        Fail(conn, now, absl::StrCat("connect_", ErrnoName(err)));
        return;
      }
      conn.phase = Phase::kLogin;
      conn.last_progress_ns = now;
    }
    if ((ev.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) {
      if (!ReadAndHandle(conn, now)) return;
    }
    Flush(conn, now);
  }

  // Reads what is there and handles complete responses. Returns false when the connection was
  // closed (by an error or at the end of a session).
  bool ReadAndHandle(Conn& conn, int64_t now) {
    for (int i = 0; i < kReadsPerEventMax; ++i) {
      const ssize_t n = recv(conn.fd, read_buffer_.get(), kReadBufferBytes, 0);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        if (errno == EINTR) continue;
        Fail(conn, now, absl::StrCat("read_", ErrnoName(errno)));
        return false;
      }
      if (n == 0) {
        Fail(conn, now, "closed_by_server");
        return false;
      }
      stats_.bytes_read += static_cast<uint64_t>(n);
      conn.last_progress_ns = now;
      responses_.clear();
      const ParseError error = conn.parser.Feed(
          std::string_view(read_buffer_.get(), static_cast<size_t>(n)), &responses_);
      for (Pop3Response& response : responses_) {
        if (!OnResponse(conn, response, now)) return false;
      }
      if (error != ParseError::kNone) {
        Fail(conn, now, absl::StrCat("protocol_", AbslView(ParseErrorName(error))));
        return false;
      }
      if (static_cast<size_t>(n) < kReadBufferBytes) return true;
    }
    return true;
  }

  bool Measuring() const { return shared_->measuring.load(std::memory_order_relaxed); }

  // Handles one response; false when the connection is gone afterwards.
  bool OnResponse(Conn& conn, const Pop3Response& response, int64_t now) {
    if (conn.inflight_count == 0) {  // the parser would have refused it; defensive
      Fail(conn, now, "protocol_unexpected_response");
      return false;
    }
    const InFlight done = conn.inflight[conn.inflight_head];
    conn.inflight_head = (conn.inflight_head + 1) % conn.inflight.size();
    --conn.inflight_count;
    const size_t verb_index = static_cast<size_t>(done.verb);
    if (Measuring())
      stats_.command_ns[verb_index].Record(static_cast<uint64_t>(now - done.sent_ns));
    if (!response.ok) {
      Fail(conn, now, absl::StrCat("ERR_", kVerbNames[verb_index]));
      return false;
    }
    switch (done.verb) {
      case Verb::kGreeting:
        Send(conn, Verb::kUser, absl::StrCat("USER ", UserName(conn.user)),
             ResponseShape::kSingleLine, now);
        return true;
      case Verb::kUser:
        Send(conn, Verb::kPass, absl::StrCat("PASS ", config_.password), ResponseShape::kSingleLine,
             now);
        return true;
      case Verb::kPass:
        conn.logged_in = true;
        ++stats_.logged_in;
        if (config_.scenario == Scenario::kIdle) {
          --logging_in_;
          conn.phase = Phase::kHolding;
          return true;
        }
        Send(conn, Verb::kStat, "STAT", ResponseShape::kSingleLine, now);
        return true;
      case Verb::kStat: {
        std::optional<StatReply> stat = ParseStatText(response.text);
        if (!stat.has_value()) {
          Fail(conn, now, "stat_unparseable");
          return false;
        }
        conn.messages = stat->messages;
        if (config_.scenario == Scenario::kBulk && conn.messages == 0) {
          Fail(conn, now, "bulk_empty_mailbox");
          return false;
        }
        conn.phase = Phase::kCommands;
        FillPipeline(conn, now);
        return true;
      }
      case Verb::kUidl:
      case Verb::kList:
        if (response.body_lines != conn.messages) {
          CountError(absl::StrCat(kVerbNames[verb_index], "_count_mismatch"));
        }
        FillPipeline(conn, now);
        return true;
      case Verb::kRetr:
        if (Measuring()) stats_.body_bytes += response.body_bytes;
        FillPipeline(conn, now);
        return true;
      case Verb::kQuit:
        if (Measuring()) {
          ++stats_.sessions;
          stats_.session_ns.Record(static_cast<uint64_t>(now - conn.session_start_ns));
        }
        Close(conn);
        Release(conn, now);
        return false;
      case Verb::kCount:
        break;
    }
    return true;
  }

  // Queues the scenario's next commands while fewer than --pipeline are in flight.
  void FillPipeline(Conn& conn, int64_t now) {
    while (conn.phase == Phase::kCommands &&
           conn.inflight_count < static_cast<size_t>(config_.pipeline)) {
      const uint64_t step = conn.next_step++;
      switch (config_.scenario) {
        case Scenario::kSessions:
        case Scenario::kLatency:
          if (step == 0) {
            Send(conn, Verb::kUidl, "UIDL", ResponseShape::kMultiLine, now);
          } else if (step <= conn.messages) {
            Send(conn, Verb::kRetr, absl::StrCat("RETR ", step), ResponseShape::kMultiLine, now);
          } else {
            Send(conn, Verb::kQuit, "QUIT", ResponseShape::kSingleLine, now);
            conn.phase = Phase::kQuitting;
          }
          break;
        case Scenario::kBigMailbox:
          if (step == 0) {
            Send(conn, Verb::kUidl, "UIDL", ResponseShape::kMultiLine, now);
          } else if (step == 1) {
            Send(conn, Verb::kList, "LIST", ResponseShape::kMultiLine, now);
          } else {
            Send(conn, Verb::kQuit, "QUIT", ResponseShape::kSingleLine, now);
            conn.phase = Phase::kQuitting;
          }
          break;
        case Scenario::kBulk:
          Send(conn, Verb::kRetr, absl::StrCat("RETR ", step % conn.messages + 1),
               ResponseShape::kMultiLine, now);
          break;
        case Scenario::kIdle:
          return;
      }
    }
  }

  void Flush(Conn& conn, int64_t now) {
    if (conn.fd < 0 || conn.phase == Phase::kConnecting) return;
    while (conn.out_sent < conn.out.size()) {
      const ssize_t n = send(conn.fd, conn.out.data() + conn.out_sent,
                             conn.out.size() - conn.out_sent, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        Fail(conn, now, absl::StrCat("write_", ErrnoName(errno)));
        return;
      }
      conn.out_sent += static_cast<size_t>(n);
    }
    if (conn.out_sent == conn.out.size()) {
      conn.out.clear();
      conn.out_sent = 0;
    }
    const bool want_out = !conn.out.empty();
    if (want_out != conn.epoll_out) {
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP | (want_out ? EPOLLOUT : 0u);
      ev.data.u32 = static_cast<uint32_t>(&conn - conns_.data());
      epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, conn.fd, &ev);
      conn.epoll_out = want_out;
    }
  }

  const Config& config_;
  Shared* shared_;
  int slot_begin_;
  std::vector<Conn> conns_;
  std::vector<uint32_t> free_;
  std::unique_ptr<char[]> read_buffer_;
  std::vector<Pop3Response> responses_;
  int epoll_fd_ = -1;
  int64_t logging_in_ = 0;
  int64_t next_rate_start_ns_ = 0;
  int64_t rate_interval_ns_ = 0;
  ThreadStats stats_;
};

// ---- JSON output ----

class Json {
 public:
  void Key(std::string_view key) {
    Comma();
    Quote(key);
    out_ += ":";
    need_comma_ = false;
  }
  void Open() {
    Comma();
    out_ += "{";
    need_comma_ = false;
  }
  void Close() {
    out_ += "}";
    need_comma_ = true;
  }
  void String(std::string_view value) {
    Comma();
    Quote(value);
    need_comma_ = true;
  }
  void Number(double value) {
    Comma();
    char buffer[64];
    std::snprintf(buffer, sizeof(buffer), "%.6g", value);
    out_ += buffer;
    need_comma_ = true;
  }
  void Integer(int64_t value) {
    Comma();
    out_ += std::to_string(value);
    need_comma_ = true;
  }
  void Null() {
    Comma();
    out_ += "null";
    need_comma_ = true;
  }
  void Field(std::string_view key, double value) {
    Key(key);
    Number(value);
  }
  void IntField(std::string_view key, int64_t value) {
    Key(key);
    Integer(value);
  }
  void StringField(std::string_view key, std::string_view value) {
    Key(key);
    String(value);
  }
  const std::string& text() const { return out_; }

 private:
  void Comma() {
    if (need_comma_) out_ += ",";
  }
  void Quote(std::string_view s) {
    out_ += "\"";
    for (char c : s) {
      if (c == '"' || c == '\\') {
        out_ += '\\';
        out_ += c;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        char buffer[8];
        std::snprintf(buffer, sizeof(buffer), "\\u%04x", c);
        out_ += buffer;
      } else {
        out_ += c;
      }
    }
    out_ += "\"";
  }
  std::string out_;
  bool need_comma_ = false;
};

void HistogramJson(Json& json, std::string_view key, const LatencyHistogram& h, double divisor) {
  json.Key(key);
  json.Open();
  json.IntField("count", static_cast<int64_t>(h.count()));
  json.Field("p50", static_cast<double>(h.Quantile(0.50)) / divisor);
  json.Field("p99", static_cast<double>(h.Quantile(0.99)) / divisor);
  json.Field("p999", static_cast<double>(h.Quantile(0.999)) / divisor);
  json.Field("max", static_cast<double>(h.max()) / divisor);
  json.Close();
}

double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

double ThreadCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_THREAD, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

void RaiseFileLimit(int64_t wanted) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_max < static_cast<rlim_t>(wanted)) {
    rlimit raised = limit;
    raised.rlim_max = static_cast<rlim_t>(wanted);
    raised.rlim_cur = static_cast<rlim_t>(wanted);
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) return;  // root may raise the hard limit
  }
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
}

void PinThisThread(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof(set), &set);
}

void SleepUntil(int64_t deadline_ns) {
  const int64_t now = NowNs();
  if (deadline_ns > now) std::this_thread::sleep_for(std::chrono::nanoseconds(deadline_ns - now));
}

// ---- baseline: plain TCP over loopback ----

int RunBaseline(double warmup_s, double duration_s, const std::string& label) {
  const size_t chunk = static_cast<size_t>(absl::GetFlag(FLAGS_baseline_chunk_bytes));
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener, 1) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::fprintf(stderr, "pop3load: baseline listener: %s\n", std::strerror(errno));
    return 1;
  }
  std::atomic<bool> stop{false};
  std::atomic<bool> measuring{false};
  std::atomic<uint64_t> measured_bytes{0};
  double sender_cpu_before = 0;
  double sender_cpu_after = 0;
  std::atomic<int> sender_phase{0};  // 1: take the "before" reading, 2: take the "after"
  std::thread reader([&] {
    PinThisThread(absl::GetFlag(FLAGS_baseline_reader_cpu));
    const int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return;
    std::vector<char> in(chunk);
    std::vector<char> copy(chunk);
    while (true) {
      const ssize_t n = recv(fd, in.data(), in.size(), 0);
      if (n <= 0) break;
      std::memcpy(copy.data(), in.data(), static_cast<size_t>(n));
      if (measuring.load(std::memory_order_relaxed)) {
        measured_bytes.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      }
    }
    close(fd);
  });
  std::thread sender([&] {
    PinThisThread(absl::GetFlag(FLAGS_baseline_sender_cpu));
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      if (fd >= 0) close(fd);
      return;
    }
    std::vector<char> data(chunk);
    for (size_t i = 0; i < chunk; ++i) data[i] = static_cast<char>('a' + i % 26);
    int phase_seen = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      const int phase = sender_phase.load(std::memory_order_acquire);
      if (phase != phase_seen) {
        (phase == 1 ? sender_cpu_before : sender_cpu_after) = ThreadCpuSeconds();
        phase_seen = phase;
      }
      size_t sent = 0;
      while (sent < chunk) {
        const ssize_t n = send(fd, data.data() + sent, chunk - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<size_t>(n);
      }
      if (sent < chunk) break;
    }
    if (sender_phase.load() == 2 && phase_seen != 2) sender_cpu_after = ThreadCpuSeconds();
    shutdown(fd, SHUT_WR);
    close(fd);
  });
  const int64_t start = NowNs();
  SleepUntil(start + static_cast<int64_t>(warmup_s * 1e9));
  const int64_t t0 = NowNs();
  sender_phase.store(1, std::memory_order_release);
  measuring.store(true);
  SleepUntil(t0 + static_cast<int64_t>(duration_s * 1e9));
  measuring.store(false);
  const int64_t t1 = NowNs();
  sender_phase.store(2, std::memory_order_release);
  // Let the sender take its "after" reading on its next chunk, then stop it.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  stop.store(true);
  sender.join();
  reader.join();
  close(listener);
  const double seconds = static_cast<double>(t1 - t0) / 1e9;
  const double bytes = static_cast<double>(measured_bytes.load());
  Json json;
  json.Open();
  json.StringField("scenario", "baseline");
  json.StringField("label", label);
  json.IntField("chunk_bytes", static_cast<int64_t>(chunk));
  json.Field("duration_s", seconds);
  json.Field("bytes", bytes);
  json.Field("bytes_per_s", bytes / seconds);
  json.Field("mb_per_s", bytes / seconds / 1e6);
  const double sender_cpu = sender_cpu_after - sender_cpu_before;
  json.Field("sender_cpu_s", sender_cpu);
  json.Field("sender_cpu_s_per_gb", bytes > 0 ? sender_cpu / (bytes / 1e9) : 0);
  json.Close();
  std::printf("%s\n", json.text().c_str());
  return 0;
}

// ---- main ----

std::optional<sockaddr_in> ParseAddress(std::string_view text, bool with_port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  std::string host(text);
  if (with_port) {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    int port = 0;
    if (!absl::SimpleAtoi(AbslView(text.substr(colon + 1)), &port) || port <= 0 || port > 65535) {
      return std::nullopt;
    }
    addr.sin_port = htons(static_cast<uint16_t>(port));
    host = std::string(text.substr(0, colon));
  }
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) return std::nullopt;
  return addr;
}

int Usage(const std::string& why) {
  std::fprintf(stderr, "pop3load: %s (see --help)\n", why.c_str());
  return 2;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "POP3 load generator; prints one JSON object. See tools/bench/README.md.");
  absl::ParseCommandLine(argc, argv);
  const double duration_s = absl::GetFlag(FLAGS_duration_s);
  const double warmup_s = absl::GetFlag(FLAGS_warmup_s);
  const double hold_s = absl::GetFlag(FLAGS_hold_s);
  if (!(duration_s > 0 && duration_s <= 3600) || !(warmup_s >= 0 && warmup_s <= 600) ||
      !(hold_s >= 0 && hold_s <= 3600)) {
    return Usage(
        "--duration_s must be in (0, 3600], --warmup_s in [0, 600], --hold_s in [0, 3600]");
  }
  const std::string label = absl::GetFlag(FLAGS_label);
  if (absl::GetFlag(FLAGS_baseline)) {
    const int chunk = absl::GetFlag(FLAGS_baseline_chunk_bytes);
    if (chunk < 1024 || chunk > (64 << 20)) return Usage("--baseline_chunk_bytes out of range");
    return RunBaseline(warmup_s, duration_s, label);
  }

  Config config;
  std::optional<Scenario> scenario = ParseScenario(absl::GetFlag(FLAGS_scenario));
  if (!scenario.has_value()) return Usage("unknown --scenario");
  config.scenario = *scenario;
  std::optional<sockaddr_in> server = ParseAddress(absl::GetFlag(FLAGS_server), true);
  if (!server.has_value()) return Usage("--server must be IPv4:port");
  config.server = *server;
  config.threads = absl::GetFlag(FLAGS_threads);
  config.connections = absl::GetFlag(FLAGS_connections);
  config.pipeline = absl::GetFlag(FLAGS_pipeline);
  if (config.threads < 1 || config.threads > kThreadsMax) return Usage("--threads out of range");
  if (config.connections < config.threads || config.connections > kConnectionsMax) {
    return Usage(absl::StrCat("--connections must be in [--threads, ", kConnectionsMax, "]"));
  }
  if (config.pipeline < 1 || config.pipeline > kPipelineMax) {
    return Usage(absl::StrCat("--pipeline must be in [1, ", kPipelineMax, "]"));
  }
  for (absl::string_view ip :
       absl::StrSplit(absl::GetFlag(FLAGS_source_ips), ',', absl::SkipEmpty())) {
    std::optional<sockaddr_in> source = ParseAddress(StdView(ip), false);
    if (!source.has_value()) return Usage(absl::StrCat("bad --source_ips entry ", ip));
    config.source_ips.push_back(source->sin_addr);
  }
  config.users = absl::GetFlag(FLAGS_users) > 0 ? absl::GetFlag(FLAGS_users) : config.connections;
  if (config.users < config.connections) {
    return Usage(
        "--users must be at least --connections: two sessions of one user at once "
        "would meet the server's maildrop lock");
  }
  config.first_user = absl::GetFlag(FLAGS_first_user);
  config.user_pattern = absl::GetFlag(FLAGS_user_pattern);
  config.password = absl::GetFlag(FLAGS_password);
  if (config.password.empty()) return Usage("--password is required");
  config.command_timeout_ns = static_cast<int64_t>(absl::GetFlag(FLAGS_command_timeout_s) * 1e9);
  if (config.command_timeout_ns <= 0) return Usage("--command_timeout_s must be positive");
  config.login_concurrency = std::max(1, absl::GetFlag(FLAGS_login_concurrency));
  config.rate = absl::GetFlag(FLAGS_rate);
  if (config.scenario == Scenario::kLatency && !(config.rate > 0 && config.rate <= 1e6)) {
    return Usage("--scenario=latency needs --rate in (0, 1e6]");
  }
  std::vector<pid_t> server_pids;
  for (absl::string_view pid :
       absl::StrSplit(absl::GetFlag(FLAGS_server_pid), ',', absl::SkipEmpty())) {
    int value = 0;
    if (!absl::SimpleAtoi(pid, &value) || value <= 0) return Usage("bad --server_pid");
    server_pids.push_back(value);
  }
  RaiseFileLimit(config.connections + 1024);

  auto read_usage = [&](bool with_pss) -> std::optional<TreeUsage> {
    if (server_pids.empty()) return std::nullopt;
    absl::StatusOr<TreeUsage> usage = ReadTreeUsage(server_pids, with_pss);
    if (!usage.ok()) {
      std::fprintf(stderr, "pop3load: reading the server's /proc: %s\n",
                   usage.status().ToString().c_str());
      return std::nullopt;
    }
    return *usage;
  };

  const bool idle = config.scenario == Scenario::kIdle;
  std::optional<TreeUsage> idle_zero;  // idle: the server with no session
  if (idle) idle_zero = read_usage(true);

  Shared shared;
  std::vector<std::unique_ptr<Worker>> workers;
  int slot = 0;
  for (int t = 0; t < config.threads; ++t) {
    const int share =
        config.connections / config.threads + (t < config.connections % config.threads);
    workers.push_back(std::make_unique<Worker>(config, &shared, slot, slot + share));
    slot += share;
  }
  auto logged_in = [&] {
    int64_t total = 0;
    for (auto& w : workers) total += w->stats().logged_in.load(std::memory_order_relaxed);
    return total;
  };
  auto open_now = [&] {
    int64_t total = 0;
    for (auto& w : workers) total += w->stats().open.load(std::memory_order_relaxed);
    return total;
  };

  const double client_cpu_start = ProcessCpuSeconds();
  std::vector<std::thread> threads;
  for (auto& w : workers) threads.emplace_back([&w] { w->Run(); });
  const int64_t start = NowNs();

  std::optional<TreeUsage> before;
  std::optional<TreeUsage> after;
  std::optional<TreeUsage> idle_loaded;
  int64_t t0 = start;
  int64_t t1 = start;
  double time_to_all_logged_in_s = -1;
  double client_cpu_t0 = 0;  // the load generator's own CPU over the measured interval
  double client_cpu_t1 = 0;
  int64_t held = 0;
  if (idle) {
    shared.measuring.store(true);
    const int64_t deadline = start + static_cast<int64_t>(duration_s * 1e9);
    int64_t last_report = start;
    while (NowNs() < deadline && logged_in() < config.connections) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (NowNs() - last_report > 2'000'000'000) {
        std::fprintf(stderr, "pop3load: idle: %lld of %d logged in\n",
                     static_cast<long long>(logged_in()), config.connections);
        last_report = NowNs();
      }
    }
    t0 = NowNs();
    held = logged_in();
    if (held == config.connections) {
      time_to_all_logged_in_s = static_cast<double>(t0 - start) / 1e9;
      std::fprintf(stderr,
                   "pop3load: idle: all %d sessions logged in after %.2f s; holding %.1f s\n",
                   config.connections, time_to_all_logged_in_s, hold_s);
    } else {
      std::fprintf(stderr, "pop3load: idle: only %lld of %d sessions logged in within %.1f s\n",
                   static_cast<long long>(held), config.connections, duration_s);
    }
    before = read_usage(false);
    SleepUntil(t0 + static_cast<int64_t>(hold_s * 1e9));
    held = std::min<int64_t>(held, logged_in());
    idle_loaded = read_usage(true);
    after = idle_loaded;
    t1 = NowNs();
  } else {
    SleepUntil(start + static_cast<int64_t>(warmup_s * 1e9));
    before = read_usage(false);
    client_cpu_t0 = ProcessCpuSeconds();
    t0 = NowNs();
    shared.measuring.store(true);
    SleepUntil(t0 + static_cast<int64_t>(duration_s * 1e9));
    shared.measuring.store(false);
    t1 = NowNs();
    client_cpu_t1 = ProcessCpuSeconds();
    after = read_usage(false);
    held = open_now();
  }
  shared.stop.store(true);
  for (auto& thread : threads) thread.join();
  const double client_cpu_s = ProcessCpuSeconds() - client_cpu_start;

  // Merge.
  uint64_t sessions = 0, body_bytes = 0, bytes_read = 0, rate_shortfall = 0;
  int64_t open_max = 0;
  LatencyHistogram session_ns;
  LatencyHistogram all_commands_ns;
  std::array<LatencyHistogram, kVerbCount> command_ns;
  std::map<std::string, uint64_t> errors;
  for (auto& w : workers) {
    ThreadStats& s = w->stats();
    sessions += s.sessions;
    body_bytes += s.body_bytes;
    bytes_read += s.bytes_read;
    rate_shortfall += s.rate_shortfall;
    open_max += s.open_max;
    session_ns.Merge(s.session_ns);
    for (size_t v = 0; v < kVerbCount; ++v) {
      command_ns[v].Merge(s.command_ns[v]);
      if (v != static_cast<size_t>(Verb::kGreeting)) all_commands_ns.Merge(s.command_ns[v]);
    }
    for (const auto& [kind, count] : s.errors) errors[kind] += count;
  }
  uint64_t errors_total = 0;
  for (const auto& [kind, count] : errors) errors_total += count;
  const double seconds = static_cast<double>(t1 - t0) / 1e9;

  Json json;
  json.Open();
  json.StringField("scenario", absl::GetFlag(FLAGS_scenario));
  json.StringField("label", label);
  json.StringField("server", absl::GetFlag(FLAGS_server));
  json.IntField("threads", config.threads);
  json.IntField("connections", config.connections);
  json.IntField("pipeline", config.pipeline);
  json.IntField("source_ips", static_cast<int64_t>(config.source_ips.size()));
  json.IntField("users", config.users);
  json.Field("duration_s", seconds);
  if (config.scenario == Scenario::kLatency) {
    json.Field("rate_target", config.rate);
    json.IntField("rate_shortfall", static_cast<int64_t>(rate_shortfall));
  }
  json.IntField("sessions", static_cast<int64_t>(sessions));
  json.Field("sessions_per_s", seconds > 0 ? static_cast<double>(sessions) / seconds : 0);
  HistogramJson(json, "session_latency_ms", session_ns, 1e6);
  json.Key("command_latency_us");
  json.Open();
  HistogramJson(json, "all", all_commands_ns, 1e3);
  for (size_t v = 0; v < kVerbCount; ++v) {
    if (command_ns[v].count() > 0) HistogramJson(json, kVerbNames[v], command_ns[v], 1e3);
  }
  json.Close();
  json.Field("body_bytes", static_cast<double>(body_bytes));
  json.Field("bytes_per_s", seconds > 0 ? static_cast<double>(body_bytes) / seconds : 0);
  json.Field("mb_per_s", seconds > 0 ? static_cast<double>(body_bytes) / seconds / 1e6 : 0);
  json.Field("bytes_read_total", static_cast<double>(bytes_read));
  json.Key("errors");
  json.Open();
  json.IntField("total", static_cast<int64_t>(errors_total));
  for (const auto& [kind, count] : errors) json.IntField(kind, static_cast<int64_t>(count));
  json.Close();
  json.IntField("connections_held", held);
  json.IntField("connections_open_max", open_max);
  if (idle) json.Field("time_to_all_logged_in_s", time_to_all_logged_in_s);
  json.Field("client_cpu_s", client_cpu_s);
  if (!idle && seconds > 0) {
    // Near 1 x --threads, the load generator (not the server) limits the rate.
    json.Field("client_cpu_utilisation", (client_cpu_t1 - client_cpu_t0) / seconds);
  }
  json.Key("server_usage");
  if (before.has_value() && after.has_value()) {
    json.Open();
    json.IntField("processes", static_cast<int64_t>(after->processes));
    const double cpu_s = after->cpu_seconds - before->cpu_seconds;
    json.Field("cpu_s", cpu_s);
    json.Field("cpu_utilisation", seconds > 0 ? cpu_s / seconds : 0);
    if (sessions > 0) {
      json.Field("cpu_ms_per_session", cpu_s * 1e3 / static_cast<double>(sessions));
      if (cpu_s > 0) json.Field("sessions_per_cpu_s", static_cast<double>(sessions) / cpu_s);
    }
    if (body_bytes > 0) {
      json.Field("cpu_s_per_gb", cpu_s / (static_cast<double>(body_bytes) / 1e9));
    }
    if (idle && idle_zero.has_value() && idle_loaded.has_value()) {
      json.IntField("processes_with_no_session", static_cast<int64_t>(idle_zero->processes));
      json.Field("pss_bytes_no_session", static_cast<double>(idle_zero->pss_bytes));
      json.Field("pss_bytes_with_sessions", static_cast<double>(idle_loaded->pss_bytes));
      if (held > 0) {
        const double per = (static_cast<double>(idle_loaded->pss_bytes) -
                            static_cast<double>(idle_zero->pss_bytes)) /
                           static_cast<double>(held);
        json.Field("pss_bytes_per_session", per);
        json.Field("pss_kib_per_session", per / 1024);
      }
    }
    json.Close();
  } else {
    json.Null();
  }
  json.Close();
  std::printf("%s\n", json.text().c_str());
  return 0;
}

}  // namespace
}  // namespace posthaste::bench

int main(int argc, char** argv) { return posthaste::bench::Main(argc, argv); }
