#include "server/admin/admin_path.h"

#include <algorithm>
#include <array>
#include <initializer_list>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "storage/message_format.h"

namespace posthaste::server::admin {
namespace {

constexpr std::array<std::string_view, 2> kApiPrefix = {"api", "v1"};

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

// The query's parameters as (name, raw value), each name among `allowed` and given once.
absl::StatusOr<std::vector<std::pair<std::string_view, std::string_view>>> QueryParameters(
    std::string_view query, std::initializer_list<std::string_view> allowed) {
  std::vector<std::pair<std::string_view, std::string_view>> out;
  if (query.empty()) return out;
  std::string names;
  for (std::string_view name : allowed)
    absl::StrAppend(&names, names.empty() ? "" : " or ", AbslView(name), "=");
  size_t start = 0;
  while (start <= query.size()) {
    size_t end = query.find('&', start);
    if (end == std::string_view::npos) end = query.size();
    const std::string_view parameter = query.substr(start, end - start);
    const size_t equals = parameter.find('=');
    const std::string_view name = parameter.substr(0, equals);
    if (equals == std::string_view::npos ||
        std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      return Refuse(allowed.size() == 0 ? std::string("this resource takes no query parameters")
                                        : absl::StrCat("the query parameters here are ", names));
    }
    for (const auto& [seen, value] : out) {
      if (seen == name) return Refuse(absl::StrCat(AbslView(name), "= given twice"));
    }
    out.emplace_back(name, parameter.substr(equals + 1));
    start = end + 1;
  }
  return out;
}

absl::StatusOr<std::string> DomainValue(std::string_view name, std::string_view raw) {
  absl::StatusOr<std::string> decoded = DecodeOnce(raw);
  if (!decoded.ok()) return decoded.status();
  absl::StatusOr<std::string> normalized = storage::NormalizeDomain(*decoded);
  if (!normalized.ok()) {
    return Refuse(
        absl::StrCat(AbslView(name), " is not a domain: ", normalized.status().message()));
  }
  return normalized;
}

absl::StatusOr<std::string> AddressValue(std::string_view name, std::string decoded) {
  // As in a path, where '/' separates segments: an address with one is never named here.
  if (decoded.find('/') != std::string::npos) {
    return Refuse(absl::StrCat(AbslView(name), " may not contain '/'"));
  }
  absl::StatusOr<storage::ParsedAddress> address = storage::ParseAddress(decoded);
  if (!address.ok()) {
    return Refuse(
        absl::StrCat(AbslView(name), " is not an account address: ", address.status().message()));
  }
  return decoded;
}

// "SHARD-CONNECTION": two decimal numbers (no sign, no leading '+'), shard < 2^32.
absl::Status ParseSessionId(std::string_view id, AdminPath* out) {
  const size_t dash = id.find('-');
  auto digits = [](std::string_view text, uint64_t max, uint64_t* value) {
    if (text.empty() || text.size() > 20) return false;
    *value = 0;
    for (char c : text) {
      if (c < '0' || c > '9') return false;
      const uint64_t digit = static_cast<uint64_t>(c - '0');
      if (*value > (max - digit) / 10) return false;
      *value = *value * 10 + digit;
    }
    return true;
  };
  uint64_t shard = 0;
  uint64_t connection = 0;
  if (dash == std::string_view::npos || !digits(id.substr(0, dash), UINT32_MAX, &shard) ||
      !digits(id.substr(dash + 1), UINT64_MAX, &connection)) {
    return Refuse("a session id is SHARD-CONNECTION, two decimal numbers");
  }
  out->session_shard = static_cast<uint32_t>(shard);
  out->session_connection = connection;
  return absl::OkStatus();
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

// /api/v1/accounts[...]: `segments` starts with api, v1, accounts.
absl::StatusOr<AdminPath> ParseAccountPath(std::vector<std::string>& segments,
                                           std::string_view query, bool has_query) {
  constexpr size_t kCollection = 3;  // api, v1, accounts
  AdminPath out;
  if (segments.size() == kCollection) {
    out.resource = AdminPath::Resource::kAccounts;
    PH_ASSIGN_OR_RETURN(auto parameters, QueryParameters(query, {"domain"}));
    for (const auto& [name, raw] : parameters) {
      PH_ASSIGN_OR_RETURN(out.domain, DomainValue("domain=", raw));
    }
    return out;
  }
  out.resource = AdminPath::Resource::kAccount;
  if (segments.size() == kCollection + 2 && segments.back() == "mailbox") {
    out.resource = AdminPath::Resource::kMailbox;
  } else if (segments.size() == kCollection + 2 && segments.back() == "hold") {
    out.resource = AdminPath::Resource::kHold;
  } else if (segments.size() > kCollection + 1) {
    return Refuse("an account address may not contain '/'");
  }
  PH_ASSIGN_OR_RETURN(out.address, AddressValue("the account", std::move(segments[kCollection])));
  if (out.resource == AdminPath::Resource::kMailbox && has_query) {
    absl::StatusOr<uint64_t> after = AfterCursor(query);
    if (!after.ok()) return after.status();
    out.after_seq = *after;
    return out;
  }
  if (has_query) return Refuse("an account takes no query parameters");
  return out;
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

  if (segments.size() < kApiPrefix.size() + 1 ||
      !std::equal(kApiPrefix.begin(), kApiPrefix.end(), segments.begin())) {
    return absl::NotFoundError("no such resource");
  }
  const std::string& collection = segments[kApiPrefix.size()];
  const size_t rest = segments.size() - kApiPrefix.size() - 1;  // segments after the collection
  const bool has_query = question != std::string_view::npos;
  AdminPath out;
  if (collection == "accounts") return ParseAccountPath(segments, query, has_query);
  if (collection == "tenants") {
    if (rest > 1) return absl::NotFoundError("no such resource");
    if (has_query) PH_RETURN_IF_ERROR(QueryParameters(query, {}).status());
    if (rest == 0) {
      out.resource = AdminPath::Resource::kTenants;
      return out;
    }
    out.resource = AdminPath::Resource::kTenant;
    PH_ASSIGN_OR_RETURN(out.domain, DomainValue("the tenant", segments.back()));
    return out;
  }
  if (collection == "sessions") {
    if (rest > 1) return absl::NotFoundError("no such resource");
    if (rest == 1) {
      if (has_query) PH_RETURN_IF_ERROR(QueryParameters(query, {}).status());
      out.resource = AdminPath::Resource::kSession;
      PH_RETURN_IF_ERROR(ParseSessionId(segments.back(), &out));
      return out;
    }
    out.resource = AdminPath::Resource::kSessions;
    PH_ASSIGN_OR_RETURN(auto parameters, QueryParameters(query, {"tenant", "user"}));
    if (parameters.size() > 1) return Refuse("give tenant= or user=, not both");
    for (const auto& [name, raw] : parameters) {
      if (name == "tenant") {
        PH_ASSIGN_OR_RETURN(out.domain, DomainValue("tenant=", raw));
      } else {
        PH_ASSIGN_OR_RETURN(std::string decoded, DecodeOnce(raw));
        PH_ASSIGN_OR_RETURN(out.user, AddressValue("user=", std::move(decoded)));
      }
    }
    return out;
  }
  if (collection == "store" && rest == 1) {
    const std::string& what = segments.back();
    if (what == "usage") {
      out.resource = AdminPath::Resource::kStoreUsage;
    } else if (what == "check") {
      out.resource = AdminPath::Resource::kStoreCheck;
    } else if (what == "compaction") {
      out.resource = AdminPath::Resource::kStoreCompaction;
    } else {
      return absl::NotFoundError("no such resource");
    }
    if (has_query) PH_RETURN_IF_ERROR(QueryParameters(query, {}).status());
    return out;
  }
  return absl::NotFoundError("no such resource");
}

}  // namespace posthaste::server::admin
