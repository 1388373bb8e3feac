// Transport: what a protocol adapter (POP3, LMTP) sees of its connection, and TransportClient:
// what the connection tells the adapter. The transport moves bytes; the adapter and its sans-I/O
// session decide everything else (what to answer, when to close, every reply text).
//
// The transport owns the socket, receiving, the send paths (copy, splice, SEND_ZC), the TLS
// engine and the kernel-TLS hand-off, the MSG_MORE-coalescing output queue, the send-stall
// watch, one protocol deadline and the close lifecycle. Its implementations:
//   RingTransport   (server/transport/ring_transport.h) on a shard's io_uring;
//   FakeTransport   (server/transport/testing/fake_transport.h) for adapter unit tests.
//
// Contract:
//  - Output is queued in order by Send() and SendFile() and goes out when Flush() is called
//    (an adapter queues a whole batch of replies, then flushes once, so a reply line and the
//    body after it can share a TCP segment).
//  - TransportClient callbacks are never made from inside a Transport call: an adapter's own
//    call never re-enters it. After OnClosed() no further callback comes.
//  - Close() and Abort() may be called at any time and more than once; the connection ends in
//    OnClosed() once every kernel operation on it has completed; only then may the adapter
//    destroy the transport.
//
// Threading: one shard thread. Ownership: the adapter owns its Transport; the transport
// holds a non-owning pointer to its client, bound by Start().
#ifndef POSTHASTE_SERVER_TRANSPORT_TRANSPORT_H_
#define POSTHASTE_SERVER_TRANSPORT_TRANSPORT_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace posthaste::server::transport {

// The remote end of a connection, as seen at accept.
struct PeerInfo {
  std::string ip;  // text form: the key of the per-IP limits and the logs
  uint8_t addr16[16] = {};  // IPv6 or v4-mapped
  bool loopback = false;
  bool trusted = false;  // in --trusted_networks: exempt from per-IP limits
  // The immediate peer is a proxy in --proxy_networks (server/transport/proxy_header_reader.h):
  // the fields above are the client's from its PROXY header, proxy_ip is the proxy's.
  bool via_trusted_proxy = false;
  std::string proxy_ip;
};

// A stored byte range to send as it is (a RETR or TOP body in wire form).
struct FileRange {
  int fd = -1;
  uint64_t offset = 0;
  uint64_t length = 0;
};

// What the transport learnt from a finished TLS handshake.
struct TlsSessionInfo {
  std::string_view version;      // "TLSv1.3"
  std::string_view cipher;
  std::string_view server_name;  // SNI, empty when none was sent
  bool resumed = false;
  bool kernel_tls = false;       // the record layer went to the kernel
  // RFC 9266 tls-exporter channel binding (32 bytes; TLS 1.3 only, else empty), for SASL
  // -PLUS mechanisms. Valid during OnTlsStarted only.
  std::string_view tls_exporter;
  // The verified client certificate's identity for SASL EXTERNAL (TlsEngine::
  // client_certificate_identity(): a subjectAltName email, else the CN); empty when none.
  std::string_view client_certificate_identity;
  std::string_view certificate_name;  // the server certificate chosen (whose CA verified it)
};

// Why a connection ended (told once, in OnClosed).
enum class CloseReason : uint8_t {
  kClosed,        // Close() finished: output flushed, FIN sent
  kAborted,       // Abort() by the adapter
  kPeerReset,     // a receive or send failed (reset, broken pipe)
  kSendStalled,   // the peer acknowledged nothing for --send_stall_timeout_s
  kTlsFailed,     // handshake or record error (the alert was sent when possible)
  kResourceFailed // a send path could not start (no pipe, no mapping) and no fallback worked
};
std::string_view CloseReasonName(CloseReason reason);

// Bytes a connection carried, read by the adapter in OnClosed for its session log line.
struct TransportTotals {
  uint64_t bytes_received = 0;   // plaintext handed to OnReceive
  uint64_t reply_bytes_sent = 0; // Send() bytes the socket (or TLS engine) took
  uint64_t file_bytes_sent = 0;  // SendFile() bytes the socket (or TLS engine) took
};

class TransportClient {
 public:
  virtual ~TransportClient() = default;
  // Plaintext from the peer (decrypted when TLS is on). `bytes` is valid during the call only.
  virtual void OnReceive(std::string_view bytes) = 0;
  // The peer finished sending (FIN, or TLS close_notify). The connection stays open for the
  // adapter's answers until it closes.
  virtual void OnPeerFinished() = 0;
  // Everything queued has been taken by the kernel (or, with TLS, sealed and taken): the
  // adapter may tell its session its output is flushed. Comes once per Flush() that had output.
  virtual void OnOutputDrained() = 0;
  // StartTls()'s handshake finished; plaintext now flows through TLS.
  virtual void OnTlsStarted(const TlsSessionInfo& info) = 0;
  // The deadline set by SetDeadline() has passed.
  virtual void OnDeadline() = 0;
  // The connection has ended and no kernel operation on it is left. Last callback.
  virtual void OnClosed(CloseReason reason) = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;

  // Binds the client and starts receiving (for implicit TLS, the handshake first).
  virtual void Start(TransportClient* client) = 0;

  // Output, in order.
  virtual void Send(std::string_view bytes) = 0;
  virtual void SendFile(const FileRange& range) = 0;
  // Starts sending what is queued (no-op when busy: the rest follows by itself).
  virtual void Flush() = 0;
  // True while anything is queued, being sent, or held unsent by the TLS engine.
  virtual bool OutputPending() const = 0;

  // Input back-pressure: no OnReceive while paused (the adapter's session wants no more).
  virtual void PauseReceive() = 0;
  virtual void ResumeReceive() = 0;

  // STLS: what is queued now still goes out in plaintext; the peer's next bytes are a TLS
  // handshake; OnTlsStarted follows. REQUIRES: tls_available() and !tls_active().
  virtual void StartTls() = 0;
  virtual bool tls_available() const = 0;  // a certificate is configured for this listener
  virtual bool tls_active() const = 0;     // TLS started (or implicit), handshake or done

  // One protocol deadline (monotonic ns; 0 clears it). OnDeadline when it passes.
  virtual void SetDeadline(uint64_t deadline_ns) = 0;
  // The monotonic clock deadlines are measured on (the fake's is set by the test).
  virtual uint64_t NowNs() const = 0;

  // Graceful end: flush what is queued (then close_notify with TLS), FIN, and OnClosed(kClosed)
  // once every operation has completed. Receiving stops at once.
  virtual void Close() = 0;
  // Ends now: queued output is dropped, RST. OnClosed(kAborted) follows.
  virtual void Abort() = 0;

  virtual const PeerInfo& peer() const = 0;
  virtual const TransportTotals& totals() const = 0;
};

}  // namespace posthaste::server::transport

#endif  // POSTHASTE_SERVER_TRANSPORT_TRANSPORT_H_
