// libFuzzer target: the LMTP session's hand-over of a delivered message against the reference
// in tests/lmtp_handover.h. Input: two bytes of seed (piece sizes, Return-Path on or off), then
// message bytes, where marker bytes 0xF0.. expand to the sequences DATA framing and dot-stuffing
// turn on (so short inputs reach them). PH_CHECK aborts on a finding:
//   - the session delivers exactly once, and the delivered bytes are the reference's.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/check.h"
#include "tests/lmtp_handover.h"

namespace {

constexpr std::string_view kTokens[] = {
    "\r\n", "\r\n.", "..",     "\n",   "\r",       ".\r", "\r\n..",  "\n.",
    "\r.",  ".\r\n", "\r\r\n", "\n\r", "\r\n\r\n", ".",   "\r\n.\n", "\n.\r\n",
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  uint32_t seed = data[0] | (uint32_t{data[1]} << 8);
  seed |= (seed & 0x100u) << 8;  // bit 16: no Return-Path
  std::string message;
  for (size_t i = 2; i < size && message.size() < 16384; ++i) {
    const uint8_t b = data[i];
    if (b >= 0xF0) {
      message += kTokens[b - 0xF0];
    } else {
      message.push_back(static_cast<char>(b));
    }
  }
  const posthaste::tests::LmtpHandover handover = posthaste::tests::RunLmtpHandover(message, seed);
  PH_CHECK(handover.delivered_once);
  PH_CHECK(handover.delivered == handover.unstuffed);
  return 0;
}
