#include "server/placement/http_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/strings.h"

namespace posthaste::server::placement {
namespace {

absl::Status Malformed(std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("http response: ", AbslView(what)));
}

bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

// Strict decimal Content-Length.
bool ParseLength(std::string_view text, uint64_t* out) {
  if (text.empty() || text.size() > 19) return false;
  uint64_t v = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *out = v;
  return true;
}

}  // namespace

std::string HttpEndpoint::ToString() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("http://[", host, "]:", port);
  return absl::StrCat("http://", host, ":", port);
}

absl::StatusOr<HttpEndpoint> ParseHttpEndpoint(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  const auto bad = [url](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("endpoint \"", AbslView(url), "\": ", AbslView(why)));
  };
  if (url.substr(0, kScheme.size()) != kScheme) return bad("expected http://HOST:PORT");
  std::string_view rest = url.substr(kScheme.size());
  if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
  HttpEndpoint endpoint;
  std::string_view port_text;
  if (!rest.empty() && rest[0] == '[') {
    const size_t close = rest.find(']');
    if (close == std::string_view::npos || close + 1 >= rest.size() || rest[close + 1] != ':') {
      return bad("expected [IPv6]:PORT");
    }
    endpoint.host = std::string(rest.substr(1, close - 1));
    port_text = rest.substr(close + 2);
  } else {
    const size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) return bad("no port");
    endpoint.host = std::string(rest.substr(0, colon));
    port_text = rest.substr(colon + 1);
  }
  const std::optional<uint64_t> port = ParseDecimalAtMost(port_text, 65535);
  if (endpoint.host.empty() || endpoint.host.find_first_of("/[]@ ") != std::string::npos) {
    return bad("bad host");
  }
  if (!port.has_value() || *port == 0) return bad("bad port");
  endpoint.port = static_cast<uint16_t>(*port);
  return endpoint;
}

absl::Status HttpResponseDecoder::Fail(absl::Status status) {
  state_ = State::kDone;
  status_code_ = 0;
  return status;
}

absl::Status HttpResponseDecoder::CountBody(size_t n) {
  body_bytes_ += n;
  if (limits_.body_bytes_max != 0 && body_bytes_ > limits_.body_bytes_max) {
    return absl::ResourceExhaustedError(
        absl::StrCat("http response: body over ", limits_.body_bytes_max, " bytes"));
  }
  return absl::OkStatus();
}

// line_ holds the whole head, "\r\n\r\n" included.
absl::Status HttpResponseDecoder::ParseHead() {
  std::string_view head(line_);
  head.remove_suffix(4);
  std::vector<std::string_view> lines;
  for (absl::string_view line : absl::StrSplit(AbslView(head), "\r\n")) {
    lines.push_back(StdView(line));
  }
  const std::string_view status_line = lines[0];
  // "HTTP/1.1 200 OK": version, a 3-digit code, then a reason (possibly empty).
  if (status_line.size() < 12 ||
      (status_line.substr(0, 9) != "HTTP/1.1 " && status_line.substr(0, 9) != "HTTP/1.0 ") ||
      (status_line.size() > 12 && status_line[12] != ' ')) {
    return Malformed("bad status line");
  }
  uint64_t code = 0;
  if (!ParseLength(status_line.substr(9, 3), &code) || code < 200 || code > 599) {
    return Malformed("status code not 200..599");
  }
  bool chunked = false;
  bool have_length = false;
  uint64_t length = 0;
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string_view line = lines[i];
    if (line.find('\r') != std::string_view::npos || line.find('\n') != std::string_view::npos) {
      return Malformed("bare CR or LF in the head");
    }
    const size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) return Malformed("header without a name");
    for (size_t j = 0; j < colon; ++j) {
      if (!IsTokenChar(line[j])) return Malformed("bad header name");
    }
    const std::string name = absl::AsciiStrToLower(AbslView(line.substr(0, colon)));
    const std::string_view value =
        StdView(absl::StripAsciiWhitespace(AbslView(line.substr(colon + 1))));
    if (name == "content-length") {
      uint64_t v = 0;
      if (!ParseLength(value, &v) || (have_length && v != length)) {
        return Malformed("bad Content-Length");
      }
      have_length = true;
      length = v;
    } else if (name == "transfer-encoding") {
      if (chunked || !absl::EqualsIgnoreCase(AbslView(value), "chunked")) {
        return Malformed("transfer coding other than chunked");
      }
      chunked = true;
    }
  }
  if (chunked && have_length) return Malformed("both Content-Length and chunked");
  status_code_ = static_cast<int>(code);
  line_.clear();
  if (code == 204 || code == 304) {
    state_ = State::kDone;
  } else if (chunked) {
    state_ = State::kChunkSize;
  } else if (have_length) {
    if (limits_.body_bytes_max != 0 && length > limits_.body_bytes_max) {
      return absl::ResourceExhaustedError(
          absl::StrCat("http response: body of ", length, " bytes, over ", limits_.body_bytes_max));
    }
    left_ = length;
    state_ = length == 0 ? State::kDone : State::kLengthBody;
  } else {
    return Malformed("neither Content-Length nor chunked");
  }
  return absl::OkStatus();
}

