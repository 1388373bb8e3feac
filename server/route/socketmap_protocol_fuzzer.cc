// libFuzzer target: the socketmap request parser. The input (first byte: the request size
// limit; the rest: the stream, cut into pieces whose sizes come from the stream itself) is parsed
// whole and in pieces, and the two must agree request by request and on whether it fails
// (PH_CHECK aborts on a finding). Every accepted request, written back as a netstring, must be
// exactly the bytes it was parsed from (the grammar: "<len>:<name> <key>,", name non-empty
// without spaces) and never longer than the limit.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/check.h"
#include "server/route/socketmap_protocol.h"
#include "tools/build/fuzz_input.h"

namespace posthaste::server::route {
namespace {

struct Parsed {
  std::vector<SocketmapRequest> requests;
  bool failed = false;
};

Parsed ParseInPieces(std::string_view stream, size_t limit, std::string_view cuts) {
  SocketmapRequestParser parser(limit);
  Parsed parsed;
  size_t cut = 0;
  while (!stream.empty() && !parsed.failed) {
    const size_t piece =
        cuts.empty() ? stream.size() : 1 + static_cast<uint8_t>(cuts[cut++ % cuts.size()]) % 16;
    parser.Feed(stream.substr(0, piece));
    stream.remove_prefix(std::min(piece, stream.size()));
    SocketmapRequest request;
    std::string error;
    for (;;) {
      auto result = parser.Next(&request, &error);
      if (result == SocketmapRequestParser::Result::kNeedMore) break;
      if (result == SocketmapRequestParser::Result::kError) {
        PH_CHECK(!error.empty());
        parsed.failed = true;
        break;
      }
      parsed.requests.push_back(request);
    }
  }
  return parsed;
}

}  // namespace
}  // namespace posthaste::server::route

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace posthaste::server::route;
  posthaste::testing::FuzzInput input(data, size);
  const size_t limit = 1 + input.Byte() % 64;
  const std::string_view rest = input.Bytes(size);
  const Parsed whole = ParseInPieces(rest, limit, "");
  const Parsed pieces = ParseInPieces(rest, limit, rest);
  PH_CHECK(whole.requests.size() == pieces.requests.size());
  std::string reencoded;
  for (size_t i = 0; i < whole.requests.size(); ++i) {
    const SocketmapRequest& a = whole.requests[i];
    const SocketmapRequest& b = pieces.requests[i];
    PH_CHECK(a.name == b.name && a.key == b.key);
    PH_CHECK(!a.name.empty() && a.name.find(' ') == std::string::npos);
    PH_CHECK(a.name.size() + 1 + a.key.size() <= limit);
    reencoded += Netstring(a.name + " " + a.key);
  }
  // The accepted requests are a prefix of the stream, byte for byte.
  PH_CHECK(rest.substr(0, reencoded.size()) == reencoded);
  return 0;
}
