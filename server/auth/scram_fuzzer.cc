// libFuzzer target for the SCRAM message parsers and the exchange: the input is split at the
// first two NULs into a client-first message, a client-final message and an RFC 5803 keys
// string. Checks that nothing crashes, that parsers and the exchange agree, and that a made-up
// proof never succeeds. Single-threaded.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "server/auth/scram.h"

namespace {

using posthaste::auth::SaslAccount;
using posthaste::auth::SaslConnectionFacts;
using posthaste::auth::SaslMechanism;
using posthaste::auth::SaslStep;

std::string_view NextPart(std::string_view* rest) {
  const size_t nul = rest->find('\0');
  std::string_view part = rest->substr(0, nul);
  *rest = nul == std::string_view::npos ? std::string_view() : rest->substr(nul + 1);
  return part;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  const std::string_view client_first = NextPart(&rest);
  const std::string_view client_final = NextPart(&rest);
  const std::string_view keys = rest;
  posthaste::auth::ParseScramClientFinal(client_final);
  (void)posthaste::auth::ParseScramKeys(keys);
  const bool first_ok = posthaste::auth::ParseScramClientFirst(client_first).has_value();
  const SaslMechanism mechanism =
      size % 2 == 0 ? SaslMechanism::kScramSha256Plus : SaslMechanism::kScramSha1;
  SaslConnectionFacts facts{.tls = true, .tls_exporter = std::string(32, 'e')};
  posthaste::auth::ScramServerExchange exchange(mechanism, facts, "fuzz secret 0123456789");
  SaslStep step = exchange.Start(client_first);
  if (step.kind == SaslStep::Kind::kNeedAccount && !first_ok) __builtin_trap();
  if (step.kind != SaslStep::Kind::kNeedAccount) return 0;
  SaslAccount account;
  account.address = step.authcid;
  account.scram_sha1 = std::string(keys);
  account.scram_sha256 = std::string(keys);
  step = exchange.AccountFound(account);
  if (step.kind != SaslStep::Kind::kChallenge) __builtin_trap();
  step = exchange.Continue(client_final);
  // Without the password a proof matches only by breaking the hash.
  if (step.kind == SaslStep::Kind::kChallenge &&
      exchange.Continue("").kind == SaslStep::Kind::kSuccess && keys.size() < 8) {
    __builtin_trap();
  }
  return 0;
}
