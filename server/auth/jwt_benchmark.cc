// The CPU cost of one OAuth login's token check: parse, signature and claims, per algorithm,
// with keys generated at start-up (RSA 2048, P-256, Ed25519).
//   bazel run -c opt //server/auth:jwt_benchmark
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "server/auth/jwks.h"
#include "server/auth/jwt.h"
#include "server/auth/testing/jwt_signer.h"

namespace posthaste::auth {
namespace {

constexpr int64_t kNow = 1800000000;

void BM_VerifyJwt(benchmark::State& state) {
  const auto algorithm = static_cast<JwsAlgorithm>(state.range(0));
  testing::JwtSigner signer(algorithm, "k");
  auto keys = ParseJwks(signer.Jwks());
  if (!keys.ok() || keys->keys.size() != 1) abort();
  const std::string token = signer.Sign(absl::StrCat(
      R"({"iss":"https://idp.t.test/","aud":"pop.t.test","email":"alice@t.test","sub":"u-1",)",
      R"("iat":)", kNow - 10, R"(,"exp":)", kNow + 3600, "}"));
  JwtCheckOptions options;
  options.issuer = "https://idp.t.test/";
  options.audiences = {"pop.t.test"};
  for (auto _ : state) {
    auto verified = VerifyJwt(token, keys->keys, options, kNow);
    if (!verified.ok()) abort();
    benchmark::DoNotOptimize(verified);
  }
  state.SetLabel(std::string(JwsAlgorithmName(algorithm)));
}
BENCHMARK(BM_VerifyJwt)
    ->Arg(static_cast<int>(JwsAlgorithm::kRs256))
    ->Arg(static_cast<int>(JwsAlgorithm::kEs256))
    ->Arg(static_cast<int>(JwsAlgorithm::kEdDsa));

}  // namespace
}  // namespace posthaste::auth
