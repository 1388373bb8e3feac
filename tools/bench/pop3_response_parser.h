// An incremental parser for the server side of a POP3 conversation, as the load generator sees
// it: status lines ("+OK ..." / "-ERR ...") and multi-line responses ending in "\r\n.\r\n",
// arriving in arbitrary fragments.
//
// The client tells the parser, in order, what each outstanding response is (Expect): a single
// line (greeting, USER, PASS, STAT, QUIT, ...) or possibly multi-line (UIDL, LIST, RETR, TOP
// without a message number). A "+OK" to a multi-line command is followed by a body; "-ERR" never
// is (RFC 1939 section 3). With pipelining (RFC 2449) several expectations may be queued.
//
// Bodies are not stored: the parser counts their bytes and lines and finds the terminator, so a
// 1 MiB RETR costs no allocation. Status lines are kept (up to kStatusBytesKept bytes).
//
// Bad input (a line that is neither +OK nor -ERR, an over-long status line, bytes nobody asked
// for) puts the parser in a sticky error state; it never crashes on any input.
//
// Threading: one parser per connection, used by one thread at a time. Feed() keeps no pointer
// into the bytes it is given.
#ifndef POSTHASTE_TOOLS_BENCH_POP3_RESPONSE_PARSER_H_
#define POSTHASTE_TOOLS_BENCH_POP3_RESPONSE_PARSER_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace posthaste::bench {

enum class ResponseShape : uint8_t {
  kSingleLine,  // greeting, USER, PASS, STAT, DELE, NOOP, RSET, QUIT, LIST n, UIDL n
  kMultiLine,   // UIDL, LIST, RETR n, TOP n m, CAPA: a body follows "+OK"
};

struct Pop3Response {
  bool ok = false;         // "+OK" (true) or "-ERR" (false)
  bool multiline = false;  // a body followed the status line
  // The status line after "+OK"/"-ERR" and one space, without CRLF; truncated to
  // kStatusBytesKept bytes.
  std::string text;
  uint64_t body_bytes = 0;  // body octets as sent (dot-stuffed, CRLFs included), no terminator
  uint64_t body_lines = 0;  // lines in the body, not counting the terminating "."
};

enum class ParseError : uint8_t {
  kNone,
  kBadStatus,       // a status line that starts with neither "+OK" nor "-ERR"
  kLineTooLong,     // a status line longer than the limit
  kUnexpectedData,  // bytes arrived while no response was expected
};

std::string_view ParseErrorName(ParseError error);

class Pop3ResponseParser {
 public:
  static constexpr size_t kStatusBytesKept = 256;
  // RFC 2449 allows 512 octets per response line; real servers stay well inside it. Allow more
  // (some send long greetings) but stay bounded.
  static constexpr size_t kStatusLineBytesMax = 4096;
  // Deepest pipeline the parser tracks.
  static constexpr size_t kExpectedMax = 256;

  // Queues the shape of the next response. Returns false (and queues nothing) when
  // kExpectedMax responses are already outstanding.
  bool Expect(ResponseShape shape);
  size_t outstanding() const { return expected_count_; }

  // Consumes all of `data`, appending each completed response to `out` (in order). Returns the
  // error state afterwards; once an error is returned, later calls return it again and consume
  // nothing. Bytes after the last completed response are kept as partial state.
  ParseError Feed(std::string_view data, std::vector<Pop3Response>* out);

  ParseError error() const { return error_; }
  // True when no response is half-received.
  bool idle() const { return state_ == State::kStatusStart; }

 private:
  enum class State : uint8_t {
    kStatusStart,  // at the first byte of a status line
    kStatus,       // inside a status line
    kLineStart,    // at the start of a body line
    kDot,          // a body line started with '.'
    kDotCR,        // ".\r" at the start of a body line
    kInLine,       // inside a body line
    kCR,           // a body line's CR seen
  };

  // Handles one complete status line (without CRLF); false on a protocol error.
  bool OnStatusLine(std::vector<Pop3Response>* out);
  void Complete(std::vector<Pop3Response>* out);
  ResponseShape PopExpected();

  State state_ = State::kStatusStart;
  ParseError error_ = ParseError::kNone;
  std::array<ResponseShape, kExpectedMax> expected_{};
  size_t expected_head_ = 0;
  size_t expected_count_ = 0;
  std::string line_;       // the status line being read (up to kStatusLineBytesMax)
  size_t line_bytes_ = 0;  // its full length so far
  Pop3Response current_;   // the response being read
};

// Reads "+OK <count> <octets>" text (a STAT reply's text, without "+OK "). Returns nullopt when
// it is not two decimal numbers.
struct StatReply {
  uint64_t messages = 0;
  uint64_t octets = 0;
};
std::optional<StatReply> ParseStatText(std::string_view text);

}  // namespace posthaste::bench

#endif  // POSTHASTE_TOOLS_BENCH_POP3_RESPONSE_PARSER_H_
