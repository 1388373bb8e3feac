// The server's CPU per login for each SASL mechanism's exchange, with the client's messages
// made beforehand (RFC examples where they exist): what a login costs the shard's thread, apart
// from the account look-up (a RocksDB read) and the session. Password verification (PLAIN,
// LOGIN, USER/PASS) and its cache are measured by //server/pop3_service:auth_service_benchmark;
// the bearer tokens' signatures by //server/auth:jwt_benchmark.
//   bazel run -c opt //server/auth:sasl_mechanisms_benchmark
#include <cstdlib>
#include <string>

#include "benchmark/benchmark.h"
#include "server/auth/external_exchange.h"
#include "server/auth/sasl_exchange.h"
#include "server/auth/scram.h"
#include "server/auth/shared_secret.h"

namespace posthaste::auth {
namespace {

void Check(bool ok) {
  if (!ok) abort();
}

// RFC 7677 section 3 (SCRAM-SHA-256) and RFC 5802 section 5 (SCRAM-SHA-1), password "pencil".
struct ScramExample {
  SaslMechanism mechanism;
  ScramHash hash;
  const char* salt;
  const char* server_nonce;
  const char* client_first;
  const char* client_final;
};
constexpr ScramExample kScramSha256{SaslMechanism::kScramSha256,
                                    ScramHash::kSha256,
                                    "W22ZaJ0SNY7soEsUEjb6gQ==",
                                    "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
                                    "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                                    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                                    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="};
constexpr ScramExample kScramSha1{
    SaslMechanism::kScramSha1,
    ScramHash::kSha1,
    "QSXCR+Q6sek8bf92",
    "3rfcNHYJY1ZVvWVs7j",
    "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="};

std::string Base64Decode(std::string_view in) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t bits = 0;
  int count = 0;
  for (char c : in) {
    if (c == '=') break;
    bits = bits << 6 | static_cast<uint32_t>(kAlphabet.find(c));
    count += 6;
    if (count >= 8) {
      count -= 8;
      out.push_back(static_cast<char>((bits >> count) & 0xff));
    }
  }
  return out;
}

void BM_Scram(benchmark::State& state, const ScramExample& example) {
  SaslAccount account;
  account.address = "user";
  const std::string keys = FormatScramKeys(
      DeriveScramKeysWithSalt(example.hash, "pencil", Base64Decode(example.salt), 4096));
  (example.hash == ScramHash::kSha1 ? account.scram_sha1 : account.scram_sha256) = keys;
  const std::string secret(32, 's');
  for (auto _ : state) {
    ScramServerExchange exchange(example.mechanism, SaslConnectionFacts{}, secret);
    exchange.SetServerNonceForTest(example.server_nonce);
    Check(exchange.Start(example.client_first).kind == SaslStep::Kind::kNeedAccount);
    Check(exchange.AccountFound(account).kind == SaslStep::Kind::kChallenge);
    Check(exchange.Continue(example.client_final).kind == SaslStep::Kind::kChallenge);
    Check(exchange.Continue("").kind == SaslStep::Kind::kSuccess);
  }
}
BENCHMARK_CAPTURE(BM_Scram, sha256, kScramSha256);
BENCHMARK_CAPTURE(BM_Scram, sha1, kScramSha1);

// RFC 2195 section 2: the challenge and tim's response, secret "tanstaaftanstaaf".
void BM_CramMd5(benchmark::State& state) {
  SaslAccount account;
  account.address = "tim";
  account.shared_secret = "tanstaaftanstaaf";
  for (auto _ : state) {
    CramMd5ServerExchange exchange("<1896.697170952@postoffice.reston.mci.net>", nullptr);
    Check(exchange.Start(std::nullopt).kind == SaslStep::Kind::kChallenge);
    Check(exchange.Continue("tim b913a602c7eda7a495b4e6e7334d3890").kind ==
          SaslStep::Kind::kNeedAccount);
    Check(exchange.AccountFound(account).kind == SaslStep::Kind::kSuccess);
  }
}
BENCHMARK(BM_CramMd5);

// The fresh challenge each CRAM-MD5 exchange and each APOP greeting needs.
void BM_ServerChallenge(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(MakeServerChallenge("pop.example.org"));
}
BENCHMARK(BM_ServerChallenge);

// RFC 1939 section 7's example.
void BM_Apop(benchmark::State& state) {
  for (auto _ : state) {
    Check(ApopDigestMatches("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf",
                            "c4c9334bac560ecc979e58001b3e22fb"));
  }
}
BENCHMARK(BM_Apop);

void BM_External(benchmark::State& state) {
  SaslConnectionFacts facts;
  facts.tls = true;
  facts.client_certificate_identity = "ann@example.org";
  for (auto _ : state) {
    ExternalServerExchange exchange(facts);
    Check(exchange.Start("").kind == SaslStep::Kind::kSuccess);
  }
}
BENCHMARK(BM_External);

}  // namespace
}  // namespace posthaste::auth
