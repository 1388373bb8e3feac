// RingTransport's TLS: every call into the TlsEngine is in this file. Received ciphertext goes in
// (ConsumeTlsInput), plaintext comes out to the client; after the handshake queued bytes and
// mapped file ranges are sealed in place into one send buffer, many records per send, and sent by
// the connection's one Sender (SealAndSend); handshake flights, alerts and close_notify come out
// of the engine's own buffer (PumpTls). After the handshake the record layer may
// go to the kernel (DecideTlsDataPath); a failure sends the engine's alert, then FIN (FailTls).
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "base/check.h"
#include "base/log.h"
#include "server/transport/ring_transport.h"

namespace posthaste::server::transport {
namespace {

std::span<const uint8_t> AsBytes(std::span<const char> chars) {
  return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(chars.data()), chars.size());
}

}  // namespace

void RingTransport::StartEngine() {
  tls_ = std::make_unique<TlsState>();
  tls_->engine = env_.tls->NewEngine();
  tls_mode_ = TlsMode::kEngine;
}

void RingTransport::StartTls() {
  ApiScope scope(this);
  PH_CHECK(env_.tls != nullptr && tls_mode_ == TlsMode::kNone);
  if (state_ != State::kOpen && state_ != State::kNew) return;  // closing: nothing to start
  ++*env_.tls_stls_started;
  // What is queued now keeps its before_tls mark and goes out in plaintext first.
  StartEngine();
  if (state_ == State::kOpen) state_ = State::kHandshaking;
  SyncReceiver();  // the handshake is received even while the client pauses
  if (!held_input_.empty()) RequestAdvance();  // the peer's first records already arrived
}

size_t RingTransport::ConsumeTlsInput(std::span<const char> raw) {
  size_t consumed = 0;
  for (;;) {
    if ((state_ != State::kHandshaking && state_ != State::kOpen) ||
        tls_mode_ != TlsMode::kEngine) {
      return consumed;
    }
    TlsEngine& engine = *tls_->engine;
    size_t fed = 0;
    if (consumed < raw.size()) {
      absl::StatusOr<size_t> n = engine.FeedCiphertext(AsBytes(raw.subspan(consumed)));
      if (!n.ok()) {
        FailTls(engine.HandshakeDone() ? "record" : "handshake");
        return raw.size();
      }
      fed = *n;
      consumed += fed;
    }
    if (state_ == State::kHandshaking && engine.HandshakeDone()) {
      // Records already received behind the handshake keep the engine (kTLS cannot take them).
      if (!TlsHandshakeSettled(/*input_behind_handshake=*/consumed < raw.size())) return consumed;
      TellTlsStarted();
      continue;  // the client may have acted; look again
    }
    size_t read = 0;
    if (state_ == State::kOpen && !receive_paused_ && client_ != nullptr && api_depth_ == 0) {
      tls_->plaintext.clear();
      absl::StatusOr<size_t> n = engine.ReadPlaintext(&tls_->plaintext);
      if (!n.ok()) {
        FailTls("record");
        return raw.size();
      }
      read = *n;
      if (read > 0) {
        totals_.bytes_received += read;
        client_->OnReceive(tls_->plaintext);
        continue;
      }
      tls_->input_parked = false;  // the engine holds no more plaintext
    } else if (state_ == State::kOpen) {
      tls_->input_parked = true;  // the engine may hold plaintext: read once the client resumes
    }
    if (engine.PeerClosed()) {  // close_notify: like FIN; anything after it is ignored
      peer_eof_ = true;
      return raw.size();
    }
    if (consumed == raw.size()) return consumed;
    if (fed == 0) {
      if (state_ == State::kOpen && receive_paused_) return consumed;  // held until resumed
      // Nothing moved: the engine's input bound holds a partial record larger than TLS allows.
      FailTls(engine.HandshakeDone() ? "record" : "handshake");
      return raw.size();
    }
  }
}

bool RingTransport::TlsHandshakeSettled(bool input_behind_handshake) {
  PH_DCHECK(state_ == State::kHandshaking && engine()->HandshakeDone());
  if (!env_.ktls.available || input_behind_handshake) {
    DecideTlsDataPath(input_behind_handshake);
    return true;
  }
  // The kernel takes the keys only from a quiescent engine: the handshake's last flight (session
  // tickets) goes out first, then the hand-off.
  if (engine()->PendingCiphertextBytes() > 0 || SocketSendBusy()) {
    PumpTls();
    return false;
  }
  DecideTlsDataPath(/*input_behind_handshake=*/false);
  return true;
}

