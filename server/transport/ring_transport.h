// RingTransport: the Transport (server/transport/transport.h) on a reactor shard's io_uring, and
// TransportEnv, what a shard gives each of its connections.
//
// What it does with the kernel:
//   receive   one multishot receive into the shard's provided buffer ring (reactor::Receiver);
//             each chunk is handed on (or copied aside while receiving is paused) and its buffer
//             released at once;
//   output    an ordered queue of Send() bytes and SendFile() ranges, sent one item at a time:
//             bytes by one reactor::Sender, a file by a reactor::FileStreamer (splice, SEND_ZC or
//             copy, chosen by TransportEnv's send-path policy, with the copying path as the
//             fallback when a pipe or mapping cannot be had). A reply line before a file goes
//             with MSG_MORE so it shares the body's first segment, and a file's last bytes go
//             with MSG_MORE when more output follows (the POP3 terminator);
//   TLS       a TlsEngine between the socket and the client: implicit from the first byte, or
//             after StartTls() (what was queued before still goes out in plaintext; ciphertext
//             that already arrived goes to the engine). After the handshake the keys go to the
//             kernel when it has kTLS and nothing arrived behind the handshake (the connection
//             then runs as a plain one, splice and all); otherwise the engine stays: replies
//             and files (mapped, sealed straight from the mapping) are sealed in place into one
//             reused send buffer, up to 64 records per send (TlsEngine::SealInto), the first
//             records of a reply sized to one TCP segment. A handshake or record error
//             sends the engine's alert and ends the connection with kTlsFailed; the log lines
//             for such errors are rate-limited per shard (TlsErrorLogLimiter);
//   timers    one ring timer serves the protocol deadline (SetDeadline) and the send-stall watch
//             (tcp_progress.h: the socket's TCP_INFO sampled while output waits on the peer; no
//             byte acknowledged for TransportEnv::send_stall_timeout_ns ends it, kSendStalled);
//   closing   Close(): receiving stops, queued output is flushed, close_notify (TLS), FIN.
//             Abort() and every failure: RST (SO_LINGER 0), which also releases pages a SEND_ZC
//             still pins. OnClosed comes once every ring operation has completed; the socket is
//             closed then.
//
// The connection's state is one enum (State) plus the TLS mode (TlsMode); the legal moves are
// listed beside them in ring_transport.cc. TransportClient callbacks are made only from ring
// completions, timers and deferred closures (Ring::Defer), never from inside a Transport method;
// OnClosed always comes from a deferred closure, so the client may destroy the transport there.
//
// Threading: the owning shard's thread only. Ownership: the adapter owns its RingTransport; the
// transport owns the socket fd (from construction) and closes it. TransportEnv and everything it
// points at belong to the shard and outlive its transports.
#ifndef POSTHASTE_SERVER_TRANSPORT_RING_TRANSPORT_H_
#define POSTHASTE_SERVER_TRANSPORT_RING_TRANSPORT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "server/reactor/buffer_ring.h"
#include "server/reactor/net.h"
#include "server/reactor/ring.h"
#include "server/reactor/send.h"
#include "server/reactor/timer.h"
#include "server/transport/tcp_progress.h"
#include "server/transport/transport.h"
#include "tls/ktls.h"
#include "tls/tls_context.h"
#include "tls/tls_engine.h"

namespace posthaste::server::transport {

// At most kLinesPerSecond TLS error lines per second per shard: a scanner can fail thousands of
// handshakes a second. The rest are counted and their number given in the next line logged.
// One per shard; its thread only.
class TlsErrorLogLimiter {
 public:
  static constexpr uint32_t kLinesPerSecond = 20;
  // True when a line may be logged at now_ns; *suppressed_before then gets how many lines were
  // held back since the last one logged (and that count restarts).
  bool Admit(uint64_t now_ns, uint64_t* suppressed_before);

 private:
  uint64_t second_ = 0;
  uint32_t lines_this_second_ = 0;
  uint64_t suppressed_ = 0;
};

// What a shard gives its connections. The shard owns one per listener kind; every transport
// keeps a reference to it, so it and everything it points at must outlive them. Counters are
// the shard's own (plain integers, one writer).
struct TransportEnv {
  reactor::Ring* ring = nullptr;
  reactor::BufferRing* buffers = nullptr;
  reactor::SendStats* send_stats = nullptr;

  // The path of a SendFile body: forced, or (nullopt) chosen by size with
  // reactor::ChooseSendPath(length, send_path_policy).
  std::optional<reactor::SendPath> send_path;
  reactor::SendPathPolicy send_path_policy;
  // No byte acknowledged by the peer for this long while output waits ends the connection
  // (kSendStalled). Must be > 0.
  uint64_t send_stall_timeout_ns = 120'000'000'000;

