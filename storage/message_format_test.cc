#include "storage/message_format.h"

#include <string>

#include "gtest/gtest.h"
#include "storage/store_error.h"

namespace posthaste::storage {
namespace {

using std::string_literals::operator""s;

TEST(NormalizeTest, CrlfMessageIsUnchanged) {
  const std::string raw = "Subject: hi\r\n\r\nbody\r\n";
  NormalizedMessage m = NormalizeForStorage(raw);
  EXPECT_EQ(m.stored, raw);
  EXPECT_EQ(m.pop3_size, raw.size());
  EXPECT_EQ(m.header_length, std::string("Subject: hi\r\n\r\n").size());
}

TEST(NormalizeTest, BareLfBecomesCrlf) {
  NormalizedMessage m = NormalizeForStorage("A: b\n\nline1\nline2\n");
  EXPECT_EQ(m.stored, "A: b\r\n\r\nline1\r\nline2\r\n");
  EXPECT_EQ(m.pop3_size, m.stored.size());
  EXPECT_EQ(m.header_length, 8u);
}

TEST(NormalizeTest, BareCrBecomesCrlf) {
  NormalizedMessage m = NormalizeForStorage("A: b\r\rx\ry\r\n");
  EXPECT_EQ(m.stored, "A: b\r\n\r\nx\r\ny\r\n");
  EXPECT_EQ(m.pop3_size, m.stored.size());
  EXPECT_EQ(m.header_length, 8u);
}

TEST(NormalizeTest, MixedEndingsAndCrLfOrder) {
  // "\n\r" is LF then CR: two line breaks, not one.
  NormalizedMessage m = NormalizeForStorage("a\n\rb\r\n");
  EXPECT_EQ(m.stored, "a\r\n\r\nb\r\n");
}

TEST(NormalizeTest, FinalCrlfAdded) {
  NormalizedMessage m = NormalizeForStorage("A: b\r\n\r\nno newline");
  EXPECT_EQ(m.stored, "A: b\r\n\r\nno newline\r\n");
  EXPECT_EQ(m.pop3_size, m.stored.size());
}

TEST(NormalizeTest, EmptyMessageBecomesOneEmptyLine) {
  NormalizedMessage m = NormalizeForStorage("");
  EXPECT_EQ(m.stored, "\r\n");
  EXPECT_EQ(m.pop3_size, 2u);
}

TEST(NormalizeTest, DotStuffingNotCountedInPop3Size) {
  const std::string raw = "Subject: dots\r\n\r\n.hidden\r\n..two\r\n.\r\nend.\r\n.";
  NormalizedMessage m = NormalizeForStorage(raw);
  EXPECT_EQ(m.stored, "Subject: dots\r\n\r\n..hidden\r\n...two\r\n..\r\nend.\r\n..\r\n");
  // POP3 size: the CRLF form without stuffing: raw plus the added final CRLF.
  EXPECT_EQ(m.pop3_size, raw.size() + 2);
  EXPECT_EQ(m.stored.size(), m.pop3_size + 4);
}

TEST(NormalizeTest, DotStuffingAfterBareLf) {
  NormalizedMessage m = NormalizeForStorage("a\n.b\n");
  EXPECT_EQ(m.stored, "a\r\n..b\r\n");
  EXPECT_EQ(m.pop3_size, 7u);
}

TEST(NormalizeTest, LeadingDotOnFirstLine) {
  NormalizedMessage m = NormalizeForStorage(".x");
  EXPECT_EQ(m.stored, "..x\r\n");
  EXPECT_EQ(m.pop3_size, 4u);
}

TEST(NormalizeTest, NulAndEightBitPassThrough) {
  const std::string raw = "Subject: caf\xc3\xa9\r\n\r\na\0b\xff\x80\r\n"s;
  NormalizedMessage m = NormalizeForStorage(raw);
  EXPECT_EQ(m.stored, raw);
  EXPECT_EQ(m.pop3_size, raw.size());
}

TEST(NormalizeTest, LongLinesStoredAsIs) {
  const std::string long_line(5000, 'x');
  const std::string raw = "A: b\r\n\r\n" + long_line + "\r\n";
  NormalizedMessage m = NormalizeForStorage(raw);
  EXPECT_EQ(m.stored, raw);
}

TEST(NormalizeTest, HeaderLengthWithoutBody) {
  NormalizedMessage m = NormalizeForStorage("A: b\nC: d\n");
  EXPECT_EQ(m.stored, "A: b\r\nC: d\r\n");
  EXPECT_EQ(m.header_length, m.stored.size());
}

TEST(NormalizeTest, HeaderLengthWithEmptyBody) {
  NormalizedMessage m = NormalizeForStorage("A: b\n\n");
  EXPECT_EQ(m.header_length, 8u);
  EXPECT_EQ(m.stored.size(), 8u);
}

TEST(NormalizeTest, HeaderLengthCountsStuffedDots) {
  NormalizedMessage m = NormalizeForStorage(".A: b\r\n\r\nx\r\n");
  EXPECT_EQ(m.header_length, std::string("..A: b\r\n\r\n").size());
}

TEST(NormalizeTest, DotStuffedCrlfNeverContainsTerminator) {
  // Whatever the input, the stored form never contains CRLF "." CRLF.
  const std::string raw = "x\r\n.\r\n.\n.\r..\r\n";
  NormalizedMessage m = NormalizeForStorage(raw);
  EXPECT_EQ(("\r\n" + m.stored).find("\r\n.\r\n"), std::string::npos);
}

// Every stored form is wire form, with the POP3 size and header length normalising reported.
TEST(WireFormTest, AcceptsEveryStoredFormWithItsSizes) {
  const std::string inputs[] = {
      "",
      "Subject: hi\r\n\r\nbody\r\n",
      "A: b\n\nline1\nline2\n",
      "A: b\r\rx\ry\r\n",
      "a\n\rb\r\n",
      "Subject: dots\r\n\r\n.hidden\r\n..two\r\n.\r\nend.\r\n.",
      ".A: b\r\n\r\nx\r\n",
      "x\r\n.\r\n.\n.\r..\r\n",
      "A: b\nC: d\n",
      "\r\n\r\n\r\n",
      "Subject: caf\xc3\xa9\r\n\r\na\0b\xff\x80\r\n"s,
  };
  for (const std::string& input : inputs) {
    SCOPED_TRACE(::testing::PrintToString(input));
    const NormalizedMessage m = NormalizeForStorage(input);
    const absl::StatusOr<WireFormInfo> info = CheckWireForm(m.stored);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->pop3_size, m.pop3_size);
    EXPECT_EQ(info->header_length, m.header_length);
  }
}

TEST(WireFormTest, RefusesWhatIsNotWireFormNamingTheLine) {
  const struct {
    std::string wire;
    std::string why;
  } kCases[] = {
      {"", "must end in CRLF"},
      {"no line end", "must end in CRLF"},
      {"a\r\nb\n", "must end in CRLF"},
      {"a\r", "must end in CRLF"},
      {"a\nb\r\n", "line 1 ends in a bare LF"},
      {"a\r\n\n\r\n", "line 2 ends in a bare LF"},
      {"a\rb\r\n", "line 1 holds a bare CR"},
      {"a\r\nb\r\r\n", "line 2 holds a bare CR"},
      {".x\r\n", "line 1 begins with an unstuffed '.'"},
      {"a\r\n.\r\nb\r\n", "line 2 begins with an unstuffed '.'"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(::testing::PrintToString(c.wire));
    const absl::StatusOr<WireFormInfo> info = CheckWireForm(c.wire);
    ASSERT_FALSE(info.ok());
    EXPECT_EQ(ErrorOf(info), StoreError::kNotWireForm);
    EXPECT_NE(info.status().message().find(c.why), absl::string_view::npos) << info.status();
  }
}

TEST(WireFormTest, StuffingIsNotCountedAndTheFirstEmptyLineEndsTheHeaders) {
  const absl::StatusOr<WireFormInfo> info = CheckWireForm("..A\r\n\r\n...\r\n\r\nz\r\n");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->pop3_size, 17u - 2u);
  EXPECT_EQ(info->header_length, 7u);
  EXPECT_EQ(CheckWireForm("..\r\n")->header_length, 4u);  // no empty line: all of it
}

TEST(AddressTest, DisplayKeepsTheLocalPartsCaseCanonicalFoldsBoth) {
  auto parsed = ParseAddress("John.Doe@Example.COM");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->display, "John.Doe@example.com");
  EXPECT_EQ(parsed->canonical, "john.doe@example.com");
  EXPECT_EQ(*CanonicalAddress("John.Doe@Example.COM"), "john.doe@example.com");
}

