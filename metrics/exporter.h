// Exporter: the one prometheus::Collectable of posthaste. At scrape time it gathers a copy of
// every shard's metrics (its ShardMetrics and its counter blocks, taken on the shard's own
// thread by the source the server provides), the process-wide counter blocks and the store's
// figures, and turns their sum into Prometheus families. Counter blocks are read through their
// tables (counter_table.h): per-shard rows keep a `shard` label, the others are summed, and
// rows naming the same series are added up. prometheus-cpp's own Counter/Gauge types (a shared
// atomic each) are never used on the hot path.
//
// Threading: Collect() runs on the HTTP server's threads; it calls the sources, which must be
// thread-safe. Ownership: the sources' captures must outlive the Exporter's registration.
#ifndef POSTHASTE_METRICS_EXPORTER_H_
#define POSTHASTE_METRICS_EXPORTER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "metrics/counter_table.h"
#include "metrics/process_metrics.h"
#include "metrics/shard_metrics.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace posthaste::metrics {

// What one shard hands the exporter at a scrape, copied on the shard's thread.
struct ShardCopy {
  ShardMetrics metrics;
  std::vector<CounterBlockCopy> blocks;  // one per counter block the shard's services keep
};

struct ExporterSources {
  // Fills `shards` with one copy per shard, index = shard number; returns how many shards
  // answered this time (the source reuses a shard's previous copy when it did not).
  std::function<uint32_t(std::vector<ShardCopy>* shards)> shards;
  // Process-wide counter blocks (no per-shard rows), e.g. one per HTTP listener. Null: none.
  std::function<std::vector<CounterBlockCopy>()> process;
  // The store's figures (may block briefly; called once per scrape). Null: no store families.
  std::function<StoreMetrics()> store;
  // 1 while serving, 0 while draining. Null: always 1.
  std::function<bool()> ready;
};

class Exporter : public prometheus::Collectable {
 public:
  explicit Exporter(ExporterSources sources);
  std::vector<prometheus::MetricFamily> Collect() const override;

  // The families for given shard copies (also used by tests, without any server). Per-tenant
  // families have one series per tenant label value any shard has counted under
  // (ShardMetrics::tenant_labels).
  static std::vector<prometheus::MetricFamily> Families(
      const std::vector<ShardCopy>& shards, uint32_t shards_answered,
      const std::vector<CounterBlockCopy>& process, const StoreMetrics* store, bool ready);
  // The process_* families of Prometheus's client libraries. Collect() adds them when procfs
  // can be read.
  static std::vector<prometheus::MetricFamily> ProcessFamilies(const ProcessMetrics& process);

 private:
  ExporterSources sources_;
};

// Serialises families in the Prometheus text format (prometheus-cpp's TextSerializer).
std::string SerializeText(const std::vector<prometheus::MetricFamily>& families);

}  // namespace posthaste::metrics

#endif  // POSTHASTE_METRICS_EXPORTER_H_
