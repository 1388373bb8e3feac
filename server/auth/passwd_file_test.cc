#include "server/auth/passwd_file.h"

#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace posthaste::auth {
namespace {

using ::testing::HasSubstr;

constexpr char kSsha[] = "{SSHA}VekveE8OfMyp6gE/bza7JQrwGHm0pmP5";  // doveadm pw, "correct horse"

TEST(ParsePasswdFileLine, TakesUserAndPasswordAndIgnoresTheRest) {
  auto entry =
      ParsePasswdFileLine(std::string("alice@example.test:") + kSsha +
                          ":1000:1000:Alice:/home/alice:/bin/false:userdb_quota_rule=*:storage=1G");
  ASSERT_TRUE(entry.ok()) << entry.status();
  ASSERT_TRUE(entry->has_value());
  EXPECT_EQ((*entry)->user, "alice@example.test");
  EXPECT_EQ((*entry)->stored_hash, kSsha);
  // Only two fields, a bare user, CRLF.
  entry = ParsePasswdFileLine(std::string("bob:") + kSsha + "\r");
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ((*entry)->user, "bob");
  EXPECT_EQ((*entry)->stored_hash, kSsha);
}

TEST(ParsePasswdFileLine, BarePasswordsTakeTheDefaultScheme) {
  const std::string sha512 =
      "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/"
      "O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfa"
      "S35inz1";
  auto entry = ParsePasswdFileLine("carol:" + sha512 + ":::");
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ((*entry)->stored_hash, "{CRYPT}" + sha512);
  entry = ParsePasswdFileLine("dan:secret", "PLAIN");
  ASSERT_TRUE(entry.ok()) << entry.status();
  EXPECT_EQ((*entry)->stored_hash, "{PLAIN}secret");
  // As Dovecot would: without scheme=, a bare word is a crypt(3) string, and DES is refused.
  const absl::Status des = ParsePasswdFileLine("dan:secret").status();
  EXPECT_EQ(des.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(des.message()), HasSubstr("unsupported crypt scheme"));
}

TEST(ParsePasswdFileLine, SkipsBlankLinesAndComments) {
  for (const char* line : {"", "   ", "\t", "\r", "# a comment", "  # indented:{PLAIN}x"}) {
    auto entry = ParsePasswdFileLine(line);
    ASSERT_TRUE(entry.ok()) << line;
    EXPECT_FALSE(entry->has_value()) << line;
  }
}

TEST(ParsePasswdFileLine, RefusesBadLinesWithAReason) {
  struct Case {
    std::string line;
    absl::StatusCode code;
  };
  for (const Case& c : std::vector<Case>{
           {"no-colon", absl::StatusCode::kInvalidArgument},
           {":{PLAIN}x", absl::StatusCode::kInvalidArgument},
           {"erin:", absl::StatusCode::kInvalidArgument},
           {"erin::1000:1000", absl::StatusCode::kInvalidArgument},
           {"erin:{SSHA}@@@", absl::StatusCode::kInvalidArgument},
           {"erin:{NOPE}x", absl::StatusCode::kInvalidArgument},
           {"erin:{PBKDF2}$1$salt$4000000000$29791a1e05096fb6056dbcc2deebe57d8d695b8c",
            absl::StatusCode::kResourceExhausted},
           {"erin:" + std::string(kPasswdFileLineBytesMax, 'x'),
            absl::StatusCode::kInvalidArgument}}) {
    auto entry = ParsePasswdFileLine(c.line);
    EXPECT_EQ(entry.status().code(), c.code) << c.line.substr(0, 80) << ": " << entry.status();
    EXPECT_FALSE(entry.status().message().empty());
  }
}

TEST(ReadPasswdFileLine, SplitsOnLfAndBoundsLines) {
  std::istringstream in("a\nb\r\n\n" + std::string(kPasswdFileLineBytesMax + 10, 'z') + "\nlast");
  std::string line;
  bool too_long = false;
  std::vector<std::pair<std::string, bool>> got;
  while (ReadPasswdFileLine(in, &line, &too_long)) got.emplace_back(line, too_long);
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[0].first, "a");
  EXPECT_EQ(got[1].first, "b\r");
  EXPECT_EQ(got[2].first, "");
  EXPECT_TRUE(got[3].second);
  EXPECT_EQ(got[3].first.size(), kPasswdFileLineBytesMax);
  EXPECT_EQ(got[4].first, "last");
  EXPECT_FALSE(got[4].second);
}

}  // namespace
}  // namespace posthaste::auth
