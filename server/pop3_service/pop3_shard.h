// The POP3 service on a Reactor. Per shard (Pop3Shard, beside the shard's protocol-neutral
// ServiceShard in server/shard/service_shard.h): a SO_REUSEPORT listener (and one for pop3s)
// with a multishot accept, the connections of that shard (each a Pop3Adapter over a
// RingTransport), its TransportEnv, the Pop3ShardBackend they ask for work off the connection,
// its ShardStats, its part of the maildrop registry (users whose OwnerShard is this shard) and
// its part of the per-client-IP connection counts (IPs whose owner is this shard). Shards talk
// only by Inbox messages (RunOn).
//
// Threading: Pop3Service is built before the shards start and is read-only afterwards, except
// each Pop3Shard's `connections.PublishedOpen()` (stored by its shard, loaded by the main
// thread). A Pop3Shard's other members are touched only on its shard's thread.
// Ownership: the Pop3Service owns the Pop3Shards; each owns its listeners, backend and
// connections, which it frees in its shard's drained hook (its buffer ring belongs to the
// ServiceShard).
#ifndef POSTHASTE_SERVER_POP3_SERVICE_POP3_SHARD_H_
#define POSTHASTE_SERVER_POP3_SERVICE_POP3_SHARD_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "metrics/shard_metrics.h"
#include "server/auth/sasl_mechanisms.h"
#include "server/counters.h"
#include "server/pop3_service/auth_penalty_shard.h"
#include "server/pop3_service/auth_service.h"
#include "server/pop3_service/maildrop_locks.h"
#include "server/pop3_service/maildrop_registry.h"
#include "server/pop3_service/pop3_adapter.h"
#include "server/pop3_service/pop3_counters.h"
#include "server/pop3_service/pop3_shard_backend.h"
#include "server/pop3_service/tenant_policies.h"
#include "server/reactor/buffer_ring.h"
#include "server/reactor/net.h"
#include "server/reactor/send.h"
#include "server/reactor/shard.h"
#include "server/serve_options.h"
#include "server/shard/service_shard.h"
#include "server/shard/shard_connections.h"
#include "server/shard/shard_listener.h"
#include "server/transport/proxy_header_reader.h"
#include "server/transport/ring_transport.h"
#include "storage/mail_store.h"
#include "tls/ktls.h"
#include "tls/tls_context.h"
#include "tls/tls_engine.h"

namespace posthaste::server {

struct Pop3Shard;
struct Pop3Service;

// The serving shards as the maildrop lock protocol sees them (server/pop3_service/
// maildrop_locks.h): their inboxes, registries and connections.
class ServerMaildropShards final : public MaildropShards {
 public:
  explicit ServerMaildropShards(Pop3Service& server) : server_(server) {}
  uint32_t shard_count() const override;
  bool RunOn(uint32_t from, uint32_t target, absl::AnyInvocable<void()> fn) override;
  MaildropRegistry& RegistryOf(uint32_t shard) override;
  bool EndIfIdle(ConnectionRef holder, std::string_view user, uint64_t idle_ns) override;
  void EndForMove(ConnectionRef holder, std::string_view user) override;

