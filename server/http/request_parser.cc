#include "server/http/request_parser.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/strings.h"

namespace posthaste::http {
namespace {

constexpr size_t kContentLengthDigitsMax = 19;  // fits in uint64_t

bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Visible ASCII, SP, HTAB and obs-text (RFC 9110 field-value).
bool IsFieldValueChar(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u == '\t' || (u >= 0x20 && u != 0x7f);
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool ValidOriginForm(std::string_view target) {
  if (target.empty() || target.front() != '/') return false;
  for (size_t i = 0; i < target.size(); ++i) {
    const auto u = static_cast<unsigned char>(target[i]);
    if (u <= 0x20 || u >= 0x7f || u == '#') return false;
    if (u == '%') {
      if (i + 2 >= target.size() || !IsHex(target[i + 1]) || !IsHex(target[i + 2])) {
        return false;
      }
    }
  }
  return true;
}

}  // namespace

RequestParser::Result RequestParser::Fail(int status, std::string reason) {
  error_status_ = status;
  error_reason_ = std::move(reason);
  return Result::kError;
}

RequestParser::Result RequestParser::Feed(std::string_view data, size_t* consumed) {
  *consumed = 0;
  const size_t old_size = buffer_.size();
  const size_t take = std::min(data.size(), limits_.head_bytes_max - old_size);
  buffer_.append(data.data(), take);
  for (; scanned_ < buffer_.size(); ++scanned_) {
    // Checked byte by byte so that any fragmentation of the same bytes gives the same answer.
    if (!request_line_done_ && scanned_ >= limits_.request_line_bytes_max) {
      return Fail(414, "request line too long");
    }
    const char c = buffer_[scanned_];
    const bool after_cr = scanned_ > 0 && buffer_[scanned_ - 1] == '\r';
    if (after_cr && c != '\n') return Fail(400, "bare CR in the request head");
    if (c == '\0') return Fail(400, "NUL byte in the request head");
    if (c != '\n') continue;
    if (!after_cr) return Fail(400, "bare LF in the request head (lines end with CRLF)");
    const size_t line_bytes = scanned_ + 1 - line_start_;  // with its CRLF
    line_start_ = scanned_ + 1;
    if (!request_line_done_) {
      if (line_bytes > limits_.request_line_bytes_max) return Fail(414, "request line too long");
      if (line_bytes == 2) return Fail(400, "empty request line");
      request_line_done_ = true;
      continue;
    }
    if (line_bytes == 2) {  // the empty line: end of the head
      const size_t head_end = scanned_ + 1;
      *consumed = head_end - old_size;
      buffer_.resize(head_end);
      return ParseHead();
    }
    if (++field_lines_ > limits_.header_count_max) {
      return Fail(431, absl::StrCat("more than ", limits_.header_count_max, " header fields"));
    }
  }
  if (!request_line_done_ && buffer_.size() >= limits_.request_line_bytes_max) {
    return Fail(414, "request line too long");
  }
  if (buffer_.size() >= limits_.head_bytes_max) {
    return Fail(431, absl::StrCat("request head over ", limits_.head_bytes_max, " bytes"));
  }
  *consumed = take;
  return Result::kNeedMore;
}

RequestParser::Result RequestParser::ParseHead() {
  std::string_view head = buffer_;
  head.remove_suffix(2);  // the empty line's CRLF; every line below ends with CRLF
  size_t line_end = head.find("\r\n");
  if (Result r = ParseRequestLine(head.substr(0, line_end)); r != Result::kDone) return r;
  bool host_seen = false;
  bool length_seen = false;
  size_t pos = line_end + 2;
  while (pos < head.size()) {
    line_end = head.find("\r\n", pos);
    if (Result r = ParseField(head.substr(pos, line_end - pos), &host_seen, &length_seen);
        r != Result::kDone) {
      return r;
    }
    pos = line_end + 2;
  }
  if (request_.version_minor == 1 && !host_seen) return Fail(400, "HTTP/1.1 request without Host");
  buffer_.clear();
  buffer_.shrink_to_fit();
  return Result::kDone;
}

RequestParser::Result RequestParser::ParseRequestLine(std::string_view line) {
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
    return Fail(400, "malformed request line");
  }
  const std::string_view method = line.substr(0, sp1);
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (method.empty() || !std::all_of(method.begin(), method.end(), IsTokenChar)) {
    return Fail(400, "malformed method");
  }
  if (!ValidOriginForm(target)) return Fail(400, "malformed request target");
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
      !absl::ascii_isdigit(static_cast<unsigned char>(version[5])) ||
      !absl::ascii_isdigit(static_cast<unsigned char>(version[7]))) {
    return Fail(400, "malformed HTTP version");
  }
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    return Fail(505, "only HTTP/1.0 and HTTP/1.1 are supported");
  }
  request_.method = std::string(method);
  request_.target = std::string(target);
  request_.version_minor = version[7] == '1' ? 1 : 0;
  return Result::kDone;
}

RequestParser::Result RequestParser::ParseField(std::string_view line, bool* host_seen,
                                                bool* length_seen) {
  if (line.front() == ' ' || line.front() == '\t') {
    return Fail(400, "obs-fold (a header line starting with whitespace)");
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return Fail(400, "header line without a colon");
  const std::string_view name = line.substr(0, colon);
  if (name.empty() || !std::all_of(name.begin(), name.end(), IsTokenChar)) {
    return Fail(400, "malformed header name");
  }
  const std::string_view value = TrimSpaces(line.substr(colon + 1));
  if (!std::all_of(value.begin(), value.end(), IsFieldValueChar)) {
    return Fail(400, "control byte in a header value");
  }
  const absl::string_view abseil_name = AbslView(name);
  if (absl::EqualsIgnoreCase(abseil_name, "content-length")) {
    if (*length_seen) return Fail(400, "more than one Content-Length");
    *length_seen = true;
    const std::optional<uint64_t> parsed =
        value.size() > kContentLengthDigitsMax ? std::nullopt : ParseDecimalU64(value);
    if (!parsed.has_value()) return Fail(400, "malformed Content-Length");
    const uint64_t length = *parsed;
    if (length > limits_.body_bytes_max) {
      return Fail(413, absl::StrCat("body over ", limits_.body_bytes_max, " bytes"));
    }
    request_.content_length = length;
  } else if (absl::EqualsIgnoreCase(abseil_name, "transfer-encoding")) {
    return Fail(501, "Transfer-Encoding is not supported; send Content-Length");
  } else if (absl::EqualsIgnoreCase(abseil_name, "host")) {
    if (*host_seen) return Fail(400, "more than one Host");
    *host_seen = true;
  } else if (absl::EqualsIgnoreCase(abseil_name, "expect")) {
    if (!absl::EqualsIgnoreCase(AbslView(value), "100-continue")) {
      return Fail(417, "only Expect: 100-continue is supported");
    }
    request_.expects_continue = true;
  }
  request_.headers.push_back({std::string(name), std::string(value)});
  return Result::kDone;
}

}  // namespace posthaste::http
