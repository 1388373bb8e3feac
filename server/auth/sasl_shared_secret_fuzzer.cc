// libFuzzer target: any bytes as the client's response to CRAM-MD5 and to EXTERNAL (the
// decoded SASL messages of server/auth/shared_secret.h and external_exchange.h). Checks that
// neither crashes, that CRAM-MD5 asks for an account only for a well-formed response and never
// succeeds without the right digest, and that EXTERNAL's success names the certificate.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "server/auth/external_exchange.h"
#include "server/auth/shared_secret.h"

namespace {

constexpr std::string_view kChallenge = "<1896.697170952@fuzz.example>";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using posthaste::auth::SaslStep;
  const std::string_view response(reinterpret_cast<const char*>(data), size);

  posthaste::auth::CramMd5ServerExchange cram(std::string(kChallenge), nullptr);
  cram.Start(std::nullopt);
  SaslStep step = cram.Continue(response);
  if (step.kind == SaslStep::Kind::kNeedAccount) {
    if (!posthaste::auth::ParseCramMd5Response(response).has_value()) __builtin_trap();
    posthaste::auth::SaslAccount account;
    account.address = "fuzz@example";
    account.shared_secret = "fuzz secret";
    step = cram.AccountFound(account);
    const std::string expected = posthaste::auth::CramMd5DigestHex(kChallenge, "fuzz secret");
    // The digest is hex in either case (RFC 2195 writes lowercase; clients may not).
    std::string tail(response.size() >= 32 ? response.substr(response.size() - 32) : "");
    for (char& c : tail) c = static_cast<char>(c >= 'A' && c <= 'F' ? c + 32 : c);
    const bool right = tail == expected;
    if (step.kind == SaslStep::Kind::kSuccess && !right) __builtin_trap();
  } else if (step.kind != SaslStep::Kind::kFailure) {
    __builtin_trap();
  }

  posthaste::auth::SaslConnectionFacts facts;
  facts.client_certificate_identity = "cert@example";
  posthaste::auth::ExternalServerExchange external(facts);
  step = external.Start(response);
  if (step.kind == SaslStep::Kind::kSuccess && step.authcid != "cert@example") __builtin_trap();
  return 0;
}
