// TlsEngine: the server side of one TLS connection as a sans-I/O record engine. Ciphertext from
// the network goes in through FeedCiphertext(); ciphertext to send comes out of
// TakeCiphertext(); plaintext goes in through WritePlaintext()/EncryptFrom() and out through
// ReadPlaintext(). It never touches a socket: the driver moves the bytes (io_uring), exactly as
// it does for the POP3 session.
//
// Errors end only this engine: a failed handshake, a record that does not decrypt, or a peer
// alert makes every later call return the same Status (code says which: see TlsErrorKind), and
// TakeCiphertext() still yields the alert BoringSSL queued, to send before closing.
//
// Zero-copy encryption: EncryptFrom(span) passes pointers into the caller's memory (for RETR,
// the mapped segment) straight to SSL_write in record-sized pieces (16 KiB); BoringSSL seals
// each piece into its record buffer (the one pass over the plaintext), and the sealed record is
// appended to the engine's output buffer. No plaintext copy is made before encryption.
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

class TlsEngine {
 public:
  // Record-sized piece for EncryptFrom (TLS's maximum plaintext per record).
  static constexpr size_t kRecordPlaintextBytes = 16384;
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

  // Encrypts plaintext from `plaintext` directly (no intermediate copy) in records of at most
  // kRecordPlaintextBytes, until all of it is consumed or kCiphertextOutMax ciphertext is
  // waiting. Returns the number of plaintext bytes consumed; call again with the rest after
  // taking the ciphertext. `plaintext` need only live for the call. Requires HandshakeDone().
  absl::StatusOr<size_t> EncryptFrom(std::span<const uint8_t> plaintext);
  // EncryptFrom for reply text; same contract.
  absl::StatusOr<size_t> WritePlaintext(std::string_view plaintext) {
    return EncryptFrom(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(plaintext.data()),
                                                plaintext.size()));
  }

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
  bool resumed() const;

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
  void Fail(TlsErrorKind kind, std::string_view what, int ssl_error);

  std::shared_ptr<const TlsSnapshot> snapshot_;
  bssl::UniquePtr<SSL> ssl_;
  std::string in_;        // Ciphertext received, not yet read by BoringSSL.
  size_t in_offset_ = 0;  // Bytes of in_ already read.
  std::string out_;       // Ciphertext produced, not yet taken.
  std::string server_name_;
  std::string cert_name_;
  bool handshake_done_ = false;
  bool peer_closed_ = false;
  bool close_sent_ = false;
  absl::Status status_;
  TlsErrorKind error_kind_ = TlsErrorKind::kNone;
  uint64_t plaintext_bytes_encrypted_ = 0;
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
