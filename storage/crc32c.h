// CRC-32C (Castagnoli) of a byte range, used to verify stored message bytes in Check().
// Uses the SSE4.2 crc32 instruction when the CPU has it, a table otherwise. Thread-safe.
#ifndef POSTHASTE_STORAGE_CRC32C_H_
#define POSTHASTE_STORAGE_CRC32C_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace posthaste::storage {

// Extends `crc` (0 for a fresh checksum) with `data`.
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t size);
inline uint32_t Crc32c(std::string_view data) { return Crc32cExtend(0, data.data(), data.size()); }

}  // namespace posthaste::storage

#endif  // POSTHASTE_STORAGE_CRC32C_H_
