#include "metrics/tenant_series.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/ascii.h"

namespace posthaste::metrics {

TenantLabelTable::TenantLabelTable() : current_(std::make_shared<const TenantLabels>()) {}

void TenantLabelTable::Publish(TenantLabels labels) {
  current_.store(std::make_shared<const TenantLabels>(std::move(labels)),
                 std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

std::shared_ptr<const TenantLabels> TenantLabelTable::Current() const {
  return current_.load(std::memory_order_acquire);
}

void TenantLabelRanking::AddLogins(const absl::flat_hash_map<std::string, uint64_t>& logins) {
  for (const auto& [domain, n] : logins) sessions_[domain] += n;
}

ShardTenantSeries::ShardTenantSeries(const TenantLabelTable* table, ShardMetrics& metrics,
                                     size_t series_max, size_t login_domains_max)
    : table_(table),
      metrics_(metrics),
      series_max_(std::clamp<size_t>(series_max, 2, UINT16_MAX)),
      login_domains_max_(login_domains_max),
      labels_(std::make_shared<const TenantLabels>()),
      slot_series_{TenantLabels::kOther, TenantLabels::kNone} {
  for (size_t i = 0; i < metrics_.tenant_labels.size(); ++i) {
    series_of_label_.emplace(metrics_.tenant_labels[i], static_cast<uint16_t>(i));
  }
  Refresh();
}

void ShardTenantSeries::Refresh() {
  // The generation is read before the snapshot: a publication in between is seen next time.
  if (table_ == nullptr) return;
  const uint64_t generation = table_->generation();
  if (generation == generation_) return;
  generation_ = generation;
  labels_ = table_->Current();
  slot_series_.assign(labels_->size(), TenantLabels::kOther);
  for (size_t slot = 0; slot < labels_->size(); ++slot) {
    const std::string& label = labels_->labels()[slot];
    auto it = series_of_label_.find(label);
    if (it == series_of_label_.end()) {
      if (metrics_.tenant_labels.size() >= series_max_) continue;  // stays "other"
      it = series_of_label_.emplace(label, metrics_.AppendTenantSeries(label)).first;
    }
    slot_series_[slot] = it->second;
  }
}

uint16_t ShardTenantSeries::SeriesOfAddress(std::string_view address) {
  if (table_ != nullptr && table_->generation() != generation_) Refresh();
  return slot_series_[labels_->SlotOfAddress(address)];
}

void ShardTenantSeries::CountLogin(std::string_view address) {
  const size_t at = address.rfind('@');
  if (at == std::string_view::npos) return;
  std::string domain(address.substr(at + 1));
  absl::AsciiStrToLower(&domain);
  auto it = logins_.find(domain);
  if (it != logins_.end()) {
    ++it->second;
  } else if (logins_.size() < login_domains_max_) {
    logins_.emplace(std::move(domain), 1);
  }
}

absl::flat_hash_map<std::string, uint64_t> ShardTenantSeries::TakeLoginCounts() {
  absl::flat_hash_map<std::string, uint64_t> taken;
  taken.swap(logins_);
  return taken;
}

}  // namespace posthaste::metrics
