// TlsEngine: the server side of one TLS connection as a sans-I/O record engine. Ciphertext from
// the network goes in through FeedCiphertext(); plaintext comes out of ReadPlaintext(); plaintext
// to send goes in through SealInto() (or the older EncryptFrom()/WritePlaintext(), whose
// ciphertext comes out of TakeCiphertext()). It never touches a socket: the driver moves the
// bytes (io_uring), exactly as it does for the POP3 session.
//
// Errors end only this engine: a failed handshake, a record that does not decrypt, or a peer
// alert makes every later call return the same Status (code says which: see TlsErrorKind), and
// the pending ciphertext (TakeCiphertext(), or SealInto() with no plaintext) still yields the
// alert queued, to send before closing.
//
// Sealing in place: once the handshake is done the engine seals application data itself with
// the traffic keys (TlsRecordSealer; BoringSSL keeps the handshake, reading, alerts and
// KeyUpdate). SealInto(plaintext, send buffer) writes each record's header, ciphertext and tag
// straight into the caller's send buffer, reading the plaintext once from the caller's memory
// (for RETR, the mapped segment): no intermediate copy, no allocation, as many records per call
// as the buffer holds, so one send carries many records. Record sizes follow the path: after
// BeginReply() the first record fits one TCP segment (SetPathSegmentBytes) and each next one
// may be as large as the reply so far, up to 16 KiB; bulk data goes in 16 KiB records.
// Records BoringSSL still writes after that point (an alert, a KeyUpdate answering the peer's)
// are sealed again by the engine under its own sequence numbers, in order.
//
// Threading: one engine belongs to one reactor thread; no method may be called concurrently.
// The engine keeps its TlsSnapshot (certificates, ticket keys) alive for its whole life, so a
// reload never disturbs a connection that already started.
#ifndef POSTHASTE_TLS_TLS_ENGINE_H_
#define POSTHASTE_TLS_TLS_ENGINE_H_

#include <openssl/base.h>
#if !defined(OPENSSL_IS_BORINGSSL)
#error "posthaste //tls needs BoringSSL headers first (-isystem /usr/include/android)"
#endif
#include <openssl/ssl.h>

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/counter_fields.h"
#include "tls/tls_context.h"
#include "tls/tls_record_sealer.h"

namespace posthaste {

// Why an engine failed; each maps to one canonical Status code.
enum class TlsErrorKind {
  kNone,
  kHandshake,    // Version, cipher, malformed handshake, peer alert: InvalidArgument.
  kRecord,       // Bad MAC, bad record framing after the handshake: DataLoss.
  kCertificate,  // No usable certificate for this connection: FailedPrecondition.
  kLimit,        // A buffer limit was exceeded by the peer: ResourceExhausted.
  kInternal,     // Allocation or library failure: Internal.
};

// Keys for kernel TLS, in the shape of linux/tls.h's tls12_crypto_info_aes_gcm_{128,256}.
struct KernelTlsDirection {
  std::vector<uint8_t> key;  // 16 or 32 bytes.
  std::array<uint8_t, 4> salt{};
  std::array<uint8_t, 8> iv{};
  std::array<uint8_t, 8> rec_seq{};
};
struct KernelTlsKeys {
  uint16_t version = 0;   // TLS1_2_VERSION or TLS1_3_VERSION.
  uint16_t cipher = 0;    // linux TLS_CIPHER_AES_GCM_128 or TLS_CIPHER_AES_GCM_256.
  KernelTlsDirection tx;  // Server to client.
  KernelTlsDirection rx;  // Client to server.
};

class TlsSendBuffer;

class TlsEngine {
 public:
  // Record-sized piece for EncryptFrom (TLS's maximum plaintext per record).
  static constexpr size_t kRecordPlaintextBytes = 16384;
  // The most a record adds to its plaintext (TLS 1.2 AES-GCM: header, explicit nonce, tag).
  static constexpr size_t kMaxRecordOverheadBytes = 29;
  // A TlsSendBuffer's default capacity: 64 full records (1 MiB of plaintext) per send. Fewer,
  // larger sends cost the server less per byte (tools/bench/tls_throughput: about a fifth less
  // CPU per byte than 16 records per send on a busy machine, and no gain beyond 64).
  static constexpr size_t kSendBufferBytes = 64 * (kRecordPlaintextBytes + kMaxRecordOverheadBytes);
  // TCP segment size assumed for the first record of a reply until SetPathSegmentBytes.
  static constexpr size_t kDefaultSegmentBytes = 1448;
  // SealInto does not start a record cut short by the end of the buffer below this size.
  static constexpr size_t kMinPartialRecordBytes = 4096;
  // Unprocessed ciphertext the engine holds before FeedCiphertext accepts less than offered.
  static constexpr size_t kCiphertextInMax = 2 * (16384 + 2048);
  // EncryptFrom stops producing records when this much ciphertext waits to be taken.
  static constexpr size_t kCiphertextOutMax = 256 * 1024;

