#include <cstring>
#include <string>

#include "absl/status/statusor.h"
#include "base/check.h"
#include "base/log.h"
#include "base/short_copy.h"
#include "base/status_macros.h"
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

}  // namespace
}  // namespace posthaste
