#include "server/lmtp_server.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "server/lmtp_connection.h"

namespace posthaste::server {

// LMTP buffers: group 1 (POP3 uses group 0 on the same ring). Commands are short and DATA is
// consumed as it arrives, so a few large buffers suffice.
constexpr uint16_t kLmtpBufferGroup = 1;

void LmtpShard::StartListening(reactor::Shard& on, metrics::ShardMetrics& shard_metrics) {
  shard = &on;
  metrics = &shard_metrics;
  reactor::Ring& ring = shard->ring();
  auto buffer_ring = reactor::BufferRing::Create(
      ring, {.group_id = kLmtpBufferGroup, .buffer_count = 256, .buffer_bytes = 16384});
  PH_CHECK(buffer_ring.ok());
  buffers = *std::move(buffer_ring);
  listener.Start(ring, [this](int fd) { OnAccept(fd); });
  shard->OnStop([this] {
    StopAccepting();
    CloseAll();
  });
  shard->OnDrained([this] {
    connections.Clear();
    listener.Release();
    buffers.reset();
  });
}

void LmtpShard::StopAccepting() {
  if (!listener.accepting()) return;
  listener.Stop();
  // MTAs keep LMTP connections open between messages: close those at once, the others when
  // their transaction is answered, so a drain does not wait for the timeout.
  for (uint64_t id : connections.Ids()) {
    if (LmtpConnection* conn = Find(id)) conn->Drain();
  }
}

void LmtpShard::CloseAll() { connections.AbortAll(); }

LmtpConnection* LmtpShard::Find(uint64_t id) { return connections.Find(id); }

void LmtpShard::Destroy(uint64_t id) {
  shard->ring().Defer([this, id] {
    if (connections.Erase(id)) ++stats.connections_closed;
  });
}

void LmtpShard::OnAccept(int fd) {
  ++stats.connections_accepted;
  const uint64_t id = connections.NextId();
  LmtpConnection* conn = connections.Add(id, std::make_unique<LmtpConnection>(*this, id, fd));
  if (connections.size() > options->max_connections_per_shard) {
    conn->Reject("421 4.3.2 Server at capacity, try again later\r\n");
    return;
  }
  conn->Start();
}

absl::Status LmtpService::Listen(const ServeOptions& options, storage::MailStore& store) {
  for (uint32_t i = 0; i < options.shards; ++i) {
    auto fd = reactor::CreateListener(
        {.host = options.lmtp_listen.host, .port = i == 0 ? options.lmtp_listen.port : port,
         .join_existing_group = i > 0});
    if (!fd.ok()) {
      CloseListeners();
      return absl::Status(fd.status().code(),
                          absl::StrCat("cannot listen for LMTP on ", options.lmtp_listen.host, ":",
                                       options.lmtp_listen.port, ": ", fd.status().message()));
    }
    if (i == 0) {
      auto local = reactor::LocalPort(*fd);
      if (!local.ok()) {
        close(*fd);
        return local.status();
      }
      port = *local;
    }
    auto shard = std::make_unique<LmtpShard>();
    shard->options = &options;
    shard->store = &store;
    shard->index = i;
    shard->listener.set_fd(*fd);
    shards.push_back(std::move(shard));
  }
  return absl::OkStatus();
}

void LmtpService::CloseListeners() {
  for (auto& shard : shards) {
    shard->listener.Close();
  }
}

uint64_t LmtpService::OpenConnections() const {
  uint64_t n = 0;
  for (const auto& shard : shards) n += shard->connections.PublishedOpen();
  return n;
}

}  // namespace posthaste::server
