#include "server/transport/proxy_header.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace posthaste::server::transport {
namespace {

using Status = ProxyParseResult::Status;

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr char kV2Signature[12] = {'\r', '\n', '\r', '\n', '\0', '\r',
                                   '\n', 'Q',  'U',  'I',  'T',  '\n'};
constexpr std::string_view kV2SignatureView(kV2Signature, sizeof(kV2Signature));

// v2 field values.
constexpr uint8_t kV2Version = 0x2;
constexpr uint8_t kCommandLocal = 0x0;
constexpr uint8_t kCommandProxy = 0x1;
constexpr uint8_t kFamilyUnspec = 0x0;
constexpr uint8_t kFamilyInet = 0x1;
constexpr uint8_t kFamilyInet6 = 0x2;
constexpr uint8_t kFamilyUnix = 0x3;
constexpr uint8_t kTransportUnspec = 0x0;
constexpr uint8_t kTransportStream = 0x1;
constexpr size_t kInetAddressBytes = 12;   // two IPv4 addresses, two ports
constexpr size_t kInet6AddressBytes = 36;  // two IPv6 addresses, two ports
constexpr size_t kUnixAddressBytes = 216;  // two 108-byte paths
constexpr uint8_t kTlvSsl = 0x20;
constexpr uint8_t kSslClientSsl = 0x01;

ProxyParseResult Invalid(std::string_view why) {
  ProxyParseResult r;
  r.status = Status::kInvalid;
  r.error = why;
  return r;
}

// True when the shorter of `a` and `b` is a prefix of the longer.
bool PrefixesAgree(std::string_view a, std::string_view b) {
  const size_t n = std::min(a.size(), b.size());
  return a.substr(0, n) == b.substr(0, n);
}

void SetIpv4(ProxyAddress* a, const uint8_t* four) {
  std::memset(a->addr16, 0, sizeof(a->addr16));
  a->addr16[10] = 0xff;
  a->addr16[11] = 0xff;
  std::memcpy(a->addr16 + 12, four, 4);
  a->ipv4 = true;
}

void SetIpv6(ProxyAddress* a, const uint8_t* sixteen) {
  std::memcpy(a->addr16, sixteen, 16);
  a->ipv4 = false;
}

uint16_t Be16(const char* p) {
  return static_cast<uint16_t>((static_cast<uint8_t>(p[0]) << 8) | static_cast<uint8_t>(p[1]));
}

// A v1 port: 1 to 5 digits, no leading zero (except "0"), at most 65535.
bool ParseV1Port(std::string_view text, uint16_t* port) {
  if (text.empty() || text.size() > 5) return false;
  if (text.size() > 1 && text[0] == '0') return false;
  uint32_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > 65535) return false;
  *port = static_cast<uint16_t>(value);
  return true;
}

bool ParseV1Address(std::string_view text, bool ipv4, ProxyAddress* out) {
  // inet_pton wants a NUL-terminated string; an address is at most 45 characters.
  char buffer[INET6_ADDRSTRLEN] = {};
  if (text.empty() || text.size() >= sizeof(buffer)) return false;
  std::memcpy(buffer, text.data(), text.size());
  uint8_t raw[16] = {};
  if (inet_pton(ipv4 ? AF_INET : AF_INET6, buffer, raw) != 1) return false;
  if (ipv4) {
    SetIpv4(out, raw);
  } else {
    SetIpv6(out, raw);
  }
  return true;
}

// Splits `line` at single spaces into exactly `n` fields; false otherwise (empty fields, i.e.
// doubled spaces, are refused).
bool SplitFields(std::string_view line, std::string_view* fields, size_t n) {
  size_t count = 0;
  size_t start = 0;
  while (count < n) {
    const size_t space = line.find(' ', start);
    const std::string_view field = line.substr(
        start, space == std::string_view::npos ? std::string_view::npos : space - start);
    if (field.empty()) return false;
    fields[count++] = field;
    if (space == std::string_view::npos) return count == n;
    start = space + 1;
  }
  return false;
}

ProxyParseResult ParseV1(std::string_view bytes) {
  const size_t window = std::min(bytes.size(), kProxyV1HeaderBytesMax);
  const size_t lf = bytes.substr(0, window).find('\n');
  if (lf == std::string_view::npos) {
    if (bytes.size() >= kProxyV1HeaderBytesMax) return Invalid("v1 header longer than 107 bytes");
    return ProxyParseResult{};
  }
  if (lf == 0 || bytes[lf - 1] != '\r') return Invalid("v1 header not ended by CRLF");
  const std::string_view line = bytes.substr(kV1Prefix.size(), lf - 1 - kV1Prefix.size());
  ProxyParseResult r;
  r.status = Status::kComplete;
  r.header.version = 1;
  r.header.header_bytes = lf + 1;
  if (line.substr(0, 7) == "UNKNOWN" && (line.size() == 7 || line[7] == ' ')) {
    // The proxy does not know (or will not say) the client's address: anything may follow.
    r.header.local = true;
    return r;
  }
  std::string_view fields[5];
  if (!SplitFields(line, fields, 5)) return Invalid("v1 header does not have 5 fields");
  bool ipv4 = false;
  if (fields[0] == "TCP4") {
    ipv4 = true;
  } else if (fields[0] != "TCP6") {
    return Invalid("v1 protocol is not TCP4, TCP6 or UNKNOWN");
  }
  if (!ParseV1Address(fields[1], ipv4, &r.header.source) ||
      !ParseV1Address(fields[2], ipv4, &r.header.destination)) {
    return Invalid("v1 address malformed");
  }
  if (!ParseV1Port(fields[3], &r.header.source.port) ||
      !ParseV1Port(fields[4], &r.header.destination.port)) {
    return Invalid("v1 port malformed");
  }
  return r;
}

