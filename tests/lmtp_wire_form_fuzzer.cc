// libFuzzer target, differential: the LMTP session's wire-form hand-over against the path it
// replaced (the session unstuffed DATA, tests/lmtp_handover.h's reference, and storage
// normalised it). Input: two bytes of seed (piece sizes, Return-Path on or off), then message
// bytes, where marker bytes 0xF0.. expand to the sequences DATA framing and dot-stuffing turn on
// (so short inputs reach them). PH_CHECK aborts on a finding:
//   - the session delivers exactly once;
//   - the delivered bytes are what storage stored on the old path, NormalizeForStorage of the
//     unstuffed message, byte for byte;
//   - storage's wire-form check accepts them with that path's POP3 size and header length.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/check.h"
#include "storage/message_format.h"
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
  const posthaste::storage::NormalizedMessage old_path =
      posthaste::storage::NormalizeForStorage(handover.unstuffed);
  PH_CHECK(handover.delivered == old_path.stored);
  const auto checked = posthaste::storage::CheckWireForm(handover.delivered);
  PH_CHECK(checked.ok() && checked->pop3_size == old_path.pop3_size &&
           checked->header_length == old_path.header_length);
  return 0;
}
