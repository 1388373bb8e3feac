// Encryption throughput of TlsEngine::EncryptFrom (record-sized pieces sealed from the caller's
// span into the engine's output buffer) and of TlsEngine::SealInto (sealed in place into one
// reused send buffer), per negotiated cipher, on one core; and the receive path, one client
// record fed and read at a time (BM_ReadPlaintext). Compare with
// `openssl speed -evp aes-128-gcm` on the same machine (see docs/ARCHITECTURE.md, TLS).
// Throughput is per CPU second (like openssl speed's default), so a loaded machine skews it
// less than wall time would. The ciphertext is recycled through SwapCiphertext, as a driver would
// after each send.
#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <string>

#include "benchmark/benchmark.h"
#include "tls/testing/tls_test_util.h"
#include "tls/tls_context.h"
#include "tls/tls_engine.h"

namespace posthaste {
namespace {

TlsContextSet& Contexts() {
  static TlsContextSet* set = [] {
    std::string dir = MakeTestDir("tls_benchmark");
    WriteCertPair(dir, "default", MakeTestCertificate("default.test", {"default.test"}));
    TlsOptions options;
    options.cert_path = dir + "/default.crt";
    options.key_path = dir + "/default.key";
    auto created = TlsContextSet::Create(options);
    if (!created.ok()) std::abort();
    std::filesystem::remove_all(dir);  // Loaded into memory; leave nothing behind.
    return created->release();
  }();
  return *set;
}

struct CipherCase {
  uint16_t max_version;
  const char* cipher_list;
};
constexpr CipherCase kCases[] = {
    {TLS1_3_VERSION, ""},
    {TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256"},
    {TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384"},
    {TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305"},
};

void BM_EncryptFrom(benchmark::State& state) {
  const CipherCase& c = kCases[state.range(0)];
  const size_t chunk_bytes = static_cast<size_t>(state.range(1));
  std::unique_ptr<TlsEngine> engine = Contexts().NewEngine();
  TestTlsClient client({.max_version = c.max_version, .cipher_list = c.cipher_list});
  if (!client.Handshake(*engine).ok()) {
    state.SkipWithError("handshake failed");
    return;
  }
  std::string stored(chunk_bytes, 'm');  // Stands in for mapped segment memory.
  std::span<const uint8_t> span(reinterpret_cast<const uint8_t*>(stored.data()), stored.size());
  std::string sent;
  sent.reserve(TlsEngine::kCiphertextOutMax + 64 * 1024);
  for (auto _ : state) {
    size_t offset = 0;
    while (offset < span.size()) {
      auto consumed = engine->EncryptFrom(span.subspan(offset));
      if (!consumed.ok()) {
        state.SkipWithError("encrypt failed");
        return;
      }
      offset += *consumed;
      engine->SwapCiphertext(&sent);
      benchmark::DoNotOptimize(sent.data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(chunk_bytes));
  state.SetLabel(std::string(engine->cipher_name()));
}
BENCHMARK(BM_EncryptFrom)
    ->ArgNames({"cipher", "bytes"})
    ->ArgsProduct({{0, 1, 2, 3}, {1 << 20}})
    ->Args({0, 16384})
    ->Args({0, 1 << 10});

// The same through SealInto: records sealed in place into one reused send buffer, many per call.
void BM_SealInto(benchmark::State& state) {
  const CipherCase& c = kCases[state.range(0)];
  const size_t chunk_bytes = static_cast<size_t>(state.range(1));
  std::unique_ptr<TlsEngine> engine = Contexts().NewEngine();
  TestTlsClient client({.max_version = c.max_version, .cipher_list = c.cipher_list});
  if (!client.Handshake(*engine).ok()) {
    state.SkipWithError("handshake failed");
    return;
  }
  std::string stored(chunk_bytes, 'm');  // Stands in for mapped segment memory.
  std::span<const uint8_t> span(reinterpret_cast<const uint8_t*>(stored.data()), stored.size());
  TlsSendBuffer buffer;
  for (auto _ : state) {
    size_t offset = 0;
    while (offset < span.size()) {
      buffer.Clear();
      auto consumed = engine->SealInto(span.subspan(offset), &buffer);
      if (!consumed.ok()) {
        state.SkipWithError("seal failed");
        return;
      }
      offset += *consumed;
      benchmark::DoNotOptimize(buffer.bytes().data());
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(chunk_bytes));
  state.SetLabel(std::string(engine->cipher_name()));
}
BENCHMARK(BM_SealInto)
    ->ArgNames({"cipher", "bytes"})
    ->ArgsProduct({{0, 1, 2, 3}, {1 << 20}})
    ->Args({0, 16384})
    ->Args({0, 1 << 10});

// The receive path as the transport drives it: one record from the client (a POP3 command, or a
// full record of an upload) fed, then read into a buffer cleared before each read. Each
// iteration includes the client's encryption of the record. `buffer_capacity` is what that
// buffer holds afterwards: a connection keeps it for its lifetime.
void BM_ReadPlaintext(benchmark::State& state) {
  const size_t record_bytes = static_cast<size_t>(state.range(0));
  std::unique_ptr<TlsEngine> engine = Contexts().NewEngine();
  TestTlsClient client({.max_version = TLS1_3_VERSION});
  if (!client.Handshake(*engine).ok()) {
    state.SkipWithError("handshake failed");
    return;
  }
  const std::string record(record_bytes, 'c');
  std::string wire;
  std::string received;
  for (auto _ : state) {
    SSL_write(client.ssl(), record.data(), static_cast<int>(record.size()));
    BIO* wbio = SSL_get_wbio(client.ssl());
    wire.resize(BIO_pending(wbio));
    BIO_read(wbio, wire.data(), static_cast<int>(wire.size()));
    auto fed = engine->FeedCiphertext(wire);
    received.clear();
    auto read = engine->ReadPlaintext(&received);
    if (!fed.ok() || *fed != wire.size() || !read.ok() || *read != record_bytes) {
      state.SkipWithError("record not read back");
      return;
    }
    benchmark::DoNotOptimize(received.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                          static_cast<int64_t>(record_bytes));
  state.counters["buffer_capacity"] = static_cast<double>(received.capacity());
}
BENCHMARK(BM_ReadPlaintext)->ArgName("bytes")->Arg(6)->Arg(16384);

}  // namespace
}  // namespace posthaste
