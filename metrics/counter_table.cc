#include "metrics/counter_table.h"

#include "absl/container/flat_hash_map.h"

namespace posthaste::metrics {
namespace {

bool IsLabelKey(std::string_view key) {
  if (key.empty()) return false;
  for (char c : key) {
    if (!((c >= 'a' && c <= 'z') || c == '_')) return false;
  }
  return true;
}

bool IsGauge(CounterKind kind) {
  return kind == CounterKind::kGauge || kind == CounterKind::kGaugePerShard;
}

absl::Status RowError(const CounterTable& table, const CounterRow& row, std::string_view what) {
  return absl::InvalidArgumentError(std::string(table.block) + "." + std::string(row.member) +
                                    " (" + std::string(row.name) + "): " + std::string(what));
}

}  // namespace

std::vector<std::pair<std::string, std::string>> ParseCounterLabels(std::string_view labels) {
  std::vector<std::pair<std::string, std::string>> out;
  if (labels.empty()) return out;
  while (true) {
    const size_t comma = labels.find(',');
    const std::string_view pair = labels.substr(0, comma);
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos) {
      out.emplace_back(std::string(pair), std::string());
    } else {
      out.emplace_back(std::string(pair.substr(0, eq)), std::string(pair.substr(eq + 1)));
    }
    if (comma == std::string_view::npos) return out;
    labels.remove_prefix(comma + 1);
  }
}

absl::Status ValidateCounterTable(const CounterTable& table) {
  absl::flat_hash_map<std::string_view, bool> family_has_help;
  absl::flat_hash_map<std::string_view, bool> family_is_gauge;
  for (const CounterRow& row : table.rows) {
    if (row.offset % 8 != 0 || row.offset + 8 > table.block_bytes) {
      return RowError(table, row, "offset outside the block or unaligned");
    }
    if (!row.name.starts_with("posthaste_")) {
      return RowError(table, row, "names start with posthaste_");
    }
    const bool total = row.name.ends_with("_total");
    if (IsGauge(row.kind) == total) {
      return RowError(table, row, "counters end in _total, gauges do not");
    }
    if (row.kind == CounterKind::kNanosAsSecondsPerShard && !row.name.ends_with("_seconds_total")) {
      return RowError(table, row, "a time in seconds ends in _seconds_total");
    }
    for (const auto& [key, value] : ParseCounterLabels(row.labels)) {
      if (!IsLabelKey(key) || value.empty()) {
        return RowError(table, row, "labels are key=value pairs separated by ','");
      }
      if (key == "shard") return RowError(table, row, "the exporter adds the shard label");
    }
    auto [gauge, new_family] = family_is_gauge.try_emplace(row.name, IsGauge(row.kind));
    if (!new_family && gauge->second != IsGauge(row.kind)) {
      return RowError(table, row, "a family is all counters or all gauges");
    }
    family_has_help[row.name] |= !row.help.empty();
  }
  for (const auto& [name, has_help] : family_has_help) {
    if (!has_help) {
      return absl::InvalidArgumentError(std::string(table.block) + ": family " + std::string(name) +
                                        " has no help text");
    }
  }
  return absl::OkStatus();
}

CounterBlockCopy CounterBlockCopy::Of(const CounterBlockRef& ref) {
  CounterBlockCopy copy(*ref.table);
  if (ref.has_atomic_rows) {
    // Plain members are written by this thread, so a relaxed load of them reads what it wrote;
    // atomic ones may be written concurrently, so the bytes are not copied wholesale.
    const char* base = static_cast<const char*>(ref.block);
    for (const CounterRow& row : ref.table->rows) {
      const uint64_t v = reinterpret_cast<const std::atomic<uint64_t>*>(base + row.offset)
                             ->load(std::memory_order_relaxed);
      std::memcpy(reinterpret_cast<char*>(copy.words_.data()) + row.offset, &v, sizeof(v));
    }
  } else {
    std::memcpy(copy.words_.data(), ref.block, ref.table->block_bytes);
  }
  for (auto& [key, value] : ParseCounterLabels(ref.labels)) {
    copy.labels_.emplace_back(std::move(key), std::move(value));
  }
  return copy;
}

uint64_t CounterBlockCopy::value(const CounterRow& row) const {
  PH_DCHECK(table_ != nullptr && row.offset + 8 <= table_->block_bytes);
  uint64_t v;
  std::memcpy(&v, reinterpret_cast<const char*>(words_.data()) + row.offset, sizeof(v));
  return v;
}

}  // namespace posthaste::metrics
