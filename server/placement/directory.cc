#include "server/placement/directory.h"

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace posthaste::server::placement {

absl::StatusOr<Route> DirectorySnapshot::Resolve(std::string_view address) const {
  const std::string lowered =
      absl::AsciiStrToLower(absl::string_view(address.data(), address.size()));
  const size_t at = lowered.rfind('@');
  Route route;
  const PlacementEntry* entry = nullptr;
  if (auto user = users.find(lowered); user != users.end()) {
    entry = &user->second;
    route.from_user_override = true;
  } else if (auto tenant =
                 at == std::string::npos ? tenants.end() : tenants.find(lowered.substr(at + 1));
             tenant != tenants.end()) {
    entry = &tenant->second;
  } else {
    return absl::NotFoundError(absl::StrCat("no placement for ", lowered));
  }
  auto backend = backends.find(entry->backend);
  if (backend == backends.end()) {
    return absl::UnavailableError(
        absl::StrCat("backend ", entry->backend, " of ", lowered, " is not registered"));
  }
  route.backend = &backend->second;
  route.moving = !entry->moving_to.empty();
  return route;
}

}  // namespace posthaste::server::placement