// line_ holds "HEX[;extensions]\r\n".
absl::Status HttpResponseDecoder::ParseChunkSize() {
  std::string_view line(line_);
  line.remove_suffix(2);
  const size_t semicolon = line.find(';');
  const std::string_view hex = line.substr(0, semicolon);
  if (hex.empty() || hex.size() > 15) return Malformed("bad chunk size");
  uint64_t size = 0;
  for (const char c : hex) {
    const int digit = absl::ascii_isdigit(static_cast<unsigned char>(c)) ? c - '0'
                      : (c >= 'a' && c <= 'f')                           ? c - 'a' + 10
                      : (c >= 'A' && c <= 'F')                           ? c - 'A' + 10
                                                                         : -1;
    if (digit < 0) return Malformed("bad chunk size");
    size = size * 16 + static_cast<uint64_t>(digit);
  }
  line_.clear();
  if (size == 0) {
    state_ = State::kTrailer;
    return absl::OkStatus();
  }
  if (limits_.body_bytes_max != 0 && size > limits_.body_bytes_max) {
    return absl::ResourceExhaustedError("http response: chunk over the body limit");
  }
  left_ = size;
  state_ = State::kChunkData;
  return absl::OkStatus();
}

absl::Status HttpResponseDecoder::Feed(std::string_view input, std::string* body) {
  // Lines (chunk sizes, trailers) are short; the head has its own limit.
  constexpr size_t kLineBytesMax = 1024;
  while (!input.empty()) {
    switch (state_) {
      case State::kHead: {
        // Byte by byte up to the end of the head: heads are small and this keeps the search
        // for "\r\n\r\n" from rescanning.
        line_.push_back(input[0]);
        input.remove_prefix(1);
        if (line_.size() > limits_.head_bytes_max) {
          return Fail(absl::ResourceExhaustedError(
              absl::StrCat("http response: head over ", limits_.head_bytes_max, " bytes")));
        }
        if (line_.size() >= 4 && line_.compare(line_.size() - 4, 4, "\r\n\r\n") == 0) {
          if (absl::Status s = ParseHead(); !s.ok()) return Fail(s);
          return Feed(input, body);  // a head alone is progress the caller may want to see
        }
        break;
      }
      case State::kLengthBody:
      case State::kChunkData: {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(left_, input.size()));
        if (absl::Status s = CountBody(n); !s.ok()) return Fail(s);
        body->append(input.data(), n);
        input.remove_prefix(n);
        left_ -= n;
        if (left_ == 0) {
          state_ = state_ == State::kLengthBody ? State::kDone : State::kChunkDataEnd;
        }
        break;
      }
      case State::kChunkDataEnd:
        line_.push_back(input[0]);
        input.remove_prefix(1);
        if (line_.size() == 2) {
          if (line_ != "\r\n") return Fail(Malformed("chunk not followed by CRLF"));
          line_.clear();
          state_ = State::kChunkSize;
        }
        break;
      case State::kChunkSize:
      case State::kTrailer: {
        const char c = input[0];
        input.remove_prefix(1);
        line_.push_back(c);
        if (line_.size() > kLineBytesMax) return Fail(Malformed("chunk line too long"));
        if (c != '\n') break;
        if (line_.size() < 2 || line_[line_.size() - 2] != '\r') {
          return Fail(Malformed("bare LF in a chunk line"));
        }
        if (state_ == State::kChunkSize) {
          if (absl::Status s = ParseChunkSize(); !s.ok()) return Fail(s);
        } else if (line_ == "\r\n") {
          line_.clear();
          state_ = State::kDone;
        } else {
          line_.clear();  // a trailer field: ignored
        }
        break;
      }
      case State::kDone:
        return Fail(Malformed("bytes after the end of the response"));
    }
  }
  return absl::OkStatus();
}

HttpConnection::~HttpConnection() { close(fd_); }

absl::Status HttpConnection::Wait(short events, absl::Time deadline) {
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(absl::StrCat(endpoint_.ToString(), ": timed out"));
    }
    pollfd fds[2] = {{fd_, events, 0}, {cancel_fd_, POLLIN, 0}};
    const int timeout_ms = static_cast<int>(std::min<int64_t>(
        absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))), 60'000));
    const int n = poll(fds, cancel_fd_ >= 0 ? 2 : 1, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::InternalError(absl::StrCat("poll: ", std::strerror(errno)));
    if (cancel_fd_ >= 0 && fds[1].revents != 0) return absl::CancelledError("cancelled");
    if (fds[0].revents != 0) return absl::OkStatus();
  }
}