void RingTransport::DecideTlsDataPath(bool input_behind_handshake) {
  static const KtlsCapability kRecordsBehind{
      .available = false,
      .error_number = 0,
      .reason = "not used: records arrived behind the handshake"};
  const KtlsCapability& capability =
      input_behind_handshake && env_.ktls.available ? kRecordsBehind : env_.ktls;
  TlsEngine& engine = *tls_->engine;
  std::string why;
  const TlsDataPath path = ChooseTlsDataPath(fd_, engine, capability, env_.tls_path_counters, &why);
  LogEvent(
      LogLevel::kDebug, "tls session",
      {{"peer", peer_.ip},
       {"version", std::string(engine.version_name())},
       {"cipher", std::string(engine.cipher_name())},
       {"sni", std::string(engine.server_name())},
       {"certificate", engine.certificate_name().empty() ? std::string("default")
                                                         : std::string(engine.certificate_name())},
       {"resumed", engine.resumed() ? "true" : "false"},
       {"path", std::string(TlsDataPathName(path))},
       {"why", why}});
  if (path == TlsDataPath::kKernelTls) {
    CountTlsSession(engine, env_.tls_counters);  // the engine's part ends here
    tls_mode_ = TlsMode::kKernel;
  } else {
    // The first record of a reply fits one segment of this path (TlsEngine::BeginReply).
    int segment = 0;
    socklen_t segment_len = sizeof(segment);
    if (getsockopt(fd_, IPPROTO_TCP, TCP_MAXSEG, &segment, &segment_len) == 0 && segment > 0) {
      engine.SetPathSegmentBytes(static_cast<size_t>(segment));
    }
  }
  if (state_ == State::kHandshaking) state_ = State::kOpen;
}

void RingTransport::TellTlsStarted() {
  if (tls_ == nullptr || tls_->started_told || state_ != State::kOpen || client_ == nullptr) {
    return;
  }
  tls_->started_told = true;
  const TlsEngine& engine = *tls_->engine;
  // The exporter reads the session's exporter secret, which BoringSSL keeps after a kTLS
  // hand-off too (the engine lives until the reset below).
  const std::string exporter = engine.TlsExporterChannelBinding();
  const TlsSessionInfo info{.version = engine.version_name(),
                            .cipher = engine.cipher_name(),
                            .server_name = engine.server_name(),
                            .resumed = engine.resumed(),
                            .kernel_tls = tls_mode_ == TlsMode::kKernel,
                            .tls_exporter = exporter,
                            .client_certificate_identity = engine.client_certificate_identity(),
                            .certificate_name = engine.certificate_name()};
  client_->OnTlsStarted(info);
  if (tls_mode_ == TlsMode::kKernel) tls_.reset();  // the kernel makes the records now
}

void RingTransport::PumpTls() {
  if (engine() == nullptr || tls_mode_ != TlsMode::kEngine) return;
  TlsEngine& engine = *tls_->engine;
  // STLS: the replies queued before it go out in plaintext first, handshake records after.
  if (!out_.empty() && out_.front().before_tls) return;
  // Sealing waits until the data path is settled: kTLS takes its keys from an engine that
  // has sealed nothing beyond the handshake.
  const bool may_seal = (state_ == State::kOpen || state_ == State::kClosing) &&
                        engine.HandshakeDone() && !engine.Failed() && !tls_->close_notify_queued;
  if (may_seal) {
    SealAndSend();
    return;
  }
  // Handshake flights, the alert after a failure and close_notify come out of the engine's own
  // buffer.
  if (engine.PendingCiphertextBytes() == 0 || SocketSendBusy() || state_ >= State::kEnding) {
    return;
  }
  engine.SwapCiphertext(&inflight_);
  SendBuffer(/*ciphertext=*/true, /*more=*/false);
}

