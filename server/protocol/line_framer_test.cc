#include "server/protocol/line_framer.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace posthaste::protocol {
namespace {

// Feeds `input` in pieces of `fragment` bytes, framing after each piece as a session does, and
// returns the lines seen, with "<overflow>" for each over-long line and "<bare-lf>" before a
// line that ended in a bare LF.
std::vector<std::string> FrameAll(std::string_view input, size_t fragment, size_t limit) {
  LineFramer framer;
  std::vector<std::string> lines;
  for (size_t pos = 0; pos < input.size(); pos += fragment) {
    framer.Append(input.substr(pos, fragment));
    while (true) {
      std::string_view line;
      size_t raw_bytes = 0;
      const LineFramer::Status status = framer.Next(limit, &line, &raw_bytes);
      if (status == LineFramer::Status::kNeedMore) break;
      if (status == LineFramer::Status::kOverflow) {
        lines.push_back("<overflow>");
      } else if (status == LineFramer::Status::kBareLineFeed) {
        lines.push_back("<bare-lf>" + std::string(line));
      } else {
        lines.push_back(std::string(line));
      }
    }
    framer.Compact();
  }
  return lines;
}

constexpr size_t kFragmentSizes[] = {100000, 1000, 100, 10, 5, 2, 1};

TEST(LineFramerTest, OnlyCrlfEndsALineAtEveryFragmentSize) {
  const std::string input = "USER a\r\nPASS b c\nNOOP\r\n\r\nQUIT\r\npartial";
  for (size_t fragment : kFragmentSizes) {
    EXPECT_EQ(FrameAll(input, fragment, 255),
              (std::vector<std::string>{"USER a", "<bare-lf>PASS b c", "NOOP", "", "QUIT"}))
        << "fragment " << fragment;
  }
}

TEST(LineFramerTest, BareCrStaysInTheLine) {
  for (size_t fragment : kFragmentSizes) {
    EXPECT_EQ(FrameAll("NOOP\rQUIT\r\n\r\r\n", fragment, 255),
              (std::vector<std::string>{"NOOP\rQUIT", "\r"}))
        << "fragment " << fragment;
  }
}

TEST(LineFramerTest, LoneLfIsABareLineFeed) {
  EXPECT_EQ(FrameAll("\n.\nMAIL\r\n", 100, 255),
            (std::vector<std::string>{"<bare-lf>", "<bare-lf>.", "MAIL"}));
}

TEST(LineFramerTest, OverlongLineReportedOnceThenResynchronised) {
  const std::string input = "NOOP\r\n" + std::string(1000, 'x') + "\r\nSTAT\r\n";
  for (size_t fragment : kFragmentSizes) {
    EXPECT_EQ(FrameAll(input, fragment, 255),
              (std::vector<std::string>{"NOOP", "<overflow>", "STAT"}))
        << "fragment " << fragment;
  }
}

TEST(LineFramerTest, OverlongLineResynchronisesOnlyAtCrlf) {
  // A bare LF inside the discarded part, and one just past the limit, are not line ends: a
  // CRLF-only splitter in front of us sees one line, and so must we.
  const std::string input =
      std::string(300, 'x') + "\nMAIL FROM:<x>\n" + std::string(300, 'y') + "\r\nSTAT\r\n";
  for (size_t fragment : kFragmentSizes) {
    EXPECT_EQ(FrameAll(input, fragment, 255), (std::vector<std::string>{"<overflow>", "STAT"}))
        << "fragment " << fragment;
  }
  const std::string lf_past_limit = std::string(10, 'x') + "\nQUIT\r\nNOOP\r\n";
  for (size_t fragment : kFragmentSizes) {
    EXPECT_EQ(FrameAll(lf_past_limit, fragment, 8),
              (std::vector<std::string>{"<overflow>", "NOOP"}))
        << "fragment " << fragment;
  }
}

TEST(LineFramerTest, OverlongLineEndingInCrlfSplitAcrossPieces) {
  // The discarded line's CR arrives in one piece and its LF in the next.
  const std::string input = std::string(20, 'x') + "\r\nOK\r\n";
  for (size_t fragment : kFragmentSizes) {
    EXPECT_EQ(FrameAll(input, fragment, 8), (std::vector<std::string>{"<overflow>", "OK"}))
        << "fragment " << fragment;
  }
}

TEST(LineFramerTest, LimitCountsTheLineEnding) {
  EXPECT_EQ(FrameAll("abc\r\n", 100, 5), (std::vector<std::string>{"abc"}));
  EXPECT_EQ(FrameAll("abcd\r\nok\r\n", 100, 5), (std::vector<std::string>{"<overflow>", "ok"}));
}

TEST(LineFramerTest, ConsumeAndDiscardUnparsed) {
  LineFramer framer;
  framer.Append("DATA\r\nbody bytes\r\n");
  std::string_view line;
  size_t raw_bytes = 0;
  ASSERT_EQ(framer.Next(512, &line, &raw_bytes), LineFramer::Status::kLine);
  EXPECT_EQ(line, "DATA");
  EXPECT_EQ(raw_bytes, 6u);
  EXPECT_EQ(framer.unparsed(), "body bytes\r\n");
  framer.Consume(5);
  EXPECT_EQ(framer.unparsed(), "bytes\r\n");
  EXPECT_EQ(framer.DiscardUnparsed(), 7u);
  EXPECT_EQ(framer.unparsed_bytes(), 0u);
  EXPECT_EQ(framer.Next(512, &line, &raw_bytes), LineFramer::Status::kNeedMore);
}

TEST(LineFramerTest, CompactKeepsUnparsedBytes) {
  LineFramer framer;
  framer.Append(std::string(5000, 'a') + "\r\nrest");
  std::string_view line;
  size_t raw_bytes = 0;
  ASSERT_EQ(framer.Next(10000, &line, &raw_bytes), LineFramer::Status::kLine);
  framer.Compact();
  EXPECT_EQ(framer.unparsed(), "rest");
  framer.Append("\r\n");
  ASSERT_EQ(framer.Next(10000, &line, &raw_bytes), LineFramer::Status::kLine);
  EXPECT_EQ(line, "rest");
}

}  // namespace
}  // namespace posthaste::protocol