  // TLS; `tls` is null when the listener has no certificate (then no StartTls, no implicit
  // TLS, and the other TLS members are unused). Otherwise every pointer below must be set.
  TlsShardContexts* tls = nullptr;
  KtlsCapability ktls;                           // probed once at start-up
  TlsCounters* tls_counters = nullptr;           // finished sessions (CountTlsSession)
  TlsPathCounters* tls_path_counters = nullptr;  // kernel or userspace record layer
  uint64_t* tls_body_bytes = nullptr;            // SendFile bytes sealed from the mapping
  uint64_t* tls_stls_started = nullptr;          // StartTls() calls that began a handshake
  TlsErrorLogLimiter* tls_error_log = nullptr;
};

class RingTransport final : public Transport {
 public:
  // The connection's life; see the moves in ring_transport.cc.
  enum class State : uint8_t {
    kNew,          // constructed; Start() not called yet (output may be queued)
    kHandshaking,  // a TLS handshake runs: input feeds the engine, nothing reaches the client
    kOpen,         // bytes flow both ways
    kClosing,      // Close() (or a TLS failure's alert): receiving stopped, output draining
    kEnding,       // FIN or RST done; waiting for every ring operation to complete
    kClosed,       // OnClosed told; nothing left in flight
  };
  // Who makes TLS records.
  enum class TlsMode : uint8_t {
    kNone,    // plaintext connection (or STLS not started)
    kEngine,  // the userspace TlsEngine
    kKernel,  // kTLS: the socket seals and opens records itself
  };

  // Takes ownership of the connected, non-blocking socket `fd`. implicit_tls: TLS from the first
  // byte (pop3s); REQUIRES env.tls != nullptr then.
  RingTransport(const TransportEnv& env, int fd, PeerInfo peer, bool implicit_tls);
  // REQUIRES: OnClosed was told, or Start() was never called. Closes the socket if still open.
  ~RingTransport() override;
  RingTransport(const RingTransport&) = delete;
  RingTransport& operator=(const RingTransport&) = delete;

  // ---- Transport ----
  void Start(TransportClient* client) override;
  void Send(std::string_view bytes) override;
  void SendFile(const FileRange& range) override;
  void Flush() override;
  bool OutputPending() const override;
  void PauseReceive() override;
  void ResumeReceive() override;
  void StartTls() override;
  bool tls_available() const override { return env_.tls != nullptr; }
  bool tls_active() const override { return tls_mode_ != TlsMode::kNone; }
  void SetDeadline(uint64_t deadline_ns) override;
  uint64_t NowNs() const override { return reactor::MonotonicNowNs(); }
  void Close() override;
  void Abort() override;
  const PeerInfo& peer() const override { return peer_; }
  const TransportTotals& totals() const override { return totals_; }

  State state() const { return state_; }
  TlsMode tls_mode() const { return tls_mode_; }

 private:
  // One queued output item.
  struct OutItem {
    bool is_file = false;
    // Queued before TLS started: goes out as plaintext even once the engine runs (STLS's +OK).
    bool before_tls = false;
    std::string bytes;
    FileRange file;
  };
  // A SendFile body being sealed by the engine from its mapping.
  struct TlsFileSeal {
    void* map = nullptr;
    size_t map_len = 0;
    const uint8_t* data = nullptr;
    uint64_t length = 0;
    uint64_t done = 0;
    bool active() const { return map != nullptr; }
  };
  // The userspace TLS engine and what only it uses. Made by StartEngine; freed when the kernel
  // takes the records (TellTlsStarted) or the connection ends.
  struct TlsState {
    std::unique_ptr<TlsEngine> engine;
    std::string plaintext;  // read from the engine, handed to OnReceive
    TlsFileSeal file;
    // Records sealed in place (TlsEngine::SealInto) and sent in one send; untouched while that
    // send is in flight, released when output goes idle.
    TlsSendBuffer send;
    bool input_parked = false;     // records fed while paused may hold plaintext
    bool inflight_sealed = false;  // the Sender is sending `send` (not inflight_)
    bool output_idle = true;       // nothing sealed since the last reply went out (BeginReply)
    bool started_told = false;
    bool close_notify_queued = false;
  };
  // Marks a public method's extent: a completion that runs synchronously inside it (the
  // reactor does that in a few cases) defers its effects instead of calling the client.
  class ApiScope {
   public:
    explicit ApiScope(RingTransport* t) : t_(t) { ++t_->api_depth_; }
    ~ApiScope() { --t_->api_depth_; }

   private:
    RingTransport* t_;
  };

