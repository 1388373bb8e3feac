#include "base/utf8.h"

#include <string>

#include "gtest/gtest.h"

namespace posthaste {
namespace {

TEST(IsValidUtf8Test, AcceptsWellFormedText) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("J\xC3\xBCrgen"));         // U+00FC
  EXPECT_TRUE(IsValidUtf8("\xE2\x85\xA8"));          // U+2168
  EXPECT_TRUE(IsValidUtf8("\xED\x9F\xBF"));          // U+D7FF, below the surrogates
  EXPECT_TRUE(IsValidUtf8("\xEE\x80\x80"));          // U+E000, above them
  EXPECT_TRUE(IsValidUtf8("\xF0\x9F\x94\x92"));      // U+1F512
  EXPECT_TRUE(IsValidUtf8("\xF4\x8F\xBF\xBF"));      // U+10FFFF
  EXPECT_TRUE(IsValidUtf8(std::string("a\0b", 3)));  // NUL is a code point
}

TEST(IsValidUtf8Test, RefusesMalformedText) {
  EXPECT_FALSE(IsValidUtf8("\x80"));              // a lone continuation octet
  EXPECT_FALSE(IsValidUtf8("\xC3"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xC3\x28"));          // bad continuation
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xE0\x80\xAF"));      // overlong, three octets
  EXPECT_FALSE(IsValidUtf8("\xF0\x80\x80\xAF"));  // overlong, four octets
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // U+D800, a surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xF5\x80\x80\x80"));
  EXPECT_FALSE(IsValidUtf8("\xFF"));
  EXPECT_FALSE(IsValidUtf8("caf\xE9"));  // Latin-1, not UTF-8
}

TEST(IsAsciiTest, ClassifiesOctets) {
  EXPECT_TRUE(IsAscii("user@example.test"));
  EXPECT_FALSE(IsAscii("J\xC3\xBCrgen"));
}

}  // namespace
}  // namespace posthaste
