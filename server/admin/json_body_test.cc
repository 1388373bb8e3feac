#include "server/admin/json_body.h"

#include "gtest/gtest.h"

namespace posthaste::server::admin {
namespace {

using Type = JsonScalar::Type;

TEST(JsonBodyTest, FlatObjectsOfScalars) {
  auto o = ParseJsonObject(
      " {\"address\": \"a@x.test\", \"quota_messages\": 10, \"disabled\": true,\n"
      "  \"quota_octets\": null, \"pw\": \"\\u00e9\\ud83d\\ude00\\\"\\\\\\/\\n\"} ");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->at("address").string, "a@x.test");
  EXPECT_EQ(o->at("quota_messages").type, Type::kInteger);
  EXPECT_EQ(o->at("quota_messages").integer, 10u);
  EXPECT_TRUE(o->at("disabled").boolean);
  EXPECT_EQ(o->at("quota_octets").type, Type::kNull);
  EXPECT_EQ(o->at("pw").string, "\xc3\xa9\xf0\x9f\x98\x80\"\\/\n");
  EXPECT_TRUE(ParseJsonObject("{}")->empty());
  EXPECT_EQ(ParseJsonObject("{\"n\": 18446744073709551615}")->at("n").integer, UINT64_MAX);
}

TEST(JsonBodyTest, RefusesWhatTheApiDoesNotTake) {
  for (const char* bad : {"",
                          "[]",
                          "{",
                          "{\"a\":}",
                          "{\"a\":1,}",
                          "{\"a\":1} x",
                          "{\"a\":{}}",
                          "{\"a\":[1]}",
                          "{\"a\":-1}",
                          "{\"a\":1.5}",
                          "{\"a\":1e3}",
                          "{\"a\":01}",
                          "{\"a\":1,\"a\":2}",
                          "{\"a\":\"\\ud800\"}",
                          "{\"a\":\"\\udc00\"}",
                          "{\"a\":\"\x01\"}",
                          "{\"a\":\"\\x\"}",
                          "{\"a\":18446744073709551616}",
                          "{\"a\":tru}",
                          "{a:1}",
                          "{\"a\":\"open"}) {
    EXPECT_FALSE(ParseJsonObject(bad).ok()) << bad;
  }
  EXPECT_FALSE(ParseJsonObject(std::string(kJsonBodyBytesMax + 1, ' ')).ok());
}

TEST(JsonBodyTest, JsonStringEscapes) {
  EXPECT_EQ(JsonString("a\"b\\c\n\x01\xc3\xa9"), "\"a\\\"b\\\\c\\u000a\\u0001\\u00c3\\u00a9\"");
}

}  // namespace
}  // namespace posthaste::server::admin
