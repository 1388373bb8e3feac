// Copying short strings (UIDLs: at most 70 octets) on hot paths.
#ifndef POSTHASTE_BASE_SHORT_COPY_H_
#define POSTHASTE_BASE_SHORT_COPY_H_

#include <cstddef>
#include <cstring>

namespace posthaste {

// Copies n bytes with fixed-size moves, which the compiler turns into plain loads and stores.
// For the few dozen bytes of a UIDL this beats memcpy's size dispatch (and `rep movsb/movsq`,
// which g++ emits for variable-length copies in some loops). dst and src must not overlap.
inline void CopyShort(char* dst, const char* src, size_t n) {
  while (n >= 16) {
    std::memcpy(dst, src, 16);
    dst += 16;
    src += 16;
    n -= 16;
  }
  if (n >= 8) {
    std::memcpy(dst, src, 8);
    std::memcpy(dst + n - 8, src + n - 8, 8);
  } else if (n >= 4) {
    std::memcpy(dst, src, 4);
    std::memcpy(dst + n - 4, src + n - 4, 4);
  } else {
    for (size_t i = 0; i < n; ++i) dst[i] = src[i];
  }
}

}  // namespace posthaste

#endif  // POSTHASTE_BASE_SHORT_COPY_H_
