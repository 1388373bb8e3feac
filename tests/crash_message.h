// Deterministic test messages for the crash test: the child delivers CrashMessage(seed) and
// the parent regenerates it from the seed to check the stored bytes. Each message names its
// seed in an "X-Crash-Seed:" header, so any message found in the store can be checked, even
// one whose acknowledgement was lost in the kill. Test-only; thread-safe (pure).
#ifndef POSTHASTE_TESTS_CRASH_MESSAGE_H_
#define POSTHASTE_TESTS_CRASH_MESSAGE_H_

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>

namespace posthaste::testing {

// Covers what normalisation must preserve: lines starting with '.', bare LF and CR, no final
// newline, NUL bytes, 8-bit bytes, lines over 998 octets; sizes from tens of bytes to ~256 KiB.
inline std::string CrashMessage(uint64_t seed) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + 1);
  std::string message = "X-Crash-Seed: " + std::to_string(seed) + "\r\nSubject: crash " +
                        std::to_string(seed) + "\r\n\r\n";
  size_t target;
  switch (rng() % 10) {
    case 0:
      target = 64 * 1024 + rng() % (192 * 1024);
      break;
    case 1:
    case 2:
      target = rng() % 64;
      break;
    default:
      target = 200 + rng() % 8000;
  }
  while (message.size() < target) {
    switch (rng() % 8) {
      case 0:
        message += ".leading dot\r\n";
        break;
      case 1:
        message += "bare lf\n";
        break;
      case 2: {
        static constexpr char kBinary[] = "nul\0byte and \xe9\xff 8-bit\r\n";
        message.append(kBinary, sizeof(kBinary) - 1);
        break;
      }
      case 3:
        message += std::string(1000 + rng() % 500, 'L') + "\r\n";
        break;
      case 4:
        message += "bare cr\r";
        break;
      default:
        for (int i = 0; i < 60; ++i) message.push_back(static_cast<char>('a' + rng() % 26));
        message += "\r\n";
    }
  }
  if (rng() % 4 == 0) message += "no final newline";
  return message;
}

// The seed named by a stored message's X-Crash-Seed header, if any.
inline std::optional<uint64_t> CrashSeedOf(std::string_view stored) {
  constexpr std::string_view kHeader = "X-Crash-Seed: ";
  if (stored.substr(0, kHeader.size()) != kHeader) return std::nullopt;
  uint64_t seed = 0;
  size_t i = kHeader.size();
  if (i >= stored.size() || stored[i] < '0' || stored[i] > '9') return std::nullopt;
  for (; i < stored.size() && stored[i] >= '0' && stored[i] <= '9' && i < 40; ++i) {
    seed = seed * 10 + static_cast<uint64_t>(stored[i] - '0');
  }
  return seed;
}

}  // namespace posthaste::testing

#endif  // POSTHASTE_TESTS_CRASH_MESSAGE_H_
