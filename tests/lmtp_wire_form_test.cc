// The LMTP session hands storage the message the reference in tests/lmtp_handover.h describes,
// for fixed messages and for many random ones fed in random pieces.
#include <cstdint>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "tests/lmtp_handover.h"

namespace posthaste::tests {
namespace {

using std::string_literals::operator""s;

// Message bytes built from the pieces DATA framing and dot-stuffing care about.
std::string RandomMessage(std::mt19937* rng) {
  static const std::string kPieces[] = {
      "\r\n", "\r\n", "\r\n.", "..", ".", "\n", "\r", "\r\r\n", "\n\r", "x", "yz", " ", "\0"s,
  };
  std::uniform_int_distribution<int> count(0, 40);
  std::uniform_int_distribution<size_t> pick(0, std::size(kPieces) - 1);
  std::string message;
  for (int n = count(*rng); n > 0; --n) message += kPieces[pick(*rng)];
  return message;
}

void ExpectHandover(const std::string& data, uint32_t seed) {
  SCOPED_TRACE(::testing::PrintToString(data) + " seed " + std::to_string(seed));
  const LmtpHandover handover = RunLmtpHandover(data, seed);
  ASSERT_TRUE(handover.delivered_once);
  EXPECT_EQ(handover.delivered, handover.unstuffed);
}

TEST(LmtpHandoverTest, FixedMessages) {
  const std::string kMessages[] = {
      "",
      "Subject: x\r\n\r\nbody",
      "..\r\n..leading\r\n...\r\nmid.dle.\r\n. x",
      "a\nb\r\nbare\rcr\r\n..\n.",
      "x\r\n.\r\nafter an early end",
      ".\r\n",
      "\r.\r\n\n.\n\r\n.\r",
      "a\r",
      "\r\r\r\n\n\n",
      "Subject: nul\r\n\r\na\0b\xff"s,
  };
  for (const std::string& message : kMessages) {
    for (uint32_t seed : {1u, 2u, 0x10001u, 0x12345u}) ExpectHandover(message, seed);
  }
}

TEST(LmtpHandoverTest, RandomMessagesInRandomPieces) {
  std::mt19937 rng(14);
  for (int i = 0; i < 20000; ++i) ExpectHandover(RandomMessage(&rng), static_cast<uint32_t>(rng()));
}

}  // namespace
}  // namespace posthaste::tests
