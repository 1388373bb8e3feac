#include "metrics/exporter.h"

#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "base/check.h"
#include "prometheus/text_serializer.h"

namespace posthaste::metrics {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

using Labels = std::vector<ClientMetric::Label>;

// Families in the order first seen; a name always maps to the same family, so every family's
// samples come out together whatever order they are added in.
class FamilyList {
 public:
  MetricFamily& Family(std::string_view name, std::string_view help, MetricType type) {
    auto [it, inserted] = index_.try_emplace(std::string(name), families_.size());
    if (inserted) families_.push_back(MetricFamily{std::string(name), std::string(help), type, {}});
    MetricFamily& family = families_[it->second];
    if (family.help.empty()) family.help = std::string(help);
    return family;
  }
  // Adds `value` to the sample of family `name` with exactly `labels` (made at 0 if new).
  void AddTo(std::string_view name, std::string_view help, MetricType type, Labels labels,
             double value) {
    MetricFamily& family = Family(name, help, type);
    for (ClientMetric& m : family.metric) {
      if (m.label == labels) {
        (type == MetricType::Gauge ? m.gauge.value : m.counter.value) += value;
        return;
      }
    }
    ClientMetric m;
    m.label = std::move(labels);
    (type == MetricType::Gauge ? m.gauge.value : m.counter.value) = value;
    family.metric.push_back(std::move(m));
  }
  void Counter(std::string_view name, std::string_view help, Labels labels, double value) {
    ClientMetric m;
    m.label = std::move(labels);
    m.counter.value = value;
    Family(name, help, MetricType::Counter).metric.push_back(std::move(m));
  }
  void Gauge(std::string_view name, std::string_view help, Labels labels, double value) {
    ClientMetric m;
    m.label = std::move(labels);
    m.gauge.value = value;
    Family(name, help, MetricType::Gauge).metric.push_back(std::move(m));
  }
  void Histogram(std::string_view name, std::string_view help, Labels labels,
                 const LatencyHistogram& h) {
    ClientMetric m;
    m.label = std::move(labels);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < kLatencyBucketsSeconds.size(); ++i) {
      cumulative += h.buckets[i];
      m.histogram.bucket.push_back({cumulative, kLatencyBucketsSeconds[i]});
    }
    // The count is the sum of the buckets, so +Inf always equals _count.
    m.histogram.sample_count = cumulative + h.buckets.back();
    m.histogram.sample_sum = static_cast<double>(h.sum_ns) / 1e9;
    Family(name, help, MetricType::Histogram).metric.push_back(std::move(m));
  }
  std::vector<MetricFamily> Take() { return std::move(families_); }

 private:
  std::vector<MetricFamily> families_;
  absl::flat_hash_map<std::string, size_t> index_;
};

// One block copy's rows into `out`. `shard`: the copy's shard, or -1 for a process-wide block.
void ExportBlock(const CounterBlockCopy& copy, int64_t shard, FamilyList& out) {
  if (copy.table() == nullptr) return;  // a shard that has not answered yet
  for (const CounterRow& row : copy.table()->rows) {
    Labels labels;
    for (auto& [key, value] : ParseCounterLabels(row.labels)) {
      labels.push_back({std::move(key), std::move(value)});
    }
    for (const auto& [key, value] : copy.labels()) labels.push_back({key, value});
    const double value = static_cast<double>(copy.value(row));
    switch (row.kind) {
      case CounterKind::kCounter:
        out.AddTo(row.name, row.help, MetricType::Counter, std::move(labels), value);
        break;
      case CounterKind::kGauge:
        out.AddTo(row.name, row.help, MetricType::Gauge, std::move(labels), value);
        break;
      case CounterKind::kCounterPerShard:
      case CounterKind::kGaugePerShard:
      case CounterKind::kNanosAsSecondsPerShard: {
        PH_DCHECK(shard >= 0);
        if (shard >= 0) labels.push_back({"shard", std::to_string(shard)});
        if (row.kind == CounterKind::kGaugePerShard) {
          out.AddTo(row.name, row.help, MetricType::Gauge, std::move(labels), value);
        } else {
          out.AddTo(row.name, row.help, MetricType::Counter, std::move(labels),
                    row.kind == CounterKind::kNanosAsSecondsPerShard ? value / 1e9 : value);
        }
        break;
      }
    }
  }
}

