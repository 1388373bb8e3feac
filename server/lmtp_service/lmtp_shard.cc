#include "server/lmtp_service/lmtp_shard.h"

#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "server/reactor/net.h"
#include "server/shard/shard_lifecycle.h"

namespace posthaste::server {
namespace {

// LMTP buffers: group 1 (POP3 uses group 0 on the same ring). Commands are short and DATA is
// consumed as it arrives, so a few large buffers suffice.
constexpr uint16_t kLmtpBufferGroup = 1;
LmtpAdapterOptions AdapterOptions(const LmtpServiceOptions& options,
                                  const storage::MailStore& store) {
  LmtpAdapterOptions o;
  o.session.hostname = options.hostname;
  // The session's limit bounds memory; each tenant's (usually smaller) limit is applied per
  // recipient by the store. Stored sizes are 32-bit.
  o.session.message_bytes_max =
      std::min<uint64_t>(store.options().message_bytes_max, storage::kMessageBytesMaxConfigurable);
  o.idle_timeout_ns = options.idle_timeout_ns;
  return o;
}

}  // namespace

void LmtpShard::StartListening(ServiceShard& on) {
  shard = &on;
  buffers = &on.AddBufferRing(
      {.group_id = kLmtpBufferGroup, .buffer_count = 256, .buffer_bytes = 16384}, "ring=lmtp");
  backend = std::make_unique<StoreLmtpBackend>(on.reactor_shard(), *store,
                                               options->over_quota_permanent);
  transport_env = on.TransportEnvFor(*buffers, stats.send);
  transport_env.tls = nullptr;  // LMTP offers no STARTTLS
  transport_env.send_stall_timeout_ns = options->send_stall_timeout_ns;
  adapter_options = AdapterOptions(*options, *store);
  if (options->from_proxy) {
    proxy_headers = std::make_unique<transport::ProxyHeaderReaders>(
        on.ring(), &stats.proxy, options->proxy_header_timeout_ns);
  }
  // At the descriptor limit: a 421 in the form of LmtpSession::CloseWith421 (server/lmtp).
  listener.Start(on, "listener=lmtp", [this](int fd) { OnAccept(fd); },
                 absl::StrCat("421 4.3.2 ", options->hostname,
                              " Too many connections, try again later\r\n"));
  // Copied with the shard's other counter blocks at scrape time (same shard, same thread).
  on.AddCounterBlock(metrics::CounterBlockRef::Of(LmtpShardCounterTable(), stats));
  // The buffer ring is the ServiceShard's: freed after this hook.
  RegisterShardLifecycle(on, this, [this] {
    listener.Release();
    proxy_headers.reset();
    backend.reset();
  });
}

void LmtpShard::StopAccepting() {
  if (!listener.accepting()) return;
  listener.Stop();
  if (proxy_headers != nullptr) proxy_headers->StopAll();
  // MTAs keep LMTP connections open between messages: close those at once, the others when
  // their transaction is answered, so a drain does not wait for the timeout.
  for (uint64_t id : connections.Ids()) {
    if (LmtpAdapter* conn = connections.Find(id)) conn->Drain();
  }
}

void LmtpShard::Destroy(uint64_t id) {
  shard->ring().Defer([this, id] {
    if (connections.Erase(id)) {
      ++stats.connections_closed;
      stats.connections_open = connections.size();
    }
  });
}

void LmtpShard::OnAccept(int fd) {
  ++stats.connections_accepted;
  if (proxy_headers != nullptr) {
    transport::PeerInfo peer = transport::SocketPeer(fd);
    if (options->from_proxy(peer.addr16)) {
      proxy_headers->Read(fd, std::move(peer), [this](int client_fd, transport::PeerInfo client) {
        if (!listener.accepting()) {
          close(client_fd);  // stopped meanwhile
          return;
        }
        Admit(client_fd, std::move(client));
      });
      return;
    }
  }
  // LMTP keys nothing on the peer's address (MTAs connect from trusted hosts).
  Admit(fd, {});
}

void LmtpShard::Admit(int fd, transport::PeerInfo peer) {
  const uint64_t id = connections.NextId();
  LmtpAdapter* conn = connections.Add(
      id, std::make_unique<LmtpAdapter>(
              adapter_options,
              transport::MakeRingTransport(transport_env, fd, std::move(peer),
                                           /*implicit_tls=*/false),
              *backend, stats, shard->metrics(), [this, id] { Destroy(id); }));
  stats.connections_open = connections.size();
  if (connections.size() > options->max_connections_per_shard) {
    ++stats.limit_per_shard;
    conn->StartOverCapacity();
    return;
  }
  conn->Start();
}

absl::Status LmtpService::Listen(LmtpServiceOptions service_options, storage::MailStore& store) {
  options = std::move(service_options);
  for (uint32_t i = 0; i < options.shards; ++i) {
    auto fd = reactor::CreateListener({.host = options.listen_host,
                                       .port = i == 0 ? options.listen_port : port,
                                       .join_existing_group = i > 0});
    if (!fd.ok()) {
      CloseListeners();
      return absl::Status(fd.status().code(),
                          absl::StrCat("cannot listen for LMTP on ", options.listen_host, ":",
                                       options.listen_port, ": ", fd.status().message()));
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
