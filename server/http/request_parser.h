// RequestParser: a strict, sans-I/O parser of one HTTP/1.1 request head (RFC 9112), for the
// metrics and admin listeners (server/http/http_server.h). Bytes go in through Feed() in
// fragments of any size; it answers kNeedMore, kDone (the head is parsed; the bytes after it
// start the body) or kError with the status to answer and a short reason.
//
// Accepted: `METHOD SP /origin-form SP HTTP/1.0|HTTP/1.1 CRLF`, then header fields
// `name: value CRLF` (name a token, no space before the colon; value of visible ASCII, SP,
// HTAB and obs-text), then CRLF. A body is framed by Content-Length only.
// Refused, each at the first byte that shows it (no waiting for the deadline):
//   400  bare LF or bare CR anywhere in the head, NUL or another control byte, obs-fold (a
//        line starting with SP/HTAB), whitespace in or after a header name, an empty request
//        line, a target that is not origin-form or has a bad %-escape, more than one
//        Content-Length (even equal ones) or one that is not plain digits, HTTP/1.1 without
//        exactly one Host, more than one Host
//   413  Content-Length over the body limit
//   414  a request line longer than request_line_bytes_max
//   417  an Expect other than 100-continue
//   431  a head longer than head_bytes_max or with more than header_count_max fields
//   501  any Transfer-Encoding (chunked bodies are not supported)
//   505  an HTTP version other than 1.0 and 1.1
//
// Threading: one parser per connection, used by one thread at a time. Ownership: it copies
// what it needs from each fragment; TakeRequest() moves the result out.
#ifndef POSTHASTE_SERVER_HTTP_REQUEST_PARSER_H_
#define POSTHASTE_SERVER_HTTP_REQUEST_PARSER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "server/http/http_message.h"

namespace posthaste::http {

struct RequestLimits {
  size_t request_line_bytes_max = 8 * 1024;  // with its CRLF
  size_t head_bytes_max = 16 * 1024;         // request line, fields and the final CRLF
  uint32_t header_count_max = 64;
  uint64_t body_bytes_max = 64 * 1024;  // Content-Length above this: 413
};

class RequestParser {
 public:
  enum class Result { kNeedMore, kDone, kError };

  explicit RequestParser(const RequestLimits& limits) : limits_(limits) {}

  // Takes bytes of the head from `data`. `*consumed` is how many it took: all of them with
  // kNeedMore; with kDone the rest of `data` is the start of the body (or of whatever the
  // client sends next). Once kDone or kError was returned, Feed must not be called again.
  Result Feed(std::string_view data, size_t* consumed);

  // After kDone: the request head (body empty). Moves it out; call once.
  HttpRequest TakeRequest() { return std::move(request_); }

  // After kError: the status to answer (400, 413, 414, 417, 431, 501, 505) and why.
  int error_status() const { return error_status_; }
  const std::string& error_reason() const { return error_reason_; }

  // Bytes of head received so far (kNeedMore).

 private:
  Result Fail(int status, std::string reason);
  Result ParseHead();
  Result ParseRequestLine(std::string_view line);
  Result ParseField(std::string_view line, bool* host_seen, bool* length_seen);

  const RequestLimits limits_;
  std::string buffer_;     // the head so far, at most head_bytes_max bytes
  size_t scanned_ = 0;     // bytes of buffer_ already checked
  size_t line_start_ = 0;  // where the line being scanned begins
  bool request_line_done_ = false;
  uint32_t field_lines_ = 0;
  HttpRequest request_;
  int error_status_ = 0;
  std::string error_reason_;
};

}  // namespace posthaste::http

#endif  // POSTHASTE_SERVER_HTTP_REQUEST_PARSER_H_
