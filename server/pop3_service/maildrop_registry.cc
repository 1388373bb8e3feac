#include "server/pop3_service/maildrop_registry.h"

#include <algorithm>

#include "absl/hash/hash.h"
#include "base/strings.h"

namespace posthaste::server {

uint32_t OwnerShard(std::string_view address, uint32_t shards) {
  // A fixed hash (not absl::Hash, which is seeded per process run only in debug builds but is
  // not promised stable): FNV-1a.
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : address) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return shards == 0 ? 0 : static_cast<uint32_t>(h % shards);
}

MaildropRegistry::Outcome MaildropRegistry::Acquire(std::string_view user, std::string_view ip,
                                                    bool count_user_ip, uint32_t user_ip_limit,
                                                    pop3::InUsePolicy policy,
                                                    ConnectionRef requester,
                                                    ConnectionRef* holder) {
  Entry& entry = entries_[AbslView(user)];
  if (count_user_ip) {
    auto it = std::find_if(entry.ip_counts.begin(), entry.ip_counts.end(),
                           [&](const auto& p) { return p.first == ip; });
    const uint32_t count = it == entry.ip_counts.end() ? 0 : it->second;
    if (user_ip_limit > 0 && count >= user_ip_limit) {
      MaybeErase(user);
      return Outcome::kTooManyForUserIp;
    }
    if (it == entry.ip_counts.end()) {
      entry.ip_counts.emplace_back(std::string(ip), 1);
    } else {
      ++it->second;
    }
  }
  if (!entry.holder.has_value() || *entry.holder == requester) {
    entry.holder = requester;
    return Outcome::kGranted;
  }
  if (entry.takeover_pending || policy == pop3::InUsePolicy::kRefuse ||
      *entry.holder == kMaintenanceHolder) {
    return Outcome::kInUse;
  }
  entry.takeover_pending = true;
  *holder = *entry.holder;
  return Outcome::kAskHolder;
}

bool MaildropRegistry::FinishTakeover(std::string_view user, ConnectionRef requester,
                                      bool released) {
  auto it = entries_.find(AbslView(user));
  if (it == entries_.end()) return false;  // the requester's count keeps entries alive
  Entry& entry = it->second;
  entry.takeover_pending = false;
  if (released || !entry.holder.has_value()) {
    entry.holder = requester;
    return true;
  }
  return false;
}

void MaildropRegistry::Release(std::string_view user, std::string_view ip, bool counted,
                               ConnectionRef conn) {
  auto it = entries_.find(AbslView(user));
  if (it == entries_.end()) return;
  Entry& entry = it->second;
  if (entry.holder.has_value() && *entry.holder == conn) entry.holder.reset();
  if (counted) {
    auto c = std::find_if(entry.ip_counts.begin(), entry.ip_counts.end(),
                          [&](const auto& p) { return p.first == ip; });
    if (c != entry.ip_counts.end() && --c->second == 0) entry.ip_counts.erase(c);
  }
  MaybeErase(user);
}

void MaildropRegistry::MaybeErase(std::string_view user) {
  auto it = entries_.find(AbslView(user));
  if (it == entries_.end()) return;
  if (!it->second.holder.has_value() && !it->second.takeover_pending &&
      it->second.ip_counts.empty()) {
    entries_.erase(it);
  }
}

std::optional<ConnectionRef> MaildropRegistry::Holder(std::string_view user) const {
  auto it = entries_.find(AbslView(user));
  if (it == entries_.end()) return std::nullopt;
  return it->second.holder;
}

}  // namespace posthaste::server
