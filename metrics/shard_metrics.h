// Per-shard metrics with labels: sessions by tenant and outcome, logins, commands and their
// latency histograms, TLS handshakes, LMTP deliveries, store errors (docs/CONTRIBUTING.md,
// "Counters"). The scalar counters live in the services' counter blocks (plain structs declared as
// X-macro tables, exported through metrics/counter_table.h). No prometheus-cpp here:
// //metrics:exporter turns a set of shard copies into Prometheus families at scrape time.
//
// Threading: a ShardMetrics is written only by its shard's thread, with plain integers (no
// atomics, no locks on the hot path). Nobody else reads it in place: at scrape time the
// exporter asks each shard (through the server's inbox, see ExporterSources in exporter.h) to
// copy its block on its own thread, so there are no torn or racy reads. The copy is a few KiB
// of memcpy per shard per scrape.
//
// Tenant labels are bounded (TenantLabels): the largest tenants get a slot each, the rest share
// "other". The set is re-chosen while serving (metrics/tenant_series.h), so a shard keys its
// per-tenant counters by series (one per label value the shard has counted under, kept for the
// shard's life) rather than by the current set's slots: counters never go down.
#ifndef POSTHASTE_METRICS_SHARD_METRICS_H_
#define POSTHASTE_METRICS_SHARD_METRICS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace posthaste::metrics {

// ---- Histograms ----

// Upper bounds (seconds) of the latency buckets, shared by every latency histogram: from 50 us
// (a cached STAT) to 10 s (a slow password hash under load).
inline constexpr std::array<double, 16> kLatencyBucketsSeconds = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025,   0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   10.0};

// A fixed-bucket latency histogram in nanoseconds. Plain integers; owned by one shard.
struct LatencyHistogram {
  // buckets[i] counts observations <= kLatencyBucketsSeconds[i] and > the previous bound; the
  // last slot counts those above every bound (+Inf).
  std::array<uint64_t, kLatencyBucketsSeconds.size() + 1> buckets{};
  uint64_t sum_ns = 0;

  void Observe(uint64_t ns);
  uint64_t count() const;
  void Add(const LatencyHistogram& other);
};

// ---- Label sets ----

// POP3 commands (the session's command table) plus unknown verbs and lines that were too long.
enum class Command : uint8_t {
  kUser,
  kPass,
  kApop,
  kAuth,
  kStls,
  kStat,
  kList,
  kRetr,
  kDele,
  kNoop,
  kRset,
  kTop,
  kUidl,
  kCapa,
  kUtf8,
  kLang,
  kQuit,
  kUnknown,
  kCount
};
std::string_view CommandLabel(Command command);
inline constexpr size_t kCommandCount = static_cast<size_t>(Command::kCount);

enum class CommandResult : uint8_t { kOk, kErr, kCount };
std::string_view CommandResultLabel(CommandResult result);

// kSasl: any mechanism beyond PLAIN and LOGIN (each counted by name in the POP3 service's
// posthaste_auth_*_total rows).
enum class AuthMechanismLabel : uint8_t { kUser, kApop, kPlain, kLogin, kSasl, kCount };
std::string_view AuthMechanismName(AuthMechanismLabel mechanism);

enum class AuthResult : uint8_t {
  kOk,
  kFailed,       // bad credentials (or an unsupported mechanism)
  kTempFailure,  // [SYS/TEMP]: store or offload trouble
  kPermFailure,  // [SYS/PERM]: disabled account
  kCount
};
std::string_view AuthResultLabel(AuthResult result);

// How a POP3 connection ended.
enum class SessionOutcome : uint8_t {
  kLogout,        // QUIT in TRANSACTION, deletions committed
  kQuit,          // QUIT before logging in
  kCommitFailed,  // QUIT in TRANSACTION, commit failed ([SYS/TEMP])
  kDisconnected,  // the peer went away (or an I/O error) without QUIT
  kTimeout,       // authorization, idle or send-stall timeout
  kAborted,       // ended by the server: takeover, shutdown, protocol limits
  kRefused,       // refused before the greeting (a connection limit)
  kCount
};
std::string_view SessionOutcomeLabel(SessionOutcome outcome);