absl::StatusOr<std::unique_ptr<HttpConnection>> HttpConnection::Connect(
    const HttpEndpoint& endpoint, absl::Time deadline, int cancel_fd) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(endpoint.port);
  if (int rc = getaddrinfo(endpoint.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(
        absl::StrCat(endpoint.ToString(), ": cannot resolve: ", gai_strerror(rc)));
  }
  const addrinfo address = *found;
  sockaddr_storage storage{};
  std::memcpy(&storage, found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);
  const int fd = socket(address.ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  std::unique_ptr<HttpConnection> conn(new HttpConnection(fd, endpoint, cancel_fd));
  if (connect(fd, reinterpret_cast<sockaddr*>(&storage), address.ai_addrlen) != 0) {
    if (errno != EINPROGRESS) {
      return absl::UnavailableError(
          absl::StrCat(endpoint.ToString(), ": connect: ", std::strerror(errno)));
    }
    if (absl::Status s = conn->Wait(POLLOUT, deadline); !s.ok()) return s;
    int error = 0;
    socklen_t len = sizeof(error);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len);
    if (error != 0) {
      return absl::UnavailableError(
          absl::StrCat(endpoint.ToString(), ": connect: ", std::strerror(error)));
    }
  }
  return conn;
}

absl::Status HttpConnection::SendPost(std::string_view path, std::string_view json_body,
                                      absl::Time deadline) {
  return SendRequest("POST", path, "", "application/json", json_body, deadline);
}

absl::Status HttpConnection::SendRequest(std::string_view method, std::string_view path,
                                         std::string_view extra_headers,
                                         std::string_view content_type, std::string_view body,
                                         absl::Time deadline) {
  const std::string host = endpoint_.host.find(':') != std::string::npos
                               ? absl::StrCat("[", endpoint_.host, "]:", endpoint_.port)
                               : absl::StrCat(endpoint_.host, ":", endpoint_.port);
  std::string request = absl::StrCat(AbslView(method), " ", AbslView(path),
                                     " HTTP/1.1\r\nHost: ", host, "\r\n", AbslView(extra_headers));
  if (!content_type.empty())
    absl::StrAppend(&request, "Content-Type: ", AbslView(content_type), "\r\n");
  absl::StrAppend(&request, "Content-Length: ", body.size(), "\r\nConnection: close\r\n\r\n");
  request.append(body);
  std::string_view rest(request);
  while (!rest.empty()) {
    const ssize_t n = send(fd_, rest.data(), rest.size(), MSG_NOSIGNAL);
    if (n > 0) {
      rest.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (absl::Status s = Wait(POLLOUT, deadline); !s.ok()) return s;
      continue;
    }
    return absl::UnavailableError(
        absl::StrCat(endpoint_.ToString(), ": send: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status HttpConnection::ReadSome(HttpResponseDecoder& decoder, std::string* body,
                                      absl::Time deadline) {
  char buffer[16384];
  for (;;) {
    const ssize_t n = recv(fd_, buffer, sizeof(buffer), 0);
    if (n > 0) {
      const bool had_head = decoder.head_done();
      const size_t body_before = body->size();
      if (absl::Status s = decoder.Feed(std::string_view(buffer, static_cast<size_t>(n)), body);
          !s.ok()) {
        return s;
      }
      if (decoder.done() || body->size() > body_before || decoder.head_done() != had_head) {
        return absl::OkStatus();
      }
      continue;
    }
    if (n == 0) {
      return absl::UnavailableError(
          absl::StrCat(endpoint_.ToString(), ": connection closed before the response ended"));
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (absl::Status s = Wait(POLLIN, deadline); !s.ok()) return s;
      continue;
    }
    return absl::UnavailableError(
        absl::StrCat(endpoint_.ToString(), ": recv: ", std::strerror(errno)));
  }
}

absl::StatusOr<HttpResponse> HttpPost(const HttpEndpoint& endpoint, std::string_view path,
                                      std::string_view json_body, absl::Time deadline,
                                      const HttpResponseLimits& limits, int cancel_fd) {
  auto conn = HttpConnection::Connect(endpoint, deadline, cancel_fd);
  if (!conn.ok()) return conn.status();
  if (absl::Status s = (*conn)->SendPost(path, json_body, deadline); !s.ok()) return s;
  HttpResponseDecoder decoder(limits);
  HttpResponse response;
  while (!decoder.done()) {
    if (absl::Status s = (*conn)->ReadSome(decoder, &response.body, deadline); !s.ok()) return s;
  }
  response.status_code = decoder.status_code();
  return response;
}

absl::StatusOr<HttpResponse> HttpCall(const HttpEndpoint& endpoint, std::string_view method,
                                      std::string_view path, std::string_view extra_headers,
                                      std::string_view content_type, std::string_view body,
                                      absl::Time deadline, const HttpResponseLimits& limits) {
  auto conn = HttpConnection::Connect(endpoint, deadline);
  if (!conn.ok()) return conn.status();
  absl::Status sent =
      (*conn)->SendRequest(method, path, extra_headers, content_type, body, deadline);
  if (!sent.ok()) return sent;
  HttpResponseDecoder decoder(limits);
  HttpResponse response;
  while (!decoder.done()) {
    if (absl::Status s = (*conn)->ReadSome(decoder, &response.body, deadline); !s.ok()) return s;
  }
  response.status_code = decoder.status_code();
  return response;
}

}  // namespace posthaste::server::placement
