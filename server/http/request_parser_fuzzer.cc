// Arbitrary bytes into the HTTP request-head parser, whole and in small fragments (the first
// byte picks the fragment size): never a crash or an over-read; both feeds agree on the
// outcome, the status and where the head ends; an accepted head holds only what the grammar
// allows (token method and names, origin-form target, no CR/LF/NUL in values, a bounded
// Content-Length).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "server/http/request_parser.h"

namespace {

using posthaste::http::HttpRequest;
using posthaste::http::IsTokenChar;
using posthaste::http::RequestLimits;
using posthaste::http::RequestParser;

struct Outcome {
  RequestParser::Result result = RequestParser::Result::kNeedMore;
  int status = 0;
  size_t head_bytes = 0;
  HttpRequest request;
};

Outcome Parse(std::string_view input, size_t fragment, const RequestLimits& limits) {
  RequestParser parser(limits);
  Outcome out;
  for (size_t pos = 0; pos < input.size(); pos += fragment) {
    const std::string_view piece = input.substr(pos, fragment);
    size_t used = 0;
    out.result = parser.Feed(piece, &used);
    if (used > piece.size()) abort();
    if (out.result == RequestParser::Result::kNeedMore) {
      if (used != piece.size()) abort();
      continue;
    }
    if (out.result == RequestParser::Result::kError) {
      out.status = parser.error_status();
      if (out.status < 400 || out.status > 505 || parser.error_reason().empty()) abort();
      return out;
    }
    out.head_bytes = pos + used;
    out.request = parser.TakeRequest();
    return out;
  }
  return out;
}

void CheckAccepted(const HttpRequest& r, const RequestLimits& limits) {
  if (r.method.empty() || r.target.empty() || r.target[0] != '/') abort();
  for (char c : r.method) {
    if (!IsTokenChar(c)) abort();
  }
  for (unsigned char c : r.target) {
    if (c <= 0x20 || c >= 0x7f) abort();
  }
  if (r.version_minor > 1 || r.content_length > limits.body_bytes_max) abort();
  if (r.headers.size() > limits.header_count_max) abort();
  for (const auto& h : r.headers) {
    if (h.name.empty()) abort();
    for (char c : h.name) {
      if (!IsTokenChar(c)) abort();
    }
    for (char c : h.value) {
      if (c == '\r' || c == '\n' || c == '\0') abort();
    }
  }
  if (r.path().size() + r.query().size() > r.target.size()) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t fragment = 1 + data[0] % 7;
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  RequestLimits limits;
  limits.request_line_bytes_max = 256;  // small limits so the fuzzer reaches them
  limits.head_bytes_max = 1024;
  limits.header_count_max = 8;
  limits.body_bytes_max = 1000;
  const Outcome whole = Parse(input, input.size() + 1, limits);
  const Outcome pieces = Parse(input, fragment, limits);
  if (whole.result != pieces.result || whole.status != pieces.status ||
      whole.head_bytes != pieces.head_bytes) {
    abort();
  }
  if (whole.result == RequestParser::Result::kDone) {
    CheckAccepted(whole.request, limits);
    if (whole.head_bytes > limits.head_bytes_max || whole.head_bytes > input.size()) abort();
    if (input.substr(whole.head_bytes - 4, 4) != "\r\n\r\n") abort();
    if (whole.request.target != pieces.request.target ||
        whole.request.headers.size() != pieces.request.headers.size()) {
      abort();
    }
  }
  return 0;
}
