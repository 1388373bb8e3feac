// A password login's verification (USER/PASS, SASL PLAIN and LOGIN, the master user's part of a
// master login) through AuthService against a real store: a cache miss (the account read from
// RocksDB, then the stored hash verified) per scheme, and a cache hit (one HMAC-SHA256 and a
// striped map look-up). The miss is what every user pays after a restart.
//   bazel run -c opt //server/pop3_service:auth_service_benchmark
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "server/auth/password_hash.h"
#include "server/pop3_service/auth_service.h"
#include "storage/mail_store.h"

namespace posthaste::server {
namespace {

// A store in its own directory under the system's temporary directory, removed afterwards.
struct Fixture {
  std::filesystem::path dir;
  std::unique_ptr<storage::MailStore> store;
  std::unique_ptr<AuthService> auth;

  Fixture(std::string_view setting_text, absl::Duration cache_ttl) {
    static std::atomic<int> fixtures{0};
    dir = std::filesystem::temp_directory_path() /
          absl::StrCat("posthaste-auth-benchmark-", getpid(), "-", fixtures.fetch_add(1));
    std::filesystem::create_directories(dir);
    storage::StoreOptions options;
    options.data_dir = (dir / "store").string();
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
  ~Fixture() {
    auth.reset();
    store.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
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