  // ---- Moving forward (ring_transport.cc) ----
  void Advance(bool may_finish);
  void RequestAdvance();
  void RunDeferred();
  void TellPeerFinished();
  void TellOutputDrained();
  void ProgressClose();
  void Finish();
  bool OperationsInFlight() const;

  // ---- Input ----
  bool ClientTakesInput() const;
  bool WantReceive() const;
  void SyncReceiver();
  void OnRecvData(uint16_t buffer_id, std::span<const char> data);
  void OnRecvEnd(absl::Status status);
  size_t ConsumeInput(std::span<const char> raw);
  void ConsumeHeldInput();

  // ---- Output ----
  bool HasFlushedItem() const { return flushed_items_ > 0; }
  bool ItemUsesEngine(const OutItem& item) const;
  void PopFront();
  void PumpOutput();
  void StartPlainSend();
  void StartFileStream(const FileRange& range, bool more_follows);
  reactor::SendPath ChoosePath(uint64_t length) const;
  void SendBuffer(bool ciphertext, bool more);
  bool SocketSendBusy() const;
  bool FlushedOutputIdle() const;
  bool OutputIdle() const;
  void OnSendDone(absl::Status status, uint64_t bytes);
  void OnStreamDone(absl::Status status, uint64_t bytes);

  // ---- Timers ----
  void WatchSendStall();
  void ArmTimer();
  void OnTimer();

  // ---- Endings ----
  void EndNow(CloseReason reason);

  // ---- TLS: the engine-driving code, all in ring_transport_tls.cc ----
  // The engine, or null (plaintext, or the kernel makes the records).
  TlsEngine* engine() const { return tls_ != nullptr ? tls_->engine.get() : nullptr; }
  bool TlsFileSealActive() const { return tls_ != nullptr && tls_->file.active(); }
  bool TlsInputParked() const { return tls_ != nullptr && tls_->input_parked; }
  bool InflightSealed() const { return tls_ != nullptr && tls_->inflight_sealed; }
  void StartEngine();
  size_t ConsumeTlsInput(std::span<const char> raw);
  bool TlsHandshakeSettled(bool input_behind_handshake = false);
  void DecideTlsDataPath(bool input_behind_handshake);
  void TellTlsStarted();
  void PumpTls();
  void SealAndSend();  // after the handshake: seal queued output in place, send it
  bool StartTlsFileSeal(const FileRange& range);
  void EndTlsFileSeal();
  void QueueTlsCloseNotify();
  void FailTls(std::string_view stage);
  void CountTlsEnd();

  const TransportEnv& env_;
  int fd_;
  const PeerInfo peer_;
  TransportClient* client_ = nullptr;
  State state_ = State::kNew;
  TlsMode tls_mode_ = TlsMode::kNone;
  const bool implicit_tls_;
  CloseReason end_reason_ = CloseReason::kClosed;  // what OnClosed will say (kClosing on)
  TransportTotals totals_;
  int api_depth_ = 0;
  bool advance_scheduled_ = false;  // a RunDeferred closure is queued on the ring
  bool advancing_ = false;          // inside Advance

  // Input.
  reactor::Receiver receiver_;
  bool receive_paused_ = false;    // by the client
  bool in_recv_callback_ = false;  // inside OnRecvData: the Receiver must not be re-armed
  bool recv_stopping_ = false;     // Stop() asked, OnRecvEnd not yet come
  bool peer_eof_ = false;          // FIN or close_notify seen
  bool peer_finished_told_ = false;
  std::string held_input_;  // received bytes not yet consumed (paused, or the engine was full)

  // Output. Items [0, flushed_items_) were flushed and may go out.
  std::vector<OutItem> out_;  // usually 0-3 items; allocates nothing while empty
  size_t flushed_items_ = 0;
  bool drain_owed_ = false;  // a Flush had output not yet reported by OnOutputDrained
  std::string inflight_;     // the bytes the Sender is sending (plaintext or ciphertext)
  bool inflight_ciphertext_ = false;
  reactor::Sender sender_;
  std::unique_ptr<reactor::FileStreamer> streamer_;  // made at the first plain SendFile

  // Timers: the deadline and the stall watch share timer_.
  reactor::Timer timer_;
  uint64_t deadline_ns_ = 0;
  SendStallWatch send_stall_;

  // TLS: null on a plaintext connection (most of them), and again once the kernel makes the
  // records, so those carry none of the engine's state (docs/BENCHMARKS.md, memory per idle
  // session).
  std::unique_ptr<TlsState> tls_;
};

// The factory adapters use; same contract as the constructor.
std::unique_ptr<Transport> MakeRingTransport(const TransportEnv& env, int fd, PeerInfo peer,
                                             bool implicit_tls);

}  // namespace posthaste::server::transport

#endif  // POSTHASTE_SERVER_TRANSPORT_RING_TRANSPORT_H_
