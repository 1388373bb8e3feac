// A minimal, strict HTTP/1.1 client for the etcd gateway (etcd_client.h): one POST per TCP
// connection ("Connection: close"), plain TCP, every wait bounded by a deadline and an optional
// cancel descriptor, responses framed by Content-Length or chunked transfer coding and bounded
// in size. HttpResponseDecoder is the sans-I/O part (fuzzed by :http_response_fuzzer); the
// connection is blocking and belongs to one thread (never a reactor thread).
#ifndef POSTHASTE_SERVER_PLACEMENT_HTTP_CLIENT_H_
#define POSTHASTE_SERVER_PLACEMENT_HTTP_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace posthaste::server::placement {

// "http://HOST:PORT" (a trailing "/" allowed); HOST an IPv4 literal, "[IPv6]" or a name.
struct HttpEndpoint {
  std::string host;
  uint16_t port = 0;
  std::string ToString() const;
};
absl::StatusOr<HttpEndpoint> ParseHttpEndpoint(std::string_view url);

struct HttpResponseLimits {
  size_t head_bytes_max = 16 * 1024;
  // Decoded body bytes over the whole response; 0: no total (a stream whose reader bounds what
  // it keeps, as the watch does).
  size_t body_bytes_max = 16 * 1024 * 1024;
};

// Decodes one response: status line, headers, then a body framed by Content-Length or by the
// chunked coding (anything else, both at once, 1xx responses, or bytes after the end are
// errors). Feed it bytes as they arrive.
class HttpResponseDecoder {
 public:
  explicit HttpResponseDecoder(HttpResponseLimits limits = {}) : limits_(limits) {}

  // Consumes all of `input`, appending decoded body bytes to *body. InvalidArgument on
  // malformed input, ResourceExhausted past a limit; after an error the decoder is done for.
  absl::Status Feed(std::string_view input, std::string* body);

  bool head_done() const { return state_ != State::kHead; }
  bool done() const { return state_ == State::kDone; }
  int status_code() const { return status_code_; }

 private:
  enum class State : uint8_t {
    kHead,          // status line and headers, up to the empty line
    kLengthBody,    // Content-Length bytes
    kChunkSize,     // the hex size line of the next chunk
    kChunkData,     // the chunk's bytes
    kChunkDataEnd,  // the CRLF after them
    kTrailer,       // trailer lines after the last chunk, up to the empty line
    kDone,
  };
  absl::Status ParseHead();
  absl::Status ParseChunkSize();
  absl::Status CountBody(size_t n);
  absl::Status Fail(absl::Status status);

  HttpResponseLimits limits_;
  State state_ = State::kHead;
  std::string line_;  // kHead: the head so far; kChunkSize/kTrailer: the current line
  int status_code_ = 0;
  uint64_t left_ = 0;  // kLengthBody, kChunkData: bytes still to come
  uint64_t body_bytes_ = 0;
};

// One request on its own connection. Thread-compatible; blocking.
class HttpConnection {
 public:
  // Connects within `deadline`. `cancel_fd` (-1: none) ends any wait early when readable
  // (Cancelled). DeadlineExceeded or Unavailable when the peer cannot be reached.
  static absl::StatusOr<std::unique_ptr<HttpConnection>> Connect(const HttpEndpoint& endpoint,
                                                                 absl::Time deadline,
                                                                 int cancel_fd = -1);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;

  // Sends POST `path` with a JSON body.
  absl::Status SendPost(std::string_view path, std::string_view json_body, absl::Time deadline);
  // Sends `method` `path` with `extra_headers` ("Name: value\r\n" each) and `body` (with its
  // Content-Length, and `content_type` when not empty).
  absl::Status SendRequest(std::string_view method, std::string_view path,
                           std::string_view extra_headers, std::string_view content_type,
                           std::string_view body, absl::Time deadline);
  // Reads until the decoder makes progress (head done, body bytes appended, or done), appending
  // body bytes to *body. Unavailable when the peer closes before the response ends.
  absl::Status ReadSome(HttpResponseDecoder& decoder, std::string* body, absl::Time deadline);

 private:
  HttpConnection(int fd, const HttpEndpoint& endpoint, int cancel_fd)
      : fd_(fd), endpoint_(endpoint), cancel_fd_(cancel_fd) {}
  absl::Status Wait(short events, absl::Time deadline);

  int fd_;
  HttpEndpoint endpoint_;
  int cancel_fd_;
};

struct HttpResponse {
  int status_code = 0;
  std::string body;
};

// Connect, POST, read the whole response, all within `deadline`.
absl::StatusOr<HttpResponse> HttpPost(const HttpEndpoint& endpoint, std::string_view path,
                                      std::string_view json_body, absl::Time deadline,
                                      const HttpResponseLimits& limits = {}, int cancel_fd = -1);

// Connect, send `method` (as SendRequest), read the whole response, all within `deadline`.
absl::StatusOr<HttpResponse> HttpCall(const HttpEndpoint& endpoint, std::string_view method,
                                      std::string_view path, std::string_view extra_headers,
                                      std::string_view content_type, std::string_view body,
                                      absl::Time deadline, const HttpResponseLimits& limits = {});

}  // namespace posthaste::server::placement

#endif  // POSTHASTE_SERVER_PLACEMENT_HTTP_CLIENT_H_
