// NormalizeUtf8Credential on arbitrary bytes (a client's USER, PASS or SASL PLAIN response).
// Properties: what it accepts comes back as valid UTF-8, preparing it again changes nothing
// (SASLprep is idempotent), and a stored-string preparation never accepts what a query refuses.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/check.h"
#include "base/utf8.h"
#include "server/auth/utf8_credential.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto query = posthaste::auth::NormalizeUtf8Credential(text);
  const auto stored =
      posthaste::auth::NormalizeUtf8Credential(text, posthaste::auth::Utf8CredentialUse::kStored);
  PH_CHECK(!stored.ok() || query.ok());
  if (!query.ok()) return 0;
  PH_CHECK(posthaste::IsValidUtf8(*query));
  const auto again = posthaste::auth::NormalizeUtf8Credential(*query);
  PH_CHECK(again.ok() && *again == *query);
  return 0;
}