Labels L(std::string_view k, std::string_view v) { return {{std::string(k), std::string(v)}}; }
Labels L(std::string_view k1, std::string_view v1, std::string_view k2, std::string_view v2) {
  return {{std::string(k1), std::string(v1)}, {std::string(k2), std::string(v2)}};
}

}  // namespace

Exporter::Exporter(ExporterSources sources) : sources_(std::move(sources)) {}

std::vector<MetricFamily> Exporter::Collect() const {
  std::vector<ShardCopy> shards;
  const uint32_t answered = sources_.shards ? sources_.shards(&shards) : 0;
  std::vector<CounterBlockCopy> process;
  if (sources_.process) process = sources_.process();
  StoreMetrics store;
  if (sources_.store) store = sources_.store();
  const bool ready = sources_.ready ? sources_.ready() : true;
  std::vector<MetricFamily> families =
      Families(shards, answered, process, sources_.store ? &store : nullptr, ready);
  if (absl::StatusOr<ProcessMetrics> own = ReadProcessMetrics(); own.ok()) {
    for (MetricFamily& family : ProcessFamilies(*own)) families.push_back(std::move(family));
  }
  return families;
}

std::vector<MetricFamily> Exporter::ProcessFamilies(const ProcessMetrics& process) {
  FamilyList out;
  out.Counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", {},
              process.cpu_seconds);
  out.Gauge("process_resident_memory_bytes", "Resident memory size in bytes.", {},
            static_cast<double>(process.resident_bytes));
  out.Gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", {},
            static_cast<double>(process.virtual_bytes));
  out.Gauge("process_open_fds", "Number of open file descriptors.", {},
            static_cast<double>(process.open_fds));
  out.Gauge("process_max_fds", "Maximum number of open file descriptors.", {},
            static_cast<double>(process.max_fds));
  out.Gauge("process_threads", "Number of OS threads in the process.", {},
            static_cast<double>(process.threads));
  out.Gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
            {}, process.start_time_seconds);
  return out.Take();
}

