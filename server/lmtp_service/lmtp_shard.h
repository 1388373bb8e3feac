// LmtpShard: the LMTP service's state on one reactor shard, beside that shard's protocol-neutral
// ServiceShard (server/shard/service_shard.h): a SO_REUSEPORT listener with a multishot accept,
// its own provided buffer ring (group 1, owned by the ServiceShard), the transport environment
// and the store backend its connections share, and the LMTP connections of that shard (an
// LmtpAdapter over a RingTransport each). LMTP needs no cross-shard state: recipients are
// checked and messages stored on the I/O offload pool, and the store serialises per account. It
// is given what it uses (LmtpServiceOptions, the store, its ServiceShard) and knows nothing of
// POP3's per-shard state nor of the serve command's flags.
//
// Threading: built by the main thread before the reactor starts; afterwards every member except
// `connections.PublishedOpen()` is touched only on its shard's thread (stats are plain integers).
// Ownership: LmtpService owns the LmtpShards; each owns its listener, backend and connections,
// freed in its shard's drained hook.
#ifndef POSTHASTE_SERVER_LMTP_SERVICE_LMTP_SHARD_H_
#define POSTHASTE_SERVER_LMTP_SERVICE_LMTP_SHARD_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "metrics/counter_table.h"
#include "metrics/shard_metrics.h"
#include "server/lmtp_service/lmtp_adapter.h"
#include "server/lmtp_service/lmtp_counters.h"
#include "server/lmtp_service/store_backend.h"
#include "server/reactor/buffer_ring.h"
#include "server/shard/service_shard.h"
#include "server/shard/shard_connections.h"
#include "server/shard/shard_listener.h"
#include "server/transport/proxy_header_reader.h"
#include "server/transport/ring_transport.h"
#include "storage/mail_store.h"

namespace posthaste::server {

// What `serve` tells the LMTP service (from its flags).
struct LmtpServiceOptions {
  std::string listen_host = "127.0.0.1";       // --lmtp_listen
  uint16_t listen_port = 24;                   // 0: any free port
  uint32_t shards = 1;                         // one listener and one LmtpShard per reactor shard
  std::string hostname = "localhost";          // greeting, LHLO, 221 and 421 replies
  uint64_t idle_timeout_ns = 300'000'000'000;  // --lmtp_idle_timeout_s
  uint64_t send_stall_timeout_ns = 120'000'000'000;  // --send_stall_timeout_s
  bool over_quota_permanent = false;                 // --lmtp_over_quota=permanent
  uint64_t max_connections_per_shard = 50'000;       // beyond it: 421 4.3.2 and close
  // --proxy_networks: true for an address whose connections start with a PROXY header
  // (server/transport/proxy_header_reader.h). Empty: no PROXY protocol on LMTP.
  std::function<bool(const uint8_t* addr16)> from_proxy;
  uint64_t proxy_header_timeout_ns = 5'000'000'000;  // --proxy_header_timeout_ms
};

struct LmtpShard {
  const LmtpServiceOptions* options = nullptr;
  storage::MailStore* store = nullptr;
  ServiceShard* shard = nullptr;  // given by StartListening
  uint32_t index = 0;
  ShardListener listener;
  reactor::BufferRing* buffers = nullptr;  // owned by `shard`
  std::unique_ptr<StoreLmtpBackend> backend;
  transport::TransportEnv transport_env;
  LmtpAdapterOptions adapter_options;
  ShardConnections<LmtpAdapter> connections;
  LmtpStats stats;
  // Connections from proxies waiting for their PROXY header; null without from_proxy.
  std::unique_ptr<transport::ProxyHeaderReaders> proxy_headers;

  // Shard thread, after on.Start(): starts the listener and registers `stats`, the buffer ring
  // and the lifecycle hooks with `on`, which outlives this LmtpShard's listener. Deliveries are
  // counted in on.metrics().
  void StartListening(ServiceShard& on);
  void StopAccepting();

 private:
  void OnAccept(int fd);
  void Admit(int fd, transport::PeerInfo peer);
  void Destroy(uint64_t id);  // deferred delete of a finished connection
};

// The LMTP listeners of all shards (the first decides the port when 0 is asked for).
struct LmtpService {
  LmtpServiceOptions options;
  uint16_t port = 0;
  std::vector<std::unique_ptr<LmtpShard>> shards;

  // Main thread, before the reactor starts: one listener per shard on listen_host:listen_port.
  // `store` outlives the service.
  absl::Status Listen(LmtpServiceOptions service_options, storage::MailStore& store);
  void CloseListeners();  // start-up failed
  uint64_t OpenConnections() const;
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_LMTP_SERVICE_LMTP_SHARD_H_