TEST(AddressTest, CaseVariantsShareOneCanonicalForm) {
  for (const char* variant : {"alice@t.test", "ALICE@T.TEST", "Alice@t.Test", "aLiCe@T.test"}) {
    EXPECT_EQ(*CanonicalAddress(variant), "alice@t.test") << variant;
  }
  // Only ASCII letters fold: other printable characters are kept as they are.
  EXPECT_EQ(*CanonicalAddress("O'Neil+Tag_X{1}@X.IO"), "o'neil+tag_x{1}@x.io");
  EXPECT_NE(*CanonicalAddress("a-b@x.io"), *CanonicalAddress("a_b@x.io"));
}

TEST(AddressTest, RejectsMalformed) {
  for (const char* bad :
       {"", "nodomain", "@example.com", "user@", "a@b@c", "us er@x.com", "user@exa mple.com",
        "user@-x.com", "user@x-.com", "user@x..com", "user@.x.com", "user@x.com.", "u<s>@x.com",
        ".user@x.com", "us..er@x.com", "user@x_y.com", "user\x01@x.com"}) {
    auto r = ParseAddress(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_FALSE(ParseAddress(std::string(65, 'a') + "@x.com").ok());
  EXPECT_FALSE(ParseAddress("a@" + std::string(64, 'b') + ".com").ok());
}

TEST(AddressTest, AcceptsCommonForms) {
  for (const char* good : {"a@b", "first.last+tag@sub.example.org", "x_y-z@a1.b2", "o'neil@x.io"}) {
    EXPECT_TRUE(ParseAddress(good).ok()) << good;
  }
}

TEST(UidlTest, Rules) {
  EXPECT_TRUE(ValidateUidl("a").ok());
  EXPECT_TRUE(ValidateUidl(std::string(70, '~')).ok());
  EXPECT_TRUE(ValidateUidl("!").ok());
  EXPECT_FALSE(ValidateUidl("").ok());
  EXPECT_FALSE(ValidateUidl(std::string(71, 'a')).ok());
  EXPECT_FALSE(ValidateUidl("has space").ok());
  EXPECT_FALSE(ValidateUidl("tab\t").ok());
  EXPECT_FALSE(ValidateUidl("del\x7f").ok());
  EXPECT_FALSE(ValidateUidl("eight\x80").ok());
}

}  // namespace
}  // namespace posthaste::storage
