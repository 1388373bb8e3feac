#include "tools/bench/pop3_response_parser.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace posthaste::bench {
namespace {

// Every case runs with the input whole and cut into fragments of these sizes (0 = whole).
constexpr size_t kFragmentSizes[] = {0, 1000, 100, 10, 5, 2, 1};

struct Parsed {
  std::vector<Pop3Response> responses;
  ParseError error = ParseError::kNone;
};

Parsed FeedInFragments(const std::vector<ResponseShape>& shapes, std::string_view input,
                       size_t fragment) {
  Pop3ResponseParser parser;
  for (ResponseShape shape : shapes) EXPECT_TRUE(parser.Expect(shape));
  Parsed parsed;
  const size_t step = fragment == 0 ? input.size() + 1 : fragment;
  for (size_t at = 0; at < input.size(); at += step) {
    parsed.error = parser.Feed(input.substr(at, step), &parsed.responses);
  }
  return parsed;
}

class ParserTest : public ::testing::TestWithParam<size_t> {
 protected:
  Parsed Run(const std::vector<ResponseShape>& shapes, std::string_view input) {
    return FeedInFragments(shapes, input, GetParam());
  }
};

constexpr ResponseShape kSingle = ResponseShape::kSingleLine;
constexpr ResponseShape kMulti = ResponseShape::kMultiLine;

TEST_P(ParserTest, Greeting) {
  Parsed p = Run({kSingle}, "+OK Dovecot (Debian) ready.\r\n");
  ASSERT_EQ(p.error, ParseError::kNone);
  ASSERT_EQ(p.responses.size(), 1u);
  EXPECT_TRUE(p.responses[0].ok);
  EXPECT_FALSE(p.responses[0].multiline);
  EXPECT_EQ(p.responses[0].text, "Dovecot (Debian) ready.");
}

TEST_P(ParserTest, ErrAndBareOk) {
  Parsed p = Run({kSingle, kSingle}, "-ERR [AUTH] Authentication failed.\r\n+OK\r\n");
  ASSERT_EQ(p.error, ParseError::kNone);
  ASSERT_EQ(p.responses.size(), 2u);
  EXPECT_FALSE(p.responses[0].ok);
  EXPECT_EQ(p.responses[0].text, "[AUTH] Authentication failed.");
  EXPECT_TRUE(p.responses[1].ok);
  EXPECT_EQ(p.responses[1].text, "");
}

TEST_P(ParserTest, MultiLineCountsBytesAndLines) {
  const std::string body = "1 000000010000001a\r\n2 000000020000001a\r\n3 x\r\n";
  Parsed p = Run({kMulti}, "+OK\r\n" + body + ".\r\n");
  ASSERT_EQ(p.error, ParseError::kNone);
  ASSERT_EQ(p.responses.size(), 1u);
  EXPECT_TRUE(p.responses[0].multiline);
  EXPECT_EQ(p.responses[0].body_bytes, body.size());
  EXPECT_EQ(p.responses[0].body_lines, 3u);
}

TEST_P(ParserTest, DotStuffedLinesAreNotTerminators) {
  const std::string body = "Subject: dots\r\n\r\n..\r\n...leading\r\na.\r\n.x\r\nend .\r\n.\r\r\n";
  Parsed p = Run({kMulti, kSingle}, "+OK 99 octets\r\n" + body + ".\r\n+OK bye\r\n");
  ASSERT_EQ(p.error, ParseError::kNone);
  ASSERT_EQ(p.responses.size(), 2u);
  EXPECT_EQ(p.responses[0].text, "99 octets");
  EXPECT_EQ(p.responses[0].body_bytes, body.size());
  EXPECT_EQ(p.responses[0].body_lines, 8u);
  EXPECT_EQ(p.responses[1].text, "bye");
}

TEST_P(ParserTest, EmptyBody) {
  Parsed p = Run({kMulti}, "+OK 0 messages\r\n.\r\n");
  ASSERT_EQ(p.error, ParseError::kNone);
  ASSERT_EQ(p.responses.size(), 1u);
  EXPECT_EQ(p.responses[0].body_bytes, 0u);
  EXPECT_EQ(p.responses[0].body_lines, 0u);
}

TEST_P(ParserTest, ErrToMultiLineCommandHasNoBody) {
  Parsed p = Run({kMulti, kSingle}, "-ERR There's no message 11.\r\n+OK Logging out.\r\n");
  ASSERT_EQ(p.error, ParseError::kNone);
  ASSERT_EQ(p.responses.size(), 2u);
  EXPECT_FALSE(p.responses[0].ok);
  EXPECT_FALSE(p.responses[0].multiline);
  EXPECT_TRUE(p.responses[1].ok);
}

TEST_P(ParserTest, PipelinedSession) {
  std::string input = "+OK ready\r\n+OK\r\n+OK Logged in.\r\n+OK 2 40\r\n";
  input += "+OK\r\n1 a\r\n2 b\r\n.\r\n";
  input += "+OK 20 octets\r\nSubject: 1\r\n\r\nbody1\r\n.\r\n";
  input += "+OK 20 octets\r\nSubject: 2\r\n\r\nbody2\r\n.\r\n";
  input += "+OK Logging out.\r\n";
  Parsed p = Run({kSingle, kSingle, kSingle, kSingle, kMulti, kMulti, kMulti, kSingle}, input);
  ASSERT_EQ(p.error, ParseError::kNone);
  ASSERT_EQ(p.responses.size(), 8u);
  std::optional<StatReply> stat = ParseStatText(p.responses[3].text);
  ASSERT_TRUE(stat.has_value());
  EXPECT_EQ(stat->messages, 2u);
  EXPECT_EQ(p.responses[4].body_lines, 2u);
  EXPECT_EQ(p.responses[5].body_bytes, std::string("Subject: 1\r\n\r\nbody1\r\n").size());
  EXPECT_EQ(p.responses[6].body_lines, 3u);
  EXPECT_EQ(p.responses[7].text, "Logging out.");
}

TEST_P(ParserTest, PartialResponseStaysPending) {
  Parsed p = Run({kMulti}, "+OK\r\nline\r\n.");
  EXPECT_EQ(p.error, ParseError::kNone);
  EXPECT_TRUE(p.responses.empty());
}

TEST_P(ParserTest, BadStatusLineIsStickyError) {
  Pop3ResponseParser parser;
  ASSERT_TRUE(parser.Expect(kSingle));
  ASSERT_TRUE(parser.Expect(kSingle));
  std::vector<Pop3Response> out;
  const std::string input = "* OK IMAP4rev1\r\n+OK\r\n";
  const size_t step = GetParam() == 0 ? input.size() : GetParam();
  ParseError error = ParseError::kNone;
  for (size_t at = 0; at < input.size(); at += step) {
    error = parser.Feed(std::string_view(input).substr(at, step), &out);
  }
  EXPECT_EQ(error, ParseError::kBadStatus);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(parser.Feed("+OK\r\n", &out), ParseError::kBadStatus);
  EXPECT_TRUE(out.empty());
}

TEST_P(ParserTest, UnexpectedData) {
  Parsed p = Run({kSingle}, "+OK\r\n+OK surprise\r\n");
  EXPECT_EQ(p.error, ParseError::kUnexpectedData);
  EXPECT_EQ(p.responses.size(), 1u);
}

TEST_P(ParserTest, OverLongStatusLine) {
  std::string input = "+OK " + std::string(Pop3ResponseParser::kStatusLineBytesMax, 'x') + "\r\n";
  Parsed p = Run({kSingle}, input);
  EXPECT_EQ(p.error, ParseError::kLineTooLong);
  EXPECT_TRUE(p.responses.empty());
}

TEST_P(ParserTest, LongStatusTextIsTruncatedNotRejected) {
  const std::string text(1000, 'y');
  Parsed p = Run({kSingle}, "-ERR " + text + "\r\n");
  ASSERT_EQ(p.error, ParseError::kNone);
  ASSERT_EQ(p.responses.size(), 1u);
  EXPECT_EQ(p.responses[0].text, text.substr(0, Pop3ResponseParser::kStatusBytesKept));
}

TEST_P(ParserTest, OneMebibyteBody) {
  std::string body;
  const std::string line = std::string(76, 'q') + "\r\n";
  while (body.size() + line.size() <= (1u << 20)) body += line;
  Parsed p = Run({kMulti}, "+OK " + std::to_string(body.size()) + " octets\r\n" + body + ".\r\n");
  ASSERT_EQ(p.error, ParseError::kNone);
  ASSERT_EQ(p.responses.size(), 1u);
  EXPECT_EQ(p.responses[0].body_bytes, body.size());
  EXPECT_EQ(p.responses[0].body_lines, body.size() / line.size());
}

INSTANTIATE_TEST_SUITE_P(Fragments, ParserTest, ::testing::ValuesIn(kFragmentSizes),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return info.param == 0 ? std::string("whole")
                                                  : "by" + std::to_string(info.param);
                         });

