// Pop3Server: the POP3 service on a Reactor. Per shard (ShardContext): a SO_REUSEPORT
// listener with a multishot accept, a provided buffer ring for multishot receives, the
// connections of that shard (each a Pop3Adapter over a RingTransport), what its transports
// share (TransportEnv), the Pop3ShardBackend they ask for work off the connection, its stats,
// its part of the maildrop registry (users whose OwnerShard is this shard) and its part of the
// per-client-IP connection counts (IPs whose owner is this shard). Shards talk only by Inbox
// messages (RunOn).
//
// Threading: ServerContext is built before the shards start and is read-only afterwards,
// except `draining` (set once by the main thread) and each ShardContext's
// `connections.PublishedOpen()` (stored by its shard, loaded by the main thread). Stats are read by posting a closure to the
// shard (admin HTTP). A
// ShardContext's other members are touched only on its shard's thread.
// Ownership: the ServerContext owns the ShardContexts; each ShardContext owns its listeners,
// buffer ring and connections, which it frees in its shard's OnDrained hook.
#ifndef POSTHASTE_SERVER_POP3_SERVICE_POP3_SHARD_H_
#define POSTHASTE_SERVER_POP3_SERVICE_POP3_SHARD_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "metrics/shard_metrics.h"
#include "server/counters.h"
#include "server/pop3_service/auth_service.h"
#include "server/pop3_service/maildrop_locks.h"
#include "server/pop3_service/maildrop_registry.h"
#include "server/reactor/buffer_ring.h"
#include "server/reactor/net.h"
#include "server/reactor/send.h"
#include "server/reactor/shard.h"
#include "server/serve_options.h"
#include "server/shard/shard_connections.h"
#include "server/pop3_service/pop3_adapter.h"
#include "server/pop3_service/pop3_counters.h"
#include "server/pop3_service/pop3_shard_backend.h"
#include "server/shard/shard_listener.h"
#include "server/pop3_service/tenant_policies.h"
#include "server/transport/proxy_header_reader.h"
#include "server/transport/ring_transport.h"
#include "storage/mail_store.h"
#include "tls/ktls.h"
#include "tls/tls_context.h"
#include "tls/tls_engine.h"

namespace posthaste::server {

struct ShardContext;
struct ServerContext;

// The serving shards as the maildrop lock protocol sees them (server/pop3_service/
// maildrop_locks.h): their inboxes, registries and connections.
class ServerMaildropShards final : public MaildropShards {
 public:
  explicit ServerMaildropShards(ServerContext& server) : server_(server) {}
  uint32_t shard_count() const override;
  bool RunOn(uint32_t from, uint32_t target, absl::AnyInvocable<void()> fn) override;
  MaildropRegistry& RegistryOf(uint32_t shard) override;
  bool EndIfIdle(ConnectionRef holder, std::string_view user, uint64_t idle_ns) override;

 private:
  ServerContext& server_;
};

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
  ServerMaildropShards maildrop_shards{*this};
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
  ShardConnections<pop3_service::Pop3Adapter> connections;
  ShardStats stats;
  metrics::ShardMetrics metrics;  // this shard's metric block (admin_http copies it on scrape)
  MaildropRegistry registry;      // users owned by this shard
  std::unique_ptr<MaildropLocks> locks;  // this shard's connections' maildrop locks
  absl::flat_hash_map<std::string, uint32_t> ip_counts;  // IPs owned by this shard
  // Every counter block on this shard, copied with `metrics` at scrape time: this shard's
  // ShardStats and ring statistics, and the LMTP shard's LmtpStats when LMTP runs. Services
  // register on this shard's thread when they start listening.
  std::vector<metrics::CounterBlockRef> counter_blocks;
  // What this shard's transports share (ring, buffers, send path, TLS, counters).
  transport::TransportEnv transport_env;
  transport::TlsErrorLogLimiter tls_error_log;
  // What this shard's POP3 connections ask for work off the connection.
  std::unique_ptr<pop3_service::Pop3ShardBackend> pop3_backend;
  // Connections from --proxy_networks waiting for their PROXY header; null without proxies.
  std::unique_ptr<transport::ProxyHeaderReaders> proxy_headers;

  // Runs `fn` on shard `target` (this shard: deferred on the ring; another: by its inbox).
  // False when the target's inbox refused it (full or closed); `fn` is then dropped.
  bool RunOn(uint32_t target, absl::AnyInvocable<void()> fn);
  ShardContext& Peer(uint32_t target) { return *server->shards[target]; }

  // Shard thread.
  void StartListening();
  void StopAccepting();
  pop3_service::Pop3Adapter* Find(uint64_t id);
  void Destroy(uint64_t id);  // deferred delete of a finished connection

 private:
  void OnAccept(int fd, bool implicit_tls);
  // The connection with its peer decided (the client's address when a proxy sent a header).
  void Admit(int fd, transport::PeerInfo peer, bool implicit_tls);
  void SetUpTransportEnv();
  pop3_service::Pop3AdapterOptions AdapterOptions(const transport::PeerInfo& peer,
                                                  bool implicit_tls);
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_POP3_SERVICE_POP3_SHARD_H_
