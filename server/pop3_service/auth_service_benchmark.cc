// A password login's verification (USER/PASS, SASL PLAIN and LOGIN, the master user's part of a
// master login) through AuthService against a real store: a cache miss (the account read from
// RocksDB, then the stored hash verified) per scheme, and a cache hit (one HMAC-SHA256 and a
// striped map look-up). The miss is what every user pays after a restart.
//   bazel run -c opt //server/pop3_service:auth_service_benchmark
#include <stdlib.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "server/auth/password_hash.h"
#include "server/pop3_service/auth_service.h"
#include "storage/mail_store.h"

namespace posthaste::server {
namespace {

struct Fixture {
  std::unique_ptr<storage::MailStore> store;
  std::unique_ptr<AuthService> auth;

  Fixture(std::string_view setting_text, absl::Duration cache_ttl) {
    storage::StoreOptions options;
    char dir[] = "/tmp/auth-bench-XXXXXX";
    if (mkdtemp(dir) == nullptr) abort();
    options.data_dir = std::string(dir) + "/store";
    auto opened = storage::MailStore::Open(options);
    if (!opened.ok()) abort();
    store = *std::move(opened);
    auto setting = auth::ParseHashSetting(setting_text);
    if (!setting.ok()) abort();
    auto hash = auth::HashPassword("correct horse", *setting);
    if (!hash.ok() || !store->CreateAccount("ann@example.org", *hash).ok()) abort();
    auth = std::make_unique<AuthService>(store.get(), AuthServiceOptions{.cache_ttl = cache_ttl,
                                                                         .hash_setting = *setting,
                                                                         .rehash_at_login = false});
  }
};

void Run(benchmark::State& state, std::string_view setting, absl::Duration cache_ttl) {
  Fixture fixture(setting, cache_ttl);
  for (auto _ : state) {
    AuthVerdict verdict = fixture.auth->Verify("ann@example.org", "correct horse");
    if (verdict.code != AuthVerdict::Code::kOk) abort();
    benchmark::DoNotOptimize(verdict);
  }
  state.SetLabel(std::string(setting));
}

void BM_PasswordLoginCacheMiss(benchmark::State& state, const char* setting) {
  Run(state, setting, absl::ZeroDuration());
}
BENCHMARK_CAPTURE(BM_PasswordLoginCacheMiss, yescrypt_3, "yescrypt:3")->UseRealTime();
BENCHMARK_CAPTURE(BM_PasswordLoginCacheMiss, sha512_crypt, "sha512-crypt")->UseRealTime();
BENCHMARK_CAPTURE(BM_PasswordLoginCacheMiss, bcrypt_5, "bcrypt:5")->UseRealTime();

void BM_PasswordLoginCacheHit(benchmark::State& state) { Run(state, "yescrypt:3", absl::Hours(1)); }
BENCHMARK(BM_PasswordLoginCacheHit);

}  // namespace
}  // namespace posthaste::server
