// What checking a stored message before RETR costs (MailboxSnapshot::VerifyStoredBytes: pread
// in 256 KiB chunks and CRC32C, on an I/O pool thread in the server), for messages of 4 KB,
// 100 KB and 10 MB in a real store whose segment is in the page cache (the common case: a
// message retrieved soon after delivery). Bytes per second is the message bytes checked.
// Run: bazel run --config=opt //storage:verify_benchmark -- --benchmark_repetitions=5
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "storage/mail_store.h"

namespace posthaste::storage {
namespace {

std::string Message(size_t bytes) {
  std::string raw = "From: a@bench.test\r\nSubject: verify\r\n\r\n";
  const std::string line = std::string(70, 'x') + "\r\n";
  while (raw.size() + line.size() <= bytes) raw += line;
  return raw;
}

void BM_VerifyStoredBytes(benchmark::State& state) {
  const size_t bytes = static_cast<size_t>(state.range(0));
  const char* tmp = std::getenv("TMPDIR");
  StoreOptions options;
  options.data_dir =
      absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/verify-bench-", getpid(), "-", bytes);
  auto store = MailStore::Open(options);
  if (!store.ok()) {
    state.SkipWithError(std::string(store.status().message()).c_str());
    return;
  }
  const std::string address = "u@bench.test";
  if (!(*store)->CreateAccount(address, "x").ok() ||
      !(*store)->Deliver(address, Message(bytes), {}).ok()) {
    state.SkipWithError("delivery failed");
    return;
  }
  auto snapshot = (*store)->OpenMailbox(address);
  if (!snapshot.ok()) {
    state.SkipWithError("open failed");
    return;
  }
  const uint64_t stored = (*snapshot)->Ref(0).length;
  for (auto _ : state) {
    absl::Status status = (*snapshot)->VerifyStoredBytes(0);
    if (!status.ok()) state.SkipWithError("checksum mismatch");
    benchmark::DoNotOptimize(status);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * stored));
  snapshot->reset();
  store->reset();
  std::error_code ignored;
  std::filesystem::remove_all(options.data_dir, ignored);
}
BENCHMARK(BM_VerifyStoredBytes)->Arg(4 << 10)->Arg(100 << 10)->Arg(10 << 20);

}  // namespace
}  // namespace posthaste::storage