void RingTransport::SealAndSend() {
  // The send buffer is the Sender's until its send completes.
  if (SocketSendBusy() || state_ >= State::kEnding) return;
  TlsState& tls = *tls_;
  TlsEngine& engine = *tls.engine;
  tls.send.Clear();
  for (;;) {
    if (tls.file.active()) {
      absl::StatusOr<size_t> n = engine.SealInto(
          std::span<const uint8_t>(tls.file.data + tls.file.done,
                                   static_cast<size_t>(tls.file.length - tls.file.done)),
          &tls.send);
      if (!n.ok()) {
        FailTls("record");
        return;
      }
      tls.file.done += *n;
      totals_.file_bytes_sent += *n;
      *env_.tls_body_bytes += *n;
      if (tls.file.done < tls.file.length) break;  // the send buffer is full: send first
      ++env_.send_stats->streams_ok;
      EndTlsFileSeal();
      continue;
    }
    if (!HasFlushedItem()) break;
    OutItem& front = out_.front();
    if (front.is_file) {
      const FileRange range = front.file;
      PopFront();
      if (!StartTlsFileSeal(range)) {
        EndNow(CloseReason::kResourceFailed);
        return;
      }
      continue;
    }
    if (tls.output_idle) {  // a reply after a pause: small first records for latency
      engine.BeginReply();
      tls.output_idle = false;
    }
    absl::StatusOr<size_t> n = engine.SealInto(front.bytes, &tls.send);
    if (!n.ok()) {
      FailTls("record");
      return;
    }
    totals_.reply_bytes_sent += *n;
    if (*n < front.bytes.size()) {
      front.bytes.erase(0, *n);
      break;
    }
    PopFront();
  }
  if (engine.PendingCiphertextBytes() > 0) {  // a KeyUpdate answer the engine owes
    absl::StatusOr<size_t> n = engine.SealInto(std::span<const uint8_t>(), &tls.send);
    if (!n.ok()) {
      FailTls("record");
      return;
    }
  }
  if (tls.send.empty()) {
    tls.output_idle = true;
    tls.send.Release();  // an idle connection holds no send buffer
    return;
  }
  inflight_ciphertext_ = true;
  tls.inflight_sealed = true;
  sender_.Send(fd_, tls.send.bytes(), /*zero_copy=*/false);
  WatchSendStall();
}

bool RingTransport::StartTlsFileSeal(const FileRange& range) {
  // The stored bytes are sealed from the page cache through this mapping: no plaintext copy.
  // The range is checked first: touching a mapping past the end of the file is SIGBUS.
  struct stat st;
  const char* failure = nullptr;
  if (fstat(range.fd, &st) != 0) {
    failure = strerror(errno);
  } else if (range.offset > static_cast<uint64_t>(st.st_size) ||
             range.length > static_cast<uint64_t>(st.st_size) - range.offset) {
    failure = "byte range beyond the end of the file";
  }
  void* map = MAP_FAILED;
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t aligned = range.offset & ~(page - 1);
  const size_t map_len = static_cast<size_t>(range.length + (range.offset - aligned));
  if (failure == nullptr) {
    map = mmap(nullptr, map_len, PROT_READ, MAP_SHARED, range.fd, static_cast<off_t>(aligned));
    if (map == MAP_FAILED) failure = strerror(errno);
  }
  if (failure != nullptr) {
    ++env_.send_stats->streams_failed;
    LogEvent(LogLevel::kError, "tls: cannot map the file",
             {{"peer", peer_.ip}, {"error", failure}});
    return false;
  }
  madvise(map, map_len, MADV_SEQUENTIAL);
  TlsFileSeal& file = tls_->file;
  file.map = map;
  file.map_len = map_len;
  file.data = static_cast<const uint8_t*>(map) + (range.offset - aligned);
  file.length = range.length;
  file.done = 0;
  return true;
}

void RingTransport::EndTlsFileSeal() {
  if (!TlsFileSealActive()) return;
  munmap(tls_->file.map, tls_->file.map_len);  // sealed records are copies: nothing points here
  tls_->file = TlsFileSeal{};
}

void RingTransport::QueueTlsCloseNotify() {
  tls_->close_notify_queued = true;
  (void)tls_->engine->Close();  // a failure shows in the engine's status; FIN follows either way
}

void RingTransport::FailTls(std::string_view stage) {
  if (state_ >= State::kEnding ||
      (state_ == State::kClosing && end_reason_ == CloseReason::kTlsFailed)) {
    return;
  }
  uint64_t suppressed = 0;
  if (env_.tls_error_log->Admit(reactor::MonotonicNowNs(), &suppressed)) {
    LogEvent(LogLevel::kInfo, "tls error, closing the connection",
             {{"peer", peer_.ip},
              {"stage", std::string(stage)},
              {"error", engine()->status().ToString()},
              {"earlier_lines_suppressed", std::to_string(suppressed)}});
  }
  if (streamer_ != nullptr && streamer_->busy()) {  // a plaintext body is on its way: stop now
    EndNow(CloseReason::kTlsFailed);
    return;
  }
  // Nothing queued goes out any more; the alert the engine queued does, then FIN.
  out_.clear();
  flushed_items_ = 0;
  drain_owed_ = false;
  EndTlsFileSeal();
  state_ = State::kClosing;
  end_reason_ = CloseReason::kTlsFailed;
  SyncReceiver();
  RequestAdvance();
}

void RingTransport::CountTlsEnd() {
  if (engine() != nullptr && tls_mode_ == TlsMode::kEngine) {
    CountTlsSession(*engine(), env_.tls_counters);
  }
  tls_.reset();
}

}  // namespace posthaste::server::transport