// Connections refused before the greeting that no limit counter covers: the limits' own
// counters (ShardStats limit_per_*) feed the other reasons of the same family.
enum class RefuseReason : uint8_t { kBusy, kCount };
std::string_view RefuseReasonLabel(RefuseReason reason);

enum class TlsVersion : uint8_t { kTls12, kTls13, kOther, kCount };
std::string_view TlsVersionLabel(TlsVersion version);
// "TLSv1.2" / "TLSv1.3" (as BoringSSL names them); anything else, or a handshake that failed
// before a version was agreed, is kOther.
TlsVersion TlsVersionFromName(std::string_view name);
enum class TlsOutcome : uint8_t { kOk, kResumed, kFailed, kCount };
std::string_view TlsOutcomeLabel(TlsOutcome outcome);

enum class LmtpResult : uint8_t { kDelivered, kOverQuota, kTempFailure, kPermFailure, kCount };
std::string_view LmtpResultLabel(LmtpResult result);

enum class StoreOperation : uint8_t { kOpenMailbox, kCommit, kTopScan, kCount };
std::string_view StoreOperationLabel(StoreOperation operation);

// The bounded set of tenant label values. Slot 0 is "other" (every tenant without a slot of its
// own), slot 1 is "none" (no tenant known: before a login names one), then the tenants given.
// Immutable after construction; shared read-only by every shard.
class TenantLabels {
 public:
  static constexpr uint16_t kOther = 0;
  static constexpr uint16_t kNone = 1;

  TenantLabels() : TenantLabels(std::vector<std::string>{}) {}
  // `tenants`: domains (lower case) that get their own label, in any order.
  explicit TenantLabels(std::vector<std::string> tenants);

  // Picks the `max_tenants` largest domains by `accounts_per_domain` (ties: by name).
  static TenantLabels Largest(const absl::flat_hash_map<std::string, uint64_t>& accounts_per_domain,
                              size_t max_tenants);
  // Picks the `max_tenants` largest domains of either map: by sessions, then (ties, and the
  // domains without sessions yet) by accounts, then by name.
  static TenantLabels Ranked(const absl::flat_hash_map<std::string, uint64_t>& sessions_per_domain,
                             const absl::flat_hash_map<std::string, uint64_t>& accounts_per_domain,
                             size_t max_tenants);

  size_t size() const { return labels_.size(); }
  std::string_view label(uint16_t slot) const { return labels_[slot]; }
  // Every label value, slot order (other, none, then the tenants).
  const std::vector<std::string>& labels() const { return labels_; }
  // The slot of `domain` (case-insensitive), or kOther.
  uint16_t SlotOf(std::string_view domain) const;
  // The slot of the domain part of `address` ("user@domain"); kOther without one.
  uint16_t SlotOfAddress(std::string_view address) const;

 private:
  std::vector<std::string> labels_;
  absl::flat_hash_map<std::string, uint16_t> slots_;
};

// ---- The per-shard block ----

// Per-tenant counters of one tenant label value.
struct TenantSeriesCounters {
  std::array<uint64_t, static_cast<size_t>(SessionOutcome::kCount)> sessions{};
  // [mechanism][result]
  std::array<std::array<uint64_t, static_cast<size_t>(AuthResult::kCount)>,
             static_cast<size_t>(AuthMechanismLabel::kCount)>
      authentications{};
  // Sessions that retrieved more than the alarm's share of a large mailbox
  // (server/pop3_service/redownload_watch.h).
  uint64_t redownload_sessions = 0;

  void Add(const TenantSeriesCounters& other);
};

struct ShardMetrics {
  // Starts with the series "other" and "none" (TenantLabels::kOther and kNone).
  ShardMetrics();

