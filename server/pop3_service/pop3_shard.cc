#include "server/pop3_service/pop3_shard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "base/log.h"
#include "server/auth/shared_secret.h"
#include "server/shard/shard_lifecycle.h"

namespace posthaste::server {
namespace {

constexpr uint64_t kNsPerSecond = 1'000'000'000;

bool InNetworks(const std::vector<Cidr>& networks, const uint8_t* addr16) {
  for (const Cidr& cidr : networks) {
    if (CidrContains(cidr, addr16)) return true;
  }
  return false;
}

transport::PeerInfo PeerOf(int fd, const ServeOptions& options) {
  transport::PeerInfo peer;
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return peer;
  char text[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
    peer.addr16[10] = 0xff;
    peer.addr16[11] = 0xff;
    std::memcpy(peer.addr16 + 12, &sin->sin_addr, 4);
  } else if (ss.ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    std::memcpy(peer.addr16, &sin6->sin6_addr, 16);
    if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
      inet_ntop(AF_INET, peer.addr16 + 12, text, sizeof(text));
    } else {
      inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
    }
  }
  peer.ip = text;
  static const uint8_t kV6Loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const bool v4_mapped =
      peer.addr16[10] == 0xff && peer.addr16[11] == 0xff &&
      std::all_of(peer.addr16, peer.addr16 + 10, [](uint8_t b) { return b == 0; });
  peer.loopback =
      (v4_mapped && peer.addr16[12] == 127) || std::memcmp(peer.addr16, kV6Loopback, 16) == 0;
  peer.trusted = InNetworks(options.trusted_networks, peer.addr16);
  return peer;
}

}  // namespace

uint32_t ServerMaildropShards::shard_count() const {
  return static_cast<uint32_t>(server_.shards.size());
}

bool ServerMaildropShards::RunOn(uint32_t from, uint32_t target, absl::AnyInvocable<void()> fn) {
  return server_.shards[from]->RunOn(target, std::move(fn));
}

MaildropRegistry& ServerMaildropShards::RegistryOf(uint32_t shard) {
  return server_.shards[shard]->registry;
}

bool ServerMaildropShards::EndIfIdle(ConnectionRef holder, std::string_view user,
                                     uint64_t idle_ns) {
  Pop3Shard& shard = *server_.shards[holder.shard];
  pop3_service::Pop3Adapter* held = shard.Find(holder.id);
  if (held == nullptr) return true;
  if (!held->IdleInTransactionFor(idle_ns)) return false;
  ++shard.stats.takeovers;
  LogEvent(LogLevel::kInfo, "maildrop taken over",
           {{"user", std::string(user)}, {"idle_s", std::to_string(idle_ns / kNsPerSecond)}});
  held->Abort();
  return true;
}

void ServerMaildropShards::EndForMove(ConnectionRef holder, std::string_view user) {
  Pop3Shard& shard = *server_.shards[holder.shard];
  pop3_service::Pop3Adapter* held = shard.Find(holder.id);
  if (held == nullptr) return;
  ++shard.stats.ended_for_move;
  LogEvent(LogLevel::kInfo, "session ended: account held for a move",
           {{"user", std::string(user)}});
  // Closed without a reply and without UPDATE, as RFC 1939 has the autologout timer do:
  // POP3 has no unsolicited responses, so a line sent now would be read as the answer to the
  // client's next command.
  held->Abort();
}

