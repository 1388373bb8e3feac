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
                                                    bool count_user_ip, const Limits& limits,
                                                    pop3::InUsePolicy policy,
                                                    ConnectionRef requester,
                                                    ConnectionRef* holder) {
  if (limits.login_delay_ns > 0) {
    auto last = login_allowed_at_ns_.find(AbslView(user));
    if (last != login_allowed_at_ns_.end() && limits.now_ns < last->second) return Outcome::kTooSoon;
  }
  Entry& entry = entries_[AbslView(user)];
  if (count_user_ip) {
    auto it = std::find_if(entry.ip_counts.begin(), entry.ip_counts.end(),
                           [&](const auto& p) { return p.first == ip; });
    const uint32_t count = it == entry.ip_counts.end() ? 0 : it->second;
    if (limits.user_ip_limit > 0 && count >= limits.user_ip_limit) {
      MaybeErase(user);
      return Outcome::kTooManyForUserIp;
    }
    if (limits.user_limit > 0) {
      uint64_t total = 0;
      for (const auto& [address, n] : entry.ip_counts) total += n;
      if (total >= limits.user_limit) {
        MaybeErase(user);
        return Outcome::kTooManyForUser;
      }
    }
    if (it == entry.ip_counts.end()) {
      entry.ip_counts.emplace_back(std::string(ip), 1);
    } else {
      ++it->second;
    }
  }
  if (!entry.holder.has_value() || *entry.holder == requester) {
    entry.holder = requester;
    RecordLogin(user, limits.login_delay_ns, limits.now_ns);
    return Outcome::kGranted;
  }
  if (entry.takeover_pending || policy == pop3::InUsePolicy::kRefuse ||
      *entry.holder == kMaintenanceHolder) {
    return Outcome::kInUse;
  }
  entry.takeover_pending = true;
  entry.pending_login_delay_ns = limits.login_delay_ns;
  entry.pending_now_ns = limits.now_ns;
  *holder = *entry.holder;
  return Outcome::kAskHolder;
}

void MaildropRegistry::RecordLogin(std::string_view user, uint64_t login_delay_ns,
                                   uint64_t now_ns) {
  if (login_delay_ns == 0) return;
  if (login_allowed_at_ns_.size() >= login_sweep_at_) {
    absl::erase_if(login_allowed_at_ns_, [now_ns](const auto& e) { return e.second <= now_ns; });
    login_sweep_at_ = std::max<size_t>(1024, 2 * login_allowed_at_ns_.size());
  }
  login_allowed_at_ns_[AbslView(user)] = now_ns + login_delay_ns;
}

bool MaildropRegistry::FinishTakeover(std::string_view user, ConnectionRef requester,
                                      bool released) {
  auto it = entries_.find(AbslView(user));
  if (it == entries_.end()) return false;  // the requester's count keeps entries alive
  Entry& entry = it->second;
  entry.takeover_pending = false;
  if (released || !entry.holder.has_value()) {
    entry.holder = requester;
    RecordLogin(user, entry.pending_login_delay_ns, entry.pending_now_ns);
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