// The TLVs after the addresses: each type(1) length(2) value; they must fill the rest exactly.
bool ParseTlvs(std::string_view tlvs, ProxyHeader* header) {
  while (!tlvs.empty()) {
    if (tlvs.size() < 3) return false;
    const uint8_t type = static_cast<uint8_t>(tlvs[0]);
    const size_t length = Be16(tlvs.data() + 1);
    if (tlvs.size() - 3 < length) return false;
    const std::string_view value = tlvs.substr(3, length);
    if (type == kTlvSsl && !value.empty() && (static_cast<uint8_t>(value[0]) & kSslClientSsl)) {
      header->client_tls = true;
    }
    tlvs.remove_prefix(3 + length);
  }
  return true;
}

ProxyParseResult ParseV2(std::string_view bytes) {
  if (bytes.size() < kProxyV2FixedBytes) return ProxyParseResult{};
  const uint8_t version_command = static_cast<uint8_t>(bytes[12]);
  const uint8_t family_transport = static_cast<uint8_t>(bytes[13]);
  const size_t length = Be16(bytes.data() + 14);
  if ((version_command >> 4) != kV2Version) return Invalid("v2 version is not 2");
  const uint8_t command = version_command & 0x0f;
  if (command != kCommandLocal && command != kCommandProxy) return Invalid("v2 command unknown");
  const uint8_t family = family_transport >> 4;
  const uint8_t transport = family_transport & 0x0f;
  if (family > kFamilyUnix) return Invalid("v2 address family unknown");
  if (transport != kTransportUnspec && transport != kTransportStream) {
    return Invalid("v2 transport is not a stream");
  }
  const size_t total = kProxyV2FixedBytes + length;
  if (total > kProxyHeaderBytesMax) return Invalid("v2 header longer than the limit");
  if (bytes.size() < total) return ProxyParseResult{};
  size_t address_bytes = 0;
  switch (family) {
    case kFamilyInet:
      address_bytes = kInetAddressBytes;
      break;
    case kFamilyInet6:
      address_bytes = kInet6AddressBytes;
      break;
    case kFamilyUnix:
      address_bytes = kUnixAddressBytes;
      break;
    default:
      break;
  }
  if (length < address_bytes) return Invalid("v2 length shorter than its addresses");

  ProxyParseResult r;
  r.status = Status::kComplete;
  r.header.version = 2;
  r.header.header_bytes = total;
  const std::string_view body = bytes.substr(kProxyV2FixedBytes, length);
  if (!ParseTlvs(body.substr(address_bytes), &r.header)) return Invalid("v2 TLV malformed");
  if (command == kCommandLocal || family == kFamilyUnspec || family == kFamilyUnix) {
    r.header.local = true;
    return r;
  }
  if (transport != kTransportStream) return Invalid("v2 transport is not a stream");
  const auto* p = reinterpret_cast<const uint8_t*>(body.data());
  if (family == kFamilyInet) {
    SetIpv4(&r.header.source, p);
    SetIpv4(&r.header.destination, p + 4);
    r.header.source.port = Be16(body.data() + 8);
    r.header.destination.port = Be16(body.data() + 10);
  } else {
    SetIpv6(&r.header.source, p);
    SetIpv6(&r.header.destination, p + 16);
    r.header.source.port = Be16(body.data() + 32);
    r.header.destination.port = Be16(body.data() + 34);
  }
  return r;
}

}  // namespace

std::string ProxyAddress::ToText() const {
  char text[INET6_ADDRSTRLEN] = {};
  if (ipv4) {
    inet_ntop(AF_INET, addr16 + 12, text, sizeof(text));
  } else {
    inet_ntop(AF_INET6, addr16, text, sizeof(text));
  }
  return text;
}

ProxyParseResult ParseProxyHeader(std::string_view bytes) {
  if (bytes.empty()) return ProxyParseResult{};
  if (PrefixesAgree(bytes, kV1Prefix)) {
    if (bytes.size() < kV1Prefix.size()) return ProxyParseResult{};
    return ParseV1(bytes);
  }
  if (PrefixesAgree(bytes, kV2SignatureView)) {
    if (bytes.size() < kV2SignatureView.size()) return ProxyParseResult{};
    return ParseV2(bytes);
  }
  return Invalid("no PROXY header");
}

}  // namespace posthaste::server::transport
