#include "tools/bench/pop3_response_parser.h"

#include <cstring>

namespace posthaste::bench {
namespace {

// Status text is kept up to this many bytes of the raw line ("+OK " or "-ERR " plus text).
constexpr size_t kLineBytesKept = Pop3ResponseParser::kStatusBytesKept + 5;

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

std::optional<uint64_t> ParseDecimal(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  return value;
}

}  // namespace

std::string_view ParseErrorName(ParseError error) {
  switch (error) {
    case ParseError::kNone:
      return "none";
    case ParseError::kBadStatus:
      return "bad_status_line";
    case ParseError::kLineTooLong:
      return "status_line_too_long";
    case ParseError::kUnexpectedData:
      return "unexpected_data";
  }
  return "unknown";
}

bool Pop3ResponseParser::Expect(ResponseShape shape) {
  if (expected_count_ == kExpectedMax) return false;
  expected_[(expected_head_ + expected_count_) % kExpectedMax] = shape;
  ++expected_count_;
  return true;
}

ResponseShape Pop3ResponseParser::PopExpected() {
  ResponseShape shape = expected_[expected_head_];
  expected_head_ = (expected_head_ + 1) % kExpectedMax;
  --expected_count_;
  return shape;
}

void Pop3ResponseParser::Complete(std::vector<Pop3Response>* out) {
  out->push_back(std::move(current_));
  current_ = Pop3Response();
  state_ = State::kStatusStart;
}

bool Pop3ResponseParser::OnStatusLine(std::vector<Pop3Response>* out) {
  std::string_view line = line_;
  // Drop the CR of the CRLF when it is part of what was kept.
  if (line_bytes_ == line_.size() && !line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (StartsWith(line, "+OK")) {
    current_.ok = true;
    line.remove_prefix(3);
  } else if (StartsWith(line, "-ERR")) {
    current_.ok = false;
    line.remove_prefix(4);
  } else {
    error_ = ParseError::kBadStatus;
    return false;
  }
  if (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  if (line.size() > kStatusBytesKept) line = line.substr(0, kStatusBytesKept);
  current_.text.assign(line.data(), line.size());
  const ResponseShape shape = PopExpected();
  line_.clear();
  line_bytes_ = 0;
  if (shape == ResponseShape::kMultiLine && current_.ok) {
    current_.multiline = true;
    state_ = State::kLineStart;
  } else {
    Complete(out);
  }
  return true;
}

ParseError Pop3ResponseParser::Feed(std::string_view data, std::vector<Pop3Response>* out) {
  if (error_ != ParseError::kNone) return error_;
  const char* p = data.data();
  const char* const end = p + data.size();
  while (p < end) {
    switch (state_) {
      case State::kStatusStart:
        if (expected_count_ == 0) {
          error_ = ParseError::kUnexpectedData;
          return error_;
        }
        state_ = State::kStatus;
        [[fallthrough]];
      case State::kStatus: {
        const char* newline = static_cast<const char*>(std::memchr(p, '\n', end - p));
        const char* stop = newline != nullptr ? newline : end;
        const size_t n = static_cast<size_t>(stop - p);
        if (line_.size() < kLineBytesKept) {
          line_.append(p, std::min(n, kLineBytesKept - line_.size()));
        }
        line_bytes_ += n;
        if (line_bytes_ > kStatusLineBytesMax) {
          error_ = ParseError::kLineTooLong;
          return error_;
        }
        p = stop;
        if (newline != nullptr) {
          ++p;
          if (!OnStatusLine(out)) return error_;
        }
        break;
      }
      case State::kInLine: {
        const char* cr = static_cast<const char*>(std::memchr(p, '\r', end - p));
        if (cr == nullptr) {
          current_.body_bytes += static_cast<uint64_t>(end - p);
          p = end;
        } else {
          current_.body_bytes += static_cast<uint64_t>(cr - p) + 1;
          p = cr + 1;
          state_ = State::kCR;
        }
        break;
      }
      case State::kCR: {
        const char c = *p++;
        ++current_.body_bytes;
        if (c == '\n') {
          ++current_.body_lines;
          state_ = State::kLineStart;
        } else if (c != '\r') {
          state_ = State::kInLine;
        }
        break;
      }
      case State::kLineStart: {
        const char c = *p++;
        ++current_.body_bytes;
        state_ = c == '.' ? State::kDot : c == '\r' ? State::kCR : State::kInLine;
        break;
      }
      case State::kDot: {
        const char c = *p++;
        ++current_.body_bytes;
        state_ = c == '\r' ? State::kDotCR : State::kInLine;
        break;
      }
      case State::kDotCR: {
        const char c = *p++;
        ++current_.body_bytes;
        if (c == '\n') {
          current_.body_bytes -= 3;  // the terminator ".\r\n" is not body
          Complete(out);
        } else {
          state_ = c == '\r' ? State::kCR : State::kInLine;
        }
        break;
      }
    }
  }
  return error_;
}

std::optional<StatReply> ParseStatText(std::string_view text) {
  const size_t space = text.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  std::string_view rest = text.substr(space + 1);
  const size_t rest_space = rest.find(' ');
  if (rest_space != std::string_view::npos) rest = rest.substr(0, rest_space);
  std::optional<uint64_t> messages = ParseDecimal(text.substr(0, space));
  std::optional<uint64_t> octets = ParseDecimal(rest);
  if (!messages.has_value() || !octets.has_value()) return std::nullopt;
  return StatReply{*messages, *octets};
}

}  // namespace posthaste::bench
