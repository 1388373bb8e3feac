// ParseProxyHeader: the PROXY protocol header a trusted proxy (HAProxy, nginx) sends before the
// client's first byte, so the server learns the client's address. Both versions:
//   v1  one text line, "PROXY TCP4|TCP6|UNKNOWN ...\r\n", at most kProxyV1HeaderBytesMax bytes;
//   v2  a 12-byte binary signature, version/command, family/transport, a 16-bit length, the
//       addresses and optional TLVs, at most kProxyHeaderBytesMax bytes in all.
// A LOCAL command (v2), the UNKNOWN protocol (v1) and families without IP addresses (UNSPEC,
// UNIX) give a header with `local` set: the proxy speaks for itself (a health check), and the
// connection's own addresses stand.
//
// Sans-I/O and stateless: the caller passes every byte received so far (from offset 0) and gets
// need-more, a complete header with the number of bytes it occupies (the bytes after it belong
// to the protocol: a ClientHello, a command), or a refusal with its reason. The caller bounds
// the time (server/transport/proxy_header_reader.h); the size bound is here.
//
// Threading: none (pure functions).
#ifndef POSTHASTE_SERVER_TRANSPORT_PROXY_HEADER_H_
#define POSTHASTE_SERVER_TRANSPORT_PROXY_HEADER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace posthaste::server::transport {

// The protocol's own limit on a v1 line, CRLF included.
inline constexpr size_t kProxyV1HeaderBytesMax = 107;
// Our limit on a v2 header with its TLVs (HAProxy sends 28 or 52 bytes plus a few TLVs).
inline constexpr size_t kProxyHeaderBytesMax = 1024;
// The fixed part of a v2 header: signature, version/command, family, length.
inline constexpr size_t kProxyV2FixedBytes = 16;

// One end of the proxied connection.
struct ProxyAddress {
  uint8_t addr16[16] = {};  // IPv6, or IPv4 as v4-mapped (::ffff:a.b.c.d)
  uint16_t port = 0;
  bool ipv4 = false;
  // The text form ("192.0.2.1", "2001:db8::1"); the key of the per-IP limits and the logs.
  std::string ToText() const;
};

struct ProxyHeader {
  int version = 0;          // 1 or 2
  size_t header_bytes = 0;  // bytes the header occupies from offset 0
  // The proxy speaks for itself: source and destination are unset; keep the socket's.
  bool local = false;
  ProxyAddress source;       // the client
  ProxyAddress destination;  // the address the client connected to (the proxy's listener)
  // v2 only: a PP2_TYPE_SSL TLV said the client reached the proxy over TLS.
  bool client_tls = false;
};

struct ProxyParseResult {
  enum class Status : uint8_t {
    kNeedMore,  // a prefix of a possible header; call again with more bytes
    kComplete,  // `header` is set
    kInvalid,   // not a PROXY header, malformed, or over the size limit: close the connection
  };
  Status status = Status::kNeedMore;
  ProxyHeader header;
  std::string_view error;  // kInvalid: why, a static string for logs
};

// Parses the start of a connection's input. REQUIRES: `bytes` holds everything received so far.
ProxyParseResult ParseProxyHeader(std::string_view bytes);

}  // namespace posthaste::server::transport

#endif  // POSTHASTE_SERVER_TRANSPORT_PROXY_HEADER_H_