  // Refusals counted here rather than in a service's counter block (see RefuseReason).
  std::array<uint64_t, static_cast<size_t>(RefuseReason::kCount)> connections_refused{};

  // Per tenant series: its label value and its counters, index = series (stable for the
  // block's life; 0 is "other", 1 is "none"). Grown only by AppendTenantSeries.
  std::vector<std::string> tenant_labels;
  std::vector<TenantSeriesCounters> tenants;

  std::array<std::array<uint64_t, static_cast<size_t>(CommandResult::kCount)>, kCommandCount>
      commands{};
  std::array<LatencyHistogram, kCommandCount> command_latency{};

  std::array<std::array<uint64_t, static_cast<size_t>(TlsOutcome::kCount)>,
             static_cast<size_t>(TlsVersion::kCount)>
      tls_handshakes{};
  std::array<uint64_t, static_cast<size_t>(LmtpResult::kCount)> lmtp_deliveries{};
  std::array<uint64_t, static_cast<size_t>(StoreOperation::kCount)> store_errors{};

  // Adds a series for `label` (lower case, not yet a series) at the end; returns its index.
  // Shard thread.
  uint16_t AppendTenantSeries(std::string_view label);

  // Hot-path helpers (shard thread only). `tenant`: a series index.
  void CountSession(uint16_t tenant, SessionOutcome outcome) {
    ++tenants[tenant].sessions[static_cast<size_t>(outcome)];
  }
  void CountAuth(uint16_t tenant, AuthMechanismLabel mechanism, AuthResult result) {
    ++tenants[tenant].authentications[static_cast<size_t>(mechanism)][static_cast<size_t>(result)];
  }
  void CountRedownloadSession(uint16_t tenant) { ++tenants[tenant].redownload_sessions; }
  void CountCommand(Command command, CommandResult result, uint64_t latency_ns) {
    ++commands[static_cast<size_t>(command)][static_cast<size_t>(result)];
    command_latency[static_cast<size_t>(command)].Observe(latency_ns);
  }
  void CountRefused(RefuseReason reason) { ++connections_refused[static_cast<size_t>(reason)]; }
  void CountStoreError(StoreOperation op) { ++store_errors[static_cast<size_t>(op)]; }
  void CountTlsHandshake(TlsVersion version, TlsOutcome outcome) {
    ++tls_handshakes[static_cast<size_t>(version)][static_cast<size_t>(outcome)];
  }
  void CountLmtpDelivery(LmtpResult result) { ++lmtp_deliveries[static_cast<size_t>(result)]; }

  // Adds `other` into this block (the scrape's sum). Tenant series are matched by label value;
  // those this block lacks are added.
  void Add(const ShardMetrics& other);
};

// Whole-store figures, filled by the server from storage's own stats struct (this package
// does not know storage).
struct StoreMetrics {
  bool valid = false;  // false: the store could not be read this scrape
  uint64_t accounts = 0;
  uint64_t messages = 0;
  uint64_t octets = 0;
  uint64_t segments = 0;
  uint64_t segment_file_bytes = 0;
  uint64_t live_bytes = 0;
  uint64_t dead_bytes = 0;
  uint64_t compactions = 0;
  uint64_t compacted_segments = 0;
  uint64_t deliveries = 0;
  uint64_t deletions = 0;
  uint64_t block_cache_hits = 0;
  uint64_t block_cache_misses = 0;
  uint64_t write_stall_micros = 0;
  uint64_t write_stopped = 0;    // gauge: 1 while RocksDB stops writes
  uint64_t index_read_only = 0;  // gauge: 1 while the index refuses writes after a write fault
  // gauges: the index's memory by part (storage's StoreStats)
  uint64_t index_memtable_bytes = 0;
  uint64_t index_block_cache_bytes = 0;
  uint64_t index_block_cache_capacity = 0;
  uint64_t index_table_reader_bytes = 0;
};

}  // namespace posthaste::metrics

#endif  // POSTHASTE_METRICS_SHARD_METRICS_H_
