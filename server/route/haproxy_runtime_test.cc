#include "server/route/haproxy_runtime.h"

#include <string>

#include "gtest/gtest.h"

namespace posthaste::server::route {
namespace {

TEST(HaproxyRuntimeTest, MapEntriesSkipCommentsAndBlankLines) {
  const auto entries =
      HaproxyMapEntries("# written by posthaste route\n\na.test 127.0.0.1:1\nb.test [::1]:2\n");
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].first, "a.test");
  EXPECT_EQ(entries[1].second, "[::1]:2");
}

TEST(HaproxyRuntimeTest, CommitLinesFillTheVersionThenCommit) {
  const auto lines = HaproxyMapCommitLines("/m.map", 3, {{"a.test", "1.2.3.4:5"}});
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "add map @3 /m.map a.test 1.2.3.4:5;commit map @3 /m.map");
  // An empty map is a commit of an empty version: every entry goes.
  EXPECT_EQ(HaproxyMapCommitLines("/m.map", 4, {}),
            std::vector<std::string>{"commit map @4 /m.map"});
}

TEST(HaproxyRuntimeTest, ManyEntriesAreSplitIntoBoundedLines) {
  std::vector<std::pair<std::string, std::string>> entries;
  for (int i = 0; i < 2000; ++i) {
    entries.emplace_back("tenant" + std::to_string(i) + ".test", "10.0.0.1:995");
  }
  const auto lines = HaproxyMapCommitLines("/m.map", 1, entries);
  ASSERT_GT(lines.size(), 1u);
  size_t adds = 0;
  for (const std::string& line : lines) {
    EXPECT_LE(line.size(), kHaproxyCommandLineBytesMax);
    for (size_t at = line.find("add map"); at != std::string::npos;
         at = line.find("add map", at + 1)) {
      ++adds;
    }
  }
  EXPECT_EQ(adds, entries.size());
  EXPECT_NE(lines.back().find("commit map @1 /m.map"), std::string::npos);
}

TEST(HaproxyRuntimeTest, Replies) {
  auto version = ParsePrepareMapReply("New version created: 42\n\n");
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(*version, 42);
  EXPECT_FALSE(ParsePrepareMapReply("Unknown map identifier.\n\n").ok());
  EXPECT_FALSE(ParsePrepareMapReply("New version created: x\n").ok());
  EXPECT_FALSE(ParsePrepareMapReply("").ok());
  EXPECT_TRUE(CheckSilentReply("\n\n\n").ok());
  EXPECT_TRUE(CheckSilentReply("").ok());
  absl::Status refused = CheckSilentReply("\nVersion number out of range.\n\n");
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("Version number out of range."), std::string::npos);
}

TEST(HaproxyRuntimeTest, NoSocketIsUnavailable) {
  absl::Status pushed = PushHaproxyMap("/nonexistent/haproxy.sock", "/m.map", "a.test 1:2\n", 500);
  EXPECT_EQ(pushed.code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace posthaste::server::route