absl::Status EndPop3SessionsForMove(Pop3Service& service, reactor::Reactor& reactor,
                                    std::string_view account, absl::Duration wait) {
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    bool settled = false;  // by mu
    bool ended = false;    // by mu
  };
  // Settles the wait when the last closure holding it goes: after `done` ran, or when a post
  // was refused or a closing inbox destroyed it unrun (then `ended` stays false).
  struct Settle {
    explicit Settle(std::shared_ptr<Wait> w) : wait(std::move(w)) {}
    ~Settle() {
      std::lock_guard<std::mutex> lock(wait->mu);
      wait->settled = true;
      wait->cv.notify_all();
    }
    const std::shared_ptr<Wait> wait;
  };
  auto wait_state = std::make_shared<Wait>();
  auto settle = std::make_shared<Settle>(wait_state);
  const std::string user(account);
  const uint32_t owner = OwnerShard(user, static_cast<uint32_t>(service.shards.size()));
  MaildropShards* shards = &service.maildrop_shards;
  const bool posted = reactor.shard(owner).inbox().Post([shards, owner, user, settle] {
    EndMaildropHolderForMove(*shards, owner, user, [settle] {
      std::lock_guard<std::mutex> lock(settle->wait->mu);
      settle->wait->ended = true;
    });
  });
  settle.reset();  // the closures hold it now (or it settles here, when the post failed)
  std::unique_lock<std::mutex> lock(wait_state->mu);
  wait_state->cv.wait_for(lock, absl::ToChronoMilliseconds(wait),
                          [&] { return wait_state->settled; });
  if (wait_state->ended) return absl::OkStatus();
  if (!posted || wait_state->settled) {
    return absl::UnavailableError("the shards could not be asked to end the sessions (busy)");
  }
  return absl::DeadlineExceededError("the sessions did not end in time");
}

bool HoldMaildropForMaintenance(Pop3Service& service, reactor::Reactor& reactor,
                                std::string_view account, absl::Duration wait) {
  enum class Answer : uint8_t { kNone, kGranted, kInUse };
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    Answer answer = Answer::kNone;  // by mu
    bool abandoned = false;         // by mu: the caller stopped waiting
  };
  auto state = std::make_shared<Wait>();
  const std::string user(account);
  const uint32_t owner = OwnerShard(user, static_cast<uint32_t>(service.shards.size()));
  Pop3Service* home = &service;
  const bool posted = reactor.shard(owner).inbox().Post([home, owner, user, state] {
    MaildropRegistry& registry = home->shards[owner]->registry;
    ConnectionRef holder;
    const MaildropRegistry::Outcome outcome =
        registry.Acquire(user, "", /*count_user_ip=*/false, {}, pop3::InUsePolicy::kRefuse,
                         kMaintenanceHolder, &holder);
    std::lock_guard<std::mutex> lock(state->mu);
    if (outcome == MaildropRegistry::Outcome::kGranted && state->abandoned) {
      registry.Release(user, "", false, kMaintenanceHolder);  // granted too late
      return;
    }
    state->answer =
        outcome == MaildropRegistry::Outcome::kGranted ? Answer::kGranted : Answer::kInUse;
    state->cv.notify_all();
  });
  if (!posted) return false;
  std::unique_lock<std::mutex> lock(state->mu);
  state->cv.wait_for(lock, absl::ToChronoMilliseconds(wait),
                     [&] { return state->answer != Answer::kNone; });
  if (state->answer == Answer::kNone) state->abandoned = true;
  return state->answer == Answer::kGranted;
}

