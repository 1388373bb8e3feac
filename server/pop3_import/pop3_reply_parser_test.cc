#include "server/pop3_import/pop3_reply_parser.h"

#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"

namespace posthaste::server::pop3_import {
namespace {

constexpr size_t kFragmentSizes[] = {100000, 1000, 100, 10, 5, 2, 1};

struct Outcome {
  Pop3ReplyParser::Progress progress = Pop3ReplyParser::Progress::kNeedMore;
  Pop3Reply reply;
  size_t consumed = 0;  // of the whole input
  std::string error;
};

// Feeds `input` in fragments of `fragment` bytes until the reply completes or fails.
Outcome Parse(std::string_view input, ReplyShape shape, uint64_t body_bytes_max, size_t fragment) {
  Pop3ReplyParser parser;
  parser.Expect(shape, body_bytes_max);
  Outcome outcome;
  for (size_t at = 0; at < input.size();) {
    const std::string_view piece = input.substr(at, fragment);
    size_t consumed = 0;
    outcome.progress = parser.Feed(piece, &consumed);
    at += consumed;
    outcome.consumed = at;
    if (outcome.progress == Pop3ReplyParser::Progress::kComplete) {
      outcome.reply = parser.TakeReply();
      return outcome;
    }
    if (outcome.progress == Pop3ReplyParser::Progress::kError) {
      outcome.error = std::string(parser.error().message());
      return outcome;
    }
    EXPECT_EQ(consumed, piece.size());
  }
  return outcome;
}

TEST(Pop3ReplyParserTest, StatusLines) {
  for (size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(fragment);
    Outcome ok = Parse("+OK Dovecot ready.\r\n", ReplyShape::kSingleLine, 0, fragment);
    ASSERT_EQ(ok.progress, Pop3ReplyParser::Progress::kComplete);
    EXPECT_TRUE(ok.reply.ok);
    EXPECT_EQ(ok.reply.text, "Dovecot ready.");
    Outcome bare = Parse("+OK\r\n", ReplyShape::kSingleLine, 0, fragment);
    ASSERT_EQ(bare.progress, Pop3ReplyParser::Progress::kComplete);
    EXPECT_EQ(bare.reply.text, "");
    Outcome err = Parse("-ERR [AUTH] no\n", ReplyShape::kSingleLine, 0, fragment);
    ASSERT_EQ(err.progress, Pop3ReplyParser::Progress::kComplete);
    EXPECT_FALSE(err.reply.ok);
    EXPECT_EQ(err.reply.text, "[AUTH] no");
  }
}

TEST(Pop3ReplyParserTest, MultiLineBodyKeepsWireFormAndStopsAtTerminator) {
  const std::string body = "Subject: x\r\n\r\n..leading dot\r\n.\tnot the end\r\n.x\r\nlast\r\n";
  const std::string input = "+OK 42 octets\r\n" + body + ".\r\n+OK next\r\n";
  for (size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(fragment);
    Outcome outcome = Parse(input, ReplyShape::kMultiLine, 1000, fragment);
    ASSERT_EQ(outcome.progress, Pop3ReplyParser::Progress::kComplete);
    EXPECT_EQ(outcome.reply.body, body);
    EXPECT_EQ(outcome.reply.text, "42 octets");
    // What follows the reply is not consumed.
    EXPECT_EQ(input.substr(outcome.consumed), "+OK next\r\n");
  }
}

TEST(Pop3ReplyParserTest, DotInsideALineSplitAcrossFragmentsIsNotATerminator) {
  const std::string input = "+OK\r\nabc.\r\n.\r\n";
  for (size_t fragment : kFragmentSizes) {
    Outcome outcome = Parse(input, ReplyShape::kMultiLine, 100, fragment);
    ASSERT_EQ(outcome.progress, Pop3ReplyParser::Progress::kComplete);
    EXPECT_EQ(outcome.reply.body, "abc.\r\n");
  }
}

TEST(Pop3ReplyParserTest, ErrToMultiLineCommandHasNoBody) {
  for (size_t fragment : kFragmentSizes) {
    Outcome outcome = Parse("-ERR no such message\r\n.\r\n", ReplyShape::kMultiLine, 100, fragment);
    ASSERT_EQ(outcome.progress, Pop3ReplyParser::Progress::kComplete);
    EXPECT_FALSE(outcome.reply.ok);
    EXPECT_EQ(outcome.consumed, 22u);
  }
}

TEST(Pop3ReplyParserTest, EmptyBodyAndBareLfEnds) {
  for (size_t fragment : kFragmentSizes) {
    Outcome empty = Parse("+OK\r\n.\r\n", ReplyShape::kMultiLine, 0, fragment);
    ASSERT_EQ(empty.progress, Pop3ReplyParser::Progress::kComplete);
    EXPECT_EQ(empty.reply.body, "");
    Outcome lf = Parse("+OK\na\n..b\n.\n", ReplyShape::kMultiLine, 100, fragment);
    ASSERT_EQ(lf.progress, Pop3ReplyParser::Progress::kComplete);
    EXPECT_EQ(lf.reply.body, "a\n..b\n");
  }
}

TEST(Pop3ReplyParserTest, BadInputIsAnError) {
  for (size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(fragment);
    EXPECT_EQ(Parse("HTTP/1.1 200 OK\r\n", ReplyShape::kSingleLine, 0, fragment).progress,
              Pop3ReplyParser::Progress::kError);
    EXPECT_EQ(Parse("+OKAY\r\n", ReplyShape::kSingleLine, 0, fragment).progress,
              Pop3ReplyParser::Progress::kError);
    Outcome long_line = Parse(std::string(5000, 'a'), ReplyShape::kSingleLine, 0, fragment);
    EXPECT_EQ(long_line.progress, Pop3ReplyParser::Progress::kError);
    EXPECT_NE(long_line.error.find("status line over"), std::string::npos) << long_line.error;
    Outcome big = Parse("+OK\r\n" + std::string(200, 'x') + "\r\n.\r\n", ReplyShape::kMultiLine,
                        100, fragment);
    EXPECT_EQ(big.progress, Pop3ReplyParser::Progress::kError);
    EXPECT_NE(big.error.find("exceeds 100 octets"), std::string::npos) << big.error;
  }
}

TEST(Pop3ReplyParserTest, BodyOfExactlyTheLimitIsAccepted) {
  const std::string body = std::string(98, 'x') + "\r\n";
  for (size_t fragment : kFragmentSizes) {
    Outcome outcome = Parse("+OK\r\n" + body + ".\r\n", ReplyShape::kMultiLine, 100, fragment);
    ASSERT_EQ(outcome.progress, Pop3ReplyParser::Progress::kComplete) << outcome.error;
    EXPECT_EQ(outcome.reply.body, body);
  }
}

TEST(Pop3ReplyParserTest, BytesNobodyAskedForAreAnError) {
  Pop3ReplyParser parser;
  size_t consumed = 0;
  EXPECT_EQ(parser.Feed("+OK\r\n", &consumed), Pop3ReplyParser::Progress::kError);
}

TEST(UidlListingTest, ParsesAndValidates) {
  auto entries = ParseUidlListing("1 abc\r\n2 00000001.x\r\n10 .dot\r\n");
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 3u);
  EXPECT_EQ((*entries)[1].uidl, "00000001.x");
  EXPECT_EQ((*entries)[2].number, 10u);
  EXPECT_EQ((*entries)[2].uidl, ".dot");  // sent stuffed as "10 .dot", no leading-dot line
  EXPECT_TRUE(ParseUidlListing("").ok());
  EXPECT_FALSE(ParseUidlListing("1 a\r\n1 b\r\n").ok());  // number repeated
  EXPECT_FALSE(ParseUidlListing("1 a\r\n2 a\r\n").ok());  // UIDL repeated
  EXPECT_FALSE(ParseUidlListing("1\r\n").ok());           // no UIDL
  EXPECT_FALSE(ParseUidlListing("x a\r\n").ok());         // no number
  EXPECT_FALSE(ParseUidlListing("+1 a\r\n").ok());        // not digits
  EXPECT_FALSE(ParseUidlListing("1 a b\r\n").ok());       // space in a UIDL
  EXPECT_FALSE(ParseUidlListing("1 " + std::string(71, 'u')).ok());
  EXPECT_TRUE(ParseUidlListing("1 a\r\n2 b\r\n", 2).ok());
  auto too_many = ParseUidlListing("1 a\r\n2 b\r\n3 c\r\n", 2);
  EXPECT_NE(too_many.status().message().find("more than 2 messages"), std::string::npos);
  EXPECT_FALSE(ParseListListing("1 1\r\n2 1\r\n", 1).ok());
  auto repeated = ParseUidlListing("1 same\r\n2 same\r\n");
  EXPECT_NE(repeated.status().message().find("not unique"), std::string::npos);
}

TEST(ListListingTest, ParsesSizes) {
  auto entries = ParseListListing("1 120\r\n2 5 extra\r\n");
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[1].octets, 5u);
  EXPECT_FALSE(ParseListListing("1 -5\r\n").ok());
  EXPECT_FALSE(ParseListListing("1 99999999999999999999999\r\n").ok());
  EXPECT_FALSE(ParseListListing("2 1\r\n1 1\r\n").ok());
}

TEST(UnstuffBodyTest, RemovesOneLeadingDot) {
  EXPECT_EQ(UnstuffBody("..a\r\nb.\r\n...\n"), ".a\r\nb.\r\n..\n");
  EXPECT_EQ(UnstuffBody(""), "");
}

}  // namespace
}  // namespace posthaste::server::pop3_import
