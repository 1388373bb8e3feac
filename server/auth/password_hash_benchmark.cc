// Cost of one password verification per scheme and cost: the figure that sizes the offload pool
// and what a cold login (one that misses the auth cache) costs. Besides CPU time (user and
// system, process-wide), each row reports the system time and minor page faults per
// verification from getrusage: libxcrypt's yescrypt maps, faults in and unmaps its whole
// memory (2^(count-1) MiB) on every call, and that shows up there, not in user time.
// docs/BENCHMARKS.md ("Cold logins") has the figures and the choice of default they support.
#include <sys/resource.h>

#include <string>

#include "benchmark/benchmark.h"
#include "server/auth/password_hash.h"

namespace posthaste::auth {
namespace {

struct Usage {
  double system_s;
  double minor_faults;
};

Usage Now() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return Usage{static_cast<double>(usage.ru_stime.tv_sec) + usage.ru_stime.tv_usec / 1e6,
               static_cast<double>(usage.ru_minflt)};
}

void Run(benchmark::State& state, const std::string& stored) {
  const Usage before = Now();
  for (auto _ : state) {
    benchmark::DoNotOptimize(VerifyPassword("correct horse", stored).value());
  }
  const Usage after = Now();
  const double n = static_cast<double>(state.iterations());
  state.counters["sys_ms"] = 1e3 * (after.system_s - before.system_s) / n;
  state.counters["minflt"] = (after.minor_faults - before.minor_faults) / n;
}

void BM_Verify(benchmark::State& state, HashSetting setting) {
  Run(state, HashPassword("correct horse", setting).value());
  state.SetLabel(HashSettingText(setting));
}

// Hashes Dovecot writes (made by `doveadm pw`, see server/auth/testdata/dovecot_vectors.sh):
// verify-only schemes an imported passwd-file carries until rehashed.
void BM_VerifyImported(benchmark::State& state, const char* stored) { Run(state, stored); }

// libxcrypt's yescrypt counts: memory 2^(count-1) MiB, time roughly proportional.
BENCHMARK_CAPTURE(BM_Verify, yescrypt_count5_default, HashSetting{HashScheme::kYescrypt, 5})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Verify, yescrypt_count4, HashSetting{HashScheme::kYescrypt, 4})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Verify, yescrypt_count3, HashSetting{HashScheme::kYescrypt, 3})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Verify, yescrypt_count1, HashSetting{HashScheme::kYescrypt, 1})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Verify, sha512_crypt_5000, HashSetting{HashScheme::kSha512Crypt, 0})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Verify, sha512_crypt_50000, HashSetting{HashScheme::kSha512Crypt, 50000})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Verify, bcrypt_cost5_dovecot_default, HashSetting{HashScheme::kBcrypt, 5})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Verify, bcrypt_cost10, HashSetting{HashScheme::kBcrypt, 10})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Verify, argon2id_64mib, HashSetting{HashScheme::kArgon2id, 0})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Verify, argon2id_16mib, HashSetting{HashScheme::kArgon2id, 16})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Verify, plain, HashSetting{HashScheme::kPlain, 0})
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_VerifyImported, pbkdf2_5000,
                  "{PBKDF2}$1$oiiLkHRE.jNcCRYM$5000$29791a1e05096fb6056dbcc2deebe57d8d695b8c")
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(
    BM_VerifyImported, ssha512,
    "{SSHA512}FOnfRIhTC0WR+r/VQjC2EHI6sw+JN/W9yL66+1TU8Wm6rLrFz3/4RqZ7mvyMHyKJ20CTfb2k"
    "+gXTurXePTXOyLid6t4=")
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_VerifyImported, cram_md5,
                  "{CRAM-MD5}38b57fd1a0c4b46c814aa05f20318edd71c455380655f2c0ac35c5b359528d29")
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace posthaste::auth
