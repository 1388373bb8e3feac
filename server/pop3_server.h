// Pop3Server: the POP3 service on a Reactor. Per shard (ShardContext): a SO_REUSEPORT
// listener with a multishot accept, a provided buffer ring for multishot receives, the
// connections of that shard, its stats, its part of the maildrop registry (users whose
// OwnerShard is this shard) and its part of the per-client-IP connection counts (IPs whose
// owner is this shard). Shards talk only by Inbox messages (RunOn).
//
// Threading: ServerContext is built before the shards start and is read-only afterwards,
// except `draining` (set once by the main thread) and each ShardContext's
// `connections.PublishedOpen()` (stored by its shard, loaded by the main thread). Stats are read by posting a closure to the
// shard (admin HTTP). A
// ShardContext's other members are touched only on its shard's thread.
// Ownership: the ServerContext owns the ShardContexts; each ShardContext owns its listeners,
// buffer ring and connections, which it frees in its shard's OnDrained hook.
#ifndef POSTHASTE_SERVER_POP3_SERVER_H_
#define POSTHASTE_SERVER_POP3_SERVER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "metrics/shard_metrics.h"
#include "server/auth_service.h"
#include "server/counters.h"
#include "server/maildrop_registry.h"
#include "server/reactor/buffer_ring.h"
#include "server/reactor/net.h"
#include "server/reactor/send.h"
#include "server/reactor/shard.h"
#include "server/serve_options.h"
#include "server/shard_connections.h"
#include "server/shard_listener.h"
#include "server/tenant_policies.h"
#include "storage/mail_store.h"
#include "tls/ktls.h"
#include "tls/tls_context.h"
#include "tls/tls_engine.h"

namespace posthaste::server {

class Pop3Connection;

struct ShardContext;

struct ServerContext {
  ServeOptions options;
  storage::MailStore* store = nullptr;
  AuthService* auth = nullptr;
  reactor::Reactor* reactor = nullptr;
  uint16_t pop3_port = 0;
  uint16_t pop3s_port = 0;  // 0: no implicit-TLS listener
  // Null when no certificate is configured (then no STLS and no pop3s listener).
  TlsContextSet* tls = nullptr;
  KtlsCapability ktls;  // probed once at start-up
  // Per-tenant plaintext-login overrides (loaded at start, refreshed on tenant changes).
  TenantPolicyTable* tenant_policies = nullptr;
  // Process-wide counters, e.g. certificate reloads (main thread writes; the HTTP thread reads).
  ProcessCounters process;
  std::vector<std::unique_ptr<ShardContext>> shards;
  std::atomic<bool> draining{false};
  // Tenant label slots for metrics (fixed at start-up; read-only afterwards).
  std::shared_ptr<const metrics::TenantLabels> tenant_labels =
      std::make_shared<metrics::TenantLabels>();
};

struct ShardContext {
  ServerContext* server = nullptr;
  reactor::Shard* shard = nullptr;
  uint32_t index = 0;
  ShardListener listener;
  ShardListener pop3s_listener;  // implicit TLS; no fd when off
  std::unique_ptr<reactor::BufferRing> buffers;
  std::unique_ptr<TlsShardContexts> tls;  // null when TLS is off
  // Null when the server has no TenantPolicyTable.
  std::unique_ptr<ShardTenantPolicies> tenant_policies;
  // Open connections; PublishedOpen() serves the main thread's drain wait.
  ShardConnections<Pop3Connection> connections;
  ShardStats stats;
  metrics::ShardMetrics metrics;  // this shard's metric block (admin_http copies it on scrape)
  MaildropRegistry registry;      // users owned by this shard
  absl::flat_hash_map<std::string, uint32_t> ip_counts;  // IPs owned by this shard
  // Every counter block on this shard, copied with `metrics` at scrape time: this shard's
  // ShardStats and ring statistics, and the LMTP shard's LmtpStats when LMTP runs. Services
  // register on this shard's thread when they start listening.
  std::vector<metrics::CounterBlockRef> counter_blocks;
  // TLS error log lines: at most kTlsErrorLogsPerSecond per shard (a scanner can fail thousands
  // of handshakes a second); the rest are counted and summarised in the next line logged.
  static constexpr uint32_t kTlsErrorLogsPerSecond = 20;
  uint64_t tls_error_log_second = 0;
  uint32_t tls_error_logs_this_second = 0;
  uint64_t tls_error_logs_suppressed = 0;

  // Runs `fn` on shard `target` (this shard: deferred on the ring; another: by its inbox).
  // False when the target's inbox refused it (full or closed); `fn` is then dropped.
  bool RunOn(uint32_t target, absl::AnyInvocable<void()> fn);
  ShardContext& Peer(uint32_t target) { return *server->shards[target]; }

  // Shard thread.
  void StartListening();
  void StopAccepting();
  void CloseAll();
  Pop3Connection* Find(uint64_t id);
  void Destroy(uint64_t id);  // deferred delete of a finished connection

 private:
  void OnAccept(int fd, bool implicit_tls);
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_POP3_SERVER_H_
