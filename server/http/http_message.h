// The values exchanged between the HTTP listener (server/http/http_server.h) and its handlers:
// one parsed request (head and body) and one response, plus the small pieces of URL handling
// the handlers need (percent-decoding, query parameters).
//
// Every response goes out with `Connection: close`: the listeners serve one request per
// connection (see http_server.h for why).
//
// Threading: plain values and pure functions; thread-safe.
#ifndef POSTHASTE_SERVER_HTTP_HTTP_MESSAGE_H_
#define POSTHASTE_SERVER_HTTP_HTTP_MESSAGE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace posthaste::http {

struct HttpHeader {
  std::string name;   // as sent (a token); compare with EqualsIgnoreCase
  std::string value;  // surrounding spaces and tabs removed
};

struct HttpRequest {
  std::string method;         // a token, case as sent ("GET")
  std::string target;         // origin-form as sent, still percent-encoded: "/a/b?x=y"
  uint8_t version_minor = 1;  // HTTP/1.<minor>: 0 or 1
  std::vector<HttpHeader> headers;
  uint64_t content_length = 0;    // 0 when absent
  bool expects_continue = false;  // "Expect: 100-continue"
  std::string body;               // exactly content_length bytes once the request is complete
  std::string peer_ip;            // the client's address (filled by the server)

  // The path part of the target (before any '?'), still percent-encoded.
  std::string_view path() const;
  // The query after '?', without it; empty when there is none.
  std::string_view query() const;
  // The value of the first header named `name` (ASCII case-insensitive), or nullptr.
  const std::string* FindHeader(std::string_view name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type;  // empty: no Content-Type
  // Extra header fields. Names must be tokens and values must hold no CR, LF or NUL: fields
  // that break this are dropped by SerializeResponse rather than written.
  std::vector<HttpHeader> headers;
  std::string body;
};

// "OK", "Not Found", ...; "Unknown" for a code outside the table.
std::string_view ReasonPhrase(int status);

// The response as bytes on the wire: status line, Content-Type, Content-Length (not for 204),
// Date, Cache-Control: no-store, the extra fields, Connection: close, and the body unless
// `head_only` (a HEAD request).
std::string SerializeResponse(const HttpResponse& response, bool head_only);

// Percent-decodes `text` (RFC 3986); with `plus_is_space` (form encoding in a query) '+' is a
// space. nullopt for a '%' not followed by two hex digits. Decoded bytes may be anything,
// including NUL: callers decide what they accept.
std::optional<std::string> PercentDecode(std::string_view text, bool plus_is_space);

// The decoded value of the first `name=value` pair in `query` ("a=1&b=2"); a bare `name` gives
// "". nullopt when absent or badly encoded.
std::optional<std::string> QueryParameterForTest(std::string_view query, std::string_view name);

// True for the characters of an RFC 9110 token (tchar).
bool IsTokenChar(char c);

}  // namespace posthaste::http

#endif  // POSTHASTE_SERVER_HTTP_HTTP_MESSAGE_H_
