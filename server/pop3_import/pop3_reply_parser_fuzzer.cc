// libFuzzer target for the POP3 reply parser of `import pop3` (it reads whatever a source
// server sends) and the UIDL and LIST listing parsers. Input: one byte of shape (bit 0: multi-
// line) and fragment size, then the server's bytes. The parser must never crash, must give the
// same reply (or error) fed whole or in fragments, and must respect its body limit.
// Single-threaded.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "server/pop3_import/pop3_reply_parser.h"

namespace {

using posthaste::server::pop3_import::ParseListListing;
using posthaste::server::pop3_import::ParseUidlListing;
using posthaste::server::pop3_import::Pop3Reply;
using posthaste::server::pop3_import::Pop3ReplyParser;
using posthaste::server::pop3_import::ReplyShape;
using posthaste::server::pop3_import::UnstuffBody;

constexpr uint64_t kBodyBytesMax = 4096;

struct Outcome {
  Pop3ReplyParser::Progress progress = Pop3ReplyParser::Progress::kNeedMore;
  Pop3Reply reply;
  size_t consumed = 0;
};

Outcome Run(ReplyShape shape, std::string_view input, size_t fragment) {
  Pop3ReplyParser parser;
  parser.Expect(shape, kBodyBytesMax);
  Outcome outcome;
  for (size_t at = 0; at < input.size();) {
    size_t consumed = 0;
    outcome.progress = parser.Feed(input.substr(at, fragment), &consumed);
    if (consumed > fragment) __builtin_trap();
    at += consumed;
    outcome.consumed = at;
    if (outcome.progress == Pop3ReplyParser::Progress::kComplete) {
      outcome.reply = parser.TakeReply();
      break;
    }
    if (outcome.progress == Pop3ReplyParser::Progress::kError) break;
    if (consumed == 0) __builtin_trap();  // no progress without a verdict
  }
  return outcome;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const ReplyShape shape = (data[0] & 1) ? ReplyShape::kMultiLine : ReplyShape::kSingleLine;
  const size_t fragment = 1 + (data[0] >> 1) % 32;
  const std::string_view input(reinterpret_cast<const char*>(data + 1), size - 1);
  const Outcome whole = Run(shape, input, input.size() + 1);
  const Outcome pieces = Run(shape, input, fragment);
  if (whole.progress != pieces.progress || whole.consumed != pieces.consumed ||
      whole.reply.ok != pieces.reply.ok || whole.reply.text != pieces.reply.text ||
      whole.reply.body != pieces.reply.body) {
    __builtin_trap();
  }
  if (whole.reply.body.size() > kBodyBytesMax) __builtin_trap();
  if (UnstuffBody(whole.reply.body).size() > whole.reply.body.size()) __builtin_trap();
  (void)ParseUidlListing(input);
  (void)ParseListListing(input);
  return 0;
}
