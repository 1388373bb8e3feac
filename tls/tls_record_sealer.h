// TlsRecordSealer: the server's write side of an established TLS 1.2 or 1.3 connection, sealing
// records with the traffic keys directly (EVP_AEAD), so that TlsEngine can write a record's
// header, ciphertext and tag straight into a caller's send buffer from the caller's plaintext
// (a mapped message) in one pass. BoringSSL's SSL_write seals into a buffer of its own and
// hands it to the BIO, which costs a copy and an allocation per record.
//
// Once a sealer exists it owns the write sequence number: BoringSSL's own counter stops
// advancing, so every later record from the server must come through Seal(). Records BoringSSL
// still produces itself (an alert after a bad record, a TLS 1.3 KeyUpdate answering the peer's)
// carry BoringSSL's stale sequence number; Open() reads them back (TlsEngine tracks that number)
// so they can be sealed again under the right one, and RotateAfterKeyUpdate() follows a KeyUpdate
// the way RFC 8446 section 7.2 derives the next secret.
//
// Record formats: TLS 1.3 (RFC 8446 5.2): outer type application_data, inner content type after
// the content, nonce = IV xor sequence, additional data = the record header. TLS 1.2 AES-GCM
// (RFC 5288): 8-byte explicit nonce (the sequence number, as BoringSSL writes it) after the
// header, nonce = implicit salt || explicit part. TLS 1.2 ChaCha20-Poly1305 (RFC 7905): nonce =
// IV xor sequence, no explicit part. TLS 1.2 additional data = sequence || type || version ||
// plaintext length (RFC 5246 6.2.3.3).
//
// Threading: owned by one TlsEngine; not thread-safe. Key material is wiped on destruction.
#ifndef POSTHASTE_TLS_TLS_RECORD_SEALER_H_
#define POSTHASTE_TLS_TLS_RECORD_SEALER_H_

#include <openssl/base.h>
#if !defined(OPENSSL_IS_BORINGSSL)
#error "posthaste //tls needs BoringSSL headers first (-isystem /usr/include/android)"
#endif
#include <openssl/aead.h>
#include <openssl/ssl.h>

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace posthaste {

// TLS content types (RFC 8446 B.1).
inline constexpr uint8_t kTlsContentAlert = 21;
inline constexpr uint8_t kTlsContentHandshake = 22;
inline constexpr uint8_t kTlsContentApplicationData = 23;
inline constexpr size_t kTlsRecordHeaderBytes = 5;
inline constexpr size_t kTlsMaxPlaintextBytes = 16384;

// RFC 8446 7.1 HKDF-Expand-Label with an empty context: `out_len` bytes into `out`.
bool Tls13ExpandLabel(const EVP_MD* digest, std::span<const uint8_t> secret, std::string_view label,
                      uint8_t* out, size_t out_len);

class TlsRecordSealer {
 public:
  // The server's write keys and next write sequence number from `ssl`, whose handshake has
  // finished and whose write buffer is empty. Null (not an error) for ciphers other than
  // AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305 or versions other than TLS 1.2 and 1.3: such a
  // session keeps BoringSSL's own record layer.
  static absl::StatusOr<std::unique_ptr<TlsRecordSealer>> FromSsl(const SSL* ssl);
  ~TlsRecordSealer();
  TlsRecordSealer(const TlsRecordSealer&) = delete;
  TlsRecordSealer& operator=(const TlsRecordSealer&) = delete;

  // Bytes a record adds to its plaintext: 22 (TLS 1.3), 29 (TLS 1.2 AES-GCM), 21 (TLS 1.2
  // ChaCha20-Poly1305).
  size_t overhead() const { return overhead_; }
  uint16_t version() const { return version_; }
  // The sequence number the next sealed record gets.
  uint64_t sequence() const { return sequence_; }

  // Seals one record of content type `type` carrying `plaintext` (at most
  // kTlsMaxPlaintextBytes) into out[0, plaintext.size() + overhead()). `out` must not overlap
  // `plaintext`. Returns false (and seals nothing) when the sequence number is exhausted or the
  // AEAD fails; the connection must then end without sending more records.
  bool Seal(uint8_t type, std::span<const uint8_t> plaintext, uint8_t* out);

  // Opens one whole record that was sealed under the current keys at sequence `sequence` (by
  // BoringSSL, see above). Sets *type to the (inner) content type and *plaintext to the
  // content. False when the record is malformed or does not authenticate.
  bool Open(std::span<const uint8_t> record, uint64_t sequence, uint8_t* type,
            std::string* plaintext) const;

  // TLS 1.3 only: moves to the next write traffic secret after a KeyUpdate left in a record
  // sealed under the current one (RFC 8446 7.2), and restarts the sequence at 0.
  bool RotateAfterKeyUpdate();

  // For kernel TLS (AES-GCM only): the write key, the 4-byte salt and 8-byte IV in linux/tls.h's
  // layout for this version.
  const std::vector<uint8_t>& key() const { return key_; }
  std::array<uint8_t, 4> kernel_salt() const;
  std::array<uint8_t, 8> kernel_iv() const;

 private:
  TlsRecordSealer() = default;
  bool InstallKey();
  bool InstallTls13Secret();
  void Nonce(uint64_t sequence, uint8_t nonce[12]) const;

  uint16_t version_ = 0;
  int cipher_nid_ = 0;
  const EVP_AEAD* aead_ = nullptr;
  const EVP_MD* prf_ = nullptr;  // TLS 1.3: the hash of HKDF-Expand-Label.
  std::vector<uint8_t> secret_;  // TLS 1.3: the current write traffic secret.
  std::vector<uint8_t> key_;
  std::array<uint8_t, 12> iv_{};  // TLS 1.3 and ChaCha: the nonce mask; TLS 1.2 GCM: salt (4).
  size_t overhead_ = 0;
  uint64_t sequence_ = 0;
  bssl::ScopedEVP_AEAD_CTX ctx_;
};

}  // namespace posthaste

#endif  // POSTHASTE_TLS_TLS_RECORD_SEALER_H_
