// Arbitrary bytes as OAUTHBEARER and XOAUTH2 client messages, and through both exchanges: never
// a crash or an over-read; a parsed message's token is a non-empty b64token, and with no tenant
// configured no exchange ever succeeds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string_view>

#include "server/auth/oauth_exchange.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using posthaste::auth::SaslStep;
  const std::string_view message(reinterpret_cast<const char*>(data), size);
  auto bearer = posthaste::auth::ParseOAuthBearerMessage(message);
  if (bearer.ok() && bearer->token.empty()) abort();
  auto xoauth2 = posthaste::auth::ParseXOAuth2Message(message);
  if (xoauth2.ok() && (xoauth2->token.empty() || xoauth2->user.empty())) abort();

  auto snapshot = std::make_shared<const posthaste::auth::OAuthSnapshot>();
  for (int i = 0; i < 2; ++i) {
    auto exchange = i == 0 ? posthaste::auth::NewOAuthBearerExchange(snapshot, [] { return 0; })
                           : posthaste::auth::NewXOAuth2Exchange(snapshot, [] { return 0; });
    SaslStep step = exchange->Start(message);
    if (step.kind == SaslStep::Kind::kSuccess) abort();
    if (step.kind == SaslStep::Kind::kChallenge) {
      step = exchange->Continue(message);
      if (step.kind != SaslStep::Kind::kFailure) abort();
    }
  }
  return 0;
}
