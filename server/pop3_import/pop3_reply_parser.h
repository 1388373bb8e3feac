// The POP3 client side of `posthaste import pop3`: a sans-I/O parser of what a source server
// sends (one reply at a time: a status line, and for multi-line commands a dot-terminated body),
// and the parsers of UIDL and LIST listings. The source is any server on the network, possibly
// hostile: every line and body has a size limit, and bad input is an error value, never a crash.
//
// Bodies are kept in wire form: the bytes between the status line and the terminating ".\r\n",
// dot-stuffing and line ends as sent. That is the form posthaste stores (storage/message_format.h
// CheckWireForm), so a well-behaved source's message is stored byte for byte.
//
// Threading: one parser per connection, used by one thread at a time. Feed() keeps no pointer
// into the bytes it is given.
#ifndef POSTHASTE_SERVER_POP3_IMPORT_POP3_REPLY_PARSER_H_
#define POSTHASTE_SERVER_POP3_IMPORT_POP3_REPLY_PARSER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace posthaste::server::pop3_import {

enum class ReplyShape : uint8_t {
  kSingleLine,  // greeting, USER, PASS, STLS, QUIT
  kMultiLine,   // UIDL, LIST, RETR n, CAPA: "+OK" is followed by a body ("-ERR" never is)
};

struct Pop3Reply {
  bool ok = false;   // "+OK" (true) or "-ERR" (false)
  std::string text;  // the status line after "+OK"/"-ERR" and its space, without the line end
  std::string body;  // multi-line "+OK" only: wire form, without the terminating ".\r\n"
};

class Pop3ReplyParser {
 public:
  // RFC 2449 allows 512 octets per status line; some servers send longer greetings.
  static constexpr size_t kStatusLineBytesMax = 4096;

  // Starts reading the next reply: `shape` as the command sent, a multi-line body of at most
  // `body_bytes_max` octets (as sent, before the terminator). Any earlier reply must have been
  // taken. Resets an error.
  void Expect(ReplyShape shape, uint64_t body_bytes_max);

  enum class Progress : uint8_t { kNeedMore, kComplete, kError };

  // Consumes bytes of `data` up to the end of the reply and sets *consumed to how many; bytes
  // after a complete reply are left to the caller (a server may not send them unasked, but
  // they must not be lost or misread). On kError, error() says why.
  Progress Feed(std::string_view data, size_t* consumed);

  // The complete reply (after kComplete), moved out.
  Pop3Reply TakeReply();
  const absl::Status& error() const { return error_; }

 private:
  enum class State : uint8_t { kIdle, kStatus, kBody, kComplete, kError };

  Progress Fail(std::string_view why);
  // Handles one status line (without its line end).
  Progress OnStatusLine(std::string_view line);
  // Handles one body line, `line` including its LF.
  Progress OnBodyLine(std::string_view line);

  State state_ = State::kIdle;
  ReplyShape shape_ = ReplyShape::kSingleLine;
  uint64_t body_bytes_max_ = 0;
  // The partial status line, or in a body the start of a line that may be the terminator.
  std::string line_;
  bool body_line_start_ = true;  // the next body byte starts a line
  Pop3Reply reply_;
  absl::Status error_;
};

// One entry of a UIDL listing: message number (1-based, as on the wire) and its UIDL.
struct UidlEntry {
  uint64_t number = 0;
  std::string uidl;
};

// Parses a UIDL listing body ("n uidl" lines, wire form). InvalidArgument, naming the line, for
// a malformed line, a UIDL outside RFC 1939's 1-70 characters 0x21-0x7E, a number repeated or
// not ascending, or a UIDL repeated (a source whose UIDLs are not unique cannot keep them).
// At most `entries_max` lines (a bound on memory besides the body's size; InvalidArgument past it).
inline constexpr size_t kListingEntriesMax = 1000000;
absl::StatusOr<std::vector<UidlEntry>> ParseUidlListing(std::string_view body,
                                                        size_t entries_max = kListingEntriesMax);

// One entry of a LIST listing: message number and size in octets.
struct ListEntry {
  uint64_t number = 0;
  uint64_t octets = 0;
};

// Parses a LIST listing body ("n octets" lines; text after the size is ignored, RFC 1939).
// InvalidArgument, naming the line, for anything else.
absl::StatusOr<std::vector<ListEntry>> ParseListListing(std::string_view body,
                                                        size_t entries_max = kListingEntriesMax);

// A wire-form body with one leading '.' removed from each line that starts with one: the
// message as text, for a source whose body is not in posthaste's stored form (bare LFs).
std::string UnstuffBody(std::string_view body);

}  // namespace posthaste::server::pop3_import

#endif  // POSTHASTE_SERVER_POP3_IMPORT_POP3_REPLY_PARSER_H_
