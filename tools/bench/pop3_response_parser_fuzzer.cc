// libFuzzer target for the load generator's POP3 response parser (it reads whatever a server
// sends). Input: two bytes of expectation shapes (bit i set: response i is multi-line), one byte
// of fragment size, then the server's bytes. The parser must never crash, and feeding the bytes
// whole or in fragments must give the same responses and the same error. Single-threaded.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "tools/bench/pop3_response_parser.h"

namespace {

using posthaste::bench::ParseError;
using posthaste::bench::Pop3Response;
using posthaste::bench::Pop3ResponseParser;
using posthaste::bench::ResponseShape;

ParseError Run(uint16_t shapes, std::string_view input, size_t fragment,
               std::vector<Pop3Response>* out) {
  Pop3ResponseParser parser;
  for (int i = 0; i < 16; ++i) {
    parser.Expect((shapes >> i) & 1 ? ResponseShape::kMultiLine : ResponseShape::kSingleLine);
  }
  ParseError error = ParseError::kNone;
  for (size_t at = 0; at < input.size(); at += fragment) {
    error = parser.Feed(input.substr(at, fragment), out);
  }
  if (out->size() > 16) __builtin_trap();
  return error;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const uint16_t shapes = static_cast<uint16_t>(data[0] | (data[1] << 8));
  const size_t fragment = 1 + data[2] % 16;
  std::string_view input(reinterpret_cast<const char*>(data + 3), size - 3);
  std::vector<Pop3Response> whole;
  std::vector<Pop3Response> pieces;
  const ParseError whole_error = Run(shapes, input, input.size() + 1, &whole);
  const ParseError pieces_error = Run(shapes, input, fragment, &pieces);
  if (whole_error != pieces_error || whole.size() != pieces.size()) __builtin_trap();
  for (size_t i = 0; i < whole.size(); ++i) {
    const Pop3Response& a = whole[i];
    const Pop3Response& b = pieces[i];
    if (a.ok != b.ok || a.multiline != b.multiline || a.text != b.text ||
        a.body_bytes != b.body_bytes || a.body_lines != b.body_lines) {
      __builtin_trap();
    }
    if (a.body_bytes > input.size() || a.text.size() > Pop3ResponseParser::kStatusBytesKept) {
      __builtin_trap();
    }
  }
  return 0;
}