std::vector<MetricFamily> Exporter::Families(const std::vector<ShardCopy>& shards,
                                             uint32_t shards_answered,
                                             const std::vector<CounterBlockCopy>& process,
                                             const StoreMetrics* store, bool ready) {
  ShardMetrics sum;
  for (const ShardCopy& s : shards) sum.Add(s.metrics);
  FamilyList out;

  out.Gauge("posthaste_ready", "1 when serving, 0 while draining.", {}, ready ? 1 : 0);
  out.Gauge("posthaste_shards", "Reactor shards.", {}, static_cast<double>(shards.size()));
  out.Gauge("posthaste_shards_answering",
            "Shards that copied their metrics for this scrape (the others show their last copy).",
            {}, shards_answered);

  out.Counter("posthaste_bugs_total",
              "Broken invariants logged and recovered from (PH_BUG); should stay 0.", {},
              static_cast<double>(BugCount()));

  // Counter blocks, through their tables.
  for (size_t i = 0; i < shards.size(); ++i) {
    for (const CounterBlockCopy& block : shards[i].blocks) {
      ExportBlock(block, static_cast<int64_t>(i), out);
    }
  }
  for (const CounterBlockCopy& block : process) ExportBlock(block, -1, out);

  for (size_t r = 0; r < static_cast<size_t>(RefuseReason::kCount); ++r) {
    out.AddTo("posthaste_pop3_connections_refused_total",
              "POP3 connections refused before the greeting, by reason.", MetricType::Counter,
              L("reason", RefuseReasonLabel(static_cast<RefuseReason>(r))),
              static_cast<double>(sum.connections_refused[r]));
  }
  for (size_t t = 0; t < sum.tenants.size(); ++t) {
    for (size_t o = 0; o < static_cast<size_t>(SessionOutcome::kCount); ++o) {
      out.Counter("posthaste_pop3_sessions_total",
                  "POP3 sessions ended, by tenant (largest tenants; the rest are \"other\", "
                  "\"none\" before a login) and outcome.",
                  L("tenant", sum.tenant_labels[t], "outcome",
                    SessionOutcomeLabel(static_cast<SessionOutcome>(o))),
                  static_cast<double>(sum.tenants[t].sessions[o]));
    }
  }
  for (size_t t = 0; t < sum.tenants.size(); ++t) {
    for (size_t m = 0; m < static_cast<size_t>(AuthMechanismLabel::kCount); ++m) {
      for (size_t r = 0; r < static_cast<size_t>(AuthResult::kCount); ++r) {
        Labels labels = L("tenant", sum.tenant_labels[t], "mechanism",
                          AuthMechanismName(static_cast<AuthMechanismLabel>(m)));
        labels.push_back({"result", std::string(AuthResultLabel(static_cast<AuthResult>(r)))});
        out.Counter("posthaste_pop3_authentications_total",
                    "POP3 login attempts by tenant, mechanism and result.", std::move(labels),
                    static_cast<double>(sum.tenants[t].authentications[m][r]));
      }
    }
  }
  for (size_t t = 0; t < sum.tenants.size(); ++t) {
    if (t == TenantLabels::kNone) continue;  // the alarm needs a logged-in session
    out.Counter("posthaste_pop3_redownload_sessions_total",
                "POP3 sessions that retrieved more than --redownload_alarm_percent of a mailbox of "
                "at least --redownload_alarm_messages_min messages (lost UIDL state, changed "
                "UIDLs), by tenant.",
                L("tenant", sum.tenant_labels[t]),
                static_cast<double>(sum.tenants[t].redownload_sessions));
  }
  for (size_t c = 0; c < kCommandCount; ++c) {
    for (size_t r = 0; r < static_cast<size_t>(CommandResult::kCount); ++r) {
      out.Counter("posthaste_pop3_commands_total", "POP3 commands by verb and reply status.",
                  L("command", CommandLabel(static_cast<Command>(c)), "result",
                    CommandResultLabel(static_cast<CommandResult>(r))),
                  static_cast<double>(sum.commands[c][r]));
    }
  }
  for (size_t c = 0; c < kCommandCount; ++c) {
    out.Histogram("posthaste_pop3_command_duration_seconds",
                  "Time from a command being parsed to its status line (includes password "
                  "verification, maildrop open and commit; excludes sending the reply).",
                  L("command", CommandLabel(static_cast<Command>(c))), sum.command_latency[c]);
  }
  for (size_t v = 0; v < static_cast<size_t>(TlsVersion::kCount); ++v) {
    for (size_t o = 0; o < static_cast<size_t>(TlsOutcome::kCount); ++o) {
      out.Counter("posthaste_tls_handshakes_total", "TLS handshakes by version and outcome.",
                  L("version", TlsVersionLabel(static_cast<TlsVersion>(v)), "outcome",
                    TlsOutcomeLabel(static_cast<TlsOutcome>(o))),
                  static_cast<double>(sum.tls_handshakes[v][o]));
    }
  }
  for (size_t r = 0; r < static_cast<size_t>(LmtpResult::kCount); ++r) {
    out.Counter("posthaste_lmtp_deliveries_total", "LMTP deliveries (per recipient) by result.",
                L("result", LmtpResultLabel(static_cast<LmtpResult>(r))),
                static_cast<double>(sum.lmtp_deliveries[r]));
  }
  for (size_t o = 0; o < static_cast<size_t>(StoreOperation::kCount); ++o) {
    out.Counter("posthaste_store_errors_total",
                "Store operations that failed while serving, by operation.",
                L("operation", StoreOperationLabel(static_cast<StoreOperation>(o))),
                static_cast<double>(sum.store_errors[o]));
  }

  if (store != nullptr) {
    out.Gauge("posthaste_store_up", "1 when the store's figures could be read this scrape.", {},
              store->valid ? 1 : 0);
    if (store->valid) {
      out.Gauge("posthaste_store_accounts", "Accounts in the store.", {},
                static_cast<double>(store->accounts));
      out.Gauge("posthaste_store_messages", "Messages in the store.", {},
                static_cast<double>(store->messages));
      out.Gauge("posthaste_store_message_bytes", "POP3 octets of the stored messages.", {},
                static_cast<double>(store->octets));
      out.Gauge("posthaste_store_segments", "Segment files.", {},
                static_cast<double>(store->segments));
      out.Gauge("posthaste_store_segment_bytes", "Bytes in segment files.", {},
                static_cast<double>(store->segment_file_bytes));
      out.Gauge("posthaste_store_live_bytes", "Segment bytes of messages still in a mailbox.", {},
                static_cast<double>(store->live_bytes));
      out.Gauge("posthaste_store_dead_bytes",
                "Segment bytes of deleted messages (reclaimed by compaction).", {},
                static_cast<double>(store->dead_bytes));
      out.Counter("posthaste_store_compactions_total", "Compaction runs that rewrote segments.", {},
                  static_cast<double>(store->compactions));
      out.Counter("posthaste_store_compacted_segments_total", "Segments rewritten by compaction.",
                  {}, static_cast<double>(store->compacted_segments));
      out.Counter("posthaste_store_deliveries_total", "Acknowledged deliveries.", {},
                  static_cast<double>(store->deliveries));
      out.Counter("posthaste_store_deletions_total", "Messages removed by commits.", {},
                  static_cast<double>(store->deletions));
      out.Counter("posthaste_store_block_cache_hits_total", "RocksDB block cache hits.", {},
                  static_cast<double>(store->block_cache_hits));
      out.Counter("posthaste_store_block_cache_misses_total", "RocksDB block cache misses.", {},
                  static_cast<double>(store->block_cache_misses));
      const uint64_t lookups = store->block_cache_hits + store->block_cache_misses;
      out.Gauge("posthaste_store_block_cache_hit_ratio",
                "RocksDB block cache hits / lookups since start (0 before any lookup).", {},
                lookups == 0
                    ? 0.0
                    : static_cast<double>(store->block_cache_hits) / static_cast<double>(lookups));
      out.Counter("posthaste_store_write_stall_seconds_total",
                  "Time RocksDB delayed or stopped writes (write stalls).", {},
                  static_cast<double>(store->write_stall_micros) / 1e6);
      out.Gauge("posthaste_store_write_stopped", "1 while RocksDB stops writes.", {},
                static_cast<double>(store->write_stopped));
      out.Gauge("posthaste_store_index_read_only",
                "1 while the index refuses writes after a write fault (the log says whether it "
                "resumes by itself or needs a restart).",
                {}, static_cast<double>(store->index_read_only));
      constexpr std::string_view kIndexMemoryHelp =
          "Memory of the RocksDB index by part: memtables (two of 16 MiB at most), block cache "
          "(up to its capacity), table readers (indexes and filters of its files).";
      const std::pair<const char*, uint64_t> parts[] = {
          {"memtables", store->index_memtable_bytes},
          {"block_cache", store->index_block_cache_bytes},
          {"table_readers", store->index_table_reader_bytes},
      };
      for (const auto& [part, bytes] : parts) {
        out.Gauge("posthaste_store_index_memory_bytes", kIndexMemoryHelp, {{"part", part}},
                  static_cast<double>(bytes));
      }
      out.Gauge("posthaste_store_index_block_cache_capacity_bytes",
                "Capacity of the RocksDB index's block cache (its usage stops there).", {},
                static_cast<double>(store->index_block_cache_capacity));
    }
  }
  return out.Take();
}

std::string SerializeText(const std::vector<prometheus::MetricFamily>& families) {
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace posthaste::metrics
