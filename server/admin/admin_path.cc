#include "server/admin/admin_path.h"

#include <array>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/strings.h"
#include "storage/message_format.h"

namespace posthaste::server::admin {
namespace {

constexpr std::array<std::string_view, 3> kAccountsPath = {"api", "v1", "accounts"};

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

absl::Status Refuse(std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("bad request target: ", AbslView(why)));
}

// Bytes allowed on the request line before decoding: printable ASCII without space. '\' is
// refused because some servers read it as '/'; '#' because a fragment is never sent.
bool RawByteAllowed(unsigned char c) { return c >= 0x21 && c <= 0x7e && c != '\\' && c != '#'; }

// Decodes one path segment or query component, once: "%2e%2e" becomes "..", which the caller
// then refuses as a dot segment; it is never decoded or resolved a second time.
absl::StatusOr<std::string> DecodeOnce(std::string_view raw) {
  std::string out;
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '%') {
      out.push_back(raw[i]);
      continue;
    }
    if (raw.size() - i < 3 || HexValue(raw[i + 1]) < 0 || HexValue(raw[i + 2]) < 0) {
      return Refuse("'%' must be followed by two hex digits");
    }
    const auto c = static_cast<unsigned char>(HexValue(raw[i + 1]) * 16 + HexValue(raw[i + 2]));
    i += 2;
    if (c == 0) return Refuse("NUL (%00) is not allowed");
    if (c < 0x20 || c == 0x7f) return Refuse("control characters are not allowed");
    if (c >= 0x80) return Refuse("only ASCII is allowed");
    if (c == '/' || c == '\\') return Refuse("an encoded '/' or '\\' is not allowed");
    out.push_back(static_cast<char>(c));
  }
  return out;
}

absl::StatusOr<std::optional<std::string>> DomainFilter(std::string_view query) {
  std::optional<std::string> domain;
  if (query.empty()) return domain;
  size_t start = 0;
  while (start <= query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string_view::npos) end = query.size();
    const std::string_view parameter = query.substr(start, end - start);
    constexpr std::string_view kDomain = "domain=";
    if (parameter.substr(0, kDomain.size()) != kDomain) {
      return Refuse("the only query parameter is domain=DOMAIN");
    }
    if (domain.has_value()) return Refuse("domain= given twice");
    absl::StatusOr<std::string> decoded = DecodeOnce(parameter.substr(kDomain.size()));
    if (!decoded.ok()) return decoded.status();
    absl::StatusOr<std::string> normalized = storage::NormalizeDomain(*decoded);
    if (!normalized.ok()) {
      return Refuse(absl::StrCat("domain= is not a domain: ", normalized.status().message()));
    }
    domain = *std::move(normalized);
    start = end + 1;
  }
  return domain;
}

// "after=N": N decimal digits only (no sign, no encoding), at most 20, fitting 64 bits.
absl::StatusOr<uint64_t> AfterCursor(std::string_view query) {
  constexpr std::string_view kAfter = "after=";
  if (query.substr(0, kAfter.size()) != kAfter)
    return Refuse("the only query parameter is after=N");
  const std::string_view digits = query.substr(kAfter.size());
  if (digits.empty() || digits.size() > 20) return Refuse("after= takes 1 to 20 digits");
  uint64_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return Refuse("after= takes decimal digits");
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return Refuse("after= is out of range");
    value = value * 10 + digit;
  }
  return value;
}

}  // namespace

absl::StatusOr<AdminPath> ParseAdminPath(std::string_view target) {
  if (target.size() > kAdminTargetBytesMax) {
    return Refuse(absl::StrCat("longer than ", kAdminTargetBytesMax, " bytes"));
  }
  if (target.empty() || target.front() != '/') return Refuse("must be a path starting with '/'");
  for (char c : target) {
    if (!RawByteAllowed(static_cast<unsigned char>(c))) {
      return Refuse("only printable ASCII without spaces, '\\' or '#' is allowed");
    }
  }
  const size_t question = target.find('?');
  const std::string_view path = target.substr(0, question);
  const std::string_view query =
      question == std::string_view::npos ? std::string_view() : target.substr(question + 1);

  // Every segment is checked before any is interpreted, so "/x/../api/v1/accounts" is refused
  // rather than resolved.
  std::vector<std::string> segments;
  for (size_t start = 1;;) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view raw = path.substr(start, end - start);
    if (raw.empty()) return Refuse("empty path segment ('//' or a trailing '/')");
    absl::StatusOr<std::string> segment = DecodeOnce(raw);
    if (!segment.ok()) return segment.status();
    if (*segment == "." || *segment == "..") return Refuse("'.' and '..' segments are not allowed");
    segments.push_back(*std::move(segment));
    if (end == path.size()) break;
    start = end + 1;
  }

  if (segments.size() < kAccountsPath.size() ||
      !std::equal(kAccountsPath.begin(), kAccountsPath.end(), segments.begin())) {
    return absl::NotFoundError("no such resource");
  }
  AdminPath out;
  if (segments.size() == kAccountsPath.size()) {
    out.resource = AdminPath::Resource::kAccounts;
    absl::StatusOr<std::optional<std::string>> domain = DomainFilter(query);
    if (!domain.ok()) return domain.status();
    out.domain = *std::move(domain);
    return out;
  }
  out.resource = AdminPath::Resource::kAccount;
  if (segments.size() == kAccountsPath.size() + 2 && segments.back() == "mailbox") {
    out.resource = AdminPath::Resource::kMailbox;
  } else if (segments.size() == kAccountsPath.size() + 2 && segments.back() == "hold") {
    out.resource = AdminPath::Resource::kHold;
  } else if (segments.size() > kAccountsPath.size() + 1) {
    return Refuse("an account address may not contain '/'");
  }
  out.address = std::move(segments[kAccountsPath.size()]);
  absl::StatusOr<storage::ParsedAddress> address = storage::ParseAddress(out.address);
  if (!address.ok()) {
    return Refuse(absl::StrCat("not an account address: ", address.status().message()));
  }
  if (out.resource == AdminPath::Resource::kMailbox && question != std::string_view::npos) {
    absl::StatusOr<uint64_t> after = AfterCursor(query);
    if (!after.ok()) return after.status();
    out.after_seq = *after;
    return out;
  }
  if (question != std::string_view::npos) return Refuse("an account takes no query parameters");
  return out;
}

}  // namespace posthaste::server::admin
