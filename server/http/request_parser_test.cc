#include "server/http/request_parser.h"

#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "server/http/http_message.h"

namespace posthaste::http {
namespace {

constexpr size_t kFragmentSizes[] = {100000, 1000, 100, 10, 5, 2, 1};

struct Outcome {
  RequestParser::Result result = RequestParser::Result::kNeedMore;
  int status = 0;
  HttpRequest request;
  std::string rest;  // input after the head (kDone)
};

// Feeds `input` in pieces of `fragment` bytes, as a connection does.
Outcome ParseAll(std::string_view input, size_t fragment, const RequestLimits& limits = {}) {
  RequestParser parser(limits);
  Outcome out;
  for (size_t pos = 0; pos < input.size(); pos += fragment) {
    const std::string_view piece = input.substr(pos, fragment);
    size_t used = 0;
    out.result = parser.Feed(piece, &used);
    if (out.result == RequestParser::Result::kNeedMore) {
      EXPECT_EQ(used, piece.size());
      continue;
    }
    if (out.result == RequestParser::Result::kError) {
      out.status = parser.error_status();
      EXPECT_FALSE(parser.error_reason().empty());
      return out;
    }
    out.request = parser.TakeRequest();
    out.rest = std::string(input.substr(pos + used));
    return out;
  }
  return out;
}

TEST(RequestParserTest, GetAtEveryFragmentSize) {
  const std::string input =
      "GET /api/v1/accounts?domain=example.test HTTP/1.1\r\nHost: localhost:9110\r\n"
      "User-Agent: t\r\nAuthorization:   Bearer abc \t\r\nAccept-Encoding: gzip\r\n\r\n";
  for (size_t fragment : kFragmentSizes) {
    Outcome o = ParseAll(input, fragment);
    ASSERT_EQ(o.result, RequestParser::Result::kDone) << fragment;
    EXPECT_EQ(o.request.method, "GET");
    EXPECT_EQ(o.request.target, "/api/v1/accounts?domain=example.test");
    EXPECT_EQ(o.request.path(), "/api/v1/accounts");
    EXPECT_EQ(o.request.query(), "domain=example.test");
    EXPECT_EQ(o.request.version_minor, 1);
    ASSERT_EQ(o.request.headers.size(), 4u);
    ASSERT_NE(o.request.FindHeader("authorization"), nullptr);
    EXPECT_EQ(*o.request.FindHeader("AUTHORIZATION"), "Bearer abc");
    EXPECT_EQ(o.request.FindHeader("Cookie"), nullptr);
    EXPECT_EQ(o.request.content_length, 0u);
    EXPECT_EQ(o.rest, "");
  }
}

TEST(RequestParserTest, BodyBytesAreLeftForTheCaller) {
  const std::string input =
      "PATCH /api/v1/accounts/a@b.test HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n"
      "Expect: 100-Continue\r\n\r\n{\"disabled\":1}";
  for (size_t fragment : kFragmentSizes) {
    Outcome o = ParseAll(input, fragment);
    ASSERT_EQ(o.result, RequestParser::Result::kDone) << fragment;
    EXPECT_EQ(o.request.content_length, 13u);
    EXPECT_TRUE(o.request.expects_continue);
    EXPECT_EQ(o.rest, "{\"disabled\":1}");
    EXPECT_EQ(o.request.body, "");
  }
}

TEST(RequestParserTest, Http10WithoutHost) {
  Outcome o = ParseAll("GET /metrics HTTP/1.0\r\n\r\n", 3);
  ASSERT_EQ(o.result, RequestParser::Result::kDone);
  EXPECT_EQ(o.request.version_minor, 0);
  EXPECT_EQ(o.request.path(), "/metrics");
  EXPECT_EQ(o.request.query(), "");
}

TEST(RequestParserTest, ObsTextAndEmptyValuesAccepted) {
  Outcome o = ParseAll("GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Latin: caf\xe9\r\n\r\n", 7);
  ASSERT_EQ(o.result, RequestParser::Result::kDone);
  EXPECT_EQ(*o.request.FindHeader("x-empty"), "");
  EXPECT_EQ(*o.request.FindHeader("x-latin"), "caf\xe9");
}

struct BadCase {
  std::string input;
  int status;
};

TEST(RequestParserTest, RefusedAtEveryFragmentSize) {
  const std::string host = "Host: h\r\n";
  const std::vector<BadCase> cases = {
      {"GET / HTTP/1.1\nHost: h\n\n", 400},                             // bare LF
      {"GET / HTTP/1.1\r\nHost: h\n\r\n", 400},                         // one bare LF
      {"GET / HTTP/1.1\r\nHost: h\r\rX: y\r\n\r\n", 400},               // bare CR
      {"GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", 400},            // NUL (see below)
      {"GET / HTTP/1.1\r\n" + host + "X: a\x01z\r\n\r\n", 400},         // control byte
      {"GET / HTTP/1.1\r\n" + host + "X: a\x7fz\r\n\r\n", 400},         // DEL
      {"GET / HTTP/1.1\r\n" + host + "X: a\r\n  folded\r\n\r\n", 400},  // obs-fold
      {"GET / HTTP/1.1\r\n" + host + "X : a\r\n\r\n", 400},             // space before colon
      {"GET / HTTP/1.1\r\n" + host + "X\r\n\r\n", 400},                 // no colon
      {"GET / HTTP/1.1\r\n" + host + ": a\r\n\r\n", 400},               // empty name
      {"GET / HTTP/1.1\r\n" + host + "X(y): a\r\n\r\n", 400},           // not a token
      {"\r\nGET / HTTP/1.1\r\n" + host + "\r\n", 400},                  // empty request line
      {"GET  / HTTP/1.1\r\n" + host + "\r\n", 400},                     // double space
      {"GET / HTTP/1.1 \r\n" + host + "\r\n", 400},                     // trailing space
      {"GET /\tx HTTP/1.1\r\n" + host + "\r\n", 400},                   // tab in the target
      {"GET http://h/ HTTP/1.1\r\n" + host + "\r\n", 400},              // absolute-form
      {"GET * HTTP/1.1\r\n" + host + "\r\n", 400},                      // asterisk-form
      {"GET /a%zz HTTP/1.1\r\n" + host + "\r\n", 400},                  // bad escape
      {"GET /a% HTTP/1.1\r\n" + host + "\r\n", 400},                    // cut escape
      {"GET /a#f HTTP/1.1\r\n" + host + "\r\n", 400},                   // fragment
      {"GET /\x80 HTTP/1.1\r\n" + host + "\r\n", 400},                  // raw non-ASCII
      {"G@T / HTTP/1.1\r\n" + host + "\r\n", 400},                      // method not a token
      {"GET / http/1.1\r\n" + host + "\r\n", 400},                      // version case
      {"GET / HTTP/1.10\r\n" + host + "\r\n", 400},
      {"GET / HTTP/11\r\n" + host + "\r\n", 400},
      {"GET / HTTP/2.0\r\n" + host + "\r\n", 505},
      {"GET / HTTP/1.2\r\n" + host + "\r\n", 505},
      {"GET / HTTP/0.9\r\n" + host + "\r\n", 505},
      {"GET / HTTP/1.1\r\n\r\n", 400},                        // no Host
      {"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400},  // two Hosts
      {"POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\nContent-Length: 5\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\n" + host + "Content-Length: 5, 5\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\n" + host + "Content-Length: +5\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\n" + host + "Content-Length: -1\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\n" + host + "Content-Length: 0x10\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\n" + host + "Content-Length:\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\n" + host + "Content-Length: 99999999999999999999999\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\n" + host + "Content-Length: 65537\r\n\r\n", 413},
      {"POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\n" + host + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
       501},
      {"POST / HTTP/1.1\r\n" + host + "Expect: 200-ok\r\n\r\n", 417},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    std::string input = cases[i].input;
    if (i == 3) input = std::string("GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n", 35);
    for (size_t fragment : kFragmentSizes) {
      Outcome o = ParseAll(input, fragment);
      EXPECT_EQ(o.result, RequestParser::Result::kError)
          << "case " << i << " fragment " << fragment;
      EXPECT_EQ(o.status, cases[i].status) << "case " << i << " fragment " << fragment;
    }
  }
}

TEST(RequestParserTest, ForbiddenBytesRefusedBeforeTheHeadEnds) {
  // No waiting for the header deadline: the first bad byte decides.
  for (std::string_view input :
       {std::string_view("GET / HTTP/1.1\n"), std::string_view("GET / HTTP/1.1\r\nX: a\rb"),
        std::string_view("GET /\0", 6), std::string_view("GET / HTTP/1.1\r\nHost: h\r\n\n")}) {
    for (size_t fragment : kFragmentSizes) {
      Outcome o = ParseAll(input, fragment);
      EXPECT_EQ(o.result, RequestParser::Result::kError) << input << " " << fragment;
      EXPECT_EQ(o.status, 400);
    }
  }
}

TEST(RequestParserTest, SizeLimits) {
  RequestLimits limits;
  limits.request_line_bytes_max = 64;
  limits.head_bytes_max = 256;
  limits.header_count_max = 4;
  limits.body_bytes_max = 10;
  const std::string line_of_64 = "GET /" + std::string(64 - 16, 'a') + " HTTP/1.1\r\n";
  ASSERT_EQ(line_of_64.size(), 64u);
  const std::string line_of_65 = "GET /" + std::string(65 - 16, 'a') + " HTTP/1.1\r\n";
  for (size_t fragment : kFragmentSizes) {
    EXPECT_EQ(ParseAll(line_of_64 + "Host: h\r\n\r\n", fragment, limits).result,
              RequestParser::Result::kDone);
    EXPECT_EQ(ParseAll(line_of_65 + "Host: h\r\n\r\n", fragment, limits).status, 414);
    // An endless request line is refused once it passes the limit, without a CRLF.
    EXPECT_EQ(ParseAll("GET /" + std::string(100, 'a'), fragment, limits).status, 414);
    std::string fields = "GET / HTTP/1.1\r\nHost: h\r\n";
    for (int i = 0; i < 3; ++i) fields += "X-" + std::to_string(i) + ": v\r\n";
    EXPECT_EQ(ParseAll(fields + "\r\n", fragment, limits).result, RequestParser::Result::kDone);
    EXPECT_EQ(ParseAll(fields + "X-9: v\r\n\r\n", fragment, limits).status, 431);
    // One long field: the head limit.
    EXPECT_EQ(ParseAll("GET / HTTP/1.1\r\nHost: h\r\nX: " + std::string(300, 'v') + "\r\n\r\n",
                       fragment, limits)
                  .status,
              431);
    // Nothing but a head that never ends.
    EXPECT_EQ(ParseAll("GET / HTTP/1.1\r\nX: " + std::string(1000, 'v'), fragment, limits).status,
              431);
    EXPECT_EQ(ParseAll("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n", fragment, limits)
                  .result,
              RequestParser::Result::kDone);
    EXPECT_EQ(ParseAll("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", fragment, limits)
                  .status,
              413);
  }
}

TEST(RequestParserTest, HeadExactlyAtTheLimitIsAccepted) {
  RequestLimits limits;
  limits.head_bytes_max = 64;
  limits.request_line_bytes_max = 32;
  std::string head = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
  head += std::string(64 - head.size() - 4, 'v') + "\r\n\r\n";
  ASSERT_EQ(head.size(), 64u);
  for (size_t fragment : kFragmentSizes) {
    Outcome o = ParseAll(head + "tail", fragment, limits);
    EXPECT_EQ(o.result, RequestParser::Result::kDone) << fragment;
    EXPECT_EQ(o.rest, "tail");
  }
}

TEST(HttpMessageTest, PercentDecode) {
  EXPECT_EQ(PercentDecode("a%40b.test", false), "a@b.test");
  EXPECT_EQ(PercentDecode("a+b%2B", false), "a+b+");
  EXPECT_EQ(PercentDecode("a+b%2B", true), "a b+");
  EXPECT_EQ(PercentDecode("%00x", false), std::string("\0x", 2));
  EXPECT_EQ(PercentDecode("%4", false), std::nullopt);
  EXPECT_EQ(PercentDecode("%g0", false), std::nullopt);
  EXPECT_EQ(PercentDecode("", false), "");
}

TEST(HttpMessageTest, QueryParameterForTest) {
  EXPECT_EQ(QueryParameterForTest("domain=example.test", "domain"), "example.test");
  EXPECT_EQ(QueryParameterForTest("a=1&domain=ex%41mple+x&domain=2", "domain"), "exAmple x");
  EXPECT_EQ(QueryParameterForTest("domain", "domain"), "");
  EXPECT_EQ(QueryParameterForTest("domains=x&d=y", "domain"), std::nullopt);
  EXPECT_EQ(QueryParameterForTest("", "domain"), std::nullopt);
  EXPECT_EQ(QueryParameterForTest("domain=%zz", "domain"), std::nullopt);
}

TEST(HttpMessageTest, SerializeResponse) {
  HttpResponse r;
  r.status = 401;
  r.content_type = "application/json";
  r.headers = {{"WWW-Authenticate", "Bearer realm=\"posthaste\""},
               {"X-Bad", "a\r\nSet-Cookie: x"},
               {"Bad Name", "v"}};
  r.body = "{}\n";
  const std::string wire = SerializeResponse(r, false);
  EXPECT_EQ(wire.rfind("HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                       "Content-Length: 3\r\nDate: ",
                       0),
            0u)
      << wire;
  EXPECT_NE(wire.find("\r\nWWW-Authenticate: Bearer realm=\"posthaste\"\r\n"), std::string::npos);
  EXPECT_EQ(wire.find("X-Bad"), std::string::npos);
  EXPECT_EQ(wire.find("Bad Name"), std::string::npos);
  EXPECT_NE(wire.find("Cache-Control: no-store\r\n"), std::string::npos);
  EXPECT_EQ(wire.substr(wire.size() - 24), "Connection: close\r\n\r\n{}\n");
  const std::string head_only = SerializeResponse(r, true);
  EXPECT_EQ(head_only.substr(head_only.size() - 4), "\r\n\r\n");
  EXPECT_NE(head_only.find("Content-Length: 3\r\n"), std::string::npos);
  HttpResponse no_content;
  no_content.status = 204;
  no_content.body = "ignored";
  const std::string wire204 = SerializeResponse(no_content, false);
  EXPECT_EQ(wire204.find("Content-Length"), std::string::npos);
  EXPECT_EQ(wire204.substr(wire204.size() - 4), "\r\n\r\n");
}

}  // namespace
}  // namespace posthaste::http
