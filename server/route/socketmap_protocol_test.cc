#include "server/route/socketmap_protocol.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace posthaste::server::route {
namespace {

constexpr size_t kFragmentSizes[] = {100000, 1000, 100, 10, 5, 2, 1};

struct Outcome {
  std::vector<SocketmapRequest> requests;
  bool failed = false;
  std::string error;
};

// Feeds `wire` in pieces of `fragment` bytes, collecting every request until an error.
Outcome Parse(std::string_view wire, size_t fragment, size_t request_bytes_max = 1024) {
  SocketmapRequestParser parser(request_bytes_max);
  Outcome outcome;
  for (size_t at = 0; at < wire.size() && !outcome.failed; at += fragment) {
    parser.Feed(wire.substr(at, fragment));
    SocketmapRequest request;
    for (;;) {
      auto result = parser.Next(&request, &outcome.error);
      if (result == SocketmapRequestParser::Result::kNeedMore) break;
      if (result == SocketmapRequestParser::Result::kError) {
        outcome.failed = true;
        break;
      }
      outcome.requests.push_back(request);
    }
  }
  return outcome;
}

TEST(SocketmapProtocolTest, ParsesPipelinedRequestsAtEveryFragmentSize) {
  const std::string wire =
      "27:transport alice@example.com,"
      "21:transport example.com,"
      "10:transport ,";
  for (size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(fragment);
    Outcome outcome = Parse(wire, fragment);
    ASSERT_FALSE(outcome.failed) << outcome.error;
    ASSERT_EQ(outcome.requests.size(), 3u);
    EXPECT_EQ(outcome.requests[0].name, "transport");
    EXPECT_EQ(outcome.requests[0].key, "alice@example.com");
    EXPECT_EQ(outcome.requests[1].key, "example.com");
    EXPECT_EQ(outcome.requests[2].key, "");
  }
}

TEST(SocketmapProtocolTest, KeyKeepsItsSpaces) {
  Outcome outcome = Parse("7:m a b c,", 100000);
  ASSERT_EQ(outcome.requests.size(), 1u);
  EXPECT_EQ(outcome.requests[0].name, "m");
  EXPECT_EQ(outcome.requests[0].key, "a b c");
}

TEST(SocketmapProtocolTest, RefusesBadFramingAtEveryFragmentSize) {
  const std::vector<std::string> bad = {
      "x:transport a,",         // not a length
      ":transport a,",          // no length
      "11:transport a;",        // no ','
      "9:transport,",           // no space: no key
      "2: a,",                  // empty name
      "1234567:",               // too many digits
      "2000:transport a,",      // over request_bytes_max
      "-1:a b,",                // sign
      "011:transport a,",       // leading zero
      "11:transport a,3:x y;",  // second one broken
      "10:transport ab,",       // payload longer than its length
  };
  for (const std::string& wire : bad) {
    for (size_t fragment : kFragmentSizes) {
      SCOPED_TRACE(wire + " @" + std::to_string(fragment));
      Outcome outcome = Parse(wire, fragment);
      EXPECT_TRUE(outcome.failed);
      EXPECT_FALSE(outcome.error.empty());
    }
  }
}

TEST(SocketmapProtocolTest, OverLimitIsRefusedBeforeThePayloadArrives) {
  SocketmapRequestParser parser(16);
  parser.Feed("17:");
  SocketmapRequest request;
  std::string error;
  EXPECT_EQ(parser.Next(&request, &error), SocketmapRequestParser::Result::kError);
  // And stays refused: nothing more is buffered.
  parser.Feed("transport alice@x,");
  EXPECT_EQ(parser.Next(&request, &error), SocketmapRequestParser::Result::kError);
  EXPECT_EQ(parser.buffered_bytes(), 0u);
}

TEST(SocketmapProtocolTest, IncompleteRequestWaits) {
  SocketmapRequestParser parser(1024);
  parser.Feed("11:transpo");
  SocketmapRequest request;
  std::string error;
  EXPECT_EQ(parser.Next(&request, &error), SocketmapRequestParser::Result::kNeedMore);
  EXPECT_TRUE(parser.mid_request());
  parser.Feed("rt a,");
  EXPECT_EQ(parser.Next(&request, &error), SocketmapRequestParser::Result::kRequest);
  EXPECT_FALSE(parser.mid_request());
}

TEST(SocketmapProtocolTest, AnswersAreNetstrings) {
  EXPECT_EQ(SocketmapOk("lmtp:inet:10.0.0.7:24"), "24:OK lmtp:inet:10.0.0.7:24,");
  EXPECT_EQ(SocketmapNotFound(), "9:NOTFOUND ,");
  EXPECT_EQ(SocketmapTemp("moving"), "11:TEMP moving,");
  EXPECT_EQ(SocketmapPerm("no"), "7:PERM no,");
  EXPECT_EQ(Netstring(""), "0:,");
}

}  // namespace
}  // namespace posthaste::server::route