void ReleaseMaildropForMaintenance(Pop3Service& service, reactor::Reactor& reactor,
                                   std::string_view account) {
  const std::string user(account);
  const uint32_t owner = OwnerShard(user, static_cast<uint32_t>(service.shards.size()));
  Pop3Service* home = &service;
  // A full inbox: retried until it takes the message, as a lock left behind would refuse the
  // user's logins until a restart.
  for (int attempt = 0; attempt < 1000; ++attempt) {
    if (reactor.shard(owner).inbox().Post([home, owner, user] {
          home->shards[owner]->registry.Release(user, "", false, kMaintenanceHolder);
        })) {
      return;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  LogEvent(LogLevel::kError, "retention: maildrop lock not given back", {{"user", user}});
}

bool Pop3Shard::RunOn(uint32_t target, absl::AnyInvocable<void()> fn) {
  if (shard->RunOn(target, std::move(fn))) return true;
  ++stats.post_rejected;
  return false;
}

void Pop3Shard::StartListening() {
  buffers = &shard->AddBufferRing({.group_id = 0, .buffer_count = 1024, .buffer_bytes = 4096},
                                  "ring=pop3");
  locks = std::make_unique<MaildropLocks>(server->maildrop_shards, index);
  StartAuthPenalties();
  pop3_backend = std::make_unique<pop3_service::Pop3ShardBackend>(
      *this, [this](uint64_t id) { return connections.Find(id); });
  // At the descriptor limit: the text of Pop3Refusal::kServerAtCapacity (server/pop3/session.cc),
  // in the default language (no LANG command can have come yet).
  listener.Start(*shard, "listener=pop3", [this](int fd) { OnAccept(fd, false); },
                 "-ERR [SYS/TEMP] Server at capacity, try again later\r\n");
  if (!server->options.proxy_networks.empty()) {
    proxy_headers = std::make_unique<transport::ProxyHeaderReaders>(
        shard->ring(), &stats.proxy, uint64_t{server->options.proxy_header_timeout_ms} * 1'000'000);
  }
  SetUpTransportEnv();
  if (server->tenant_policies != nullptr) {
    tenant_policies = std::make_unique<ShardTenantPolicies>(*server->tenant_policies);
  }
  // No refusal line on pop3s: a client expects a TLS handshake first, so it is only closed.
  pop3s_listener.Start(*shard, "listener=pop3s", [this](int fd) { OnAccept(fd, true); });
  shard->AddCounterBlock(metrics::CounterBlockRef::Of(Pop3ShardCounterTable(), stats));
  // The buffer ring and TLS contexts are the ServiceShard's: freed after this hook.
  RegisterShardLifecycle(*shard, this, [this] {
    listener.Release();
    pop3s_listener.Release();
    proxy_headers.reset();
    tenant_policies.reset();
    pop3_backend.reset();
    locks.reset();
  });
}

void Pop3Shard::StartAuthPenalties() {
  const ServeOptions& options = server->options;
  const auth::AuthPenaltyOptions penalty_options{
      .delay_base_ms = options.auth_failure_delay_ms,
      .delay_max_ms = options.auth_penalty_delay_max_ms,
      .window_s = options.auth_penalty_window_s,
      .addresses_max = options.auth_penalty_addresses_max,
      .accounts_max = options.auth_penalty_accounts_max};
  Pop3Shard* home = this;
  auth_penalties = std::make_unique<pop3_service::AuthPenaltyShard>(
      penalty_options, index, static_cast<uint32_t>(server->shards.size()),
      [home](uint32_t target, absl::AnyInvocable<void(pop3_service::AuthPenaltyShard&)> fn) {
        return home->RunOn(target, [home, target, fn = std::move(fn)]() mutable {
          Pop3Shard& peer = home->Peer(target);
          if (peer.auth_penalties != nullptr) fn(*peer.auth_penalties);  // null: not started
        });
      });
  shard->AddCounterBlock(metrics::CounterBlockRef::Of(pop3_service::AuthPenaltyCounterTable(),
                                                      auth_penalties->stats()));
}

void Pop3Shard::StopAccepting() {
  listener.Stop();
  pop3s_listener.Stop();
  if (proxy_headers != nullptr) proxy_headers->StopAll();
}

pop3_service::Pop3Adapter* Pop3Shard::Find(uint64_t id) { return connections.Find(id); }

void Pop3Shard::Destroy(uint64_t id) {
  shard->ring().Defer([this, id] {
    if (connections.Erase(id)) {
      ++stats.connections_closed;
      stats.connections_open = connections.size();
    }
  });
}

void Pop3Shard::SetUpTransportEnv() {
  const ServeOptions& options = server->options;
  transport_env = shard->TransportEnvFor(*buffers, stats.send);
  transport::TransportEnv& env = transport_env;
  switch (options.send_path) {
    case SendPathChoice::kAuto:
      env.send_path = std::nullopt;
      break;
    case SendPathChoice::kSplice:
      env.send_path = reactor::SendPath::kSplice;
      break;
    case SendPathChoice::kSendZc:
      env.send_path = reactor::SendPath::kSendZc;
      break;
    case SendPathChoice::kCopy:
      env.send_path = reactor::SendPath::kCopy;
      break;
  }
  env.send_path_policy = {.splice_min_bytes = options.copy_below_bytes,
                          .use_send_zc = options.send_zc_min_bytes > 0,
                          .send_zc_min_bytes = options.send_zc_min_bytes};
  env.send_stall_timeout_ns = uint64_t{options.send_stall_timeout_s} * kNsPerSecond;
  env.tls_counters = &stats.tls;
  env.tls_path_counters = &stats.tls_path;
  env.tls_body_bytes = &stats.tls_body_bytes;
  env.tls_stls_started = &stats.tls_stls_started;
}

pop3_service::Pop3AdapterOptions Pop3Shard::AdapterOptions(const transport::PeerInfo& peer,
                                                           bool implicit_tls) {
  const ServeOptions& options = server->options;
  pop3_service::Pop3AdapterOptions o;
  o.session.tls_available = shard->tls() != nullptr && !implicit_tls;
  o.session.tls_active = implicit_tls;
  o.session.hostname = options.hostname;
  o.session.policy.plaintext_requires_tls = options.plaintext_requires_tls;
  o.session.policy.loopback_exempt_from_tls = true;
  o.session.policy.tenant_plaintext_auth = tenant_policies.get();  // outlives the connection
  o.session.policy.in_use = options.in_use_policy;
  // The greeting comes before the user name: APOP's timestamp is offered when any tenant
  // allows APOP, and the backend refuses users of the others.
  if (tenant_policies != nullptr && tenant_policies->AnyApopAllowed()) {
    o.session.policy.apop_allowed = true;
    o.session.apop_timestamp = auth::MakeServerChallenge(options.hostname);
  }
  o.session.peer_is_loopback = peer.loopback;
  o.session.peer_is_trusted_proxy = peer.via_trusted_proxy;
  o.session.policy.trusted_proxy_exempt_from_tls = options.proxy_plaintext_logins;
  o.session.auth_failure_delay_ms = options.auth_failure_delay_ms;
  o.session.check_stored_messages = options.verify_stored_messages;
  o.implicit_tls = implicit_tls;
  o.auth_timeout_ns = uint64_t{options.auth_timeout_s} * kNsPerSecond;
  o.idle_timeout_ns = uint64_t{options.idle_timeout_s} * kNsPerSecond;
  o.metrics = &metrics;
  o.tenant_series = &shard->tenant_series();
  o.count_sessions = options.metrics_sessions;
  o.redownload_alarm = {.percent = options.redownload_alarm_percent,
                        .messages_min = options.redownload_alarm_messages_min};
  o.shard = index;
  return o;
}

void Pop3Shard::OnAccept(int fd, bool implicit_tls) {
  ++stats.connections_accepted;
  if (implicit_tls) ++stats.tls_implicit_accepted;
  transport::PeerInfo peer = PeerOf(fd, server->options);
  if (proxy_headers != nullptr && InNetworks(server->options.proxy_networks, peer.addr16)) {
    // A trusted proxy: its header names the client, who is admitted (limits, logs) as itself.
    proxy_headers->Read(
        fd, std::move(peer), [this, implicit_tls](int client_fd, transport::PeerInfo client) {
          if (!listener.accepting() && !pop3s_listener.accepting()) {
            close(client_fd);  // stopped meanwhile
            return;
          }
          client.trusted = InNetworks(server->options.trusted_networks, client.addr16);
          Admit(client_fd, std::move(client), implicit_tls);
        });
    return;
  }
  Admit(fd, std::move(peer), implicit_tls);
}

void Pop3Shard::Admit(int fd, transport::PeerInfo peer, bool implicit_tls) {
  const uint64_t id = connections.NextId();
  pop3_service::Pop3AdapterOptions adapter_options = AdapterOptions(peer, implicit_tls);
  pop3_service::Pop3Adapter* conn = connections.Add(
      id, std::make_unique<pop3_service::Pop3Adapter>(
              id, transport::MakeRingTransport(transport_env, fd, std::move(peer), implicit_tls),
              *pop3_backend, std::move(adapter_options)));
  stats.connections_open = connections.size();
  if (connections.size() > server->options.max_connections_per_shard) {
    ++stats.limit_per_shard;
    conn->Refuse(pop3::Pop3Refusal::kServerAtCapacity);
    return;
  }
  conn->Start();
}

}  // namespace posthaste::server
