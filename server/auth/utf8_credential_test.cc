#include "server/auth/utf8_credential.h"

#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace posthaste::auth {
namespace {

std::string Prepared(std::string_view text, Utf8CredentialUse use = Utf8CredentialUse::kQuery) {
  absl::StatusOr<std::string> prepared = NormalizeUtf8Credential(text, use);
  EXPECT_TRUE(prepared.ok()) << prepared.status();
  return prepared.ok() ? *prepared : std::string("<refused>");
}

bool Refused(std::string_view text, Utf8CredentialUse use = Utf8CredentialUse::kQuery) {
  absl::StatusOr<std::string> prepared = NormalizeUtf8Credential(text, use);
  return !prepared.ok() && prepared.status().code() == absl::StatusCode::kInvalidArgument;
}

// The examples of RFC 4013 section 3, one by one.
TEST(NormalizeUtf8CredentialTest, Rfc4013Examples) {
  EXPECT_EQ(Prepared("I\xC2\xAD"
                     "X"),
            "IX");                            // SOFT HYPHEN mapped to nothing
  EXPECT_EQ(Prepared("user"), "user");        // no transformation
  EXPECT_EQ(Prepared("USER"), "USER");        // case preserved
  EXPECT_EQ(Prepared("\xC2\xAA"), "a");       // U+00AA, NFKC
  EXPECT_EQ(Prepared("\xE2\x85\xA8"), "IX");  // U+2168 ROMAN NUMERAL NINE, NFKC
  EXPECT_TRUE(Refused("\x07"));               // a control character is prohibited
  EXPECT_TRUE(
      Refused("\xD8\xA7"
              "1"));  // U+0627 then '1': the bidirectional rule
}

TEST(NormalizeUtf8CredentialTest, ComposesAndMapsSpaces) {
  // "pässwörd" typed with combining diaeresis becomes the precomposed form (NFKC), so both
  // spellings meet the same stored hash.
  EXPECT_EQ(Prepared("pa\xCC\x88sswo\xCC\x88rd"), "p\xC3\xA4ssw\xC3\xB6rd");
  EXPECT_EQ(Prepared("p\xC3\xA4ssw\xC3\xB6rd"), "p\xC3\xA4ssw\xC3\xB6rd");
  EXPECT_EQ(Prepared("two\xC2\xA0words"), "two words");         // NO-BREAK SPACE to SPACE
  EXPECT_EQ(Prepared("\xEF\xBC\xA1"), "A");                     // FULLWIDTH A
  EXPECT_EQ(Prepared("\xD8\xA7\xD8\xA8"), "\xD8\xA7\xD8\xA8");  // right-to-left only: fine
}

TEST(NormalizeUtf8CredentialTest, RefusesWhatIsNotUtf8) {
  EXPECT_TRUE(Refused("caf\xE9"));       // Latin-1
  EXPECT_TRUE(Refused("\xED\xA0\x80"));  // a surrogate
  EXPECT_TRUE(Refused("a\x7f"));         // DEL, a prohibited ASCII control
  EXPECT_TRUE(Refused(std::string("a\0b", 3)));
  EXPECT_TRUE(Refused("\xE2\x80\xA8"));  // LINE SEPARATOR, prohibited (C.2.1 of RFC 3454)
}

TEST(NormalizeUtf8CredentialTest, UnassignedAllowedInQueriesOnly) {
  // U+0221 was unassigned in Unicode 3.2, the version stringprep's tables are fixed to.
  EXPECT_EQ(Prepared("x\xC8\xA1", Utf8CredentialUse::kQuery), "x\xC8\xA1");
  EXPECT_TRUE(Refused("x\xC8\xA1", Utf8CredentialUse::kStored));
}

TEST(NormalizeUtf8CredentialTest, ExpandingNormalisationFits) {
  // U+FDFA expands to 18 code points under NFKC.
  const std::string prepared = Prepared("\xEF\xB7\xBA");
  EXPECT_GT(prepared.size(), 18u);
}

TEST(NormalizeUtf8CredentialTest, LongNonAsciiRefusedLongAsciiKept) {
  std::string long_umlauts;
  while (long_umlauts.size() <= kUtf8CredentialBytesMax) long_umlauts += "\xC3\xA4";
  EXPECT_TRUE(Refused(long_umlauts));
  const std::string long_ascii(kUtf8CredentialBytesMax * 2, 'a');
  EXPECT_EQ(Prepared(long_ascii), long_ascii);
}

TEST(NormalizeUtf8CredentialTest, PreparedTextIsStable) {
  for (std::string_view text :
       {"I\xC2\xAD"
        "X",
        "\xE2\x85\xA8", "pa\xCC\x88sswo\xCC\x88rd", "\xEF\xB7\xBA", "two\xC2\xA0words"}) {
    const std::string once = Prepared(text);
    EXPECT_EQ(Prepared(once), once);
  }
}

}  // namespace
}  // namespace posthaste::auth
