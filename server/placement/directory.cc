#include "server/placement/directory.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace posthaste::server::placement {

absl::StatusOr<Route> DirectorySnapshot::Resolve(std::string_view address) const {
  // Keys are lower-cased when written (directory.h), so every case of an address finds them.
  const std::string key = absl::AsciiStrToLower(absl::string_view(address.data(), address.size()));
  const PlacementEntry* entry = nullptr;
  bool from_user = false;
  if (auto user = users.find(key); user != users.end()) {
    entry = &user->second;
    from_user = true;
  } else {
    const size_t at = key.rfind('@');
    if (at == std::string::npos || at + 1 == key.size()) {
      return absl::NotFoundError(absl::StrCat("no domain in \"", key, "\""));
    }
    auto tenant = tenants.find(absl::string_view(key).substr(at + 1));
    if (tenant == tenants.end()) {
      return absl::NotFoundError(absl::StrCat("no placement for \"", key, "\""));
    }
    entry = &tenant->second;
  }
  auto backend = backends.find(entry->backend);
  if (backend == backends.end()) {
    return absl::UnavailableError(
        absl::StrCat("backend \"", entry->backend, "\" of \"", key, "\" is not registered"));
  }
  return Route{.backend = &backend->second,
               .moving = !entry->moving_to.empty(),
               .from_user_override = from_user};
}

}  // namespace posthaste::server::placement
