// libFuzzer target: any byte string as a stored hash, verified against a fixed password under
// tight cost limits. Checks that parsing and verification never crash, and that a hash the
// parser accepts is consistent with what verification reports. Single-threaded.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/auth/password_hash.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view stored(reinterpret_cast<const char*>(data), size);
  posthaste::auth::HashCostLimits cheap;
  cheap.memory_bytes_max = 256 * 1024;
  cheap.yescrypt_blocks_max = 4096;
  cheap.bcrypt_cost_max = 5;
  cheap.sha_crypt_rounds_max = 5000;
  cheap.argon2_time_max = 2;
  cheap.argon2_lanes_max = 2;
  cheap.pbkdf2_rounds_max = 5000;
  auto parsed = posthaste::auth::ParseStoredHash(stored);
  auto verified = posthaste::auth::VerifyPassword("correct horse", stored, cheap);
  if (!parsed.ok() && verified.ok()) __builtin_trap();  // verify must not accept what parse refuses
  return 0;
}
