// What the transport adds to a RETR on loopback: a reply line, a stored body and the
// terminator, sent (1) by RingTransport and (2) by the reactor's Sender and FileStreamer driven
// by hand, the way the connection driver did before the transport (the baseline). A reader
// thread drains the socket (through BoringSSL for the TLS case). Counters: bytes/s (wall time),
// CPU per MiB for the whole process and for the reactor thread alone.
//
// Run: bazel run --config=opt //server/transport:ring_transport_benchmark --
//        --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// path: 0 splice, 1 SEND_ZC, 2 copy, 3 TLS (userspace engine, sealed from the mapping).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "benchmark/benchmark.h"
#include "server/reactor/buffer_ring.h"
#include "server/reactor/net.h"
#include "server/reactor/ring.h"
#include "server/reactor/send.h"
#include "server/transport/ring_transport.h"
#include "tls/testing/tls_test_util.h"
#include "tls/tls_context.h"

namespace posthaste::server::transport {
namespace {

constexpr size_t kFileBytes = 10 << 20;
constexpr std::string_view kHeader = "+OK message follows\r\n";
constexpr std::string_view kTerminator = ".\r\n";
constexpr int kTlsPath = 3;

uint64_t CpuNs(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

// A page-cached file of kFileBytes, unlinked at once (the fd keeps it).
int BodyFile() {
  static const int fd = [] {
    std::string path = "/tmp/posthaste_transport_bench_" + std::string(6, 'X');  // mkstemp
    const int f = mkstemp(path.data());
    if (f < 0) std::abort();
    unlink(path.c_str());
    std::string chunk(1 << 20, 'x');
    for (size_t i = 0; i < kFileBytes; i += chunk.size()) {
      if (write(f, chunk.data(), chunk.size()) != static_cast<ssize_t>(chunk.size())) std::abort();
    }
    return f;
  }();
  return fd;
}

TlsContextSet& TlsContexts() {
  static TlsContextSet* set = [] {
    const std::string dir = MakeTestDir("transport_bench");
    WriteCertPair(dir, "server", MakeTestCertificate("mail.test", {"mail.test"}));
    return TlsContextSet::Create(
               {.cert_path = dir + "/server.crt", .key_path = dir + "/server.key"})
        .value()
        .release();
  }();
  return *set;
}

// A connected loopback pair whose client end is drained by a thread (plain or TLS).
struct DrainedPair {
  int server = -1;
  int client = -1;
  std::atomic<uint64_t> drained{0};
  std::thread reader;

  explicit DrainedPair(bool tls) {
    const int listener = reactor::CreateListener({}).value();
    client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(reactor::LocalPort(listener).value());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) std::abort();
    server = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    close(listener);
    reader = std::thread([this, tls] {
      std::string buf(1 << 20, '\0');
      bssl::UniquePtr<SSL_CTX> ctx;
      bssl::UniquePtr<SSL> ssl;
      if (tls) {
        ctx.reset(SSL_CTX_new(TLS_method()));
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
        ssl.reset(SSL_new(ctx.get()));
        SSL_set_fd(ssl.get(), client);
        if (SSL_connect(ssl.get()) != 1) return;
      }
      for (;;) {
        const ssize_t n = tls ? SSL_read(ssl.get(), buf.data(), static_cast<int>(buf.size()))
                              : read(client, buf.data(), buf.size());
        if (n <= 0) break;
        drained.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      }
    });
  }
  ~DrainedPair() {
    reader.join();
    close(client);
  }
};

// Tells the benchmark loop when the transport has drained or closed.
class BenchClient : public TransportClient {
 public:
  void OnReceive(std::string_view) override {}
  void OnPeerFinished() override {}
  void OnOutputDrained() override { drained = true; }
  void OnTlsStarted(const TlsSessionInfo&) override { tls_started = true; }
  void OnDeadline() override {}
  void OnClosed(CloseReason reason) override { closed = true; }
  bool drained = false;
  bool tls_started = false;
  bool closed = false;
};

void Report(benchmark::State& state, uint64_t bytes, uint64_t proc_ns, uint64_t thread_ns) {
  const double mib = static_cast<double>(state.iterations()) * static_cast<double>(bytes) /
                     static_cast<double>(1 << 20);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  state.counters["proc_cpu_us_per_MiB"] = static_cast<double>(proc_ns) / 1000.0 / mib;
  state.counters["reactor_cpu_us_per_MiB"] = static_cast<double>(thread_ns) / 1000.0 / mib;
}

void BM_TransportRetr(benchmark::State& state) {
  const int path = static_cast<int>(state.range(0));
  const uint64_t bytes = static_cast<uint64_t>(state.range(1));
  const bool tls = path == kTlsPath;
  state.SetLabel(tls ? "tls" : std::string(SendPathName(static_cast<reactor::SendPath>(path))));
  auto ring = reactor::Ring::Create({}).value();
  auto buffers = reactor::BufferRing::Create(*ring, {.group_id = 1, .buffer_count = 64}).value();
  reactor::SendStats stats;
  TlsCounters tls_counters;
  TlsPathCounters tls_path;
  uint64_t tls_body_bytes = 0;
  uint64_t stls_started = 0;
  TlsErrorLogLimiter tls_log;
  std::unique_ptr<TlsShardContexts> tls_shard;
  TransportEnv env;
  env.ring = ring.get();
  env.buffers = buffers.get();
  env.send_stats = &stats;
  if (tls) {
    tls_shard = std::make_unique<TlsShardContexts>(TlsContexts());
    env.tls = tls_shard.get();
    env.tls_counters = &tls_counters;
    env.tls_path_counters = &tls_path;
    env.tls_body_bytes = &tls_body_bytes;
    env.tls_stls_started = &stls_started;
    env.tls_error_log = &tls_log;
  } else {
    env.send_path = static_cast<reactor::SendPath>(path);
  }
  DrainedPair pair(tls);
  BenchClient client;
  {
    RingTransport transport(env, pair.server, PeerInfo{.ip = "127.0.0.1"}, tls);
    transport.Start(&client);
    while (tls && !client.tls_started && !client.closed) ring->RunOnce(true);
    const uint64_t proc0 = CpuNs(CLOCK_PROCESS_CPUTIME_ID);
    const uint64_t thread0 = CpuNs(CLOCK_THREAD_CPUTIME_ID);
    for (auto _ : state) {
      client.drained = false;
      transport.Send(kHeader);
      transport.SendFile({BodyFile(), 0, bytes});
      transport.Send(kTerminator);
      transport.Flush();
      while (!client.drained && !client.closed) ring->RunOnce(true);
      if (client.closed) {
        state.SkipWithError("connection closed");
        break;
      }
    }
    Report(state, bytes, CpuNs(CLOCK_PROCESS_CPUTIME_ID) - proc0,
           CpuNs(CLOCK_THREAD_CPUTIME_ID) - thread0);
    transport.Close();
    while (!client.closed) ring->RunOnce(true);
  }
}

// The same by hand: Sender (reply line, MSG_MORE), FileStreamer (body), Sender (terminator).
void BM_ReactorRetr(benchmark::State& state) {
  const auto path = static_cast<reactor::SendPath>(state.range(0));
  const uint64_t bytes = static_cast<uint64_t>(state.range(1));
  state.SetLabel(std::string(SendPathName(path)));
  auto ring = reactor::Ring::Create({}).value();
  reactor::SendStats stats;
  DrainedPair pair(false);
  int step = 0;
  bool failed = false;
  auto next = [&](absl::Status s, uint64_t) {
    failed = failed || !s.ok();
    ++step;
  };
  reactor::Sender sender(*ring, stats, next);
  reactor::FileStreamer streamer(*ring, stats, {}, next);
  std::string line;
  const uint64_t proc0 = CpuNs(CLOCK_PROCESS_CPUTIME_ID);
  const uint64_t thread0 = CpuNs(CLOCK_THREAD_CPUTIME_ID);
  for (auto _ : state) {
    step = 0;
    line = std::string(kHeader);
    sender.Send(pair.server, line, /*zero_copy=*/false, /*more=*/true);
    while (step < 1) ring->RunOnce(true);
    if (!streamer.Start(pair.server, {BodyFile(), 0, bytes}, path, /*more_follows=*/true).ok()) {
      std::abort();
    }
    while (step < 2) ring->RunOnce(true);
    line = std::string(kTerminator);
    sender.Send(pair.server, line, /*zero_copy=*/false);
    while (step < 3) ring->RunOnce(true);
    if (failed) {
      state.SkipWithError("send failed");
      break;
    }
  }
  Report(state, bytes, CpuNs(CLOCK_PROCESS_CPUTIME_ID) - proc0,
         CpuNs(CLOCK_THREAD_CPUTIME_ID) - thread0);
  shutdown(pair.server, SHUT_WR);
  close(pair.server);
}

void TransportArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"path", "bytes"});
  for (int path : {0, 1, 2, kTlsPath}) {
    for (int64_t size : {64 << 10, 1 << 20, 10 << 20}) b->Args({path, size});
  }
}

void ReactorArgs(benchmark::internal::Benchmark* b) {
  b->ArgNames({"path", "bytes"});
  for (int path : {0, 1, 2}) {
    for (int64_t size : {64 << 10, 1 << 20, 10 << 20}) b->Args({path, size});
  }
}

BENCHMARK(BM_TransportRetr)->Apply(TransportArgs)->UseRealTime();
BENCHMARK(BM_ReactorRetr)->Apply(ReactorArgs)->UseRealTime();

}  // namespace
}  // namespace posthaste::server::transport
