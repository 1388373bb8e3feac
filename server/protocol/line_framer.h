// LineFramer: the input buffer and line framing shared by the sans-I/O protocol sessions
// (POP3, LMTP). Bytes are appended as they arrive; Next() hands out one line at a time without
// copying. Only CRLF ends a line: a line whose first LF has no CR before it is reported as
// kBareLineFeed (the sessions refuse it and close, so a peer and a proxy in front of us can
// never disagree about where a command ends: the SMTP-smuggling class). A bare CR is left in
// the line's content for the session to refuse. A line longer than the caller's limit is
// reported once as kOverflow and then discarded up to and including the next CRLF, so parsing
// resynchronises at the next line while never buffering more than the limit.
//
// Threading: none; owned by one session. A line view returned by Next() or the view returned
// by unparsed() stays valid until the next Append(), Compact() or Clear().
#ifndef POSTHASTE_SERVER_PROTOCOL_LINE_FRAMER_H_
#define POSTHASTE_SERVER_PROTOCOL_LINE_FRAMER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace posthaste::protocol {

class LineFramer {
 public:
  enum class Status : uint8_t { kLine, kNeedMore, kOverflow, kBareLineFeed };

  void Append(std::string_view bytes) { in_.append(bytes.data(), bytes.size()); }

  // Frames the next line. On kLine, `*line` is its content without the CRLF and `*raw_bytes`
  // the octets it occupied including the CRLF. On kBareLineFeed, the same for a line that ended
  // in a bare LF (consumed; what follows is not framed reliably, so callers close). kOverflow
  // is returned once per over-long line (longer than `line_bytes_max` including its ending,
  // counted up to its first LF); kNeedMore when no complete line is buffered.
  Status Next(size_t line_bytes_max, std::string_view* line, size_t* raw_bytes);

  // Bytes received but not yet framed or consumed.
  size_t unparsed_bytes() const { return in_.size() - in_pos_; }
  std::string_view unparsed() const {
    return std::string_view(in_.data() + in_pos_, in_.size() - in_pos_);
  }
  // Marks the first `n` unparsed bytes as consumed by the caller (e.g. a message body reader).
  // REQUIRES: n <= unparsed_bytes().
  void Consume(size_t n) { scan_pos_ = in_pos_ = in_pos_ + n; }
  // Drops everything unparsed and returns how many bytes that was (STLS: nothing pipelined in
  // plaintext may reach the TLS session).
  size_t DiscardUnparsed();

  // Reclaims the parsed prefix: all of it when everything was parsed, otherwise once it is at
  // least 4 KiB and half the buffer, so the cost stays amortised O(1) per byte.
  void Compact();
  // Gives the buffer's memory back when nothing is buffered (a session that is about to wait
  // for its peer, maybe for long, holds no input buffer meanwhile).
  void ReleaseIfEmpty();
  void Clear();

 private:
  // in_[in_pos_, end) is unparsed; scan_pos_ is where the search for LF resumes.
  std::string in_;
  size_t in_pos_ = 0;
  size_t scan_pos_ = 0;
  bool discarding_line_ = false;  // resynchronising after an over-long line (until a CRLF)
};

}  // namespace posthaste::protocol

#endif  // POSTHASTE_SERVER_PROTOCOL_LINE_FRAMER_H_
