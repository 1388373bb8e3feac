// AuthPenalties: doubling from the base to the cap, decay by quiet windows, IPv6 /64
// aggregation, reset on success, the trusted exemption, the table bounds and the per-account
// slowdown, and failures counted from other shards.
#include "server/auth/auth_penalties.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace posthaste::auth {
namespace {

constexpr uint64_t kSecond = 1'000'000'000;

std::optional<PenaltyAddress> Ip(std::string_view text) {
  std::optional<PenaltyAddress> address = PenaltyAddressOf(text);
  EXPECT_TRUE(address.has_value()) << text;
  return address;
}

AuthPenaltyOptions Defaults() { return AuthPenaltyOptions{}; }

TEST(AuthPenalties, EachRecentFailureDoublesTheDelayUpToTheCap) {
  AuthPenalties penalties(Defaults());
  std::vector<uint32_t> delays;
  for (int i = 0; i < 8; ++i) {
    delays.push_back(penalties.RecordFailure(Ip("192.0.2.7"), "", false, i * kSecond));
  }
  EXPECT_EQ(delays, (std::vector<uint32_t>{2000, 4000, 8000, 15000, 15000, 15000, 15000, 15000}));
  EXPECT_EQ(penalties.stats().failures_recorded, 8u);
  EXPECT_EQ(penalties.stats().failures_penalised, 7u);  // all but the first
}

TEST(AuthPenalties, FiftyFailuresStayAtTheCapWithoutOverflow) {
  AuthPenalties penalties({.delay_base_ms = 60'000, .delay_max_ms = 60'000 * 8});
  uint32_t last = 0;
  for (int i = 0; i < 50; ++i) {
    last = penalties.RecordFailure(Ip("192.0.2.7"), "", false, 1);
  }
  EXPECT_EQ(last, 60'000u * 8);
}

TEST(AuthPenalties, ACapBelowTheBaseLeavesTheBase) {
  AuthPenalties penalties({.delay_base_ms = 2000, .delay_max_ms = 500});
  EXPECT_EQ(penalties.RecordFailure(Ip("192.0.2.7"), "", false, 0), 2000u);
  EXPECT_EQ(penalties.RecordFailure(Ip("192.0.2.7"), "", false, 0), 2000u);
}

TEST(AuthPenalties, EachQuietWindowHalvesTheCount) {
  AuthPenalties penalties({.window_s = 60});
  for (int i = 0; i < 4; ++i) penalties.RecordFailure(Ip("192.0.2.7"), "", false, 0);
  // Four recent failures: the fifth would wait the cap.
  EXPECT_EQ(penalties.NextDelayMsForTest(Ip("192.0.2.7"), "", 59 * kSecond), 15000u);
  // One quiet window: 2 recent, the next is the third (8 s).
  EXPECT_EQ(penalties.NextDelayMsForTest(Ip("192.0.2.7"), "", 60 * kSecond), 8000u);
  // Two: 1 recent (4 s). Three: forgotten (the base).
  EXPECT_EQ(penalties.NextDelayMsForTest(Ip("192.0.2.7"), "", 120 * kSecond), 4000u);
  EXPECT_EQ(penalties.NextDelayMsForTest(Ip("192.0.2.7"), "", 180 * kSecond), 2000u);
  // A failure after the decay starts again from the decayed count.
  EXPECT_EQ(penalties.RecordFailure(Ip("192.0.2.7"), "", false, 120 * kSecond), 4000u);
}

TEST(AuthPenalties, DecayedEntriesLeaveTheTable) {
  AuthPenalties penalties({.window_s = 1});
  penalties.RecordFailure(Ip("192.0.2.1"), "", false, 0);
  penalties.RecordFailure(Ip("192.0.2.2"), "", false, 0);
  EXPECT_EQ(penalties.stats().addresses_tracked, 2u);
  penalties.RecordFailure(Ip("192.0.2.3"), "", false, 10 * kSecond);
  EXPECT_EQ(penalties.stats().addresses_tracked, 1u);
  EXPECT_EQ(penalties.stats().address_evictions, 0u);  // decayed, not evicted
}

TEST(AuthPenalties, AnIpv6SlashSixtyFourIsOneClient) {
  AuthPenalties penalties(Defaults());
  EXPECT_EQ(penalties.RecordFailure(Ip("2001:db8:1:2::1"), "", false, 0), 2000u);
  EXPECT_EQ(penalties.RecordFailure(Ip("2001:db8:1:2:ffff:1:2:3"), "", false, 0), 4000u);
  // The next /64 is another client.
  EXPECT_EQ(penalties.RecordFailure(Ip("2001:db8:1:3::1"), "", false, 0), 2000u);
  EXPECT_EQ(penalties.stats().addresses_tracked, 2u);
}

TEST(AuthPenalties, IpvFourAddressesAreNotAggregated) {
  AuthPenalties penalties(Defaults());
  EXPECT_EQ(penalties.RecordFailure(Ip("192.0.2.1"), "", false, 0), 2000u);
  EXPECT_EQ(penalties.RecordFailure(Ip("192.0.2.2"), "", false, 0), 2000u);
  // A v4-mapped IPv6 address is the IPv4 address.
  EXPECT_EQ(penalties.RecordFailure(Ip("::ffff:192.0.2.1"), "", false, 0), 4000u);
}

TEST(AuthPenalties, NonAddressesAreRefused) {
  EXPECT_FALSE(PenaltyAddressOf("").has_value());
  EXPECT_FALSE(PenaltyAddressOf("example.org").has_value());
  EXPECT_FALSE(PenaltyAddressOf("192.0.2.1:110").has_value());
  EXPECT_FALSE(PenaltyAddressOf(std::string(200, '1')).has_value());
}

TEST(AuthPenalties, ASuccessResetsTheAddressButNotTheAccount) {
  AuthPenalties penalties(Defaults());
  for (int i = 0; i < 3; ++i) penalties.RecordFailure(Ip("192.0.2.7"), "", false, 0);
  EXPECT_TRUE(penalties.RecordSuccess(*Ip("192.0.2.7")));
  EXPECT_FALSE(penalties.RecordSuccess(*Ip("192.0.2.7")));
  EXPECT_EQ(penalties.stats().resets, 1u);
  EXPECT_EQ(penalties.RecordFailure(Ip("192.0.2.7"), "", false, 0), 2000u);

  for (int i = 0; i < 3; ++i) penalties.RecordFailure(Ip("192.0.2.8"), "bob@example.org", false, 0);
  penalties.RecordSuccess(*Ip("192.0.2.8"));
  EXPECT_EQ(penalties.RecordFailure(Ip("192.0.2.8"), "bob@example.org", false, 0), 15000u);
}

TEST(AuthPenalties, TrustedClientsAreExemptAndNotCounted) {
  AuthPenalties penalties(Defaults());
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(penalties.RecordFailure(Ip("10.0.0.1"), "bob@example.org", true, 0), 2000u);
  }
  EXPECT_EQ(penalties.stats().failures_exempt, 10u);
  EXPECT_EQ(penalties.stats().failures_recorded, 0u);
  EXPECT_EQ(penalties.stats().addresses_tracked, 0u);
  EXPECT_EQ(penalties.stats().accounts_tracked, 0u);
  // Nor did they count against the account for anyone else.
  EXPECT_EQ(penalties.RecordFailure(Ip("192.0.2.7"), "bob@example.org", false, 0), 2000u);
}

TEST(AuthPenalties, TheTablesAreBoundedAndEvictTheOldestFailure) {
  AuthPenalties penalties({.addresses_max = 3, .accounts_max = 2});
  for (int i = 0; i < 3; ++i) penalties.RecordFailure(Ip("192.0.2.1"), "a", false, 0);  // oldest
  penalties.RecordFailure(Ip("192.0.2.2"), "b", false, 1);
  penalties.RecordFailure(Ip("192.0.2.3"), "", false, 2);
  penalties.RecordFailure(Ip("192.0.2.1"), "", false, 3);  // now the most recent
  for (int i = 4; i < 1000; ++i) {
    penalties.RecordFailure(PenaltyAddressOf("198.51.100." + std::to_string(i % 250)),
                            "user" + std::to_string(i), false, 4);
  }
  EXPECT_EQ(penalties.stats().addresses_tracked, 3u);
  EXPECT_EQ(penalties.stats().accounts_tracked, 2u);
  EXPECT_EQ(penalties.stats().address_evictions, 996u);  // every new address, once full
  EXPECT_EQ(penalties.stats().account_evictions, 996u);
  // 192.0.2.1 was evicted in the end too: it starts again at the base.
  EXPECT_EQ(penalties.NextDelayMsForTest(Ip("192.0.2.1"), "", 5), 2000u);
}

TEST(AuthPenalties, AnLruKeepsTheMostRecentlyFailingAddress) {
  AuthPenalties penalties({.addresses_max = 2});
  penalties.RecordFailure(Ip("192.0.2.1"), "", false, 0);
  penalties.RecordFailure(Ip("192.0.2.2"), "", false, 1);
  penalties.RecordFailure(Ip("192.0.2.1"), "", false, 2);  // .1 becomes the most recent
  penalties.RecordFailure(Ip("192.0.2.3"), "", false, 3);  // evicts .2, not .1
  EXPECT_EQ(penalties.stats().address_evictions, 1u);
  EXPECT_EQ(penalties.NextDelayMsForTest(Ip("192.0.2.1"), "", 4), 8000u);
  EXPECT_EQ(penalties.NextDelayMsForTest(Ip("192.0.2.2"), "", 4), 2000u);
}

TEST(AuthPenalties, AnAccountIsSlowedFromEveryAddress) {
  AuthPenalties penalties(Defaults());
  std::vector<uint32_t> delays;
  for (int i = 0; i < 5; ++i) {
    delays.push_back(penalties.RecordFailure(
        PenaltyAddressOf("198.51.100." + std::to_string(i + 1)),
        PenaltyAccountOf(i % 2 == 0 ? "Bob@Example.org" : "bob@example.org"), false, 0));
  }
  EXPECT_EQ(delays, (std::vector<uint32_t>{2000, 4000, 8000, 15000, 15000}));
  // Another account from a fresh address is not slowed.
  EXPECT_EQ(penalties.RecordFailure(Ip("198.51.100.99"), "carol@example.org", false, 0), 2000u);
}

TEST(AuthPenalties, FailuresFromOtherShardsCountAlike) {
  AuthPenalties penalties(Defaults());
  for (int i = 0; i < 3; ++i) penalties.RecordPeerFailure(Ip("192.0.2.7"), "", 0);
  EXPECT_EQ(penalties.stats().peer_failures, 3u);
  EXPECT_EQ(penalties.stats().failures_recorded, 0u);
  EXPECT_EQ(penalties.RecordFailure(Ip("192.0.2.7"), "", false, 0), 15000u);
}

TEST(AuthPenalties, AnUnknownAddressStillCountsTheAccount) {
  AuthPenalties penalties(Defaults());
  EXPECT_EQ(penalties.RecordFailure(std::nullopt, "bob", false, 0), 2000u);
  EXPECT_EQ(penalties.RecordFailure(std::nullopt, "bob", false, 0), 4000u);
  EXPECT_EQ(penalties.RecordFailure(std::nullopt, "", false, 0), 2000u);
}

}  // namespace
}  // namespace posthaste::auth
