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
  engine_ = env_.tls->NewEngine();
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
    size_t fed = 0;
    if (consumed < raw.size()) {
      absl::StatusOr<size_t> n = engine_->FeedCiphertext(AsBytes(raw.subspan(consumed)));
      if (!n.ok()) {
        FailTls(engine_->HandshakeDone() ? "record" : "handshake");
        return raw.size();
      }
      fed = *n;
      consumed += fed;
    }
    if (state_ == State::kHandshaking && engine_->HandshakeDone()) {
      // Records already received behind the handshake keep the engine (kTLS cannot take them).
      if (!TlsHandshakeSettled(/*input_behind_handshake=*/consumed < raw.size())) return consumed;
      TellTlsStarted();
      continue;  // the client may have acted; look again
    }
    size_t read = 0;
    if (state_ == State::kOpen && !receive_paused_ && client_ != nullptr && api_depth_ == 0) {
      tls_plaintext_.clear();
      absl::StatusOr<size_t> n = engine_->ReadPlaintext(&tls_plaintext_);
      if (!n.ok()) {
        FailTls("record");
        return raw.size();
      }
      read = *n;
      if (read > 0) {
        totals_.bytes_received += read;
        client_->OnReceive(tls_plaintext_);
        continue;
      }
      tls_input_parked_ = false;  // the engine holds no more plaintext
    } else if (state_ == State::kOpen) {
      tls_input_parked_ = true;  // the engine may hold plaintext: read once the client resumes
    }
    if (engine_->PeerClosed()) {  // close_notify: like FIN; anything after it is ignored
      peer_eof_ = true;
      return raw.size();
    }
    if (consumed == raw.size()) return consumed;
    if (fed == 0) {
      if (state_ == State::kOpen && receive_paused_) return consumed;  // held until resumed
      // Nothing moved: the engine's input bound holds a partial record larger than TLS allows.
      FailTls(engine_->HandshakeDone() ? "record" : "handshake");
      return raw.size();
    }
  }
}