TEST(ParserLimitsTest, ExpectIsBounded) {
  Pop3ResponseParser parser;
  for (size_t i = 0; i < Pop3ResponseParser::kExpectedMax; ++i) {
    ASSERT_TRUE(parser.Expect(ResponseShape::kSingleLine));
  }
  EXPECT_FALSE(parser.Expect(ResponseShape::kSingleLine));
  EXPECT_EQ(parser.outstanding(), Pop3ResponseParser::kExpectedMax);
  std::vector<Pop3Response> out;
  EXPECT_EQ(parser.Feed("+OK\r\n", &out), ParseError::kNone);
  EXPECT_TRUE(parser.Expect(ResponseShape::kSingleLine));
}

TEST(StatTextTest, Parses) {
  std::optional<StatReply> stat = ParseStatText("10 204800");
  ASSERT_TRUE(stat.has_value());
  EXPECT_EQ(stat->messages, 10u);
  EXPECT_EQ(stat->octets, 204800u);
  EXPECT_TRUE(ParseStatText("3 100 extra").has_value());
  EXPECT_FALSE(ParseStatText("").has_value());
  EXPECT_FALSE(ParseStatText("10").has_value());
  EXPECT_FALSE(ParseStatText("x 10").has_value());
  EXPECT_FALSE(ParseStatText("1 99999999999999999999").has_value());
}

}  // namespace
}  // namespace posthaste::bench
