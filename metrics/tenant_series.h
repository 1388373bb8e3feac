// TenantLabelTable: the current set of tenant label values (TenantLabels), published as an
// immutable snapshot that the ranking (server/tenant_label_ranker.h) replaces while serving,
// and ShardTenantSeries, one shard's view of it: which of the shard's per-tenant counter series
// (ShardMetrics::tenants) a session of a given tenant counts under, and how many logins each
// tenant had on this shard since the ranking last asked (what the ranking orders by).
//
// Counters never go down: a shard's series are kept for its life. When a tenant gets its own
// label, its later sessions count in a new series and the "other" series keeps what it had;
// when a tenant loses its label, its series keeps its value and later sessions count in
// "other".
//
// Threading: TenantLabelTable::Publish from any thread (the main thread); publication is an
// std::atomic<std::shared_ptr> store plus a generation counter (as tls/tls_context.h and
// server/pop3_service/tenant_policies.h), so a ShardTenantSeries re-reads the snapshot only when
// the generation moved: a login touches nothing shared but that counter, with a relaxed-order
// load. ShardTenantSeries is not thread-safe: one per shard, used on its thread only; the table
// and the ShardMetrics must outlive it.
#ifndef POSTHASTE_METRICS_TENANT_SERIES_H_
#define POSTHASTE_METRICS_TENANT_SERIES_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "metrics/shard_metrics.h"

namespace posthaste::metrics {

class TenantLabelTable {
 public:
  // Starts with no tenant labels (everything "other").
  TenantLabelTable();

  // Replaces the current labels; shards see them at their next login or scrape.
  void Publish(TenantLabels labels);
  std::shared_ptr<const TenantLabels> Current() const;
  // Bumped after each publication.
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

 private:
  std::atomic<std::shared_ptr<const TenantLabels>> current_;
  std::atomic<uint64_t> generation_{0};
};

// The ranking that chooses the labels: the largest tenants by sessions (logins) since start-up,
// ties and tenants without sessions by accounts at start-up, then by name (TenantLabels::Ranked).
// Threading: one owner (the main thread).
class TenantLabelRanking {
 public:
  // `accounts_per_domain`: the store's accounts by domain at start-up.
  TenantLabelRanking(absl::flat_hash_map<std::string, uint64_t> accounts_per_domain,
                     size_t max_tenants)
      : accounts_(std::move(accounts_per_domain)), max_tenants_(max_tenants) {}

  // Adds logins counted by a shard (ShardTenantSeries::TakeLoginCounts).
  void AddLogins(const absl::flat_hash_map<std::string, uint64_t>& logins);
  // The labels for the counts so far.
  TenantLabels Rank() const { return TenantLabels::Ranked(sessions_, accounts_, max_tenants_); }

 private:
  const absl::flat_hash_map<std::string, uint64_t> accounts_;
  const size_t max_tenants_;
  absl::flat_hash_map<std::string, uint64_t> sessions_;
};

class ShardTenantSeries {
 public:
  // `table` null: every tenant counts as "other". `series_max`: the most series the shard keeps
  // (labels given over the run; a label beyond it counts as "other" on this shard).
  // `login_domains_max`: the most tenants whose logins are counted between two TakeLoginCounts
  // (the rest rank as if they had none).
  ShardTenantSeries(const TenantLabelTable* table, ShardMetrics& metrics, size_t series_max,
                    size_t login_domains_max);

  // The series for a session of `address`'s tenant (its part after the last '@', any case):
  // its own label's, or "other".
  uint16_t SeriesOfAddress(std::string_view address);
  // One login of `address` (a successful one: a session of its tenant), for the ranking.
  void CountLogin(std::string_view address);
  // The logins counted since the last call, by lower-case domain; the count restarts.
  absl::flat_hash_map<std::string, uint64_t> TakeLoginCounts();
  // Picks up a newer publication: every label of it gets a series (shown at 0 until counted).
  // Called before each scrape copy, so a new label is exported even by idle shards.
  void Refresh();

  size_t series_max() const { return series_max_; }

 private:
  const TenantLabelTable* const table_;
  ShardMetrics& metrics_;
  const size_t series_max_;
  const size_t login_domains_max_;
  uint64_t generation_ = ~uint64_t{0};  // none seen yet
  std::shared_ptr<const TenantLabels> labels_;
  absl::flat_hash_map<std::string, uint16_t> series_of_label_;  // every series of metrics_
  std::vector<uint16_t> slot_series_;  // the current labels' slot -> this shard's series
  absl::flat_hash_map<std::string, uint64_t> logins_;
};

}  // namespace posthaste::metrics

#endif  // POSTHASTE_METRICS_TENANT_SERIES_H_
