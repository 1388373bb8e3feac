#include "server/route/socketmap_protocol.h"

#include <algorithm>

namespace posthaste::server::route {

SocketmapRequestParser::SocketmapRequestParser(size_t request_bytes_max)
    : request_bytes_max_(std::clamp<size_t>(request_bytes_max, 1, kRequestBytesMaxLimit)) {}

void SocketmapRequestParser::Feed(std::string_view bytes) {
  if (failed_) return;
  if (consumed_ > 0) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  buffer_.append(bytes.data(), bytes.size());
}

SocketmapRequestParser::Result SocketmapRequestParser::Fail(std::string* error,
                                                            std::string message) {
  failed_ = true;
  failure_ = std::move(message);
  buffer_.clear();
  consumed_ = 0;
  *error = failure_;
  return Result::kError;
}

SocketmapRequestParser::Result SocketmapRequestParser::Next(SocketmapRequest* request,
                                                            std::string* error) {
  if (failed_) {
    *error = failure_;
    return Result::kError;
  }
  const std::string_view rest = std::string_view(buffer_).substr(consumed_);
  size_t length = 0;
  size_t digits = 0;
  while (digits < rest.size() && rest[digits] != ':') {
    const char c = rest[digits];
    if (c < '0' || c > '9') return Fail(error, "netstring length is not a decimal number");
    if (digits == 1 && rest[0] == '0') return Fail(error, "netstring length with a leading zero");
    if (++digits > kLengthDigitsMax) return Fail(error, "netstring length has too many digits");
    length = length * 10 + static_cast<size_t>(c - '0');
  }
  if (length > request_bytes_max_) {
    return Fail(error, "request of " + std::to_string(length) + " bytes is over the limit of " +
                           std::to_string(request_bytes_max_));
  }
  if (digits == rest.size()) return Result::kNeedMore;  // no ':' yet
  if (digits == 0) return Fail(error, "netstring without a length");
  // digits, ':', payload, ','
  const size_t total = digits + 1 + length + 1;
  if (rest.size() < total) return Result::kNeedMore;
  if (rest[total - 1] != ',') return Fail(error, "netstring does not end with ','");
  const std::string_view payload = rest.substr(digits + 1, length);
  const size_t space = payload.find(' ');
  if (space == std::string_view::npos || space == 0) {
    return Fail(error, "request is not \"<name> <key>\"");
  }
  request->name.assign(payload.substr(0, space));
  request->key.assign(payload.substr(space + 1));
  consumed_ += total;
  return Result::kRequest;
}

std::string Netstring(std::string_view payload) {
  std::string out = std::to_string(payload.size());
  out += ':';
  out += payload;
  out += ',';
  return out;
}

std::string SocketmapOk(std::string_view value) { return Netstring("OK " + std::string(value)); }
std::string SocketmapNotFound() { return Netstring("NOTFOUND "); }
std::string SocketmapTemp(std::string_view reason) {
  return Netstring("TEMP " + std::string(reason));
}
std::string SocketmapPerm(std::string_view reason) {
  return Netstring("PERM " + std::string(reason));
}

}  // namespace posthaste::server::route
