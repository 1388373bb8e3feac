// Arbitrary bytes as an HTTP response, whole and split at every position a byte of the input
// picks: never a crash or an over-read; the decoded body never passes its limit, and the
// outcome does not depend on how the bytes were split.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/placement/http_client.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using posthaste::server::placement::HttpResponseDecoder;
  using posthaste::server::placement::HttpResponseLimits;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const HttpResponseLimits limits{.head_bytes_max = 512, .body_bytes_max = 1024};
  HttpResponseDecoder whole(limits);
  std::string whole_body;
  const bool whole_ok = whole.Feed(text, &whole_body).ok();
  if (whole_body.size() > limits.body_bytes_max) abort();
  const size_t step = size > 0 ? 1 + data[0] % 7 : 1;
  HttpResponseDecoder pieces(limits);
  std::string pieces_body;
  bool pieces_ok = true;
  for (size_t at = 0; at < size && pieces_ok; at += step) {
    pieces_ok = pieces.Feed(text.substr(at, step), &pieces_body).ok();
  }
  if (whole_ok != pieces_ok) abort();
  if (whole_ok && (whole_body != pieces_body || whole.done() != pieces.done() ||
                   whole.status_code() != pieces.status_code())) {
    abort();
  }
  return 0;
}
