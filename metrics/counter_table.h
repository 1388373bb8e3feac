// Counter tables for export: for each counter of a block (a plain struct of uint64_t counters,
// see base/counter_fields.h), where it lives and which Prometheus series it feeds. The block's
// owner declares the rows once, next to the block (one X-macro row per counter: member, kind,
// metric name, labels, help); the exporter walks the rows over a copy of the block, so no code
// copies counters field by field.
//
//   #define PH_FOO_COUNTERS(X)
//     X(widgets_refused, kCounter, "posthaste_foo_refusals_total", "limit=widgets", "...")
//   struct FooStats { PH_FOO_COUNTERS(PH_COUNTER_MEMBER) };
//   #define PH_FOO_ROW(...) PH_COUNTER_ROW(FooStats, __VA_ARGS__)
//   constexpr CounterRow kFooRows[] = {PH_FOO_COUNTERS(PH_FOO_ROW)};
//   const CounterTable kFooTable = PH_COUNTER_TABLE(FooStats, kFooRows);
//
// Several rows may name the same series (same metric name and labels): the exporter sums them,
// e.g. two services' offload refusals, or a total made of several send paths. A row's member may
// sit in a nested block ("send.splice_bytes").
//
// Threading: tables are immutable. A CounterBlockCopy of a plain block is taken on the block's
// writer thread (the shard posts the copy to the scraper, as for ShardMetrics); a block of
// std::atomic<uint64_t> may be copied from any thread.
#ifndef POSTHASTE_METRICS_COUNTER_TABLE_H_
#define POSTHASTE_METRICS_COUNTER_TABLE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "base/check.h"

namespace posthaste::metrics {

enum class CounterKind : uint8_t {
  kCounter,                 // summed over shards (and over rows naming the same series)
  kGauge,                   // a gauge, summed likewise
  kCounterPerShard,         // one sample per shard, label shard="<index>"
  kGaugePerShard,           // a gauge, one sample per shard
  kNanosAsSecondsPerShard,  // a nanosecond counter exported in seconds, one sample per shard
};

struct CounterRow {
  std::string_view member;  // the member as written in C++, e.g. "send.splice_bytes"
  CounterKind kind;
  std::string_view name;    // the metric family
  std::string_view labels;  // "key=value[,key=value...]", or empty
  std::string_view help;    // the family's help; may be empty when another row of it has one
  size_t offset;            // of the counter (uint64_t or std::atomic<uint64_t>) in the block
};

struct CounterTable {
  std::string_view block;  // the block's type, for messages
  size_t block_bytes;      // sizeof the block
  std::span<const CounterRow> rows;
};

// `Block` must be standard-layout for offsetof; `member` may name a nested block's member.
#define PH_COUNTER_ROW(Block, member, kind, name, labels, help)                      \
  ::posthaste::metrics::CounterRow{#member, ::posthaste::metrics::CounterKind::kind, \
                                   name,    labels,                                  \
                                   help,    offsetof(Block, member)},
#define PH_COUNTER_TABLE(Block, rows) \
  ::posthaste::metrics::CounterTable { #Block, sizeof(Block), rows }

// Splits "k=v,k2=v2" into pairs (empty: none). Malformed text gives what ValidateCounterTable
// rejects.
std::vector<std::pair<std::string, std::string>> ParseCounterLabels(std::string_view labels);

// Checks a table against the naming rules (docs/CONTRIBUTING.md, "Counters"): names start with
// posthaste_, counters end in _total (seconds: _seconds_total), gauges do not; labels are well
// formed and do not use `shard` (the exporter adds it); offsets are aligned and inside the block;
// every family has a help text. InvalidArgument naming the row otherwise.
absl::Status ValidateCounterTable(const CounterTable& table);

// A registered block: its table and where it lives. Ownership: the block outlives the ref.
struct CounterBlockRef {
  const CounterTable* table = nullptr;
  const void* block = nullptr;
  // "key=value[,key=value...]" added to every sample of this block (e.g. which listener or
  // buffer ring it counts), or empty. Must outlive the ref (a literal).
  std::string_view labels;
  // Some members are std::atomic<uint64_t> that other threads write: read row by row with
  // relaxed loads instead of copying the bytes.
  bool has_atomic_rows = false;

  template <typename Block>
  static CounterBlockRef Of(const CounterTable& table, const Block& block) {
    static_assert(std::is_trivially_copyable_v<Block> && std::is_standard_layout_v<Block>,
                  "a counter block is a plain struct of uint64_t counters");
    PH_CHECK(table.block_bytes == sizeof(Block));
    return CounterBlockRef{&table, &block, {}, false};
  }

  // A block mixing plain uint64_t members (written by the copying thread only) with
  // std::atomic<uint64_t> ones written by any thread, e.g. an inbox's counters: its owner
  // counts what it runs, senders count what they post.
  template <typename Block>
  static CounterBlockRef OfAtomicRows(const CounterTable& table, const Block& block) {
    static_assert(std::is_standard_layout_v<Block>);
    PH_CHECK(table.block_bytes == sizeof(Block));
    return CounterBlockRef{&table, &block, {}, true};
  }

  CounterBlockRef WithLabels(std::string_view block_labels) const {
    CounterBlockRef ref = *this;
    ref.labels = block_labels;
    return ref;
  }
};

// A snapshot of one block, read through its table.
class CounterBlockCopy {
 public:
  CounterBlockCopy() = default;

  // Copies the block's bytes (row by row with relaxed loads when it has atomic rows) and its
  // labels. REQUIRES: on the thread that writes the block's plain members.
  static CounterBlockCopy Of(const CounterBlockRef& ref);

  // Loads each row's std::atomic<uint64_t> (relaxed). Any thread.
  template <typename Block>
  static CounterBlockCopy OfAtomics(const CounterTable& table, const Block& block) {
    static_assert(std::is_standard_layout_v<Block>);
    PH_CHECK(table.block_bytes == sizeof(Block));
    CounterBlockCopy copy(table);
    const char* base = reinterpret_cast<const char*>(&block);
    for (const CounterRow& row : table.rows) {
      const uint64_t v = reinterpret_cast<const std::atomic<uint64_t>*>(base + row.offset)
                             ->load(std::memory_order_relaxed);
      std::memcpy(reinterpret_cast<char*>(copy.words_.data()) + row.offset, &v, sizeof(v));
    }
    return copy;
  }

  // Adds `key="value"` to every sample of this copy (e.g. which HTTP listener it counts).
  CounterBlockCopy&& WithLabel(std::string key, std::string value) && {
    labels_.emplace_back(std::move(key), std::move(value));
    return std::move(*this);
  }

  // Null for a default-constructed copy.
  const CounterTable* table() const { return table_; }
  // REQUIRES: `row` is one of table()'s rows.
  uint64_t value(const CounterRow& row) const;
  const std::vector<std::pair<std::string, std::string>>& labels() const { return labels_; }

 private:
  explicit CounterBlockCopy(const CounterTable& table)
      : table_(&table), words_((table.block_bytes + 7) / 8) {}

  const CounterTable* table_ = nullptr;
  std::vector<uint64_t> words_;
  std::vector<std::pair<std::string, std::string>> labels_;
};

}  // namespace posthaste::metrics

#endif  // POSTHASTE_METRICS_COUNTER_TABLE_H_
