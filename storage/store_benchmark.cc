// MailStore benchmarks on the real disk: durable deliveries per second (text and wire-form
// input), opening + listing a large mailbox, STAT; and, CPU only, normalising text against
// checking wire form. The store lives in $PH_BENCH_DIR (default /tmp) and is removed at exit.
//
//   bazel run --config=opt //storage:store_benchmark -- --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "storage/mail_store.h"

namespace posthaste::storage {
namespace {

std::string BenchDir(std::string_view name) {
  const char* base = std::getenv("PH_BENCH_DIR");
  return absl::StrCat(base != nullptr ? base : "/tmp", "/posthaste-bench-", ::getpid(), "-",
                      std::string(name));
}

struct BenchStore {
  std::string dir;
  std::unique_ptr<MailStore> store;
  ~BenchStore() {
    store.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
};

std::unique_ptr<BenchStore> OpenBenchStore(std::string_view name) {
  auto bench = std::make_unique<BenchStore>();
  bench->dir = BenchDir(name);
  std::error_code ignored;
  std::filesystem::remove_all(bench->dir, ignored);
  StoreOptions options;
  options.data_dir = bench->dir;
  auto store = MailStore::Open(options);
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", std::string(store.status().message()).c_str());
    std::abort();
  }
  bench->store = *std::move(store);
  return bench;
}

std::string MakeMessage(size_t bytes, int salt) {
  std::string m = absl::StrCat("From: bench@example.com\r\nSubject: message ", salt, "\r\n\r\n");
  while (m.size() + 78 <= bytes) m.append(std::string(76, 'a' + salt % 26)).append("\r\n");
  m.append(std::string(bytes > m.size() + 2 ? bytes - m.size() - 2 : 0, 'z')).append("\r\n");
  return m;
}

// ---- durable deliveries ----

std::unique_ptr<BenchStore> g_deliver_store;
std::mutex g_deliver_mu;

// range(0): message size; `input`: kText normalises MakeMessage's CRLF text (what LMTP
// deliveries did before the session handed over wire form), kWireForm checks it in place.
void DurableDeliver(benchmark::State& state, MessageInput input) {
  const size_t size = static_cast<size_t>(state.range(0));
  if (state.thread_index() == 0) {
    std::lock_guard<std::mutex> lock(g_deliver_mu);
    g_deliver_store.reset();
    g_deliver_store = OpenBenchStore("deliver");
    for (int t = 0; t < state.threads(); ++t) {
      (void)g_deliver_store->store->CreateAccount(absl::StrCat("user", t, "@bench.example"), "x");
    }
  }
  // Google Benchmark starts the timed loop of all threads together after thread 0's setup.
  const std::string address = absl::StrCat("user", state.thread_index(), "@bench.example");
  const std::string message = MakeMessage(size, state.thread_index());
  DeliverOptions options;
  options.input = input;
  for (auto _ : state) {
    auto r = g_deliver_store->store->Deliver(address, message, options);
    if (!r.ok()) {
      state.SkipWithError(std::string(r.status().message()).c_str());
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(size));
  if (state.thread_index() == 0) {
    const StoreCounters c = g_deliver_store->store->Counters();
    state.counters["syncs_per_delivery"] =
        c.deliveries == 0 ? 0.0 : static_cast<double>(c.segment_syncs) / c.deliveries;
  }
}
void BM_DurableDeliver(benchmark::State& state) { DurableDeliver(state, MessageInput::kText); }
void BM_DurableDeliverWireForm(benchmark::State& state) {
  DurableDeliver(state, MessageInput::kWireForm);
}
// Each configuration gets a fresh store (thread 0 sets it up before the timed loop's barrier).
BENCHMARK(BM_DurableDeliver)->Arg(4096)->Arg(100 * 1024)->Threads(1)->UseRealTime();
BENCHMARK(BM_DurableDeliver)->Arg(4096)->Arg(100 * 1024)->Threads(64)->UseRealTime();
BENCHMARK(BM_DurableDeliverWireForm)->Arg(4096)->Arg(100 * 1024)->Threads(1)->UseRealTime();
BENCHMARK(BM_DurableDeliverWireForm)->Arg(4096)->Arg(100 * 1024)->Threads(64)->UseRealTime();

// ---- the stored form alone (CPU only) ----

// A text message of `bytes` in 76-column CRLF lines, one in 40 beginning with a dot, and its
// stored (wire) form.
struct TextAndWire {
  std::string text;
  std::string wire;
};

TextAndWire MakeDottedMessage(size_t bytes) {
  TextAndWire m;
  m.text = "From: a@b.example\r\nSubject: bench\r\n\r\n";
  for (int line = 1; m.text.size() < bytes; ++line) {
    if (line % 40 == 0) m.text += '.';
    m.text.append(74, 'x');
    m.text += "\r\n";
  }
  m.wire = NormalizeForStorage(m.text).stored;
  return m;
}

// What the store did with each LMTP delivery before: normalise (copy, stuff) the text.
void BM_NormalizeForStorage(benchmark::State& state) {
  const TextAndWire m = MakeDottedMessage(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    NormalizedMessage normalised = NormalizeForStorage(m.text);
    benchmark::DoNotOptimize(normalised);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(m.text.size()));
}
BENCHMARK(BM_NormalizeForStorage)->Arg(4096)->Arg(100 * 1024)->Arg(1024 * 1024);

// What it does now with the wire form the LMTP session hands over: check it in place.
void BM_CheckWireForm(benchmark::State& state) {
  const TextAndWire m = MakeDottedMessage(static_cast<size_t>(state.range(0)));
  for (auto _ : state) {
    absl::StatusOr<WireFormInfo> info = CheckWireForm(m.wire);
    benchmark::DoNotOptimize(info);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(m.wire.size()));
}
BENCHMARK(BM_CheckWireForm)->Arg(4096)->Arg(100 * 1024)->Arg(1024 * 1024);

// ---- opening and listing a large mailbox; STAT ----

struct BigMailboxes {
  std::unique_ptr<BenchStore> bench;
};

BigMailboxes MakeBigMailboxes() {
  BigMailboxes b;
  b.bench = OpenBenchStore("open");
  MailStore& store = *b.bench->store;
  for (int n : {10000, 100000}) {
    const std::string address = absl::StrCat("big", n, "@bench.example");
    (void)store.CreateAccount(address, "x");
    // Fill with 32 writers so group commit keeps the setup short.
    std::vector<std::thread> writers;
    std::atomic<int> next{0};
    for (int t = 0; t < 32; ++t) {
      writers.emplace_back([&] {
        for (int i = next.fetch_add(1); i < n; i = next.fetch_add(1)) {
          auto r = store.Deliver(address, MakeMessage(2048, i));
          if (!r.ok()) std::abort();
        }
      });
    }
    for (auto& w : writers) w.join();
  }
  return b;
}

// Built on first use, removed (store closed, directory deleted) at exit.
BigMailboxes& Big() {
  static BigMailboxes big = MakeBigMailboxes();
  return big;
}

// range(0): mailbox size; range(1): 1 = index compacted (steady state), 0 = fresh after bulk
// delivery (merge operands still in the memtable).
void BM_OpenAndListMailbox(benchmark::State& state) {
  MailStore& store = *Big().bench->store;
  if (state.range(1) == 1) (void)store.CompactIndex();
  const std::string address = absl::StrCat("big", state.range(0), "@bench.example");
  uint64_t sink = 0;
  for (auto _ : state) {
    auto snap = store.OpenMailbox(address);
    if (!snap.ok() || (*snap)->size() != static_cast<size_t>(state.range(0))) {
      state.SkipWithError("open failed");
      break;
    }
    // What LIST and UIDL read: every size and every UIDL.
    const MailboxSnapshot& s = **snap;
    for (size_t i = 0; i < s.size(); ++i) sink += s.pop3_size(i) + s.uidl(i).size();
  }
  benchmark::DoNotOptimize(sink);
  state.SetItemsProcessed(state.iterations() * state.range(0));
}
// Fresh first (CompactIndex only runs in the compacted variants).
BENCHMARK(BM_OpenAndListMailbox)
    ->Args({10000, 0})
    ->Args({100000, 0})
    ->Args({10000, 1})
    ->Args({100000, 1})
    ->Unit(benchmark::kMicrosecond);

void BM_Stat(benchmark::State& state) {
  MailStore& store = *Big().bench->store;
  const std::string address = absl::StrCat("big", state.range(0), "@bench.example");
  for (auto _ : state) {
    auto stats = store.GetMailboxStats(address);
    benchmark::DoNotOptimize(stats);
  }
}
BENCHMARK(BM_Stat)->Arg(10000)->Arg(100000);

}  // namespace
}  // namespace posthaste::storage
