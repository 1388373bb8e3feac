#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "base/check.h"
#include "base/log.h"
#include "base/short_copy.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "base/uidl.h"
#include "gtest/gtest.h"

namespace posthaste {
namespace {

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  PH_ASSIGN_OR_RETURN(int half, Half(x));
  PH_ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

absl::Status CheckEven(int x) {
  PH_RETURN_IF_ERROR(Half(x).status());
  return absl::OkStatus();
}

TEST(ParseDecimalTest, AcceptsDigitsUpToUint64Max) {
  EXPECT_EQ(ParseDecimalU64("0"), std::optional<uint64_t>(0));
  EXPECT_EQ(ParseDecimalU64("007"), std::optional<uint64_t>(7));
  EXPECT_EQ(ParseDecimalU64("1234567890"), std::optional<uint64_t>(1234567890));
  EXPECT_EQ(ParseDecimalU64("18446744073709551615"), std::optional<uint64_t>(UINT64_MAX));
  EXPECT_EQ(ParseDecimalU64("00000000000000000000018446744073709551615"),
            std::optional<uint64_t>(UINT64_MAX));
}

TEST(ParseDecimalTest, RefusesOverflowAndAnythingButDigits) {
  for (const char* bad : {"", "18446744073709551616", "99999999999999999999", "-1", "+1", " 1",
                          "1 ", "1a", "0x10", "1_000", "1.0", "1e3", "\xd9\xa1"}) {
    EXPECT_EQ(ParseDecimalU64(bad), std::nullopt) << bad;
  }
  EXPECT_EQ(ParseDecimalU64(std::string_view("1\0", 2)), std::nullopt);
}

TEST(ParseDecimalTest, AtMostRefusesValuesAboveTheBound) {
  EXPECT_EQ(ParseDecimalAtMost("65535", 65535), std::optional<uint64_t>(65535));
  EXPECT_EQ(ParseDecimalAtMost("65536", 65535), std::nullopt);
  EXPECT_EQ(ParseDecimalAtMost("0", 0), std::optional<uint64_t>(0));
  EXPECT_EQ(ParseDecimalAtMost("4294967295", UINT32_MAX), std::optional<uint64_t>(UINT32_MAX));
  EXPECT_EQ(ParseDecimalAtMost("4294967296", UINT32_MAX), std::nullopt);
  EXPECT_EQ(ParseDecimalAtMost("x", UINT64_MAX), std::nullopt);
}

TEST(ParseDecimalTest, IsDecimalDigits) {
  EXPECT_TRUE(IsDecimalDigits("0123456789"));
  EXPECT_FALSE(IsDecimalDigits(""));
  EXPECT_FALSE(IsDecimalDigits("12/"));
  EXPECT_FALSE(IsDecimalDigits(":12"));
}

// IsValidUidl checks eight bytes at a time: every byte value at every position (in the words
// and in the tail) must give the byte-by-byte answer.
TEST(UidlTest, CheckAgreesWithTheByteRuleAtEveryPosition) {
  for (size_t length : {1u, 7u, 8u, 9u, 17u, 70u}) {
    for (size_t pos = 0; pos < length; ++pos) {
      for (int value = 0; value < 256; ++value) {
        std::string uidl(length, 'A');
        uidl[pos] = static_cast<char>(value);
        const bool expected = value >= 0x21 && value <= 0x7e;
        ASSERT_EQ(IsValidUidl(uidl), expected)
            << "length " << length << " position " << pos << " byte " << value;
      }
    }
  }
}

TEST(UidlTest, LengthIsOneToSeventyOctets) {
  EXPECT_FALSE(IsValidUidl(""));
  EXPECT_TRUE(IsValidUidl("a"));
  EXPECT_TRUE(IsValidUidl(std::string(kUidlBytesMax, '~')));
  EXPECT_FALSE(IsValidUidl(std::string(kUidlBytesMax + 1, 'a')));
  EXPECT_TRUE(IsUidlCharacters(""));
}

TEST(CopyShortTest, CopiesEveryLengthExactlyAndNothingMore) {
  char src[80];
  for (size_t i = 0; i < sizeof(src); ++i) src[i] = static_cast<char>('A' + i % 50);
  for (size_t n = 0; n <= 72; ++n) {
    char dst[80];
    std::memset(dst, '#', sizeof(dst));
    CopyShort(dst, src, n);
    EXPECT_EQ(std::string(dst, n), std::string(src, n)) << n;
    for (size_t i = n; i < sizeof(dst); ++i) ASSERT_EQ(dst[i], '#') << n << " wrote past the end";
  }
}

TEST(StatusMacrosTest, PropagatesErrorsAndValues) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckEven(4).ok());
  EXPECT_EQ(CheckEven(5).message(), "odd");
}

TEST(CheckTest, BugCountsAndRecovers) {
  uint64_t before = BugCount();
  bool fired = PH_BUG(1 + 1 == 2, "arithmetic");
  EXPECT_TRUE(fired);
  EXPECT_FALSE(PH_BUG(false, "never"));
  EXPECT_EQ(BugCount(), before + 1);
}

TEST(CheckDeathTest, CheckAborts) { EXPECT_DEATH(PH_CHECK(1 == 2), "check failed"); }

TEST(LogTest, JsonEscapesAndTextQuotes) {
  std::string json = FormatLogLine(LogLevel::kInfo, "login", {{"user", "a\"b\n"}},
                                   LogFormat::kJson);
  EXPECT_NE(json.find("\"user\":\"a\\\"b\\n\""), std::string::npos) << json;
  EXPECT_EQ(json.back(), '\n');
  std::string text = FormatLogLine(LogLevel::kWarning, "x", {{"k", "two words"}, {"n", "5"}},
                                   LogFormat::kText);
  EXPECT_NE(text.find("warning x k=\"two words\" n=5\n"), std::string::npos) << text;
}

TEST(FlagsTest, NameAndValueInOneArgumentOrTwo) {
  const std::vector<std::string> args = {"--data_dir=/x", "--shards", "4", "--empty=", "--last"};
  size_t i = 0;
  EXPECT_EQ(FlagName(args[i]), "data_dir");
  EXPECT_EQ(*FlagValue(args, &i), "/x");
  EXPECT_EQ(i, 0u);
  i = 1;
  EXPECT_EQ(FlagName(args[i]), "shards");
  EXPECT_EQ(*FlagValue(args, &i), "4");
  EXPECT_EQ(i, 2u);  // the value was the next argument
  i = 3;
  EXPECT_EQ(*FlagValue(args, &i), "");
  i = 4;
  absl::StatusOr<std::string> missing = FlagValue(args, &i);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(), "flag --last needs a value");
}

}  // namespace
}  // namespace posthaste
