#include "server/pop3_service/auth_penalty_shard.h"

#include <chrono>
#include <cstddef>
#include <optional>
#include <utility>

#include "base/log.h"

namespace posthaste::server::pop3_service {
namespace {

// CLOCK_MONOTONIC, one clock for every thread of the process, so a time read on one shard means
// the same on another.
uint64_t MonotonicNowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

// The block is its rows' members, nothing else: a member added outside the X-macro has no row.
#define PH_COUNT_ROW(...) +1
static_assert(sizeof(auth::AuthPenaltyStats) ==
              (0 PH_AUTH_PENALTY_ROWS(PH_COUNT_ROW)) * sizeof(uint64_t));
#undef PH_COUNT_ROW

#define PH_AUTH_PENALTY_ROW(...) PH_COUNTER_ROW(auth::AuthPenaltyStats, __VA_ARGS__)
constexpr metrics::CounterRow kAuthPenaltyRows[] = {PH_AUTH_PENALTY_ROWS(PH_AUTH_PENALTY_ROW)};
#undef PH_AUTH_PENALTY_ROW

}  // namespace

const metrics::CounterTable& AuthPenaltyCounterTable() {
  static const metrics::CounterTable table =
      PH_COUNTER_TABLE(auth::AuthPenaltyStats, kAuthPenaltyRows);
  return table;
}

AuthPenaltyShard::AuthPenaltyShard(const auth::AuthPenaltyOptions& options, uint32_t index,
                                   uint32_t shard_count, Post post)
    : penalties_(options), index_(index), shard_count_(shard_count), post_(std::move(post)) {}

uint32_t AuthPenaltyShard::Failed(const PenalisedLogin& login) {
  const std::optional<auth::PenaltyAddress> address = auth::PenaltyAddressOf(login.ip);
  const std::string account = auth::PenaltyAccountOf(login.user);
  const uint32_t delay_ms =
      penalties_.RecordFailure(address, account, login.trusted, MonotonicNowNs());
  LogEvent(LogLevel::kWarning, "auth failed",
           {{"rhost", login.ip},
            {"user", login.user.substr(0, auth::kPenaltyAccountBytesMax)},
            {"mechanism", std::string(login.mechanism)},
            {"shard", std::to_string(index_)},
            {"delay_ms", std::to_string(delay_ms)}});
  if (login.trusted) return delay_ms;
  for (uint32_t target = 0; target < shard_count_; ++target) {
    if (target == index_) continue;
    post_(target, [address, account](AuthPenaltyShard& peer) {
      peer.penalties_.RecordPeerFailure(address, account, MonotonicNowNs());
    });
  }
  return delay_ms;
}

void AuthPenaltyShard::Succeeded(const PenalisedLogin& login) {
  if (login.trusted) return;
  const std::optional<auth::PenaltyAddress> address = auth::PenaltyAddressOf(login.ip);
  if (!address.has_value()) return;
  // Only an address that failed here is worth telling the others about: every failure reached
  // every shard, so a clean table here means clean tables there (bar a refused message).
  if (!penalties_.RecordSuccess(*address)) return;
  for (uint32_t target = 0; target < shard_count_; ++target) {
    if (target == index_) continue;
    post_(target,
          [address](AuthPenaltyShard& peer) { peer.penalties_.RecordPeerSuccess(*address); });
  }
}

}  // namespace posthaste::server::pop3_service
