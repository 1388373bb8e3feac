// Body throughput of the three FileStreamer paths on loopback: splice (file -> pipe -> socket),
// SEND_ZC from an mmap of the file, and a copying read + send through a bounded buffer.
// A reader thread drains the socket. Counters: bytes/s (wall time), and CPU per MiB for the
// whole process (reactor + reader + io_uring workers) and for the reactor thread alone.
//
// Run (one line): bazel run --config=opt //server/reactor:send_path_benchmark --
//        --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// Note: on loopback the kernel copies SEND_ZC data anyway (the notification says so), so
// loopback cannot show zero-copy's gain on a real NIC.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>

#include "benchmark/benchmark.h"
#include "server/reactor/net.h"
#include "server/reactor/ring.h"
#include "server/reactor/send.h"

namespace posthaste::reactor {
namespace {

constexpr size_t kFileBytes = 10 << 20;

uint64_t CpuNs(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

// A page-cached file of kFileBytes, unlinked at once (the fd keeps it).
int BodyFile() {
  static const int fd = [] {
    std::string path = "/tmp/posthaste_send_bench_XXXXXX";
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

void BM_StreamFileRange(benchmark::State& state) {
  const auto path = static_cast<SendPath>(state.range(0));
  const uint64_t bytes = static_cast<uint64_t>(state.range(1));
  state.SetLabel(std::string(SendPathName(path)));
  const int file_fd = BodyFile();

  auto ring = Ring::Create({}).value();
  const int listener = CreateListener({}).value();
  const uint16_t port = LocalPort(listener).value();
  std::atomic<uint64_t> drained{0};
  // Connect first (loopback completes it from the backlog), then accept the server side.
  const int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) std::abort();
  std::thread reader([&] {
    std::string buf(1 << 20, '\0');
    while (true) {
      const ssize_t n = read(client, buf.data(), buf.size());
      if (n <= 0) break;
      drained.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    }
    close(client);
  });
  const int conn = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  close(listener);

  SendStats stats;
  bool done = false;
  bool failed = false;
  FileStreamer streamer(*ring, stats, {}, [&](absl::Status s, uint64_t) {
    done = true;
    failed = !s.ok();
  });
  const uint64_t proc0 = CpuNs(CLOCK_PROCESS_CPUTIME_ID);
  const uint64_t thread0 = CpuNs(CLOCK_THREAD_CPUTIME_ID);
  for (auto _ : state) {
    done = false;
    if (!streamer.Start(conn, {file_fd, 0, bytes}, path).ok()) std::abort();
    while (!done) ring->RunOnce(true);
    if (failed) {
      state.SkipWithError("stream failed");
      break;
    }
  }
  const uint64_t proc_ns = CpuNs(CLOCK_PROCESS_CPUTIME_ID) - proc0;
  const uint64_t thread_ns = CpuNs(CLOCK_THREAD_CPUTIME_ID) - thread0;
  shutdown(conn, SHUT_WR);
  reader.join();
  close(conn);

  const double mib = static_cast<double>(state.iterations()) * static_cast<double>(bytes) /
                     static_cast<double>(1 << 20);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes));
  state.counters["proc_cpu_us_per_MiB"] = static_cast<double>(proc_ns) / 1000.0 / mib;
  state.counters["reactor_cpu_us_per_MiB"] = static_cast<double>(thread_ns) / 1000.0 / mib;
  state.counters["zc_copied_pct"] =
      stats.zc_notifs == 0 ? 0.0 : 100.0 * stats.zc_notifs_copied / stats.zc_notifs;
}

void PathsAndSizes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"path", "bytes"});
  for (int path : {0, 1, 2}) {
    for (int64_t size : {4 << 10, 64 << 10, 256 << 10, 1 << 20, 10 << 20}) b->Args({path, size});
  }
}

BENCHMARK(BM_StreamFileRange)->Apply(PathsAndSizes)->UseRealTime();

}  // namespace
}  // namespace posthaste::reactor
