#include "base/json.h"

#include <string>

#include "gtest/gtest.h"

namespace posthaste {
namespace {

using Type = JsonValue::Type;

// What etcd's HTTP gateway answers to a range: nested objects and arrays, int64 as strings.
constexpr std::string_view kRangeResponse =
    R"({"header":{"cluster_id":"14841639068965178418","member_id":"10276657743932975437",)"
    R"("revision":"7","raft_term":"2"},"kvs":[{"key":"L3AvYQ==","create_revision":"5",)"
    R"("mod_revision":"7","version":"2","value":"eyJiIjoxfQ=="}],"count":"1"})";

TEST(JsonTest, ReadsAnEtcdResponse) {
  auto v = ParseJson(kRangeResponse);
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_TRUE(v->is_object());
  EXPECT_EQ(v->Find("header")->Find("revision")->AsInt64(), 7);
  EXPECT_EQ(v->Find("header")->Find("cluster_id")->AsInt64(), std::nullopt);  // > int64
  ASSERT_EQ(v->Find("kvs")->elements().size(), 1u);
  EXPECT_EQ(v->Find("kvs")->elements()[0].Find("key")->text(), "L3AvYQ==");
  EXPECT_EQ(v->Find("count")->AsInt64(), 1);
  EXPECT_EQ(v->Find("missing"), nullptr);
  EXPECT_EQ(v->Find("kvs")->Find("key"), nullptr);  // not an object
}

TEST(JsonTest, ScalarsAndEscapes) {
  auto v = ParseJson(
      " [1, -2, 0, 1.5, -0.25e+3, true, false, null, \"\\u00e9\\ud83d\\ude00\\\"\\\\\\/\\n\","
      " \"-9223372036854775808\", 9223372036854775808, {}, []] ");
  ASSERT_TRUE(v.ok()) << v.status();
  const auto& e = v->elements();
  ASSERT_EQ(e.size(), 13u);
  EXPECT_EQ(e[0].AsInt64(), 1);
  EXPECT_EQ(e[1].AsInt64(), -2);
  EXPECT_EQ(e[2].AsInt64(), 0);
  EXPECT_EQ(e[3].type(), Type::kNumber);
  EXPECT_EQ(e[3].AsInt64(), std::nullopt);
  EXPECT_EQ(e[4].text(), "-0.25e+3");
  EXPECT_TRUE(e[5].boolean());
  EXPECT_EQ(e[6].type(), Type::kBool);
  EXPECT_FALSE(e[6].boolean());
  EXPECT_TRUE(e[7].is_null());
  EXPECT_EQ(e[8].text(), "\xc3\xa9\xf0\x9f\x98\x80\"\\/\n");
  EXPECT_EQ(e[9].AsInt64(), INT64_MIN);
  EXPECT_EQ(e[10].AsInt64(), std::nullopt);  // overflows int64
  EXPECT_TRUE(e[11].is_object());
  EXPECT_TRUE(e[12].is_array());
}

TEST(JsonTest, RefusesBadSyntax) {
  for (const char* bad : {"",
                          " ",
                          "{",
                          "[1,]",
                          "{\"a\":1,}",
                          "{\"a\":1} x",
                          "{a:1}",
                          "{\"a\" 1}",
                          "[01]",
                          "[-]",
                          "[1.]",
                          "[1e]",
                          "[.5]",
                          "[+1]",
                          "tru",
                          "nul",
                          "[\"\\ud800\"]",
                          "[\"\\udc00\"]",
                          "[\"\\ud800\\u0041\"]",
                          "[\"\x01\"]",
                          "[\"\\x\"]",
                          "[\"\\u12g4\"]",
                          "{\"a\":1,\"a\":2}",
                          "\"open",
                          "[1 2]",
                          "{\"a\":1 \"b\":2}",
                          "/* */ 1"}) {
    auto v = ParseJson(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(v.status())) << bad << " " << v.status();
  }
}

TEST(JsonTest, Limits) {
  EXPECT_TRUE(ParseJson(std::string(32, '[') + std::string(32, ']')).ok());
  auto deep = ParseJson(std::string(33, '[') + std::string(33, ']'));
  EXPECT_TRUE(absl::IsResourceExhausted(deep.status())) << deep.status();
  // Deep nesting far past the limit fails without exhausting the stack.
  EXPECT_FALSE(ParseJson(std::string(1 << 19, '[')).ok());
  auto big = ParseJson(std::string(100, ' ') + "1", {.bytes_max = 100});
  EXPECT_TRUE(absl::IsResourceExhausted(big.status())) << big.status();
  std::string many = "[";
  for (int i = 0; i < 10; ++i) many += "1,";
  many += "1]";
  EXPECT_TRUE(ParseJson(many, {.values_max = 12}).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(ParseJson(many, {.values_max = 11}).status()));
}

// A stream of objects (the gateway's watch stream), fed in fragments of every size: a value
// cut short asks for more bytes, a whole one is returned with the bytes it took.
TEST(JsonTest, PrefixReadsAStreamInFragments) {
  const std::string stream =
      std::string(kRangeResponse) + "\n{\"result\":{\"x\":[1,2.5,\"\\u00e9\"]}}\n";
  for (size_t fragment : {100000, 1000, 100, 10, 5, 2, 1}) {
    std::string buffer;
    std::vector<JsonValue> values;
    for (size_t at = 0; at < stream.size(); at += fragment) {
      buffer += stream.substr(at, fragment);
      for (;;) {
        size_t consumed = 0;
        auto v = ParseJsonPrefix(buffer, &consumed);
        if (absl::IsUnavailable(v.status())) break;
        ASSERT_TRUE(v.ok()) << v.status();
        values.push_back(*std::move(v));
        buffer.erase(0, consumed);
      }
    }
    ASSERT_EQ(values.size(), 2u) << fragment;
    EXPECT_EQ(values[0].Find("count")->AsInt64(), 1);
    EXPECT_EQ(values[1].Find("result")->Find("x")->elements()[2].text(), "\xc3\xa9");
    EXPECT_EQ(buffer, "\n");
  }
  size_t consumed = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(ParseJsonPrefix("{\"a\":x", &consumed).status()));
  auto clipped = ParseJsonPrefix("[1,2,3,4,5,6]", &consumed, {.bytes_max = 5});
  EXPECT_TRUE(absl::IsResourceExhausted(clipped.status())) << clipped.status();
}

TEST(JsonTest, QuoteRoundTrips) {
  const std::string raw = "a\"b\\c\n\x01\xc3\xa9/";
  EXPECT_EQ(JsonQuote(raw), "\"a\\\"b\\\\c\\u000a\\u0001\\u00c3\\u00a9/\"");
  auto back = ParseJson(JsonQuote("plain \"quoted\" \\ text"));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->text(), "plain \"quoted\" \\ text");
}

}  // namespace
}  // namespace posthaste
