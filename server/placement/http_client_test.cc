#include "server/placement/http_client.h"

#include <string>

#include "gtest/gtest.h"
#include "server/placement/etcd_client.h"

namespace posthaste::server::placement {
namespace {

// Feeds `response` in fragments of `fragment` bytes; returns the first error or OK.
absl::Status FeedInFragments(HttpResponseDecoder& decoder, std::string_view response,
                             size_t fragment, std::string* body) {
  for (size_t at = 0; at < response.size(); at += fragment) {
    if (absl::Status s = decoder.Feed(response.substr(at, fragment), body); !s.ok()) return s;
  }
  return absl::OkStatus();
}

constexpr size_t kFragments[] = {100000, 1000, 100, 10, 5, 2, 1};

TEST(HttpResponseDecoderTest, ContentLengthAtEveryFragmentSize) {
  const std::string response =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 11\r\n\r\n"
      "{\"count\":1}";
  for (size_t fragment : kFragments) {
    HttpResponseDecoder decoder;
    std::string body;
    ASSERT_TRUE(FeedInFragments(decoder, response, fragment, &body).ok()) << fragment;
    EXPECT_TRUE(decoder.done());
    EXPECT_EQ(decoder.status_code(), 200);
    EXPECT_EQ(body, "{\"count\":1}");
  }
}

TEST(HttpResponseDecoderTest, ChunkedAtEveryFragmentSize) {
  const std::string response =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      "1b\r\n{\"result\":{\"created\":true}}\r\n"
      "3;ext=1\r\n{}\n\r\n"
      "0\r\nX-Trailer: y\r\n\r\n";
  for (size_t fragment : kFragments) {
    HttpResponseDecoder decoder;
    std::string body;
    ASSERT_TRUE(FeedInFragments(decoder, response, fragment, &body).ok()) << fragment;
    EXPECT_TRUE(decoder.done());
    EXPECT_EQ(body, "{\"result\":{\"created\":true}}{}\n");
  }
  // A stream in progress: the head and the first chunk, no end yet.
  HttpResponseDecoder decoder;
  std::string body;
  ASSERT_TRUE(decoder.Feed(response.substr(0, 80), &body).ok());
  EXPECT_TRUE(decoder.head_done());
  EXPECT_FALSE(decoder.done());
}

TEST(HttpResponseDecoderTest, RefusesWhatIsNotStrictHttp) {
  for (const char* bad : {
           "HTTP/2 200 OK\r\n\r\n",
           "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",
           "HTTP/1.1 100 Continue\r\n\r\n",
           "HTTP/1.1 200 OK\r\n\r\n",  // no framing
           "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
           "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
           "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
           "HTTP/1.1 200 OK\r\nBad Name: 1\r\nContent-Length: 0\r\n\r\n",
           "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nextra",
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\nx",
           "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n",
       }) {
    HttpResponseDecoder decoder;
    std::string body;
    EXPECT_FALSE(decoder.Feed(bad, &body).ok()) << bad;
  }
}

TEST(HttpResponseDecoderTest, Limits) {
  HttpResponseDecoder head_limit({.head_bytes_max = 32});
  std::string body;
  EXPECT_TRUE(absl::IsResourceExhausted(
      head_limit.Feed("HTTP/1.1 200 OK\r\nX-Long: " + std::string(40, 'a'), &body)));
  HttpResponseDecoder body_limit({.body_bytes_max = 4});
  EXPECT_TRUE(absl::IsResourceExhausted(
      body_limit.Feed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", &body)));
  HttpResponseDecoder chunked_limit({.body_bytes_max = 4});
  EXPECT_TRUE(absl::IsResourceExhausted(chunked_limit.Feed(
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n", &body)));
  // 0: no total, for streams whose reader bounds what it keeps.
  HttpResponseDecoder stream({.body_bytes_max = 0});
  std::string big(100000, 'x');
  EXPECT_TRUE(
      stream
          .Feed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n186a0\r\n" + big + "\r\n",
                &body)
          .ok());
}

TEST(HttpEndpointTest, Parses) {
  auto e = ParseHttpEndpoint("http://127.0.0.1:2379");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->host, "127.0.0.1");
  EXPECT_EQ(e->port, 2379);
  auto v6 = ParseHttpEndpoint("http://[::1]:2379/");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->ToString(), "http://[::1]:2379");
  for (const char* bad : {"127.0.0.1:2379", "https://a:1", "http://a", "http://a:0",
                          "http://a:70000", "http://:1", "http://[::1:1", "http://a/b:1"}) {
    EXPECT_FALSE(ParseHttpEndpoint(bad).ok()) << bad;
  }
  auto list = ParseEtcdEndpoints("http://127.0.0.1:1,http://127.0.0.1:2");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 2u);
  EXPECT_FALSE(ParseEtcdEndpoints("").ok());
  EXPECT_EQ(PrefixRangeEnd("/p/"), "/p0");
  EXPECT_EQ(PrefixRangeEnd("a\xff"), "b");
}

}  // namespace
}  // namespace posthaste::server::placement
