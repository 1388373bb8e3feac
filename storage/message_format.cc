// Message normalisation and address/UIDL validation (declared in mail_store.h). Pure functions.
#include "storage/message_format.h"

#include <cstring>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "base/strings.h"
#include "base/uidl.h"
#include "storage/store_error.h"

namespace posthaste::storage {
namespace {

constexpr size_t kNoHeaderEnd = static_cast<size_t>(-1);

// Index of the first '\r' or '\n' at or after `pos`, or raw.size().
size_t FindLineBreak(std::string_view raw, size_t pos) {
  const char* data = raw.data();
  const size_t n = raw.size();
  const void* lf = std::memchr(data + pos, '\n', n - pos);
  const size_t lf_pos = lf ? static_cast<size_t>(static_cast<const char*>(lf) - data) : n;
  const void* cr = std::memchr(data + pos, '\r', lf_pos - pos);
  return cr ? static_cast<size_t>(static_cast<const char*>(cr) - data) : lf_pos;
}

bool IsAddressSpecial(char c) {
  switch (c) {
    case '"':
    case '(':
    case ')':
    case ',':
    case ':':
    case ';':
    case '<':
    case '>':
    case '[':
    case '\\':
    case ']':
    case '@':
      return true;
    default:
      return false;
  }
}

absl::Status AddressError(std::string_view message) {
  return StoreErrorStatus(StoreError::kInvalidAddress, message);
}

absl::Status UidlError(std::string_view message) {
  return StoreErrorStatus(StoreError::kInvalidUidl, message);
}

}  // namespace

NormalizedMessage NormalizeForStorage(std::string_view raw) {
  NormalizedMessage result;
  std::string& out = result.stored;
  out.reserve(raw.size() + raw.size() / 32 + 2);
  size_t header_end = kNoHeaderEnd;
  uint64_t pop3_size = 0;
  size_t pos = 0;
  const size_t n = raw.size();
  while (pos < n) {
    // At the start of a line.
    if (raw[pos] == '.') out.push_back('.');  // dot-stuffing: not counted in the POP3 size
    const size_t brk = FindLineBreak(raw, pos);
    const size_t line_len = brk - pos;
    out.append(raw.data() + pos, line_len);
    pop3_size += line_len;
    if (brk == n) {  // last line without a line break
      pos = n;
      out.append("\r\n");
      pop3_size += 2;
      break;
    }
    // CRLF, bare CR and bare LF all end a line.
    pos = brk + 1;
    if (raw[brk] == '\r' && pos < n && raw[pos] == '\n') ++pos;
    out.append("\r\n");
    pop3_size += 2;
    if (line_len == 0 && header_end == kNoHeaderEnd) header_end = out.size();
  }
  if (out.empty()) {
    out = "\r\n";
    pop3_size = 2;
    header_end = 2;
  }
  result.pop3_size = pop3_size;
  result.header_length = header_end == kNoHeaderEnd ? out.size() : header_end;
  return result;
}

absl::StatusOr<WireFormInfo> CheckWireForm(std::string_view wire) {
  const char* data = wire.data();
  const size_t n = wire.size();
  if (n < 2 || wire[n - 2] != '\r' || wire[n - 1] != '\n') {
    return StoreErrorStatus(StoreError::kNotWireForm,
                            "message in wire form must end in CRLF (an empty one is one CRLF)");
  }
  auto bad_line = [](uint64_t line, std::string_view why) {
    return StoreErrorStatus(
        StoreError::kNotWireForm,
        absl::StrCat("message not in wire form: line ", line, " ", AbslView(why)));
  };
  WireFormInfo info;
  info.pop3_size = n;
  size_t header_end = kNoHeaderEnd;
  uint64_t line = 1;
  for (size_t pos = 0; pos < n; ++line) {
    // The message ends in CRLF, so every line has its LF.
    const size_t lf = static_cast<size_t>(
        static_cast<const char*>(std::memchr(data + pos, '\n', n - pos)) - data);
    if (lf == pos || data[lf - 1] != '\r') return bad_line(line, "ends in a bare LF");
    if (std::memchr(data + pos, '\r', lf - 1 - pos) != nullptr) {
      return bad_line(line, "holds a bare CR");
    }
    if (data[pos] == '.') {
      // ".." starts the stored form of a line beginning with '.'; ".\r\n" would end RETR.
      if (data[pos + 1] != '.') return bad_line(line, "begins with an unstuffed '.'");
      --info.pop3_size;
    } else if (lf == pos + 1 && header_end == kNoHeaderEnd) {
      header_end = lf + 1;  // the empty line that ends the headers
    }
    pos = lf + 1;
  }
  info.header_length = header_end == kNoHeaderEnd ? n : header_end;
  return info;
}

absl::StatusOr<std::string> NormalizeDomain(std::string_view domain) {
  if (domain.empty()) return AddressError("empty domain");
  if (domain.size() > 253) return AddressError("domain longer than 253 octets");
  std::string out(domain);
  size_t label_len = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    char c = out[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    out[i] = c;
    if (c == '.') {
      if (label_len == 0 || out[i - 1] == '-') {
        return AddressError("malformed domain (empty label or label ending in '-')");
      }
      label_len = 0;
      continue;
    }
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    if (!ok) return AddressError("domain may contain only letters, digits, '-', '.'");
    if (c == '-' && label_len == 0) {
      return AddressError("malformed domain (label starting with '-')");
    }
    if (++label_len > 63) return AddressError("domain label longer than 63 octets");
  }
  if (label_len == 0 || out.back() == '-') {
    return AddressError("malformed domain (empty label or label ending in '-')");
  }
  return out;
}

absl::StatusOr<ParsedAddress> ParseAddress(std::string_view address) {
  if (address.size() > kMaxAddressLength) {
    return AddressError("address longer than 254 octets");
  }
  const size_t at = address.find('@');
  if (at == std::string_view::npos) {
    return AddressError("address must be local@domain (no '@')");
  }
  if (address.find('@', at + 1) != std::string_view::npos) {
    return AddressError("address must contain exactly one '@'");
  }
  std::string_view local = address.substr(0, at);
  if (local.empty()) return AddressError("address has an empty local part");
  if (local.size() > 64) return AddressError("local part longer than 64 octets");
  for (char c : local) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x21 || u > 0x7e || IsAddressSpecial(c)) {
      return AddressError(
          "local part may contain only printable ASCII without spaces or ()<>[]\\,;:\"@");
    }
  }
  if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos) {
    return AddressError("malformed local part (misplaced '.')");
  }
  auto domain = NormalizeDomain(address.substr(at + 1));
  if (!domain.ok()) return domain.status();
  ParsedAddress out;
  out.display.reserve(address.size());
  out.display.append(local);
  out.display.push_back('@');
  out.display.append(*domain);
  // The local part is printable ASCII (checked above), so ASCII folding is all there is.
  out.canonical = out.display;
  for (size_t i = 0; i < at; ++i) {
    const char c = out.canonical[i];
    if (c >= 'A' && c <= 'Z') out.canonical[i] = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

absl::StatusOr<std::string> CanonicalAddress(std::string_view address) {
  absl::StatusOr<ParsedAddress> parsed = ParseAddress(address);
  if (!parsed.ok()) return parsed.status();
  return std::move(parsed->canonical);
}

absl::Status ValidateUidl(std::string_view uidl) {
  if (uidl.empty() || uidl.size() > kUidlBytesMax) {
    return UidlError(absl::StrCat("UIDL must be 1-70 characters long (got ", uidl.size(), ")"));
  }
  if (!IsUidlCharacters(uidl)) {
    return UidlError("UIDL characters must be in 0x21-0x7E");
  }
  return absl::OkStatus();
}

}  // namespace posthaste::storage
