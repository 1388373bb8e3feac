// libFuzzer target: arbitrary bytes as a mailbox page (storage/migration/mailbox_transfer.h),
// which a backend receives from another over the admin API. Checking must never crash or read
// out of bounds. Single-threaded.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "storage/migration/mailbox_transfer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view page(reinterpret_cast<const char*>(data), size);
  (void)posthaste::storage::migration::CheckMailboxPage(page);
  return 0;
}