 private:
  Pop3Service& server_;
};

// The POP3 service: what its shards share. Built by `serve` before the reactor starts.
struct Pop3Service {
  ServeOptions options;
  storage::MailStore* store = nullptr;
  AuthService* auth = nullptr;
  // What SASL mechanisms beyond PLAIN and LOGIN need (server/auth/sasl_mechanisms.h).
  auth::SaslServerConfig sasl;
  uint16_t pop3_port = 0;
  uint16_t pop3s_port = 0;  // 0: no implicit-TLS listener
  // Per-tenant plaintext-login overrides (loaded at start, refreshed on tenant changes).
  TenantPolicyTable* tenant_policies = nullptr;
  std::vector<std::unique_ptr<Pop3Shard>> shards;
  ServerMaildropShards maildrop_shards{*this};
};

// For a live move (server/admin PUT .../hold, after MailStore::HoldAccount): ends every POP3
// session of `account` (its canonical address, as AuthVerdict::address) on whichever shard it
// is, without committing (EndMaildropHolderForMove), and waits for that up to `wait`. OK once
// no session can read or commit the account's maildrop any more; Unavailable when a shard
// could not be asked, DeadlineExceeded when the answer did not come in time. Any thread but a
// shard's (it blocks); the reactor must be running.
absl::Status EndPop3SessionsForMove(Pop3Service& service, reactor::Reactor& reactor,
                                    std::string_view account, absl::Duration wait);

// For the retention job (server/retention): takes `account`'s maildrop lock at its owner shard
// as kMaintenanceHolder, unless a session holds it (false). Any thread but a shard's (it blocks,
// up to `wait`); the reactor must be running. False too when the shard could not be asked or did
// not answer in time (then the lock, if it was granted late, is given back).
bool HoldMaildropForMaintenance(Pop3Service& service, reactor::Reactor& reactor,
                                std::string_view account, absl::Duration wait);
// Gives back what HoldMaildropForMaintenance took. Does not wait.
void ReleaseMaildropForMaintenance(Pop3Service& service, reactor::Reactor& reactor,
                                   std::string_view account);

// The POP3 service's state on one shard, beside that shard's ServiceShard (which holds the
// reactor shard, buffer rings, TLS contexts, metric and counter blocks).
struct Pop3Shard {
  Pop3Shard(Pop3Service& service, ServiceShard& service_shard)
      : server(&service),
        shard(&service_shard),
        index(service_shard.index()),
        metrics(service_shard.metrics()) {}
  Pop3Shard(const Pop3Shard&) = delete;
  Pop3Shard& operator=(const Pop3Shard&) = delete;

  Pop3Service* const server;
  ServiceShard* const shard;
  const uint32_t index;
  metrics::ShardMetrics& metrics;  // the shard's metric block (shard->metrics())
  ShardListener listener;
  ShardListener pop3s_listener;  // implicit TLS; no fd when off
  reactor::BufferRing* buffers = nullptr;  // owned by `shard`
  // Null when the server has no TenantPolicyTable.
  std::unique_ptr<ShardTenantPolicies> tenant_policies;
  // Open connections; PublishedOpen() serves the main thread's drain wait.
  ShardConnections<pop3_service::Pop3Adapter> connections;
  ShardStats stats;
  MaildropRegistry registry;      // users owned by this shard
  std::unique_ptr<MaildropLocks> locks;  // this shard's connections' maildrop locks
  absl::flat_hash_map<std::string, uint32_t> ip_counts;  // IPs owned by this shard
  // What this shard's POP3 transports share (ring, buffers, send path, TLS, counters).
  transport::TransportEnv transport_env;
  // Failed-login penalties (all shards' failures, by message); made when listening starts and
  // kept as long as the shard, so a peer's late message and the last scrape still find it.
  std::unique_ptr<pop3_service::AuthPenaltyShard> auth_penalties;
  // What this shard's POP3 connections ask for work off the connection.
  std::unique_ptr<pop3_service::Pop3ShardBackend> pop3_backend;
  // Connections from --proxy_networks waiting for their PROXY header; null without proxies.
  std::unique_ptr<transport::ProxyHeaderReaders> proxy_headers;

  // Runs `fn` on shard `target` (ServiceShard::RunOn); a refusal is counted (post_rejected).
  bool RunOn(uint32_t target, absl::AnyInvocable<void()> fn);
  Pop3Shard& Peer(uint32_t target) { return *server->shards[target]; }

  // Shard thread, after shard->Start(): starts the listeners and registers this shard's
  // counters and lifecycle hooks with `shard`.
  void StartListening();
  void StopAccepting();
  pop3_service::Pop3Adapter* Find(uint64_t id);
  void Destroy(uint64_t id);  // deferred delete of a finished connection

 private:
  void OnAccept(int fd, bool implicit_tls);
  // The connection with its peer decided (the client's address when a proxy sent a header).
  void Admit(int fd, transport::PeerInfo peer, bool implicit_tls);
  void SetUpTransportEnv();
  void StartAuthPenalties();
  pop3_service::Pop3AdapterOptions AdapterOptions(const transport::PeerInfo& peer,
                                                  bool implicit_tls);
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_POP3_SERVICE_POP3_SHARD_H_
