// libFuzzer target: the directory file parser. Any bytes are refused or accepted, never a
// crash; an accepted file's placements all resolve to NotFound, Unavailable or a backend of the
// snapshot (PH_CHECK aborts otherwise), and keys are lower-cased.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/check.h"
#include "server/route/directory_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace posthaste::server;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto snapshot = route::ParseDirectoryFile(text);
  if (!snapshot.ok()) return 0;
  for (const auto& [address, entry] : snapshot->users) {
    for (char c : address) PH_CHECK(!(c >= 'A' && c <= 'Z'));
    auto resolved = snapshot->Resolve(address);
    if (resolved.ok()) {
      PH_CHECK(resolved->backend != nullptr);
      PH_CHECK(snapshot->backends.contains(resolved->backend->name));
      PH_CHECK(resolved->from_user_override);
    } else {
      PH_CHECK(resolved.status().code() == absl::StatusCode::kUnavailable);
    }
  }
  for (const auto& [domain, entry] : snapshot->tenants) {
    for (char c : domain) PH_CHECK(!(c >= 'A' && c <= 'Z'));
  }
  return 0;
}
