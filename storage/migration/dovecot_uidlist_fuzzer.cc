// libFuzzer target: arbitrary bytes as a dovecot-uidlist file. Parsing must never crash, and
// every record it yields must have a non-empty base name without ':'. Single-threaded.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "storage/migration/maildir_import.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = posthaste::storage::migration::ParseDovecotUidlist(text);
  if (parsed.ok()) {
    for (const auto& [base, record] : parsed->records) {
      if (base.empty() || base.find(':') != std::string::npos || record.uid == 0) {
        __builtin_trap();
      }
      (void)posthaste::storage::migration::DovecotDefaultUidl(record.uid, parsed->uid_validity);
      (void)posthaste::storage::migration::FallbackUidl(base);
    }
  }
  return 0;
}
