// Arbitrary bytes into ParseProxyHeader: never a crash or an over-read; every prefix of an input
// that parses needs more and never decides otherwise first (the parser is given the bytes so far
// on each receive, so an early wrong answer would refuse a good proxy or take a short header);
// an accepted header lies within its size limit and its addresses print.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/transport/proxy_header.h"

using posthaste::server::transport::kProxyHeaderBytesMax;
using posthaste::server::transport::kProxyV1HeaderBytesMax;
using posthaste::server::transport::ParseProxyHeader;
using posthaste::server::transport::ProxyParseResult;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const ProxyParseResult whole = ParseProxyHeader(input);
  if (whole.status == ProxyParseResult::Status::kInvalid && whole.error.empty()) abort();
  if (whole.status != ProxyParseResult::Status::kComplete) {
    // A refusal or need-more on the whole input: no prefix may be complete.
    for (size_t n = 0; n < size && n <= kProxyHeaderBytesMax; ++n) {
      if (ParseProxyHeader(input.substr(0, n)).status == ProxyParseResult::Status::kComplete) {
        abort();
      }
    }
    return 0;
  }
  const size_t used = whole.header.header_bytes;
  if (used == 0 || used > size) abort();
  if (whole.header.version == 1 && used > kProxyV1HeaderBytesMax) abort();
  if (used > kProxyHeaderBytesMax) abort();
  for (size_t n = 0; n < used; ++n) {
    if (ParseProxyHeader(input.substr(0, n)).status != ProxyParseResult::Status::kNeedMore) {
      abort();
    }
  }
  // The header alone parses to the same length.
  if (ParseProxyHeader(input.substr(0, used)).header.header_bytes != used) abort();
  if (!whole.header.local) {
    if (whole.header.source.ToText().empty() || whole.header.destination.ToText().empty()) {
      abort();
    }
  }
  return 0;
}
