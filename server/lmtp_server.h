// LmtpShard: the LMTP service on one reactor shard, beside the POP3 one (pop3_server.h): a
// SO_REUSEPORT listener with a multishot accept, its own provided buffer ring (group 1) and the
// LMTP connections of that shard. LMTP needs no cross-shard state: recipients are checked and
// messages stored on the I/O offload pool, and the store serialises per account. It is given
// what it uses (the options, the store, its shard's metric block) and knows nothing of POP3's
// ShardContext.
//
// Threading: built by the main thread before the reactor starts; afterwards every member except
// `connections.PublishedOpen()` is touched only on its shard's thread (stats are plain integers).
// Ownership: LmtpService owns the LmtpShards; each owns its listener, buffer ring
// and connections, freed in its shard's OnDrained hook.
#ifndef POSTHASTE_SERVER_LMTP_SERVER_H_
#define POSTHASTE_SERVER_LMTP_SERVER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "metrics/shard_metrics.h"
#include "server/lmtp_service/lmtp_counters.h"
#include "server/reactor/buffer_ring.h"
#include "server/reactor/net.h"
#include "server/reactor/send.h"
#include "server/reactor/shard.h"
#include "server/serve_options.h"
#include "server/shard_connections.h"
#include "server/shard_listener.h"
#include "storage/mail_store.h"

namespace posthaste::server {

class LmtpConnection;

struct LmtpShard {
  const ServeOptions* options = nullptr;
  storage::MailStore* store = nullptr;
  reactor::Shard* shard = nullptr;
  // The shard's metric block (its lmtp_deliveries); given by StartListening.
  metrics::ShardMetrics* metrics = nullptr;
  uint32_t index = 0;
  ShardListener listener;
  std::unique_ptr<reactor::BufferRing> buffers;
  ShardConnections<LmtpConnection> connections;
  LmtpStats stats;

  // Shard thread.
  void StartListening(reactor::Shard& on, metrics::ShardMetrics& shard_metrics);
  void StopAccepting();
  void CloseAll();
  LmtpConnection* Find(uint64_t id);
  void Destroy(uint64_t id);  // deferred delete of a finished connection

 private:
  void OnAccept(int fd);
};

// The LMTP listeners of all shards (the first decides the port when 0 is asked for).
struct LmtpService {
  uint16_t port = 0;
  std::vector<std::unique_ptr<LmtpShard>> shards;

  // Main thread, before the reactor starts: one listener per shard on options.lmtp_listen.
  absl::Status Listen(const ServeOptions& options, storage::MailStore& store);
  void CloseListeners();  // start-up failed
  uint64_t OpenConnections() const;
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_LMTP_SERVER_H_
