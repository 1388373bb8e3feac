#include "base/uidl.h"

#include <cstdint>
#include <cstring>

namespace posthaste {

bool IsUidlCharacters(std::string_view uidl) {
  // Eight bytes at a time (opening a big maildrop checks every UIDL): a byte below 0x21 or
  // above 0x7E sets its high bit in one of the two words (the "has less / has more than n"
  // tests of Bit Twiddling Hacks).
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHighBits = 0x8080808080808080ULL;
  size_t i = 0;
  for (; i + 8 <= uidl.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, uidl.data() + i, 8);
    const uint64_t below = (w - kOnes * 0x21) & ~w & kHighBits;
    const uint64_t above = ((w + kOnes * (127 - 0x7e)) | w) & kHighBits;
    if ((below | above) != 0) return false;
  }
  for (; i < uidl.size(); ++i) {
    const auto u = static_cast<unsigned char>(uidl[i]);
    if (u < 0x21 || u > 0x7e) return false;
  }
  return true;
}

}  // namespace posthaste
