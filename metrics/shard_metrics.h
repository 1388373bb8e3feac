// Per-shard metrics: the counters, gauges and histograms one reactor shard keeps, declared once
// (docs/CONTRIBUTING.md, "Counters"). No prometheus-cpp here: //metrics:exporter turns a set of
// shard copies into Prometheus families at scrape time.
//
// Threading: a ShardMetrics is written only by its shard's thread, with plain integers (no
// atomics, no locks on the hot path). Nobody else reads it in place: at scrape time the
// exporter asks each shard (through the server's inbox, see ShardSnapshotSource in
// exporter.h) to copy its block on its own thread, so there are no torn or racy reads. The
// copy is a few KiB of memcpy per shard per scrape.
//
// Tenant labels are bounded (TenantLabels): the largest tenants get a slot each, the rest share
// "other".
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
  kQuit,
  kUnknown,
  kCount
};
std::string_view CommandLabel(Command command);
inline constexpr size_t kCommandCount = static_cast<size_t>(Command::kCount);

enum class CommandResult : uint8_t { kOk, kErr, kCount };
std::string_view CommandResultLabel(CommandResult result);

enum class AuthMechanismLabel : uint8_t { kUser, kApop, kPlain, kLogin, kCount };
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

enum class RefuseReason : uint8_t { kPerShard, kPerIp, kPerUserIp, kBusy, kCount };
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

  size_t size() const { return labels_.size(); }
  std::string_view label(uint16_t slot) const { return labels_[slot]; }
  // The slot of `domain` (case-insensitive), or kOther.
  uint16_t SlotOf(std::string_view domain) const;
  // The slot of the domain part of `address` ("user@domain"); kOther without one.
  uint16_t SlotOfAddress(std::string_view address) const;

 private:
  std::vector<std::string> labels_;
  absl::flat_hash_map<std::string, uint16_t> slots_;
};

// ---- The per-shard block ----

// Counters copied from the reactor's per-ring statistics at snapshot time.
struct ReactorMetrics {
  uint64_t loop_iterations = 0;
  uint64_t sqes_prepared = 0;
  uint64_t submissions = 0;
  uint64_t completions = 0;
  uint64_t cq_overflows = 0;
  uint64_t sq_full_retries = 0;
  uint64_t busy_ns = 0;
};

