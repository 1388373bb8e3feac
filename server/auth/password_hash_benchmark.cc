// Cost of one password verification per scheme at its default parameters: the figure that
// sizes the offload pool (yescrypt at libxcrypt's default cost is about 22 ms).
#include <string>

#include "benchmark/benchmark.h"
#include "server/auth/password_hash.h"

namespace posthaste::auth {
namespace {

void BM_Verify(benchmark::State& state, HashScheme scheme) {
  std::string stored = HashPassword("correct horse", scheme).value();
  for (auto _ : state) {
    benchmark::DoNotOptimize(VerifyPassword("correct horse", stored).value());
  }
  state.SetLabel(std::string(HashSchemeName(scheme)));
}

BENCHMARK_CAPTURE(BM_Verify, yescrypt, HashScheme::kYescrypt)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Verify, sha512_crypt, HashScheme::kSha512Crypt)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Verify, bcrypt_cost10, HashScheme::kBcrypt)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Verify, argon2id_64mib, HashScheme::kArgon2id)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Verify, plain, HashScheme::kPlain)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace posthaste::auth
