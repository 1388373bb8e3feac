#include "server/auth/auth_penalties.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "absl/strings/ascii.h"

namespace posthaste::auth {
namespace {

constexpr uint64_t kNsPerSecond = 1'000'000'000;
// A count stops growing here: the delay has long reached any cap by then (2^31 times the base),
// and a bounded count decays away in a bounded number of windows (6 halvings).
constexpr uint32_t kFailuresMax = 32;
// Decayed entries dropped from the old end of a table per failure counted: keeps the tables
// (and their gauges) to recent failures without a timer, at a bounded cost per call.
constexpr int kStalePrunedPerCall = 4;

}  // namespace

std::optional<PenaltyAddress> PenaltyAddressOf(std::string_view ip) {
  char text[INET6_ADDRSTRLEN] = {};
  if (ip.empty() || ip.size() >= sizeof(text)) return std::nullopt;
  std::memcpy(text, ip.data(), ip.size());
  PenaltyAddress address = {};
  if (inet_pton(AF_INET, text, address.data() + 12) == 1) {
    address[10] = address[11] = 0xff;
    return address;
  }
  if (inet_pton(AF_INET6, text, address.data()) != 1) return std::nullopt;
  const bool v4_mapped =
      std::all_of(address.begin(), address.begin() + 10, [](uint8_t b) { return b == 0; }) &&
      address[10] == 0xff && address[11] == 0xff;
  // One IPv6 client usually holds a whole /64 and can pick any address in it.
  if (!v4_mapped) std::fill(address.begin() + 8, address.end(), 0);
  return address;
}

std::string PenaltyAccountOf(std::string_view user) {
  std::string account(user.substr(0, kPenaltyAccountBytesMax));
  absl::AsciiStrToLower(&account);
  return account;
}

template <typename Key>
uint32_t AuthPenalties::Table<Key>::Recent(const Key& key, uint64_t now_ns,
                                           uint64_t window_ns) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) return 0;
  const uint64_t quiet_windows =
      (now_ns > it->second.last_failure_ns ? now_ns - it->second.last_failure_ns : 0) / window_ns;
  return quiet_windows >= 32 ? 0 : it->second.failures >> quiet_windows;
}

template <typename Key>
uint32_t AuthPenalties::Table<Key>::Fail(const Key& key, uint64_t now_ns, uint64_t window_ns,
                                         bool* evicted) {
  *evicted = false;
  const uint32_t failures = std::min(Recent(key, now_ns, window_ns) + 1, kFailuresMax);
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    order_.splice(order_.end(), order_, it->second.position);  // now the most recent
  } else {
    for (int i = 0; i < kStalePrunedPerCall && !order_.empty() &&
                    Recent(order_.front(), now_ns, window_ns) == 0;
         ++i) {
      entries_.erase(order_.front());
      order_.pop_front();
    }
    if (entries_.size() >= entries_max_ && !order_.empty()) {
      entries_.erase(order_.front());
      order_.pop_front();
      *evicted = true;
    }
    it = entries_.try_emplace(key).first;
    it->second.position = order_.insert(order_.end(), key);
  }
  it->second.failures = failures;
  it->second.last_failure_ns = now_ns;
  return failures;
}

template <typename Key>
bool AuthPenalties::Table<Key>::Erase(const Key& key) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return false;
  order_.erase(it->second.position);
  entries_.erase(it);
  return true;
}

AuthPenalties::AuthPenalties(const AuthPenaltyOptions& options)
    : options_(options),
      window_ns_(std::max<uint64_t>(options.window_s, 1) * kNsPerSecond),
      addresses_(std::max<size_t>(options.addresses_max, 1)),
      accounts_(std::max<size_t>(options.accounts_max, 1)) {}

uint32_t AuthPenalties::DelayMsFor(uint32_t failures) const {
  if (failures == 0) return 0;
  // base * 2^(failures - 1), capped; computed in 64 bits (failures <= kFailuresMax).
  const uint64_t doubled = uint64_t{options_.delay_base_ms} << std::min<uint32_t>(failures - 1, 31);
  return static_cast<uint32_t>(
      std::min<uint64_t>(doubled, std::max(options_.delay_max_ms, options_.delay_base_ms)));
}

uint32_t AuthPenalties::Count(const std::optional<PenaltyAddress>& address,
                              std::string_view account, uint64_t now_ns) {
  uint32_t failures = 0;
  bool evicted = false;
  if (address.has_value()) {
    failures = addresses_.Fail(*address, now_ns, window_ns_, &evicted);
    if (evicted) ++stats_.address_evictions;
  }
  if (!account.empty()) {
    const std::string key(account.substr(0, kPenaltyAccountBytesMax));
    failures = std::max(failures, accounts_.Fail(key, now_ns, window_ns_, &evicted));
    if (evicted) ++stats_.account_evictions;
  }
  stats_.addresses_tracked = addresses_.size();
  stats_.accounts_tracked = accounts_.size();
  return std::max(DelayMsFor(failures), options_.delay_base_ms);
}

uint32_t AuthPenalties::RecordFailure(const std::optional<PenaltyAddress>& address,
                                      std::string_view account, bool trusted, uint64_t now_ns) {
  if (trusted) {
    ++stats_.failures_exempt;
    return options_.delay_base_ms;
  }
  ++stats_.failures_recorded;
  const uint32_t delay_ms = Count(address, account, now_ns);
  if (delay_ms > options_.delay_base_ms) ++stats_.failures_penalised;
  return delay_ms;
}

void AuthPenalties::RecordPeerFailure(const std::optional<PenaltyAddress>& address,
                                      std::string_view account, uint64_t now_ns) {
  ++stats_.peer_failures;
  Count(address, account, now_ns);
}

bool AuthPenalties::RecordSuccess(const PenaltyAddress& address) {
  if (!addresses_.Erase(address)) return false;
  ++stats_.resets;
  stats_.addresses_tracked = addresses_.size();
  return true;
}

void AuthPenalties::RecordPeerSuccess(const PenaltyAddress& address) {
  addresses_.Erase(address);
  stats_.addresses_tracked = addresses_.size();
}

uint32_t AuthPenalties::NextDelayMsForTest(const std::optional<PenaltyAddress>& address,
                                           std::string_view account, uint64_t now_ns) {
  uint32_t failures = 0;
  if (address.has_value()) failures = addresses_.Recent(*address, now_ns, window_ns_);
  if (!account.empty()) {
    failures = std::max(failures, accounts_.Recent(std::string(account), now_ns, window_ns_));
  }
  return std::max(DelayMsFor(std::min(failures + 1, kFailuresMax)), options_.delay_base_ms);
}

}  // namespace posthaste::auth
