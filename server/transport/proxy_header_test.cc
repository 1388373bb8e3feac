// ParseProxyHeader on both versions, every family, every truncation point, garbage and the size
// limits. The parser is stateless over the bytes received so far, so "every fragment size"
// here means every prefix: each must ask for more, never decide early.
#include "server/transport/proxy_header.h"

#include <string>
#include <string_view>

#include "gtest/gtest.h"

namespace posthaste::server::transport {
namespace {

using Status = ProxyParseResult::Status;

const std::string kSignature("\r\n\r\n\0\r\nQUIT\n", 12);

std::string V2(uint8_t version_command, uint8_t family_transport, std::string body) {
  std::string out = kSignature;
  out.push_back(static_cast<char>(version_command));
  out.push_back(static_cast<char>(family_transport));
  out.push_back(static_cast<char>(body.size() >> 8));
  out.push_back(static_cast<char>(body.size() & 0xff));
  return out + body;
}

std::string Inet4Body() {
  // 192.0.2.7:51000 -> 198.51.100.1:110
  return std::string("\xc0\x00\x02\x07\xc6\x33\x64\x01\xc7\x38\x00\x6e", 12);
}

std::string Inet6Body() {
  std::string body(36, '\0');
  body[0] = '\x20';
  body[1] = '\x01';
  body[2] = '\x0d';
  body[3] = '\xb8';
  body[15] = '\x07';  // 2001:db8::7
  body[16] = '\x20';
  body[17] = '\x01';
  body[18] = '\x0d';
  body[19] = '\xb8';
  body[31] = '\x01';  // 2001:db8::1
  body[32] = '\x01';
  body[33] = '\x00';  // port 256
  body[34] = '\x03';
  body[35] = '\xe3';  // port 995
  return body;
}

// Every strict prefix needs more; the whole header (followed by protocol bytes, which must not
// be taken) is complete.
ProxyHeader ExpectComplete(const std::string& header) {
  for (size_t n = 0; n < header.size(); ++n) {
    const ProxyParseResult r = ParseProxyHeader(std::string_view(header).substr(0, n));
    EXPECT_EQ(r.status, Status::kNeedMore) << "prefix of " << n << " bytes: " << r.error;
  }
  const std::string with_tail = header + "\x16\x03\x01 ClientHello or USER x\r\n";
  const ProxyParseResult r = ParseProxyHeader(with_tail);
  EXPECT_EQ(r.status, Status::kComplete) << r.error;
  EXPECT_EQ(r.header.header_bytes, header.size());
  EXPECT_EQ(ParseProxyHeader(header).status, Status::kComplete);
  return r.header;
}

void ExpectInvalid(const std::string& input) {
  const ProxyParseResult r = ParseProxyHeader(input);
  EXPECT_EQ(r.status, Status::kInvalid) << testing::PrintToString(input);
  EXPECT_FALSE(r.error.empty());
}

TEST(ProxyHeaderV1, Tcp4) {
  const ProxyHeader h = ExpectComplete("PROXY TCP4 192.0.2.7 198.51.100.1 51000 110\r\n");
  EXPECT_EQ(h.version, 1);
  EXPECT_FALSE(h.local);
  EXPECT_TRUE(h.source.ipv4);
  EXPECT_EQ(h.source.ToText(), "192.0.2.7");
  EXPECT_EQ(h.source.port, 51000);
  EXPECT_EQ(h.destination.ToText(), "198.51.100.1");
  EXPECT_EQ(h.destination.port, 110);
  EXPECT_EQ(h.source.addr16[10], 0xff);  // v4-mapped, as the per-IP tables key addresses
  EXPECT_EQ(h.source.addr16[15], 7);
}

TEST(ProxyHeaderV1, Tcp6) {
  const ProxyHeader h = ExpectComplete("PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n");
  EXPECT_FALSE(h.source.ipv4);
  EXPECT_EQ(h.source.ToText(), "2001:db8::7");
  EXPECT_EQ(h.source.port, 65535);
  EXPECT_EQ(h.destination.port, 0);
}

TEST(ProxyHeaderV1, UnknownKeepsTheSocketAddresses) {
  EXPECT_TRUE(ExpectComplete("PROXY UNKNOWN\r\n").local);
  EXPECT_TRUE(ExpectComplete("PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n").local);
}

TEST(ProxyHeaderV1, LongestLegalLine) {
  const std::string addresses =
      "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535";
  EXPECT_EQ(ExpectComplete("PROXY TCP6 " + addresses + "\r\n").source.port, 65535);
  const std::string unknown = "PROXY UNKNOWN " + addresses + "\r\n";
  ASSERT_EQ(unknown.size(), kProxyV1HeaderBytesMax);
  EXPECT_TRUE(ExpectComplete(unknown).local);
}

TEST(ProxyHeaderV1, Malformed) {
  ExpectInvalid("PROXY TCP4 192.0.2.7 198.51.100.1 51000 110\n");      // bare LF
  ExpectInvalid("PROXY TCP4 192.0.2.7 198.51.100.1 51000\r\n");        // 4 fields
  ExpectInvalid("PROXY TCP4 192.0.2.7 198.51.100.1 51000 110 1\r\n");  // 6 fields
  ExpectInvalid("PROXY TCP4  192.0.2.7 198.51.100.1 51000 110\r\n");   // doubled space
  ExpectInvalid("PROXY TCP4 192.0.2.7 198.51.100.1 51000 110 \r\n");   // trailing space
  ExpectInvalid("PROXY TCP4 2001:db8::7 198.51.100.1 51000 110\r\n");  // v6 in TCP4
  ExpectInvalid("PROXY TCP6 192.0.2.7 2001:db8::1 51000 110\r\n");     // v4 in TCP6
  ExpectInvalid("PROXY TCP4 192.0.2.256 198.51.100.1 51000 110\r\n");  // octet
  ExpectInvalid("PROXY TCP4 192.0.2.7 198.51.100.1 65536 110\r\n");    // port range
  ExpectInvalid("PROXY TCP4 192.0.2.7 198.51.100.1 051000 110\r\n");   // leading zero
  ExpectInvalid("PROXY TCP4 192.0.2.7 198.51.100.1 -1 110\r\n");       // sign
  ExpectInvalid("PROXY UDP4 192.0.2.7 198.51.100.1 51000 110\r\n");    // protocol
  ExpectInvalid("PROXY UNKNOWNX\r\n");
  ExpectInvalid("PROXY \r\n");
  ExpectInvalid("proxy TCP4 192.0.2.7 198.51.100.1 51000 110\r\n");  // case
}

TEST(ProxyHeaderV1, OversizeWithoutLineEnd) {
  std::string line = "PROXY UNKNOWN ";
  while (line.size() < kProxyV1HeaderBytesMax - 1) line.push_back('a');
  EXPECT_EQ(ParseProxyHeader(line).status, Status::kNeedMore);
  line.push_back('a');
  ExpectInvalid(line);  // 107 bytes and no LF yet: a CRLF would make it 109
  ExpectInvalid(line + "\r\n");
}

TEST(ProxyHeaderV2, Inet4) {
  const ProxyHeader h = ExpectComplete(V2(0x21, 0x11, Inet4Body()));
  EXPECT_EQ(h.version, 2);
  EXPECT_FALSE(h.local);
  EXPECT_EQ(h.source.ToText(), "192.0.2.7");
  EXPECT_EQ(h.source.port, 51000);
  EXPECT_EQ(h.destination.ToText(), "198.51.100.1");
  EXPECT_EQ(h.destination.port, 110);
  EXPECT_FALSE(h.client_tls);
}

TEST(ProxyHeaderV2, Inet6) {
  const ProxyHeader h = ExpectComplete(V2(0x21, 0x21, Inet6Body()));
  EXPECT_EQ(h.source.ToText(), "2001:db8::7");
  EXPECT_EQ(h.source.port, 256);
  EXPECT_EQ(h.destination.ToText(), "2001:db8::1");
  EXPECT_EQ(h.destination.port, 995);
}

TEST(ProxyHeaderV2, LocalAndAddresslessFamiliesKeepTheSocketAddresses) {
  EXPECT_TRUE(ExpectComplete(V2(0x20, 0x00, "")).local);                     // LOCAL, UNSPEC
  EXPECT_TRUE(ExpectComplete(V2(0x20, 0x11, Inet4Body())).local);            // LOCAL with addresses
  EXPECT_TRUE(ExpectComplete(V2(0x21, 0x00, "")).local);                     // PROXY, UNSPEC
  EXPECT_TRUE(ExpectComplete(V2(0x21, 0x31, std::string(216, 'p'))).local);  // UNIX
}

TEST(ProxyHeaderV2, TlvsAreSkippedAndTheSslOneRead) {
  // PP2_TYPE_ALPN "pop3", then PP2_TYPE_SSL: client bit, verify 0, one sub-TLV (version).
  std::string tlvs = std::string("\x01\x00\x04pop3", 7);
  const std::string ssl =
      std::string("\x01\x00\x00\x00\x00", 5) + std::string("\x21\x00\x07TLSv1.3", 10);
  tlvs += std::string("\x20", 1) + static_cast<char>(0) + static_cast<char>(ssl.size()) + ssl;
  const ProxyHeader h = ExpectComplete(V2(0x21, 0x11, Inet4Body() + tlvs));
  EXPECT_TRUE(h.client_tls);
  EXPECT_EQ(h.source.ToText(), "192.0.2.7");
}

TEST(ProxyHeaderV2, Malformed) {
  ExpectInvalid(V2(0x11, 0x11, Inet4Body()));                // version 1 in binary
  ExpectInvalid(V2(0x22, 0x11, Inet4Body()));                // command 2
  ExpectInvalid(V2(0x21, 0x41, Inet4Body()));                // family 4
  ExpectInvalid(V2(0x21, 0x12, Inet4Body()));                // DGRAM
  ExpectInvalid(V2(0x21, 0x13, Inet4Body()));                // transport 3
  ExpectInvalid(V2(0x21, 0x11, Inet4Body().substr(0, 11)));  // short addresses
  ExpectInvalid(V2(0x21, 0x21, Inet4Body()));                // INET6 with 12 bytes
  ExpectInvalid(V2(0x21, 0x11, Inet4Body() + "\x01\x00"));   // TLV head cut
  ExpectInvalid(V2(0x21, 0x11, Inet4Body() + std::string("\x01\x00\x05pop", 6)));  // TLV cut
  // Bad fixed fields are refused as soon as they arrive, before the body.
  EXPECT_EQ(ParseProxyHeader(V2(0x22, 0x11, Inet4Body()).substr(0, 16)).status, Status::kInvalid);
}

TEST(ProxyHeaderV2, OversizeIsRefusedFromTheLengthField) {
  const std::string big = V2(0x21, 0x11, Inet4Body() + std::string(2000, '\0'));
  EXPECT_EQ(ParseProxyHeader(big.substr(0, 16)).status, Status::kInvalid);
  // The largest accepted: a padding-like TLV (PP2_TYPE_NOOP) filling up to the limit.
  const size_t tlv_value = kProxyHeaderBytesMax - kProxyV2FixedBytes - 12 - 3;
  const std::string noop = std::string("\x04", 1) + static_cast<char>(tlv_value >> 8) +
                           static_cast<char>(tlv_value & 0xff) + std::string(tlv_value, 'n');
  const std::string max = V2(0x21, 0x11, Inet4Body() + noop);
  ASSERT_EQ(max.size(), kProxyHeaderBytesMax);
  EXPECT_EQ(ParseProxyHeader(max).status, Status::kComplete);
}

TEST(ProxyHeader, GarbageIsRefusedAtTheFirstDifferingByte) {
  ExpectInvalid("USER alice\r\n");
  ExpectInvalid("\x16\x03\x01\x02\x00");  // a ClientHello without a header
  ExpectInvalid("P\r\n");
  ExpectInvalid("PROXZ");
  ExpectInvalid(std::string("\r\n\r\n\0\r\nQUIZ", 11));
  ExpectInvalid("\r\n\r\nx");
  EXPECT_EQ(ParseProxyHeader("PROX").status, Status::kNeedMore);
  EXPECT_EQ(ParseProxyHeader("\r\n\r").status, Status::kNeedMore);
  EXPECT_EQ(ParseProxyHeader("").status, Status::kNeedMore);
}

}  // namespace
}  // namespace posthaste::server::transport
