// The Postfix socketmap protocol (socketmap_table(5)), sans I/O: a request is one netstring
// "<length>:<name> <key>," and the answer one netstring "OK <value>", "NOTFOUND ",
// "TEMP <reason>", "TIMEOUT <reason>" or "PERM <reason>". Postfix keeps the connection open and
// sends the next request after each answer.
//
// SocketmapRequestParser takes bytes as they arrive and yields complete requests; framing
// errors (a non-digit length, a length over the limit, a missing ':' or ',', no space between
// name and key) end the connection, because a netstream cannot resynchronise.
//
// Threading: a parser belongs to one connection and one thread. The functions are pure.
#ifndef POSTHASTE_SERVER_ROUTE_SOCKETMAP_PROTOCOL_H_
#define POSTHASTE_SERVER_ROUTE_SOCKETMAP_PROTOCOL_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace posthaste::server::route {

struct SocketmapRequest {
  std::string name;  // the map name ("transport"): bytes before the first space
  std::string key;   // everything after it (may hold spaces; may be empty)
};

class SocketmapRequestParser {
 public:
  // A request's payload (name, space and key) may hold at most this many bytes; the length
  // prefix at most kLengthDigitsMax digits.
  static constexpr size_t kRequestBytesMaxLimit = 100'000;
  static constexpr size_t kLengthDigitsMax = 6;

  enum class Result { kNeedMore, kRequest, kError };

  explicit SocketmapRequestParser(size_t request_bytes_max);

  // Appends received bytes. Buffers at most one request's worth beyond what Next consumed.
  void Feed(std::string_view bytes);

  // kRequest: `*request` holds the next request (its bytes are consumed). kNeedMore: no
  // complete request yet. kError: `*error` says why; the parser stays in error for good.
  Result Next(SocketmapRequest* request, std::string* error);

  // Bytes received and not yet consumed (bounded by request_bytes_max + a few).
  size_t buffered_bytes() const { return buffer_.size() - consumed_; }
  // True while part of a request is buffered (for the idle deadline: a peer that stops mid
  // request is not idle but stalled).
  bool mid_request() const { return buffered_bytes() != 0; }

 private:
  Result Fail(std::string* error, std::string message);

  const size_t request_bytes_max_;
  std::string buffer_;
  size_t consumed_ = 0;
  bool failed_ = false;
  std::string failure_;
};

// The netstring "<len>:<payload>," of `payload`.
std::string Netstring(std::string_view payload);

// The answers, as netstrings. `text` is put after the status word and a space.
std::string SocketmapOk(std::string_view value);
std::string SocketmapNotFound();
std::string SocketmapTemp(std::string_view reason);
std::string SocketmapPerm(std::string_view reason);

}  // namespace posthaste::server::route

#endif  // POSTHASTE_SERVER_ROUTE_SOCKETMAP_PROTOCOL_H_
