// Feeds arbitrary bytes to the admin socket's request and response decoders, whole and in
// every prefix: they must never crash, never read past the input, and a decoded request must
// re-encode to exactly the bytes it consumed.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/admin/admin_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using posthaste::server::admin::DecodeAdminRequest;
  using posthaste::server::admin::DecodeAdminResponse;
  using posthaste::server::admin::EncodeAdminRequest;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto request = DecodeAdminRequest(bytes);
  if (request.ok() && request->has_value()) {
    const auto& decoded = **request;
    if (decoded.consumed > size) abort();
    if (EncodeAdminRequest(decoded.request) != bytes.substr(0, decoded.consumed)) abort();
    if (decoded.request.args.empty()) abort();
  }
  // Every prefix of a complete request is "need more", never an error.
  if (request.ok() && request->has_value()) {
    for (size_t n = 0; n < (**request).consumed; n += 1 + n / 8) {
      auto prefix = DecodeAdminRequest(bytes.substr(0, n));
      if (!prefix.ok() || prefix->has_value()) abort();
    }
  }
  (void)DecodeAdminResponse(bytes);
  return 0;
}
