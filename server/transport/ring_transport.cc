// RingTransport: lifecycle, input, the output queue, timers and endings. The TLS engine is
// driven from ring_transport_tls.cc only.
//
// The moves of State (anything else is a bug):
//   kNew         -> kOpen | kHandshaking   Start() (kHandshaking with implicit TLS)
//   kNew         -> kClosing | kEnding     Close() / Abort() before Start()
//   kOpen        -> kHandshaking           StartTls()
//   kHandshaking -> kOpen                  handshake done and the data path chosen
//   kOpen | kHandshaking -> kClosing       Close(), or a TLS failure (its alert still goes out)
//   kClosing     -> kEnding                output drained (close_notify sent): FIN
//   any but kClosed -> kEnding             Abort(), a failed send or receive, a send stall,
//                                          a resource failure: RST
//   kEnding      -> kClosed                every ring operation completed: fd closed, OnClosed
// Client callbacks: OnReceive, OnTlsStarted, OnPeerFinished, OnOutputDrained and OnDeadline
// only in kOpen/kHandshaking, from ring completions, timers or deferred closures; OnClosed
// only from a deferred closure (RunDeferred), as the very last thing.
#include "server/transport/ring_transport.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "base/check.h"
#include "base/log.h"

namespace posthaste::server::transport {

bool TlsErrorLogLimiter::Admit(uint64_t now_ns, uint64_t* suppressed_before) {
  const uint64_t second = now_ns / 1'000'000'000;
  if (second != second_) {
    second_ = second;
    lines_this_second_ = 0;
  }
  if (lines_this_second_ >= kLinesPerSecond) {
    ++suppressed_;  // still counted by the TLS error counters
    return false;
  }
  ++lines_this_second_;
  *suppressed_before = suppressed_;
  suppressed_ = 0;
  return true;
}

RingTransport::RingTransport(const TransportEnv& env, int fd, PeerInfo peer, bool implicit_tls)
    : env_(env),
      fd_(fd),
      peer_(std::move(peer)),
      implicit_tls_(implicit_tls),
      receiver_(
          *env.ring, *env.buffers, fd,
          [this](uint16_t buffer_id, std::span<const char> data) { OnRecvData(buffer_id, data); },
          [this](absl::Status status) { OnRecvEnd(std::move(status)); }),
      sender_(
          *env.ring, *env.send_stats,
          [this](absl::Status status, uint64_t bytes) { OnSendDone(std::move(status), bytes); }),
      send_stall_(env.send_stall_timeout_ns) {
  PH_CHECK(env.ring != nullptr && env.buffers != nullptr && env.send_stats != nullptr);
  PH_CHECK(env.send_stall_timeout_ns > 0);
  PH_CHECK(!implicit_tls || env.tls != nullptr);
  PH_CHECK(env.tls == nullptr || (env.tls_counters != nullptr && env.tls_path_counters != nullptr &&
                                  env.tls_body_bytes != nullptr &&
                                  env.tls_stls_started != nullptr && env.tls_error_log != nullptr));
  timer_.Bind<&RingTransport::OnTimer>(this);
  if (implicit_tls_) StartEngine();
}

RingTransport::~RingTransport() {
  PH_CHECK(!advance_scheduled_ && !OperationsInFlight());
  EndTlsFileSeal();
  CountTlsEnd();
  if (fd_ >= 0) close(fd_);
}

std::unique_ptr<Transport> MakeRingTransport(const TransportEnv& env, int fd, PeerInfo peer,
                                             bool implicit_tls) {
  return std::make_unique<RingTransport>(env, fd, std::move(peer), implicit_tls);
}

// ---- Transport ----

void RingTransport::Start(TransportClient* client) {
  ApiScope scope(this);
  PH_CHECK(client_ == nullptr && client != nullptr);
  client_ = client;
  if (state_ == State::kNew) {
    state_ = tls_mode_ == TlsMode::kEngine ? State::kHandshaking : State::kOpen;
  }
  SyncReceiver();
  PumpOutput();
  ArmTimer();
  RequestAdvance();  // e.g. ended before Start: OnClosed now has someone to tell
}

void RingTransport::Send(std::string_view bytes) {
  if (bytes.empty() || state_ >= State::kClosing) return;
  const bool before_tls = tls_mode_ == TlsMode::kNone;
  if (out_.size() > flushed_items_ && !out_.back().is_file &&
      out_.back().before_tls == before_tls) {
    out_.back().bytes.append(bytes);  // one batch of replies, one send
    return;
  }
  OutItem item;
  item.before_tls = before_tls;
  item.bytes = std::string(bytes);
  out_.push_back(std::move(item));
}

void RingTransport::SendFile(const FileRange& range) {
  if (range.length == 0 || state_ >= State::kClosing) return;
  OutItem item;
  item.is_file = true;
  item.before_tls = tls_mode_ == TlsMode::kNone;
  item.file = range;
  out_.push_back(std::move(item));
}

void RingTransport::Flush() {
  ApiScope scope(this);
  if (state_ >= State::kClosing || flushed_items_ == out_.size()) return;
  // Bytes flushed earlier and still waiting join the new ones: one send, not two.
  if (flushed_items_ > 0) {
    OutItem& last = out_[flushed_items_ - 1];
    OutItem& next = out_[flushed_items_];
    if (!last.is_file && !next.is_file && last.before_tls == next.before_tls) {
      last.bytes.append(next.bytes);
      out_.erase(out_.begin() + static_cast<std::ptrdiff_t>(flushed_items_));
    }
  }
  flushed_items_ = out_.size();
  drain_owed_ = true;
  PumpOutput();
}

bool RingTransport::OutputPending() const {
  return !out_.empty() || SocketSendBusy() || TlsFileSealActive() ||
         (engine() != nullptr && engine()->PendingCiphertextBytes() > 0);
}

void RingTransport::PauseReceive() {
  ApiScope scope(this);
  if (receive_paused_) return;
  receive_paused_ = true;
  SyncReceiver();
}

void RingTransport::ResumeReceive() {
  ApiScope scope(this);
  if (!receive_paused_) return;
  receive_paused_ = false;
  SyncReceiver();
  RequestAdvance();  // input held meanwhile, and a FIN behind it, are told from there
}

void RingTransport::SetDeadline(uint64_t deadline_ns) {
  ApiScope scope(this);
  deadline_ns_ = deadline_ns;
  ArmTimer();
}

void RingTransport::Close() {
  ApiScope scope(this);
  if (state_ >= State::kClosing) return;
  if (tls_mode_ == TlsMode::kEngine && (state_ == State::kHandshaking || state_ == State::kNew)) {
    if (engine()->HandshakeDone()) {
      DecideTlsDataPath(/*input_behind_handshake=*/true);  // keep the engine: no hand-off now
    } else {
      // Receiving stops, so the handshake cannot finish: what was meant for TLS cannot go.
      std::erase_if(out_, [](const OutItem& item) { return !item.before_tls; });
    }
  }
  flushed_items_ = out_.size();
  drain_owed_ = false;
  state_ = State::kClosing;
  end_reason_ = CloseReason::kClosed;
  SyncReceiver();
  PumpOutput();
  ArmTimer();
  RequestAdvance();
}

void RingTransport::Abort() {
  ApiScope scope(this);
  EndNow(CloseReason::kAborted);
}

// ---- Moving forward ----

void RingTransport::RequestAdvance() {
  if (advance_scheduled_ || client_ == nullptr || state_ == State::kClosed) return;
  advance_scheduled_ = true;
  env_.ring->Defer([this] { RunDeferred(); });
}

void RingTransport::RunDeferred() {
  advance_scheduled_ = false;
  Advance(/*may_finish=*/true);
}

void RingTransport::Advance(bool may_finish) {
  // A completion that ran inside a Transport call (or inside Advance itself, e.g. a receive
  // stopped while it waited for buffers) tells the client later, from a deferred closure.
  if (api_depth_ > 0 || advancing_) {
    RequestAdvance();
    return;
  }
  if (client_ == nullptr || state_ == State::kClosed) return;
  advancing_ = true;
  ConsumeHeldInput();
  if (state_ == State::kHandshaking && engine() != nullptr && engine()->HandshakeDone() &&
      TlsHandshakeSettled()) {
    TellTlsStarted();
  }
  TellPeerFinished();
  PumpOutput();
  ProgressClose();
  TellOutputDrained();
  SyncReceiver();
  advancing_ = false;
  if (state_ == State::kEnding && !OperationsInFlight()) {
    if (may_finish) {
      Finish();  // `this` may be gone
      return;
    }
    RequestAdvance();  // OnClosed only from a deferred closure
  }
}

void RingTransport::TellPeerFinished() {
  if (!peer_eof_ || peer_finished_told_) return;
  if (state_ == State::kHandshaking) {
    // Gone in mid-handshake (a port scan on pop3s, or after STLS): nothing can be answered.
    EndNow(CloseReason::kPeerReset);
    return;
  }
  if (state_ != State::kOpen || receive_paused_ || !held_input_.empty()) return;
  peer_finished_told_ = true;
  client_->OnPeerFinished();
}

void RingTransport::TellOutputDrained() {
  if (!drain_owed_ || (state_ != State::kOpen && state_ != State::kHandshaking) ||
      !FlushedOutputIdle()) {
    return;
  }
  drain_owed_ = false;
  client_->OnOutputDrained();
}

void RingTransport::ProgressClose() {
  if (state_ != State::kClosing || !OutputIdle()) return;
  if (end_reason_ == CloseReason::kClosed && tls_mode_ == TlsMode::kEngine &&
      !tls_->close_notify_queued && engine()->HandshakeDone() && !engine()->Failed()) {
    QueueTlsCloseNotify();  // close_notify first, then the TCP FIN
    PumpOutput();
    if (!OutputIdle()) return;
  }
  shutdown(fd_, SHUT_WR);
  state_ = State::kEnding;
  send_stall_.Stop();
  ArmTimer();
}

bool RingTransport::OperationsInFlight() const { return receiver_.active() || SocketSendBusy(); }

void RingTransport::Finish() {
  PH_DCHECK(state_ == State::kEnding && !OperationsInFlight());
  state_ = State::kClosed;
  env_.ring->timers().Cancel(&timer_);
  EndTlsFileSeal();
  CountTlsEnd();
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  out_.clear();
  flushed_items_ = 0;
  held_input_.clear();
  client_->OnClosed(end_reason_);  // the client may destroy this transport: touch nothing after
}

void RingTransport::EndNow(CloseReason reason) {
  if (state_ >= State::kEnding) return;
  state_ = State::kEnding;
  end_reason_ = reason;
  out_.clear();
  flushed_items_ = 0;
  drain_owed_ = false;
  EndTlsFileSeal();
  send_stall_.Stop();
  env_.ring->timers().Cancel(&timer_);
  SyncReceiver();
  if (sender_.busy()) sender_.Cancel();
  if (streamer_ != nullptr && streamer_->busy()) streamer_->Cancel();
  if (fd_ >= 0) {
    // RST: queued data dropped at once, and pages a SEND_ZC still pins are released.
    reactor::AbortSocket(fd_);
    fd_ = -1;
  }
  RequestAdvance();
}

// ---- Input ----

bool RingTransport::ClientTakesInput() const {
  return client_ != nullptr && state_ == State::kOpen && !receive_paused_ && api_depth_ == 0;
}

bool RingTransport::WantReceive() const {
  if (client_ == nullptr || peer_eof_) return false;
  // A handshake is fed even while the client pauses: pausing is about its plaintext.
  return state_ == State::kHandshaking || (state_ == State::kOpen && !receive_paused_);
}

void RingTransport::SyncReceiver() {
  if (WantReceive()) {
    // Inside OnRecvData the Receiver re-arms itself; a stop asked for meanwhile is undone
    // from OnRecvEnd.
    if (!receiver_.active() && !in_recv_callback_) {
      recv_stopping_ = false;
      receiver_.Start();
    }
    return;
  }
  if ((receiver_.active() || in_recv_callback_) && !recv_stopping_) {
    recv_stopping_ = true;
    receiver_.Stop();  // may call OnRecvEnd at once (a receive waiting for buffers)
  }
}

void RingTransport::OnRecvData(uint16_t buffer_id, std::span<const char> data) {
  in_recv_callback_ = true;
  if (state_ == State::kHandshaking || state_ == State::kOpen) {
    if (held_input_.empty()) {
      const size_t used = ConsumeInput(data);
      if (used < data.size() && (state_ == State::kHandshaking || state_ == State::kOpen)) {
        held_input_.append(data.data() + used, data.size() - used);
      }
    } else {
      held_input_.append(data.data(), data.size());  // behind what waits: keep the order
    }
  }
  env_.buffers->Release(buffer_id);  // parsed or copied: back to the kernel at once
  Advance(/*may_finish=*/false);
  in_recv_callback_ = false;
}

void RingTransport::OnRecvEnd(absl::Status status) {
  recv_stopping_ = false;
  if (state_ == State::kHandshaking || state_ == State::kOpen) {
    if (status.ok()) {
      peer_eof_ = true;  // answered by OnPeerFinished once the input before it was taken
    } else if (!absl::IsCancelled(status)) {
      EndNow(CloseReason::kPeerReset);
    }
  }
  Advance(/*may_finish=*/false);  // re-arms a receive that was stopped and is wanted again
}

size_t RingTransport::ConsumeInput(std::span<const char> raw) {
  if (tls_mode_ == TlsMode::kEngine) return ConsumeTlsInput(raw);
  if (raw.empty() || !ClientTakesInput()) return 0;
  totals_.bytes_received += raw.size();
  client_->OnReceive(std::string_view(raw.data(), raw.size()));
  return raw.size();
}

void RingTransport::ConsumeHeldInput() {
  if (held_input_.empty() && !TlsInputParked()) return;
  // Callbacks cannot append to held_input_ (only OnRecvData does, never from in here).
  const size_t used = ConsumeInput(std::span<const char>(held_input_.data(), held_input_.size()));
  if (state_ == State::kHandshaking || state_ == State::kOpen) {
    held_input_.erase(0, used);
  } else {
    held_input_.clear();
  }
}

// ---- Output ----

bool RingTransport::ItemUsesEngine(const OutItem& item) const {
  return tls_mode_ == TlsMode::kEngine && !item.before_tls;
}

void RingTransport::PopFront() {
  PH_DCHECK(flushed_items_ > 0);
  out_.erase(out_.begin());
  --flushed_items_;
  if (out_.empty()) std::vector<OutItem>().swap(out_);  // an idle connection holds no queue
}

void RingTransport::PumpOutput() {
  if (client_ == nullptr || state_ >= State::kEnding || SocketSendBusy()) return;
  if (HasFlushedItem() && !ItemUsesEngine(out_.front())) {
    StartPlainSend();
    return;
  }
  if (tls_mode_ == TlsMode::kEngine) PumpTls();
}

void RingTransport::StartPlainSend() {
  OutItem& front = out_.front();
  if (front.is_file) {
    const FileRange range = front.file;
    PopFront();
    // The file's last bytes wait (MSG_MORE) for what follows, e.g. the POP3 terminator.
    StartFileStream(range, /*more_follows=*/HasFlushedItem());
    return;
  }
  inflight_ = std::move(front.bytes);
  PopFront();
  // A reply line before a body shares its segment: fewer packets per RETR.
  SendBuffer(/*ciphertext=*/false,
             /*more=*/HasFlushedItem() && out_.front().is_file && !ItemUsesEngine(out_.front()));
}

reactor::SendPath RingTransport::ChoosePath(uint64_t length) const {
  if (env_.send_path.has_value()) return *env_.send_path;
  return reactor::ChooseSendPath(length, env_.send_path_policy);
}

void RingTransport::StartFileStream(const FileRange& range, bool more_follows) {
  if (streamer_ == nullptr) {
    streamer_ = std::make_unique<reactor::FileStreamer>(
        *env_.ring, *env_.send_stats, reactor::FileStreamer::Options{},
        [this](absl::Status status, uint64_t bytes) { OnStreamDone(std::move(status), bytes); });
  }
  const reactor::FileRange file{range.fd, range.offset, range.length};
  const reactor::SendPath path = ChoosePath(range.length);
  absl::Status started = streamer_->Start(fd_, file, path, more_follows);
  if (!started.ok() && path != reactor::SendPath::kCopy) {
    // e.g. no pipe or mapping to be had (fd or memory limits): the copying path still works.
    started = streamer_->Start(fd_, file, reactor::SendPath::kCopy, more_follows);
  }
  if (!started.ok()) {
    LogEvent(LogLevel::kError, "stream failed to start",
             {{"peer", peer_.ip}, {"error", started.ToString()}});
    EndNow(CloseReason::kResourceFailed);
    return;
  }
  WatchSendStall();
}

void RingTransport::SendBuffer(bool ciphertext, bool more) {
  inflight_ciphertext_ = ciphertext;
  sender_.Send(fd_, std::span<const char>(inflight_.data(), inflight_.size()),
               /*zero_copy=*/false, more);
  WatchSendStall();
}

bool RingTransport::SocketSendBusy() const {
  return sender_.busy() || (streamer_ != nullptr && streamer_->busy());
}

bool RingTransport::FlushedOutputIdle() const {
  // Handshake records the engine still holds are not the client's output.
  const bool sealed_waiting =
      engine() != nullptr && engine()->HandshakeDone() && engine()->PendingCiphertextBytes() > 0;
  return !HasFlushedItem() && !SocketSendBusy() && !TlsFileSealActive() && !sealed_waiting;
}

bool RingTransport::OutputIdle() const { return !OutputPending(); }

void RingTransport::OnSendDone(absl::Status status, uint64_t bytes) {
  if (!inflight_ciphertext_) totals_.reply_bytes_sent += bytes;
  if (InflightSealed()) {
    tls_->inflight_sealed = false;
    tls_->send.Clear();
  } else if (inflight_ciphertext_) {
    inflight_.clear();  // keeps its capacity: the engine's next handshake flight
  } else {
    // A reply sent: its memory goes back (the next one brings its own, moved in from out_),
    // so an idle connection holds no send buffer.
    std::string().swap(inflight_);
  }
  if (!status.ok() && state_ < State::kEnding) EndNow(CloseReason::kPeerReset);
  Advance(/*may_finish=*/false);
}

void RingTransport::OnStreamDone(absl::Status status, uint64_t bytes) {
  totals_.file_bytes_sent += bytes;
  if (!status.ok() && state_ < State::kEnding) {
    if (absl::IsUnavailable(status)) {  // the peer went away mid-transfer
      EndNow(CloseReason::kPeerReset);
    } else {
      LogEvent(LogLevel::kError, "stream failed",
               {{"peer", peer_.ip}, {"error", status.ToString()}});
      EndNow(CloseReason::kResourceFailed);
    }
  }
  Advance(/*may_finish=*/false);
}

// ---- Timers ----

void RingTransport::WatchSendStall() {
  // Already watching: the clock runs from the peer's last acknowledgement, not from this send.
  if (send_stall_.active() || state_ >= State::kEnding) return;
  const std::optional<TcpSendProgress> progress = ReadTcpSendProgress(fd_);
  send_stall_.Start(reactor::MonotonicNowNs(),
                    progress.has_value() ? std::optional(progress->bytes_acked) : std::nullopt);
  ArmTimer();
}

void RingTransport::ArmTimer() {
  uint64_t next = 0;
  if (deadline_ns_ != 0 && client_ != nullptr && state_ <= State::kOpen) next = deadline_ns_;
  if (send_stall_.active() && state_ < State::kEnding) {
    next = next == 0 ? send_stall_.next_sample_ns() : std::min(next, send_stall_.next_sample_ns());
  }
  if (next == 0) {
    env_.ring->timers().Cancel(&timer_);
  } else {
    env_.ring->timers().StartAt(&timer_, next);
  }
}

void RingTransport::OnTimer() {
  if (state_ >= State::kEnding) return;
  const uint64_t now = reactor::MonotonicNowNs();
  if (send_stall_.active()) {
    const std::optional<TcpSendProgress> progress = ReadTcpSendProgress(fd_);
    const bool kernel_holds_bytes = progress.has_value() && progress->bytes_outstanding;
    if (!SocketSendBusy() && !kernel_holds_bytes) {
      send_stall_.Stop();  // the peer has everything we sent
    } else if (send_stall_.Sample(now, progress.has_value() ? std::optional(progress->bytes_acked)
                                                            : std::nullopt)) {
      LogEvent(
          LogLevel::kDebug, "send stalled",
          {{"peer", peer_.ip},
           {"stalled_ms", std::to_string((now - send_stall_.last_progress_ns()) / 1'000'000)}});
      EndNow(CloseReason::kSendStalled);
      Advance(/*may_finish=*/false);
      return;
    }
  }
  if (deadline_ns_ != 0 && now >= deadline_ns_ && client_ != nullptr &&
      (state_ == State::kHandshaking || state_ == State::kOpen)) {
    deadline_ns_ = 0;
    ArmTimer();
    client_->OnDeadline();
    Advance(/*may_finish=*/false);
    return;
  }
  ArmTimer();
}

}  // namespace posthaste::server::transport
