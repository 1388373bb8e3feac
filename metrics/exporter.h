// Exporter: the one prometheus::Collectable of posthaste. At scrape time it gathers a copy of
// every shard's ShardMetrics (taken on the shard's own thread by the ShardSource the server
// provides), the store's figures, and turns their sum into Prometheus families (reactor and
// open-connection families keep a `shard` label). prometheus-cpp's own Counter/Gauge types
// (a shared atomic each) are never used on the hot path.
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

#include "metrics/shard_metrics.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace posthaste::metrics {

struct ExporterSources {
  // Fills `shards` with one copy per shard, index = shard number; returns how many shards
  // answered this time (the source reuses a shard's previous copy when it did not).
  std::function<uint32_t(std::vector<ShardMetrics>* shards)> shards;
  // The store's figures (may block briefly; called once per scrape). Null: no store families.
  std::function<StoreMetrics()> store;
  // 1 while serving, 0 while draining. Null: always 1.
  std::function<bool()> ready;
};

class Exporter : public prometheus::Collectable {
 public:
  Exporter(std::shared_ptr<const TenantLabels> tenants, ExporterSources sources);
  std::vector<prometheus::MetricFamily> Collect() const override;

  // The families for given shard copies (also used by tests, without any server).
  static std::vector<prometheus::MetricFamily> Families(const TenantLabels& tenants,
                                                        const std::vector<ShardMetrics>& shards,
                                                        uint32_t shards_answered,
                                                        const StoreMetrics* store, bool ready);

 private:
  std::shared_ptr<const TenantLabels> tenants_;
  ExporterSources sources_;
};

// Serialises families in the Prometheus text format (prometheus-cpp's TextSerializer).
std::string SerializeText(const std::vector<prometheus::MetricFamily>& families);

}  // namespace posthaste::metrics

#endif  // POSTHASTE_METRICS_EXPORTER_H_