// Scalar counters: X(field, metric name, label (k=v or empty), help). Rows with the same metric
// name form one family; keep them adjacent.
#define PH_SHARD_COUNTERS(X)                                                                      \
  X(connections_accepted, "posthaste_pop3_connections_accepted_total", "",                        \
    "POP3 connections accepted.")                                                                 \
  X(sessions_authenticated, "posthaste_pop3_sessions_authenticated_total", "",                    \
    "Successful logins (maildrop opened or not).")                                                \
  X(auth_failures, "posthaste_pop3_auth_failures_total", "", "Failed logins.")                    \
  X(auth_cache_hits, "posthaste_pop3_auth_cache_hits_total", "",                                  \
    "Logins verified from the password verification cache.")                                      \
  X(maildrops_opened, "posthaste_pop3_maildrops_opened_total", "", "Maildrops opened.")           \
  X(commits_ok, "posthaste_pop3_commits_total", "result=ok", "QUIT commits.")                     \
  X(commits_failed, "posthaste_pop3_commits_total", "result=failed", "")                          \
  X(in_use_refusals, "posthaste_pop3_in_use_refusals_total", "", "Logins refused with [IN-USE].") \
  X(takeovers, "posthaste_pop3_takeovers_total", "", "Idle sessions ended for a newcomer.")       \
  X(limit_per_shard, "posthaste_pop3_limit_rejections_total", "limit=per_shard",                  \
    "Connections refused by a limit.")                                                            \
  X(limit_per_ip, "posthaste_pop3_limit_rejections_total", "limit=per_ip", "")                    \
  X(limit_per_user_ip, "posthaste_pop3_limit_rejections_total", "limit=per_user_ip", "")          \
  X(timeouts_auth, "posthaste_pop3_timeouts_total", "timeout=authorization",                      \
    "Connections closed by a timeout.")                                                           \
  X(timeouts_idle, "posthaste_pop3_timeouts_total", "timeout=idle", "")                           \
  X(timeouts_send_stall, "posthaste_pop3_timeouts_total", "timeout=send_stall", "")               \
  X(body_splice_bytes, "posthaste_pop3_body_bytes_total", "path=splice",                          \
    "Message body bytes (RETR/TOP) by the send path submitted.")                                  \
  X(body_send_zc_bytes, "posthaste_pop3_body_bytes_total", "path=send_zc", "")                    \
  X(body_copy_bytes, "posthaste_pop3_body_bytes_total", "path=copy", "")                          \
  X(body_zc_refused_bytes, "posthaste_pop3_body_bytes_total", "path=send_zc_refused_copy", "")    \
  X(body_tls_bytes, "posthaste_pop3_body_bytes_total", "path=tls_userspace", "")                  \
  X(retrieved_zero_copy_bytes, "posthaste_pop3_retrieved_bytes_total", "path=zero_copy",          \
    "RETR and TOP body bytes: zero_copy (splice, SEND_ZC) or copied through user memory.")        \
  X(retrieved_copied_bytes, "posthaste_pop3_retrieved_bytes_total", "path=copied", "")            \
  X(reply_bytes, "posthaste_pop3_reply_bytes_total", "", "Reply bytes sent by plain send.")       \
  X(streams_ok, "posthaste_pop3_streams_total", "result=ok", "Message streams.")                  \
  X(streams_failed, "posthaste_pop3_streams_total", "result=failed", "")                          \
  X(zc_notifs_copied, "posthaste_pop3_zc_notifications_copied_total", "",                         \
    "SEND_ZC notifications reporting the kernel copied anyway (always on loopback).")             \
  X(lines_too_long, "posthaste_pop3_command_line_too_long_total", "",                             \
    "Command lines over the line limit.")                                                         \
  X(tls_sessions_ktls, "posthaste_tls_sessions_total", "path=ktls",                               \
    "TLS sessions past the handshake by data path (kernel TLS or the userspace engine).")         \
  X(tls_sessions_userspace, "posthaste_tls_sessions_total", "path=userspace", "")                 \
  X(tls_ktls_errors, "posthaste_tls_ktls_errors_total", "",                                       \
    "Sessions where kernel TLS was available but enabling it failed.")                            \
  X(tls_implicit_accepted, "posthaste_tls_connections_total", "mode=implicit",                    \
    "TLS connections started, by how.")                                                           \
  X(tls_stls_started, "posthaste_tls_connections_total", "mode=stls", "")                         \
  X(tls_handshake_errors, "posthaste_tls_errors_total", "kind=handshake",                         \
    "TLS connections closed by an error, by kind (closed sessions).")                             \
  X(tls_record_errors, "posthaste_tls_errors_total", "kind=record", "")                           \
  X(tls_certificate_errors, "posthaste_tls_errors_total", "kind=certificate", "")                 \
  X(tls_limit_errors, "posthaste_tls_errors_total", "kind=limit", "")                             \
  X(tls_internal_errors, "posthaste_tls_errors_total", "kind=internal", "")                       \
  X(tls_plaintext_bytes, "posthaste_tls_plaintext_bytes_total", "",                               \
    "Plaintext bytes sealed by the userspace TLS engine (closed sessions).")                      \
  X(tls_reloads_ok, "posthaste_tls_reloads_total", "result=ok",                                   \
    "Certificate reloads, by result (process-wide; carried by shard 0).")                         \
  X(tls_reloads_failed, "posthaste_tls_reloads_total", "result=failed", "")                       \
  X(offload_rejected, "posthaste_offload_rejected_total", "",                                     \
    "Jobs refused by a full offload queue.")                                                      \
  X(post_rejected, "posthaste_inbox_rejected_total", "",                                          \
    "Cross-shard messages refused (full inbox).")

struct ShardMetrics {
  // `tenant_slots`: TenantLabels::size().
  explicit ShardMetrics(size_t tenant_slots = 2);

#define PH_DECLARE_FIELD(field, name, label, help) uint64_t field = 0;
  PH_SHARD_COUNTERS(PH_DECLARE_FIELD)
#undef PH_DECLARE_FIELD

  uint64_t connections_open = 0;  // gauge
  std::array<uint64_t, static_cast<size_t>(RefuseReason::kCount)> connections_refused{};

  // [tenant slot][outcome]
  std::vector<std::array<uint64_t, static_cast<size_t>(SessionOutcome::kCount)>> sessions;
  // [tenant slot][mechanism][result]
  std::vector<std::array<std::array<uint64_t, static_cast<size_t>(AuthResult::kCount)>,
                         static_cast<size_t>(AuthMechanismLabel::kCount)>>
      authentications;

  std::array<std::array<uint64_t, static_cast<size_t>(CommandResult::kCount)>, kCommandCount>
      commands{};
  std::array<LatencyHistogram, kCommandCount> command_latency{};

  std::array<std::array<uint64_t, static_cast<size_t>(TlsOutcome::kCount)>,
             static_cast<size_t>(TlsVersion::kCount)>
      tls_handshakes{};
  std::array<uint64_t, static_cast<size_t>(LmtpResult::kCount)> lmtp_deliveries{};
  std::array<uint64_t, static_cast<size_t>(StoreOperation::kCount)> store_errors{};

  ReactorMetrics reactor;

  // Hot-path helpers (shard thread only).
  void CountSession(uint16_t tenant, SessionOutcome outcome) {
    ++sessions[tenant][static_cast<size_t>(outcome)];
  }
  void CountAuth(uint16_t tenant, AuthMechanismLabel mechanism, AuthResult result) {
    ++authentications[tenant][static_cast<size_t>(mechanism)][static_cast<size_t>(result)];
  }
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

  // Adds `other` into this block (the scrape's sum). Tenant vectors must be the same size.
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
  uint64_t write_stopped = 0;  // gauge: 1 while RocksDB stops writes
};

}  // namespace posthaste::metrics

#endif  // POSTHASTE_METRICS_SHARD_METRICS_H_