  // Use TlsContextSet::NewEngine(). `snapshot` must not be null.
  explicit TlsEngine(std::shared_ptr<const TlsSnapshot> snapshot);
  ~TlsEngine();
  TlsEngine(const TlsEngine&) = delete;
  TlsEngine& operator=(const TlsEngine&) = delete;

  // Takes ciphertext from the peer and advances the handshake. Returns how many bytes were
  // accepted (fewer than offered when kCiphertextInMax unprocessed bytes are held: read
  // plaintext, then offer the rest again). After a failure returns the engine's error.
  absl::StatusOr<size_t> FeedCiphertext(std::span<const uint8_t> bytes);
  absl::StatusOr<size_t> FeedCiphertext(std::string_view bytes) {
    return FeedCiphertext(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  }

  // Decrypts available records and appends up to `max_bytes` of plaintext to *out. Returns the
  // number of bytes appended; 0 means more ciphertext is needed, or the peer closed (see
  // PeerClosed()).
  absl::StatusOr<size_t> ReadPlaintext(std::string* out, size_t max_bytes = 64 * 1024);

  // Encrypts plaintext from `plaintext` in records of at most NextRecordPlaintextBytes() into
  // the engine's own output buffer, until all of it is consumed or kCiphertextOutMax ciphertext
  // is waiting. Returns the number of plaintext bytes consumed; call again with the rest after
  // taking the ciphertext. `plaintext` need only live for the call. Requires HandshakeDone().
  // SealInto does the same without the output buffer (one copy less per record).
  absl::StatusOr<size_t> EncryptFrom(std::span<const uint8_t> plaintext);
  // EncryptFrom for reply text; same contract.
  absl::StatusOr<size_t> WritePlaintext(std::string_view plaintext) {
    return EncryptFrom(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(plaintext.data()),
                                                plaintext.size()));
  }

  struct SealResult {
    size_t plaintext_bytes = 0;   // Consumed from the plaintext span.
    size_t ciphertext_bytes = 0;  // Written to the front of `out`.
  };
  // Writes into `out`: first any ciphertext the engine holds (handshake, tickets, alerts,
  // EncryptFrom output), then application-data records sealed in place from `plaintext`, as
  // many as fit, each sized by the record schedule (see the file comment). Stops when
  // `plaintext` is consumed or `out` is full (a record cut short by the end of `out` is started
  // only if it carries at least kMinPartialRecordBytes, or if nothing else went into `out`, so
  // any `out` longer than the overhead makes progress). Returns how much was consumed and
  // written; call again with the rest once `out` has been sent. An empty `plaintext` only moves
  // the held ciphertext. `plaintext` and `out` must not overlap and need only live for the call.
  // Requires HandshakeDone() (and no Close() for non-empty plaintext; that error moves nothing).
  absl::StatusOr<SealResult> SealInto(std::span<const uint8_t> plaintext, std::span<uint8_t> out);
  // The same into the free tail of `buffer` (allocated at kSendBufferBytes if it has no
  // capacity yet); returns the plaintext bytes consumed.
  absl::StatusOr<size_t> SealInto(std::span<const uint8_t> plaintext, TlsSendBuffer* buffer);
  absl::StatusOr<size_t> SealInto(std::string_view text, TlsSendBuffer* buffer) {
    return SealInto(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()),
        buffer);
  }