bool RingTransport::TlsHandshakeSettled(bool input_behind_handshake) {
  PH_DCHECK(state_ == State::kHandshaking && engine_->HandshakeDone());
  if (!env_.ktls.available || input_behind_handshake) {
    DecideTlsDataPath(input_behind_handshake);
    return true;
  }
  // The kernel takes the keys only from a quiescent engine: the handshake's last flight (session
  // tickets) goes out first, then the hand-off.
  if (engine_->PendingCiphertextBytes() > 0 || SocketSendBusy()) {
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
  std::string why;
  const TlsDataPath path =
      ChooseTlsDataPath(fd_, *engine_, capability, env_.tls_path_counters, &why);
  LogEvent(LogLevel::kDebug, "tls session",
           {{"peer", peer_.ip},
            {"version", std::string(engine_->version_name())},
            {"cipher", std::string(engine_->cipher_name())},
            {"sni", std::string(engine_->server_name())},
            {"certificate", engine_->certificate_name().empty()
                                ? std::string("default")
                                : std::string(engine_->certificate_name())},
            {"resumed", engine_->resumed() ? "true" : "false"},
            {"path", std::string(TlsDataPathName(path))},
            {"why", why}});
  if (path == TlsDataPath::kKernelTls) {
    CountTlsSession(*engine_, env_.tls_counters);  // the engine's part ends here
    tls_mode_ = TlsMode::kKernel;
  } else {
    // The first record of a reply fits one segment of this path (TlsEngine::BeginReply).
    int segment = 0;
    socklen_t segment_len = sizeof(segment);
    if (getsockopt(fd_, IPPROTO_TCP, TCP_MAXSEG, &segment, &segment_len) == 0 && segment > 0) {
      engine_->SetPathSegmentBytes(static_cast<size_t>(segment));
    }
  }
  if (state_ == State::kHandshaking) state_ = State::kOpen;
}

void RingTransport::TellTlsStarted() {
  if (tls_started_told_ || state_ != State::kOpen || client_ == nullptr) return;
  tls_started_told_ = true;
  const TlsSessionInfo info{.version = engine_->version_name(),
                            .cipher = engine_->cipher_name(),
                            .server_name = engine_->server_name(),
                            .resumed = engine_->resumed(),
                            .kernel_tls = tls_mode_ == TlsMode::kKernel};
  client_->OnTlsStarted(info);
  if (tls_mode_ == TlsMode::kKernel) engine_.reset();  // the kernel makes the records now
}

void RingTransport::PumpTls() {
  if (engine_ == nullptr || tls_mode_ != TlsMode::kEngine) return;
  // STLS: the replies queued before it go out in plaintext first, handshake records after.
  if (!out_.empty() && out_.front().before_tls) return;
  // Sealing waits until the data path is settled: kTLS takes its keys from an engine that
  // has sealed nothing beyond the handshake.
  const bool may_seal = (state_ == State::kOpen || state_ == State::kClosing) &&
                        engine_->HandshakeDone() && !engine_->Failed() && !tls_close_notify_queued_;
  if (may_seal) {
    SealAndSend();
    return;
  }
  // Handshake flights, the alert after a failure and close_notify come out of the engine's own
  // buffer.
  if (engine_->PendingCiphertextBytes() == 0 || SocketSendBusy() || state_ >= State::kEnding) {
    return;
  }
  engine_->SwapCiphertext(&inflight_);
  SendBuffer(/*ciphertext=*/true, /*more=*/false);
}

void RingTransport::SealAndSend() {
  // The send buffer is the Sender's until its send completes.
  if (SocketSendBusy() || state_ >= State::kEnding) return;
  tls_send_.Clear();
  for (;;) {
    if (tls_file_.active()) {
      absl::StatusOr<size_t> n = engine_->SealInto(
          std::span<const uint8_t>(tls_file_.data + tls_file_.done,
                                   static_cast<size_t>(tls_file_.length - tls_file_.done)),
          &tls_send_);
      if (!n.ok()) {
        FailTls("record");
        return;
      }
      tls_file_.done += *n;
      totals_.file_bytes_sent += *n;
      *env_.tls_body_bytes += *n;
      if (tls_file_.done < tls_file_.length) break;  // the send buffer is full: send first
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
    if (tls_output_idle_) {  // a reply after a pause: small first records for latency
      engine_->BeginReply();
      tls_output_idle_ = false;
    }
    absl::StatusOr<size_t> n = engine_->SealInto(front.bytes, &tls_send_);
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
  if (engine_->PendingCiphertextBytes() > 0) {  // a KeyUpdate answer the engine owes
    absl::StatusOr<size_t> n = engine_->SealInto(std::span<const uint8_t>(), &tls_send_);
    if (!n.ok()) {
      FailTls("record");
      return;
    }
  }
  if (tls_send_.empty()) {
    tls_output_idle_ = true;
    tls_send_.Release();  // an idle connection holds no send buffer
    return;
  }
  inflight_ciphertext_ = true;
  inflight_sealed_ = true;
  sender_.Send(fd_, tls_send_.bytes(), /*zero_copy=*/false);
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
  tls_file_.map = map;
  tls_file_.map_len = map_len;
  tls_file_.data = static_cast<const uint8_t*>(map) + (range.offset - aligned);
  tls_file_.length = range.length;
  tls_file_.done = 0;
  return true;
}

void RingTransport::EndTlsFileSeal() {
  if (!tls_file_.active()) return;
  munmap(tls_file_.map, tls_file_.map_len);  // sealed records are copies: nothing points here
  tls_file_ = TlsFileSeal{};
}

void RingTransport::QueueTlsCloseNotify() {
  tls_close_notify_queued_ = true;
  (void)engine_->Close();  // a failure shows in the engine's status; FIN follows either way
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
              {"error", engine_->status().ToString()},
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
  if (engine_ != nullptr && tls_mode_ == TlsMode::kEngine) {
    CountTlsSession(*engine_, env_.tls_counters);
  }
  engine_.reset();
}

}  // namespace posthaste::server::transport
