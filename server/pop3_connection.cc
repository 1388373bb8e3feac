#include "server/pop3_connection.h"

#include <netinet/in.h>
#include <openssl/crypto.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "base/log.h"
#include "server/pop3_server.h"
#include "storage/message_format.h"
#include "tls/ktls.h"

namespace posthaste::server {
namespace {

// Whether a SASL authorization identity names the authenticating user: the same address in
// any case (storage::CanonicalAddress), or the same bytes when it is no address.
bool SameAccountName(std::string_view authzid, std::string_view user) {
  if (authzid == user) return true;
  absl::StatusOr<std::string> a = storage::CanonicalAddress(authzid);
  absl::StatusOr<std::string> b = storage::CanonicalAddress(user);
  return a.ok() && b.ok() && *a == *b;
}

using pop3::Pop3ActionKind;
using transport::ReadTcpSendProgress;
using transport::TcpSendProgress;
using reactor::MonotonicNowNs;

constexpr uint64_t kNsPerSecond = 1'000'000'000;
constexpr std::string_view kTerminator = ".\r\n";
pop3::Pop3SessionOptions SessionOptions(const ShardContext& shard, const PeerInfo& peer,
                                        bool implicit_tls,
                                        pop3::Pop3CommandObserver* observer) {
  const ServerContext& server = *shard.server;
  pop3::Pop3SessionOptions o;
  o.command_observer = observer;
  o.tls_available = server.tls != nullptr && !implicit_tls;
  o.tls_active = implicit_tls;
  o.hostname = server.options.hostname;
  o.policy.plaintext_requires_tls = server.options.plaintext_requires_tls;
  o.policy.loopback_exempt_from_tls = true;
  o.policy.tenant_plaintext_auth = shard.tenant_policies.get();  // outlives the connection
  o.policy.in_use = server.options.in_use_policy;
  o.peer_is_loopback = peer.loopback;
  o.auth_failure_delay_ms = server.options.auth_failure_delay_ms;
  return o;
}

}  // namespace

Pop3Connection::Pop3Connection(ShardContext& ctx, uint64_t id, int fd, PeerInfo peer,
                               bool implicit_tls)
    : ctx_(ctx),
      id_(id),
      fd_(fd),
      peer_(std::move(peer)),
      recorder_(ctx.metrics, *ctx.server->tenant_labels, ctx.server->options.metrics_sessions,
                ctx.index, id, peer_.ip),
      session_(std::make_unique<pop3::Pop3Session>(
          SessionOptions(ctx, peer_, implicit_tls, recorder_.observer()))),
      receiver_(
          ctx.shard->ring(), *ctx.buffers, fd,
          [this](uint16_t buffer_id, std::span<const char> data) { OnData(buffer_id, data); },
          [this](absl::Status status) { OnReceiveEnd(std::move(status)); }),
      sender_(
          ctx.shard->ring(), ctx.stats.send,
          [this](absl::Status status, uint64_t bytes) { OnSendDone(std::move(status), bytes); }),
      implicit_tls_(implicit_tls),
      send_stall_(uint64_t{ctx.server->options.send_stall_timeout_s} * kNsPerSecond) {
  if (implicit_tls_) {
    PH_CHECK(ctx.tls != nullptr);
    tls_ = ctx.tls->NewEngine();
  }
  timer_.Bind<&Pop3Connection::OnTimer>(this);
  delay_timer_.Bind<&Pop3Connection::OnDelayOver>(this);
  connected_ns_ = last_input_ns_ = MonotonicNowNs();
}

Pop3Connection::~Pop3Connection() {
  PH_CHECK(!receiver_.active() && !sender_.busy() && !(streamer_ && streamer_->busy()));
  TlsEndStream();
  if (!fd_closed_) close(fd_);
}

ConnectionRef Pop3Connection::ref() const { return ConnectionRef{ctx_.index, id_}; }

void Pop3Connection::Start() {
  const ServeOptions& options = ctx_.server->options;
  ArmTimer();
  if (peer_.trusted || options.max_connections_per_ip == 0) {
    OnAdmitted(true);
    return;
  }
  // The per-IP count lives on the IP's owner shard.
  const uint32_t owner = OwnerShard(peer_.ip, static_cast<uint32_t>(ctx_.server->shards.size()));
  const uint32_t limit = options.max_connections_per_ip;
  admission_pending_ = true;
  ShardContext* home = &ctx_;
  const bool posted = ctx_.RunOn(owner, [home, owner, id = id_, ip = peer_.ip, limit] {
    ShardContext& o = home->Peer(owner);
    uint32_t& count = o.ip_counts[ip];
    const bool ok = count < limit;
    if (ok) {
      ++count;
    } else if (count == 0) {
      o.ip_counts.erase(ip);
    }
    o.RunOn(home->index, [home, owner, id, ip, ok] {
      Pop3Connection* conn = home->Find(id);
      if (conn != nullptr) {
        conn->OnAdmitted(ok);
      } else if (ok) {  // gone meanwhile: give the slot back
        home->RunOn(owner, [home, owner, ip] {
          ShardContext& o = home->Peer(owner);
          auto it = o.ip_counts.find(ip);
          if (it != o.ip_counts.end() && --it->second == 0) o.ip_counts.erase(it);
        });
      }
    });
  });
  if (!posted) {
    ++ctx_.stats.post_rejected;
    ctx_.metrics.CountRefused(metrics::RefuseReason::kBusy);
    admission_pending_ = false;
    Reject(pop3::Pop3Refusal::kServerBusy);
  }
}

void Pop3Connection::OnAdmitted(bool ok) {
  admission_pending_ = false;
  if (closing_) return;
  if (!ok) {
    ++ctx_.stats.limit_per_ip;
    Reject(pop3::Pop3Refusal::kTooManyFromAddress);
    return;
  }
  ip_counted_ = !(peer_.trusted || ctx_.server->options.max_connections_per_ip == 0);
  admitted_ = true;
  receiver_.Start();
  Drive();
}

void Pop3Connection::Reject(pop3::Pop3Refusal refusal) {
  PH_CHECK(!admitted_);
  recorder_.SetOutcome(metrics::SessionOutcome::kRefused);
  if (tls_ != nullptr) {  // pop3s: no plaintext reply possible before a handshake; just close
    BeginClose(/*abort=*/false);
    return;
  }
  session_->Refuse(refusal);
  TakeFinalReply();
  Drive();
}

void Pop3Connection::TakeFinalReply() {
  for (pop3::Pop3Action action = session_->NextAction(); action.kind != Pop3ActionKind::kNone;
       action = session_->NextAction()) {
    if (action.kind == Pop3ActionKind::kWrite) Enqueue(action.bytes);
    if (action.kind == Pop3ActionKind::kClose) close_after_flush_ = true;
  }
}

bool Pop3Connection::IdleInTransactionFor(uint64_t idle_ns) const {
  return !closing_ && session_->state() == pop3::Pop3State::kTransaction &&
         !session_->AwaitingResult() && out_.empty() && !SendBusy() &&
         MonotonicNowNs() - last_input_ns_ >= idle_ns;
}

bool Pop3Connection::SendBusy() const {
  return sender_.busy() || stream_active_ || (streamer_ && streamer_->busy());
}

bool Pop3Connection::SocketSendBusy() const {
  return sender_.busy() || (streamer_ && streamer_->busy());
}

void Pop3Connection::WatchSendStall() {
  // Already watching: the clock runs from the peer's last acknowledgement, not from this send.
  if (send_stall_.active() || closing_) return;
  const std::optional<TcpSendProgress> progress = ReadTcpSendProgress(fd_);
  send_stall_.Start(MonotonicNowNs(),
                    progress.has_value() ? std::optional(progress->bytes_acked) : std::nullopt);
  ArmTimer();
}

bool Pop3Connection::OutputIdle() const {
  return out_.empty() && !SendBusy() && (tls_ == nullptr || tls_->PendingCiphertextBytes() == 0);
}

// ---- The action loop ----

void Pop3Connection::Drive() {
  if (closing_) {
    MaybeFinish();
    return;
  }
  for (;;) {
    while (admitted_ && !closing_ && !delay_timer_.armed()) {
      pop3::Pop3Action action = session_->NextAction();
      if (action.kind == Pop3ActionKind::kNone) break;
      Handle(action);
    }
    if (closing_) return;
    Flush();
    if (closing_) return;
    if (admitted_ && OutputIdle() && taken_unflushed_ && !delay_timer_.armed()) {
      taken_unflushed_ = false;
      session_->OnOutputFlushed();
      continue;
    }
    break;
  }
  if (recv_paused_ && admitted_ && session_->WantsInput() && !receiver_.active() && !peer_eof_) {
    recv_paused_ = false;
    receiver_.Start();
  }
  const bool idle_output = OutputIdle();
  if (close_after_flush_ && idle_output) {
    if (TlsEngineActive() && !tls_failed_ && tls_->HandshakeDone() && !tls_close_notify_) {
      tls_close_notify_ = true;  // close_notify first, then the TCP close
      (void)tls_->Close();
      Flush();
      if (!OutputIdle()) return;
    }
    BeginClose(/*abort=*/false);
    return;
  }
  if (peer_eof_ && TlsHandshaking()) {
    // Gone in mid-handshake (a port scan on pop3s, or after STLS): nothing can be answered.
    BeginClose(/*abort=*/false);
    return;
  }
  if (peer_eof_ && idle_output && !session_->AwaitingResult() && !delay_timer_.armed() &&
      !lock_request_pending_) {
    // Everything the peer sent has been answered; it is gone.
    BeginClose(/*abort=*/false);
  }
}

void Pop3Connection::Handle(const pop3::Pop3Action& action) {
  switch (action.kind) {
    case Pop3ActionKind::kNone:
      break;
    case Pop3ActionKind::kWrite:
      Enqueue(action.bytes);
      taken_unflushed_ = true;
      break;
    case Pop3ActionKind::kStreamMessage: {
      OutItem item;
      item.stream = true;
      item.message = action.message;
      item.top_body_lines = action.top_body_lines;
      out_.push_back(std::move(item));
      recorder_.Streamed(action.top_body_lines.has_value());
      taken_unflushed_ = true;
      break;
    }
    case Pop3ActionKind::kAuthenticate:
      StartAuthenticate(action.credentials);
      break;
    case Pop3ActionKind::kOpenMaildrop:
      StartOpenMaildrop(action.user);
      break;
    case Pop3ActionKind::kCommit:
      StartCommit(action.deletions);
      break;
    case Pop3ActionKind::kStartTls:
      if (ctx_.tls == nullptr || tls_ != nullptr) {  // STLS is only offered when configured
        LogEvent(LogLevel::kWarning, "session asked for TLS that is not available");
        BeginClose(/*abort=*/true);
        break;
      }
      // The "+OK" (still queued) goes out in plaintext; the engine takes the peer's next bytes.
      ++ctx_.stats.tls_stls_started;
      tls_ = ctx_.tls->NewEngine();
      tls_plain_flush_ = true;
      break;
    case Pop3ActionKind::kDelay:
      ctx_.shard->ring().timers().Start(&delay_timer_, uint64_t{action.delay_ms} * 1'000'000);
      break;
    case Pop3ActionKind::kClose:
      close_after_flush_ = true;
      break;
  }
}

void Pop3Connection::OnDelayOver() { Drive(); }

// ---- Authentication ----

void Pop3Connection::StartAuthenticate(const pop3::Pop3Credentials& credentials) {
  recorder_.AuthStarted(credentials);
  const bool supported =
      credentials.mechanism != pop3::AuthMechanism::kApop &&
      (credentials.authzid.empty() || SameAccountName(credentials.authzid, credentials.user));
  if (!supported) {  // APOP is never offered; SASL proxy authorisation is not supported
    ++ctx_.stats.auth_failures;
    recorder_.AuthFinished(metrics::AuthResult::kFailed);
    session_->OnAuthResult({pop3::Pop3AuthResult::Code::kBadCredentials, {}});
    return;
  }
  ShardContext* home = &ctx_;
  AuthService* auth = ctx_.server->auth;
  bool accepted = ctx_.shard->Offload(
      [home, auth, id = id_, user = std::string(credentials.user),
       secret = std::string(credentials.secret)]() mutable -> reactor::OffloadPool::Reply {
        AuthVerdict verdict = auth->Verify(user, secret);
        OPENSSL_cleanse(secret.data(), secret.size());
        return [home, id, verdict = std::move(verdict)] {
          if (Pop3Connection* conn = home->Find(id)) conn->OnAuthVerdict(verdict);
        };
      });
  if (!accepted) {
    ++ctx_.stats.offload_rejected;
    recorder_.AuthFinished(metrics::AuthResult::kTempFailure);
    session_->OnAuthResult({pop3::Pop3AuthResult::Code::kTempFailure, {}});
  }
}

void Pop3Connection::OnAuthVerdict(const AuthVerdict& verdict) {
  if (closing_) return;
  pop3::Pop3AuthResult result;
  switch (verdict.code) {
    case AuthVerdict::Code::kOk:
      ++ctx_.stats.sessions_authenticated;
      if (verdict.cache_hit) ++ctx_.stats.auth_cache_hits;
      recorder_.AuthFinished(metrics::AuthResult::kOk);
      result.code = pop3::Pop3AuthResult::Code::kOk;
      result.user = verdict.address;
      break;
    case AuthVerdict::Code::kBadCredentials:
      ++ctx_.stats.auth_failures;
      recorder_.AuthFinished(metrics::AuthResult::kFailed);
      result.code = pop3::Pop3AuthResult::Code::kBadCredentials;
      break;
    case AuthVerdict::Code::kTempFailure:
      recorder_.AuthFinished(metrics::AuthResult::kTempFailure);
      result.code = pop3::Pop3AuthResult::Code::kTempFailure;
      break;
  }
  session_->OnAuthResult(result);
  Drive();
}

// ---- Maildrop: lock at the owner shard, then open off the reactor ----

void Pop3Connection::StartOpenMaildrop(std::string_view user) {
  const ServeOptions& options = ctx_.server->options;
  MaildropLocks::Request request{
      .user = std::string(user),
      .ip = peer_.ip,
      // Trusted peers (a proxy bringing many users) are not counted at all.
      .user_ip_limit = peer_.trusted ? 0 : options.max_connections_per_user_ip,
      .policy = options.in_use_policy,
      .takeover_idle_ns = uint64_t{options.takeover_idle_s} * kNsPerSecond};
  lock_user_ = std::string(user);
  lock_request_pending_ = true;
  ShardContext* home = &ctx_;
  const bool asked =
      ctx_.locks->Acquire(id_, std::move(request), [home, id = id_](MaildropLocks::Outcome outcome) {
        if (Pop3Connection* conn = home->Find(id)) conn->OnLockResult(outcome);
      });
  if (!asked) {
    ++ctx_.stats.post_rejected;
    lock_request_pending_ = false;
    session_->OnMaildropOpened({pop3::Pop3MaildropResult::Code::kTempFailure, nullptr});
  }
}

void Pop3Connection::OnLockResult(MaildropRegistry::Outcome outcome) {
  lock_request_pending_ = false;
  if (closing_) return;  // (MaildropLocks gives back what a closed connection was granted)
  switch (outcome) {
    case MaildropRegistry::Outcome::kGranted:
      break;
    case MaildropRegistry::Outcome::kInUse:
      ++ctx_.stats.in_use_refusals;
      session_->OnMaildropOpened({pop3::Pop3MaildropResult::Code::kInUse, nullptr});
      Drive();
      return;
    case MaildropRegistry::Outcome::kTooManyForUserIp:
      ++ctx_.stats.limit_per_user_ip;
      session_->OnMaildropOpened({pop3::Pop3MaildropResult::Code::kLimitReached, nullptr});
      Drive();
      return;
    case MaildropRegistry::Outcome::kAskHolder:
      PH_BUG(true, "kAskHolder is never a final outcome");
      return;
  }
  ShardContext* home = &ctx_;
  storage::MailStore* store = ctx_.server->store;
  const bool accepted = ctx_.shard->OffloadIo(
      [home, store, id = id_, user = lock_user_]() -> reactor::OffloadPool::Reply {
        absl::StatusOr<OpenMaildrop> result;
        auto stored = store->OpenMailbox(user);
        if (stored.ok()) {
          result = AdaptSnapshot(*std::move(stored));
        } else {
          result = stored.status();
        }
        return [home, id, result = std::move(result)]() mutable {
          if (Pop3Connection* conn = home->Find(id)) conn->OnMaildropLoaded(std::move(result));
          // A connection gone meanwhile released its lock when it closed.
        };
      });
  if (!accepted) {
    ++ctx_.stats.offload_rejected;
    OnMaildropLoaded(absl::UnavailableError("offload queue full"));
  }
}

void Pop3Connection::OnMaildropLoaded(absl::StatusOr<OpenMaildrop> maildrop) {
  if (closing_) return;
  if (!maildrop.ok()) {
    if (!absl::IsNotFound(maildrop.status())) {
      ctx_.metrics.CountStoreError(metrics::StoreOperation::kOpenMailbox);
    }
    recorder_.Log(LogLevel::kWarning, "opening maildrop failed",
                  {{"user", lock_user_}, {"error", maildrop.status().ToString()}});
    // Give the lock back but stay counted for (user, ip) while the connection lasts.
    ctx_.locks->Unlock(id_);
    session_->OnMaildropOpened({absl::IsNotFound(maildrop.status())
                                    ? pop3::Pop3MaildropResult::Code::kPermFailure
                                    : pop3::Pop3MaildropResult::Code::kTempFailure,
                                nullptr});
    Drive();
    return;
  }
  ++ctx_.stats.maildrops_opened;
  recorder_.LoggedIn(lock_user_);
  maildrop_ = *std::move(maildrop);
  session_->OnMaildropOpened({pop3::Pop3MaildropResult::Code::kOk, maildrop_.view});
  last_input_ns_ = MonotonicNowNs();
  ArmTimer();  // now TRANSACTION: the idle timeout applies
  Drive();
}

// ---- Commit ----

void Pop3Connection::StartCommit(std::span<const pop3::MessageIndex> deletions) {
  std::vector<size_t> indexes;
  indexes.reserve(deletions.size());
  for (pop3::MessageIndex i : deletions) {
    indexes.push_back(static_cast<size_t>(maildrop_.view->ref(i)));
  }
  recorder_.CommitStarted(indexes.size());
  ShardContext* home = &ctx_;
  storage::MailStore* store = ctx_.server->store;
  // The maildrop stays locked until the commit is durable, even if the connection goes first
  // (then this reply releases it), so no other session opens a snapshot mid-commit.
  const bool accepted = ctx_.shard->OffloadIo(
      [home, store, id = id_, stored = maildrop_.stored,
       indexes = std::move(indexes)]() -> reactor::OffloadPool::Reply {
        absl::Status status = absl::OkStatus();
        if (!indexes.empty()) status = store->CommitDeletions(*stored, indexes).status();
        return [home, id, status] {
          if (Pop3Connection* conn = home->Find(id)) {
            conn->OnCommitDone(status);
            return;
          }
          home->locks->Release(id);
        };
      });
  if (!accepted) {
    ++ctx_.stats.offload_rejected;
    session_->OnCommitResult(pop3::Pop3CommitResult::kTempFailure);
    return;
  }
  commit_in_flight_ = true;
}

void Pop3Connection::OnCommitDone(absl::Status status) {
  commit_in_flight_ = false;
  recorder_.CommitFinished(status.ok());
  if (status.ok()) {
    ++ctx_.stats.commits_ok;
  } else {
    ++ctx_.stats.commits_failed;
    ctx_.metrics.CountStoreError(metrics::StoreOperation::kCommit);
    recorder_.Log(LogLevel::kWarning, "commit failed",
                  {{"user", lock_user_}, {"error", status.ToString()}});
  }
  if (closing_) {
    ReleaseRegistrations();  // the lock was held back for the commit
    return;
  }
  session_->OnCommitResult(status.ok() ? pop3::Pop3CommitResult::kOk
                                       : pop3::Pop3CommitResult::kTempFailure);
  Drive();
}

// ---- Output ----

void Pop3Connection::Enqueue(std::string_view bytes) {
  if (!out_.empty() && !out_.back().stream) {
    out_.back().bytes.append(bytes);
    return;
  }
  OutItem item;
  item.bytes = std::string(bytes);
  out_.push_back(std::move(item));
}

void Pop3Connection::Flush() {
  if (tls_plain_flush_ && out_.empty() && !SendBusy()) tls_plain_flush_ = false;
  if (TlsEngineActive()) {
    TlsFlush();
    return;
  }
  // (Output taken before a kDelay still goes out; actions after it are not taken yet.)
  if (closing_ || SendBusy() || out_.empty()) return;
  OutItem& front = out_.front();
  if (!front.stream) {
    inflight_ = std::move(front.bytes);
    out_.erase(out_.begin());
    // A reply line before a body shares its segment (MSG_MORE): fewer packets per RETR.
    sender_.Send(fd_, std::span<const char>(inflight_.data(), inflight_.size()),
                 /*zero_copy=*/false, /*more=*/!out_.empty() && out_.front().stream);
    WatchSendStall();
  } else {
    stream_active_ = true;
    const uint64_t index = maildrop_.view->ref(front.message);
    const storage::MessageRef ref = maildrop_.stored->Ref(index);
    if (!front.top_body_lines.has_value()) {
      StartStream(ref.length);
    } else if (!StartTopLength(index, *front.top_body_lines)) {
      return;
    }
  }
}

bool Pop3Connection::StartTopLength(uint64_t index, uint64_t body_lines) {
  // Finding where TOP's body lines end reads the message: on the I/O pool, not the reactor.
  ShardContext* home = &ctx_;
  const bool accepted = ctx_.shard->OffloadIo(
      [home, id = id_, stored = maildrop_.stored, index, body_lines]() -> reactor::OffloadPool::Reply {
        absl::StatusOr<uint64_t> length = stored->TopLength(index, body_lines);
        return [home, id, length] {
          if (Pop3Connection* conn = home->Find(id)) conn->OnTopLength(length);
        };
      });
  if (!accepted) {
    ++ctx_.stats.offload_rejected;
    stream_active_ = false;
    BeginClose(/*abort=*/true);
  }
  return accepted;
}

void Pop3Connection::OnTopLength(absl::StatusOr<uint64_t> length) {
  if (closing_) {
    stream_active_ = false;
    MaybeFinish();
    return;
  }
  if (!length.ok()) {
    ctx_.metrics.CountStoreError(metrics::StoreOperation::kTopScan);
    recorder_.Log(LogLevel::kError, "TOP failed", {{"error", length.status().ToString()}});
    stream_active_ = false;
    BeginClose(/*abort=*/true);
    return;
  }
  StartStream(*length);
  if (TlsEngineActive()) Drive();  // the engine path seals from TlsFlush
}

void Pop3Connection::StartStream(uint64_t length) {
  const OutItem item = std::move(out_.front());
  out_.erase(out_.begin());
  const uint64_t index = maildrop_.view->ref(item.message);
  const storage::MessageRef ref = maildrop_.stored->Ref(index);
  // The terminator goes out with whatever replies follow.
  if (!out_.empty() && !out_.front().stream) {
    out_.front().bytes.insert(0, kTerminator);
  } else {
    OutItem term;
    term.bytes = std::string(kTerminator);
    out_.insert(out_.begin(), std::move(term));
  }
  if (length == 0) {
    stream_active_ = false;
    if (!TlsEngineActive()) Drive();  // (TlsFlush, the caller, carries on by itself)
    return;
  }
  if (TlsEngineActive()) {
    if (!TlsStartStream(ref, length)) {
      stream_active_ = false;
      BeginClose(/*abort=*/true);
    }
    return;
  }
  const ServeOptions& options = ctx_.server->options;
  reactor::SendPath path = reactor::SendPath::kSplice;
  switch (options.send_path) {
    case SendPathChoice::kAuto:
      path = reactor::ChooseSendPath(length, {.splice_min_bytes = options.copy_below_bytes,
                                              .use_send_zc = options.send_zc_min_bytes > 0,
                                              .send_zc_min_bytes = options.send_zc_min_bytes});
      break;
    case SendPathChoice::kSplice:
      path = reactor::SendPath::kSplice;
      break;
    case SendPathChoice::kSendZc:
      path = reactor::SendPath::kSendZc;
      break;
    case SendPathChoice::kCopy:
      path = reactor::SendPath::kCopy;
      break;
  }
  if (streamer_ == nullptr) {
    streamer_ = std::make_unique<reactor::FileStreamer>(
        ctx_.shard->ring(), ctx_.stats.send, reactor::FileStreamer::Options{},
        [this](absl::Status status, uint64_t bytes) { OnStreamDone(std::move(status), bytes); });
  }
  // The terminator follows at once: the body's last segment may wait for it (MSG_MORE).
  absl::Status started =
      streamer_->Start(fd_, {ref.fd, ref.offset, length}, path, /*more_follows=*/true);
  if (!started.ok() && path != reactor::SendPath::kCopy) {
    // e.g. no pipe or mapping available (fd or memory limits): the copying path still works.
    started = streamer_->Start(fd_, {ref.fd, ref.offset, length}, reactor::SendPath::kCopy,
                               /*more_follows=*/true);
  }
  if (!started.ok()) {
    LogEvent(LogLevel::kError, "stream failed to start", {{"error", started.ToString()}});
    stream_active_ = false;
    BeginClose(/*abort=*/true);
    return;
  }
  WatchSendStall();
}

void Pop3Connection::OnStreamDone(absl::Status status, uint64_t bytes) {
  stream_active_ = false;
  recorder_.MessageBytesSent(bytes);
  if (closing_) {
    MaybeFinish();
    return;
  }
  if (!status.ok()) {  // the peer went away mid-transfer
    BeginClose(/*abort=*/true);
    return;
  }
  Drive();
}

void Pop3Connection::OnSendDone(absl::Status status, uint64_t bytes) {
  inflight_.clear();
  recorder_.ReplyBytesSent(bytes);
  if (closing_) {
    MaybeFinish();
    return;
  }
  if (!status.ok()) {
    BeginClose(/*abort=*/true);
    return;
  }
  Drive();
}

// ---- Input ----

void Pop3Connection::OnData(uint16_t buffer_id, std::span<const char> data) {
  if (!closing_) {
    last_input_ns_ = MonotonicNowNs();
    if (tls_ != nullptr) {
      TlsOnCiphertext(data);  // also during STLS's plaintext flush: these are the peer's records
    } else {
      session_->Feed(std::string_view(data.data(), data.size()));
    }
  }
  ctx_.buffers->Release(buffer_id);
  if (closing_) return;
  if (!session_->WantsInput() && !recv_paused_) {
    recv_paused_ = true;
    receiver_.Stop();
  }
  Drive();
}

void Pop3Connection::OnReceiveEnd(absl::Status status) {
  if (closing_) {
    MaybeFinish();
    return;
  }
  if (recv_paused_ && absl::IsCancelled(status)) {
    Drive();  // resumes once the session wants input again
    return;
  }
  if (status.ok()) {
    peer_eof_ = true;  // answer what was already received, then close
    Drive();
    return;
  }
  BeginClose(/*abort=*/true);
}

// ---- Timeouts ----

void Pop3Connection::ArmTimer() {
  const ServeOptions& options = ctx_.server->options;
  uint64_t deadline;
  if (session_->state() == pop3::Pop3State::kAuthorization) {
    deadline = connected_ns_ + uint64_t{options.auth_timeout_s} * kNsPerSecond;
  } else {
    deadline = last_input_ns_ + uint64_t{options.idle_timeout_s} * kNsPerSecond;
  }
  if (send_stall_.active()) deadline = std::min(deadline, send_stall_.next_sample_ns());
  ctx_.shard->ring().timers().StartAt(&timer_, deadline);
}

void Pop3Connection::OnTimer() {
  if (closing_) return;
  const ServeOptions& options = ctx_.server->options;
  const uint64_t now = MonotonicNowNs();
  const bool sending = SendBusy();
  if (send_stall_.active()) {
    const std::optional<TcpSendProgress> progress = ReadTcpSendProgress(fd_);
    const bool kernel_holds_bytes = progress.has_value() && progress->bytes_outstanding;
    if (!SocketSendBusy() && !kernel_holds_bytes) {
      send_stall_.Stop();  // the peer has everything we sent
    } else if (send_stall_.Sample(now, progress.has_value() ? std::optional(progress->bytes_acked)
                                                            : std::nullopt)) {
      ++ctx_.stats.timeouts_send_stall;
      recorder_.SetOutcome(metrics::SessionOutcome::kTimeout);
      recorder_.Log(LogLevel::kInfo, "send stalled, closing",
                    {{"stalled_ms", std::to_string((now - send_stall_.last_progress_ns()) /
                                                   1'000'000)}});
      BeginClose(/*abort=*/true);
      return;
    }
  }
  const pop3::Pop3State state = session_->state();
  if (TlsHandshaking() && now >= connected_ns_ + uint64_t{options.auth_timeout_s} * kNsPerSecond) {
    ++ctx_.stats.timeouts_auth;  // a TLS handshake that never finishes
    BeginClose(/*abort=*/true);
    return;
  }
  if (state == pop3::Pop3State::kAuthorization && !lock_request_pending_ &&
      !session_->AwaitingResult() &&
      now >= connected_ns_ + uint64_t{options.auth_timeout_s} * kNsPerSecond) {
    ++ctx_.stats.timeouts_auth;
    TimeOut(pop3::Pop3Timeout::kLogin);
    return;
  }
  if (state == pop3::Pop3State::kTransaction && !sending && !session_->AwaitingResult() &&
      now >= last_input_ns_ + uint64_t{options.idle_timeout_s} * kNsPerSecond) {
    ++ctx_.stats.timeouts_idle;
    TimeOut(pop3::Pop3Timeout::kIdle);
    return;
  }
  ArmTimer();
  if (timer_.deadline_ns() <= now) {
    ctx_.shard->ring().timers().Start(&timer_, kNsPerSecond);  // waiting on a result
  }
}

void Pop3Connection::TimeOut(pop3::Pop3Timeout timeout) {
  recorder_.SetOutcome(metrics::SessionOutcome::kTimeout);
  if (SendBusy() || tls_failed_) {  // the peer is not reading either
    BeginClose(/*abort=*/true);
    return;
  }
  // Nothing is committed; the session forgets what it queued and answers the timeout.
  session_->OnTimeout(timeout);
  out_.clear();
  TakeFinalReply();
  admitted_ = false;  // take no further session actions
  Drive();
  if (!closing_) ArmTimer();  // the reply itself may wait on the peer (the stall watch)
}

// ---- TLS ----

void Pop3Connection::TlsOnCiphertext(std::span<const char> data) {
  auto bytes = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  while (!bytes.empty() && !tls_failed_) {
    absl::StatusOr<size_t> fed = tls_->FeedCiphertext(bytes);
    if (!fed.ok()) {
      TlsFail(tls_->HandshakeDone() ? "record" : "handshake");
      return;
    }
    bytes = bytes.subspan(*fed);
    if (tls_->HandshakeDone() && !tls_handshake_seen_) {
      // Records already received behind the handshake must be opened by the engine.
      TlsOnHandshakeDone(/*input_pending=*/!bytes.empty());
      if (tls_ == nullptr) return;  // handed to the kernel (nothing was left over)
    }
    // Decrypt everything the engine holds (it accepts more ciphertext once it has).
    size_t read_total = 0;
    for (;;) {
      tls_plain_.clear();
      absl::StatusOr<size_t> n = tls_->ReadPlaintext(&tls_plain_);
      if (!n.ok()) {
        TlsFail("record");
        return;
      }
      if (*n == 0) break;
      read_total += *n;
      session_->Feed(tls_plain_);
    }
    if (*fed == 0 && read_total == 0 && !bytes.empty()) {
      // Nothing moved: the engine's input bound held a partial record larger than TLS allows.
      TlsFail("record");
      return;
    }
  }
  if (tls_ != nullptr && tls_->PeerClosed()) peer_eof_ = true;  // close_notify: like EOF
}

void Pop3Connection::TlsOnHandshakeDone(bool input_pending) {
  tls_handshake_seen_ = true;
  if (!implicit_tls_) session_->OnTlsStarted();
  // Kernel TLS where the kernel has it (and the engine is quiescent), else the engine stays.
  KtlsCapability capability = ctx_.server->ktls;
  if (input_pending && capability.available) {
    capability.available = false;
    capability.reason = "not used: records arrived behind the handshake";
  }
  std::string why;
  ctx_.metrics.CountTlsHandshake(
      metrics::TlsVersionFromName(tls_->version_name()),
      tls_->resumed() ? metrics::TlsOutcome::kResumed : metrics::TlsOutcome::kOk);
  const TlsDataPath path = ChooseTlsDataPath(fd_, *tls_, capability, &ctx_.stats.tls_path, &why);
  LogEvent(
      LogLevel::kDebug, "tls session",
      {{"peer", peer_.ip},
       {"version", std::string(tls_->version_name())},
       {"cipher", std::string(tls_->cipher_name())},
       {"sni", std::string(tls_->server_name())},
       {"certificate", tls_->certificate_name().empty() ? std::string("default")
                                                        : std::string(tls_->certificate_name())},
       {"resumed", tls_->resumed() ? "true" : "false"},
       {"path", std::string(TlsDataPathName(path))},
       {"why", why}});
  if (path == TlsDataPath::kKernelTls) {
    CountTlsSession(*tls_, &ctx_.stats.tls);
    tls_.reset();
    tls_kernel_ = true;
  }
}

void Pop3Connection::TlsFlush() {
  if (closing_ || sender_.busy()) return;
  while (!tls_failed_ && tls_->HandshakeDone() &&
         tls_->PendingCiphertextBytes() < TlsEngine::kCiphertextOutMax) {
    if (tls_stream_active_) {
      TlsBodyStream& st = tls_stream_;
      absl::StatusOr<size_t> n = tls_->EncryptFrom(
          std::span<const uint8_t>(st.data + st.done, static_cast<size_t>(st.length - st.done)));
      if (!n.ok()) {
        TlsFail("record");
        return;
      }
      st.done += *n;
      ctx_.stats.tls_body_bytes += *n;
      if (st.done < st.length) break;  // the output bound: send first
      ++ctx_.stats.send.streams_ok;
      TlsEndStream();
      stream_active_ = false;
      continue;
    }
    if (stream_active_ || out_.empty()) break;  // (a TOP length is being computed)
    OutItem& front = out_.front();
    if (front.stream) {
      stream_active_ = true;
      const uint64_t index = maildrop_.view->ref(front.message);
      const storage::MessageRef ref = maildrop_.stored->Ref(index);
      if (front.top_body_lines.has_value()) {
        if (!StartTopLength(index, *front.top_body_lines)) return;
        break;
      }
      StartStream(ref.length);
      if (closing_) return;
      continue;
    }
    absl::StatusOr<size_t> n = tls_->WritePlaintext(front.bytes);
    if (!n.ok()) {
      TlsFail("record");
      return;
    }
    if (*n < front.bytes.size()) {
      front.bytes.erase(0, *n);
      break;
    }
    out_.erase(out_.begin());
  }
  if (tls_->PendingCiphertextBytes() == 0) return;
  tls_->SwapCiphertext(&inflight_);
  sender_.Send(fd_, std::span<const char>(inflight_.data(), inflight_.size()),
               /*zero_copy=*/false);
  WatchSendStall();
}

bool Pop3Connection::TlsStartStream(const storage::MessageRef& ref, uint64_t length) {
  // The stored bytes are sealed from the page cache through this mapping: no plaintext copy.
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t aligned = ref.offset & ~(page - 1);
  const size_t map_len = static_cast<size_t>(length + (ref.offset - aligned));
  void* map = mmap(nullptr, map_len, PROT_READ, MAP_SHARED, ref.fd, static_cast<off_t>(aligned));
  if (map == MAP_FAILED) {
    ++ctx_.stats.send.streams_failed;
    LogEvent(LogLevel::kError, "tls: cannot map the message",
             {{"peer", peer_.ip}, {"error", strerror(errno)}});
    return false;
  }
  madvise(map, map_len, MADV_SEQUENTIAL);
  tls_stream_.map = map;
  tls_stream_.map_len = map_len;
  tls_stream_.data = static_cast<const uint8_t*>(map) + (ref.offset - aligned);
  tls_stream_.length = length;
  tls_stream_.done = 0;
  tls_stream_active_ = true;
  return true;
}

void Pop3Connection::TlsEndStream() {
  if (!tls_stream_active_) return;
  munmap(tls_stream_.map, tls_stream_.map_len);
  tls_stream_ = TlsBodyStream{};
  tls_stream_active_ = false;
}

void Pop3Connection::TlsFail(std::string_view stage) {
  if (tls_failed_) return;
  tls_failed_ = true;
  if (!tls_handshake_seen_) {
    ctx_.metrics.CountTlsHandshake(metrics::TlsVersion::kOther, metrics::TlsOutcome::kFailed);
  }
  const uint64_t second = MonotonicNowNs() / kNsPerSecond;
  if (second != ctx_.tls_error_log_second) {
    ctx_.tls_error_log_second = second;
    ctx_.tls_error_logs_this_second = 0;
  }
  if (ctx_.tls_error_logs_this_second < ShardContext::kTlsErrorLogsPerSecond) {
    ++ctx_.tls_error_logs_this_second;
    LogEvent(LogLevel::kInfo, "tls error, closing the connection",
             {{"peer", peer_.ip},
              {"stage", std::string(stage)},
              {"error", tls_->status().ToString()},
              {"earlier_lines_suppressed", std::to_string(ctx_.tls_error_logs_suppressed)}});
    ctx_.tls_error_logs_suppressed = 0;
  } else {
    ++ctx_.tls_error_logs_suppressed;  // still counted in posthaste_tls_errors_total
  }
  if (stream_active_) {  // a body or a TOP scan is under way: end at once
    BeginClose(/*abort=*/true);
    return;
  }
  // Commit nothing; send the alert the engine queued, then close.
  if (session_->state() != pop3::Pop3State::kClosed) session_->OnConnectionLost();
  admitted_ = false;
  out_.clear();
  close_after_flush_ = true;
  if (!sender_.busy() && tls_->PendingCiphertextBytes() > 0) {
    tls_->SwapCiphertext(&inflight_);
    sender_.Send(fd_, std::span<const char>(inflight_.data(), inflight_.size()),
                 /*zero_copy=*/false);
    WatchSendStall();
  }
}

// ---- Closing ----

void Pop3Connection::Abort() {
  recorder_.SetOutcome(metrics::SessionOutcome::kAborted);
  BeginClose(/*abort=*/true);
}

void Pop3Connection::BeginClose(bool abort) {
  if (closing_) return;
  closing_ = true;
  ctx_.shard->ring().timers().Cancel(&timer_);
  ctx_.shard->ring().timers().Cancel(&delay_timer_);
  if (session_->state() != pop3::Pop3State::kClosed) session_->OnConnectionLost();
  const bool sending = sender_.busy() || (streamer_ && streamer_->busy());
  if (receiver_.active()) receiver_.Stop();
  if (sender_.busy()) sender_.Cancel();
  if (streamer_ && streamer_->busy()) streamer_->Cancel();
  if (tls_stream_active_) {  // sealing from the mapping has no operation of its own to finish
    TlsEndStream();
    stream_active_ = false;
  }
  if (abort || sending) {
    // RST: drops queued data at once and releases pages a SEND_ZC still pins.
    reactor::AbortSocket(fd_);
    fd_closed_ = true;
  } else {
    shutdown(fd_, SHUT_WR);
  }
  ReleaseRegistrations();
  MaybeFinish();
}

void Pop3Connection::ReleaseRegistrations() {
  const uint32_t shards = static_cast<uint32_t>(ctx_.server->shards.size());
  ShardContext* home = &ctx_;
  if (!lock_user_.empty() && !commit_in_flight_) {
    // (A commit in flight releases the lock when it is done, whether or not this connection is
    // still there; MaildropLocks undoes a request still out when its answer comes.)
    ctx_.locks->Release(id_);
    lock_user_.clear();
  }
  if (ip_counted_ && closing_) {
    const uint32_t owner = OwnerShard(peer_.ip, shards);
    if (!ctx_.RunOn(owner, [home, owner, ip = peer_.ip] {
          ShardContext& o = home->Peer(owner);
          auto it = o.ip_counts.find(ip);
          if (it != o.ip_counts.end() && --it->second == 0) o.ip_counts.erase(it);
        })) {
      ++ctx_.stats.post_rejected;
    }
    ip_counted_ = false;
  }
}

void Pop3Connection::MaybeFinish() {
  if (!closing_ || finished_) return;
  if (receiver_.active() || sender_.busy() || stream_active_ || (streamer_ && streamer_->busy())) {
    return;
  }
  finished_ = true;
  TlsEndStream();
  if (tls_ != nullptr) CountTlsSession(*tls_, &ctx_.stats.tls);
  ctx_.stats.commands += session_->counters().commands;
  ctx_.stats.lines_too_long += session_->counters().command_line_too_long;
  recorder_.Finish(session_->counters().commands);
  if (!fd_closed_) {
    close(fd_);
    fd_closed_ = true;
  }
  ctx_.Destroy(id_);
}

}  // namespace posthaste::server