  // The next plaintext starts a reply (output had gone idle): its first record fits one TCP
  // segment and later ones grow with the reply up to 16 KiB, so the peer can start on the reply
  // after one segment instead of waiting for a 16 KiB record. Without it records are 16 KiB.
  void BeginReply();
  // The path's TCP segment payload (getsockopt TCP_MAXSEG); 0 keeps kDefaultSegmentBytes.
  void SetPathSegmentBytes(size_t bytes);
  // The largest plaintext the next record may carry under the record schedule.
  size_t NextRecordPlaintextBytes() const;
  // True once application data is sealed by the engine itself (see the file comment); false
  // before the handshake ends (or for a cipher the engine does not seal, when SSL_write does).
  bool SealsInPlace() const { return sealer_ != nullptr; }

  // Queues close_notify. Idempotent. Take and send the ciphertext afterwards.
  absl::Status Close();

  // Ciphertext waiting to be sent. TakeCiphertext hands over the buffer (the caller owns it
  // until its send completes); the engine starts a fresh one.
  size_t PendingCiphertextBytes() const { return out_.size(); }
  std::string TakeCiphertext();
  // Same, recycling the caller's buffer: *buffer is cleared (capacity kept) and swapped in as
  // the engine's next output buffer, so steady-state sending allocates nothing.
  void SwapCiphertext(std::string* buffer);

  bool HandshakeDone() const { return handshake_done_; }
  bool PeerClosed() const { return peer_closed_; }
  bool Failed() const { return !status_.ok(); }
  const absl::Status& status() const { return status_; }
  TlsErrorKind error_kind() const { return error_kind_; }

  // Negotiated parameters; valid once HandshakeDone().
  uint16_t version() const;               // TLS1_2_VERSION or TLS1_3_VERSION.
  std::string_view version_name() const;  // "TLSv1.3".
  std::string_view cipher_name() const;   // Standard name, "TLS_AES_128_GCM_SHA256".
  std::string_view server_name() const { return server_name_; }     // SNI as sent; may be empty.
  std::string_view certificate_name() const { return cert_name_; }  // "" for the default.
  // The client certificate's identity when the chosen name has a client CA
  // (tls_context.h) and the certificate the client sent verified against it: its first
  // subjectAltName email address, else its subject CN (UTF-8). Empty otherwise: no client
  // CA, no certificate, a certificate that did not verify, or an identity with a NUL. The
  // caller decides which accounts that CA may speak for (certificate_name() names it).
  std::string_view client_certificate_identity() const { return client_identity_; }
  bool resumed() const;
  // RFC 9266 tls-exporter channel binding: 32 bytes exported with the label
  // "EXPORTER-Channel-Binding" and no context. Empty unless the session is TLS 1.3 (the
  // binding is unsafe over TLS 1.2 without extended master secret) or when export fails.
  // Requires HandshakeDone(); call before the keys go to the kernel.
  std::string TlsExporterChannelBinding() const;

  // Plaintext bytes sealed into records by this engine.
  uint64_t plaintext_bytes_encrypted() const { return plaintext_bytes_encrypted_; }

  // Traffic keys and sequence numbers for kernel TLS (AES-GCM-128/256, TLS 1.2 or 1.3 only).
  // Requires HandshakeDone(), no ciphertext waiting in either direction, and no decrypted
  // plaintext held; otherwise FailedPrecondition. Unimplemented for CHACHA20 (the kernel
  // interface here is only filled for AES-GCM). After handing these to the kernel, this engine
  // must not be used for records again.
  absl::StatusOr<KernelTlsKeys> ExportKernelTlsKeys() const;

  const TlsSnapshot& snapshot() const { return *snapshot_; }

  // BIO and BoringSSL callbacks reach the engine through these.
  static TlsEngine* FromSsl(const SSL* ssl);
  int BioRead(uint8_t* out, int len);
  int BioWrite(const uint8_t* in, int len);
  void OnCertificateSelected(const TlsCertEntry& entry, std::string_view server_name);

 private:
  void DriveHandshake();
  static std::string VerifiedClientIdentity(const SSL* ssl);
  void StartSealing();
  // Seals one record of `type` carrying `content` onto the end of out_.
  bool AppendRecord(uint8_t type, std::span<const uint8_t> content);
  // Opens the whole records BoringSSL wrote since sealing started and seals them again.
  void ResealLibraryRecords();
  // Lets BoringSSL write what it owes the peer (a KeyUpdate answer) through the BIO.
  void FlushLibraryWrites();
  void CountSealed(size_t plaintext_bytes);
  void Fail(TlsErrorKind kind, std::string_view what, int ssl_error);

  std::shared_ptr<const TlsSnapshot> snapshot_;
  bssl::UniquePtr<SSL> ssl_;
  std::string in_;        // Ciphertext received, not yet read by BoringSSL.
  size_t in_offset_ = 0;  // Bytes of in_ already read.
  std::string out_;       // Ciphertext produced, not yet taken.
  std::string server_name_;
  std::string cert_name_;
  std::string client_identity_;
  bool handshake_done_ = false;
  bool peer_closed_ = false;
  bool close_sent_ = false;
  absl::Status status_;
  TlsErrorKind error_kind_ = TlsErrorKind::kNone;
  uint64_t plaintext_bytes_encrypted_ = 0;
  // Sealing in place (null before the handshake ends).
  std::unique_ptr<TlsRecordSealer> sealer_;
  std::string library_out_;        // BoringSSL's records not yet re-sealed (a partial one).
  uint64_t library_sequence_ = 0;  // The sequence number BoringSSL gave its next record.
  // The record schedule.
  size_t segment_bytes_ = kDefaultSegmentBytes;
  bool reply_ramp_ = false;  // BeginReply() and records still below 16 KiB.
  size_t reply_bytes_ = 0;   // Plaintext sealed since BeginReply().
};

// A send buffer for sealed records: allocated once at a fixed capacity, never zero-filled, and
// reused for every send (SealInto writes into its free tail). Owned by the driver; its bytes
// must stay untouched while a send of them is in flight.
class TlsSendBuffer {
 public:
  TlsSendBuffer() = default;
  // Holds at least `capacity` bytes. REQUIRES: empty() (contents are not kept).
  void Reserve(size_t capacity);
  // Frees the memory (an idle connection holds none). REQUIRES: empty().
  void Release();
  void Clear() { size_ = 0; }
  std::span<uint8_t> free_space() { return {data_.get() + size_, capacity_ - size_}; }
  void Commit(size_t bytes);
  std::span<const char> bytes() const {
    return {reinterpret_cast<const char*>(data_.get()), size_};
  }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  bool empty() const { return size_ == 0; }

 private:
  std::unique_ptr<uint8_t[]> data_;
  size_t capacity_ = 0;
  size_t size_ = 0;
};

// Per-shard tallies of finished sessions (plain integers: one shard, one writer; summed at
// scrape time). Kernel/userspace path counts live in TlsPathCounters (ktls.h).
// X(member, what it counts).
#define PH_TLS_COUNTERS(X)                                           \
  X(sessions, "engines counted (one per connection that began TLS)") \
  X(handshakes_completed, "of which the handshake finished")         \
  X(handshakes_resumed, "of which the session was resumed")          \
  X(handshake_errors, "ended by TlsErrorKind::kHandshake")           \
  X(record_errors, "ended by TlsErrorKind::kRecord")                 \
  X(certificate_errors, "ended by TlsErrorKind::kCertificate")       \
  X(limit_errors, "ended by TlsErrorKind::kLimit")                   \
  X(internal_errors, "ended by TlsErrorKind::kInternal")             \
  X(plaintext_bytes_encrypted, "plaintext bytes the engine sealed")
struct TlsCounters {
  PH_TLS_COUNTERS(PH_COUNTER_MEMBER)
};

// Adds one session's outcome to *counters. Call once per engine, when the connection ends.
void CountTlsSession(const TlsEngine& engine, TlsCounters* counters);

}  // namespace posthaste

#endif  // POSTHASTE_TLS_TLS_ENGINE_H_
