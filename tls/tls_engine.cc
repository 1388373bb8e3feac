#include "tls/tls_engine.h"

#include <linux/tls.h>
#include <openssl/bio.h>
#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/hkdf.h>
#include <openssl/mem.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/strings.h"

namespace posthaste {
namespace {

int EngineExIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// A BIO whose reads come from the engine's input buffer and whose writes append to its output
// buffer. Never blocks: an empty input is a retryable read, a write always succeeds.
int EngineBioRead(BIO* bio, char* out, int len) {
  BIO_clear_retry_flags(bio);
  auto* engine = static_cast<TlsEngine*>(BIO_get_data(bio));
  int n = engine->BioRead(reinterpret_cast<uint8_t*>(out), len);
  if (n == 0) {
    BIO_set_retry_read(bio);
    return -1;
  }
  return n;
}

int EngineBioWrite(BIO* bio, const char* in, int len) {
  BIO_clear_retry_flags(bio);
  auto* engine = static_cast<TlsEngine*>(BIO_get_data(bio));
  return engine->BioWrite(reinterpret_cast<const uint8_t*>(in), len);
}

long EngineBioCtrl(BIO* bio, int cmd, long larg, void* parg) {
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

const BIO_METHOD* EngineBioMethod() {
  static const BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_TYPE_SOURCE_SINK | BIO_get_new_index(), "posthaste-tls");
    PH_CHECK(m != nullptr);
    BIO_meth_set_read(m, EngineBioRead);
    BIO_meth_set_write(m, EngineBioWrite);
    BIO_meth_set_ctrl(m, EngineBioCtrl);
    return m;
  }();
  return method;
}

std::string ErrorReason() {
  uint32_t error = ERR_peek_last_error();
  std::string reason;
  if (error == 0) {
    reason = "no library error";
  } else {
    const char* text = ERR_reason_error_string(error);
    reason = text != nullptr ? text : absl::StrCat("error ", error);
  }
  ERR_clear_error();
  return reason;
}

// RFC 8446 7.1 HKDF-Expand-Label with an empty context.
bool ExpandLabel(const EVP_MD* digest, bssl::Span<const uint8_t> secret, std::string_view label,
                 uint8_t* out, size_t out_len) {
  std::string info;
  info.push_back(static_cast<char>(out_len >> 8));
  info.push_back(static_cast<char>(out_len & 0xff));
  std::string full_label = absl::StrCat("tls13 ", AbslView(label));
  info.push_back(static_cast<char>(full_label.size()));
  info += full_label;
  info.push_back(0);
  return HKDF_expand(out, out_len, digest, secret.data(), secret.size(),
                     reinterpret_cast<const uint8_t*>(info.data()), info.size()) == 1;
}

std::array<uint8_t, 8> BigEndian64(uint64_t v) {
  std::array<uint8_t, 8> out;
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<uint8_t>(v & 0xff);
    v >>= 8;
  }
  return out;
}

}  // namespace

TlsEngine::TlsEngine(std::shared_ptr<const TlsSnapshot> snapshot) : snapshot_(std::move(snapshot)) {
  PH_CHECK(snapshot_ != nullptr && snapshot_->default_cert != nullptr);
  ssl_.reset(SSL_new(snapshot_->default_cert->ctx.get()));
  BIO* bio = ssl_ != nullptr ? BIO_new(EngineBioMethod()) : nullptr;
  if (bio == nullptr) {
    Fail(TlsErrorKind::kInternal, "cannot create TLS connection state", 0);
    return;
  }
  BIO_set_data(bio, this);
  BIO_set_init(bio, 1);
  SSL_set_bio(ssl_.get(), bio, bio);  // Takes the one reference for both directions.
  SSL_set_ex_data(ssl_.get(), EngineExIndex(), this);
  SSL_set_accept_state(ssl_.get());
}

TlsEngine::~TlsEngine() = default;

TlsEngine* TlsEngine::FromSsl(const SSL* ssl) {
  return static_cast<TlsEngine*>(SSL_get_ex_data(ssl, EngineExIndex()));
}

int TlsEngine::BioRead(uint8_t* out, int len) {
  size_t available = in_.size() - in_offset_;
  size_t n = std::min(available, static_cast<size_t>(std::max(len, 0)));
  std::memcpy(out, in_.data() + in_offset_, n);
  in_offset_ += n;
  if (in_offset_ == in_.size()) {
    in_.clear();
    in_offset_ = 0;
  }
  return static_cast<int>(n);
}

int TlsEngine::BioWrite(const uint8_t* in, int len) {
  out_.append(reinterpret_cast<const char*>(in), static_cast<size_t>(std::max(len, 0)));
  return len;
}

void TlsEngine::OnCertificateSelected(const TlsCertEntry& entry, std::string_view server_name) {
  server_name_ = std::string(server_name.substr(0, 255));
  cert_name_ = entry.name;
}

void TlsEngine::Fail(TlsErrorKind kind, std::string_view what, int ssl_error) {
  if (!status_.ok()) return;
  error_kind_ = kind;
  std::string reason = ErrorReason();
  if (ssl_error == SSL_ERROR_SYSCALL) reason = "transport error";
  std::string message = absl::StrCat(AbslView(what), ": ", reason);
  switch (kind) {
    case TlsErrorKind::kHandshake:
      status_ = absl::InvalidArgumentError(message);
      break;
    case TlsErrorKind::kRecord:
      status_ = absl::DataLossError(message);
      break;
    case TlsErrorKind::kCertificate:
      status_ = absl::FailedPreconditionError(message);
      break;
    case TlsErrorKind::kLimit:
      status_ = absl::ResourceExhaustedError(message);
      break;
    case TlsErrorKind::kInternal:
    case TlsErrorKind::kNone:
      status_ = absl::InternalError(message);
      break;
  }
}

void TlsEngine::DriveHandshake() {
  if (handshake_done_ || !status_.ok()) return;
  ERR_clear_error();
  int rc = SSL_do_handshake(ssl_.get());
  if (rc == 1) {
    handshake_done_ = true;
    // BoringSSL holds TLS 1.3 NewSessionTicket messages until the first write; a zero-length
    // write seals them now, so they go out with the handshake and are never stranded by a
    // kernel TLS hand-off before the first reply.
    ERR_clear_error();
    if (SSL_write(ssl_.get(), "", 0) < 0) ERR_clear_error();
    return;
  }
  int error = SSL_get_error(ssl_.get(), rc);
  if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) return;
  uint32_t lib_error = ERR_peek_last_error();
  bool certificate = ERR_GET_LIB(lib_error) == ERR_LIB_SSL &&
                     (ERR_GET_REASON(lib_error) == SSL_R_CERT_CB_ERROR ||
                      ERR_GET_REASON(lib_error) == SSL_R_MISSING_RSA_CERTIFICATE ||
                      ERR_GET_REASON(lib_error) == SSL_R_ECC_CERT_NOT_FOR_SIGNING);
  Fail(certificate ? TlsErrorKind::kCertificate : TlsErrorKind::kHandshake, "tls handshake failed",
       error);
}

absl::StatusOr<size_t> TlsEngine::FeedCiphertext(std::span<const uint8_t> bytes) {
  if (!status_.ok()) return status_;
  size_t held = in_.size() - in_offset_;
  if (held >= kCiphertextInMax) return 0;
  size_t accepted = std::min(bytes.size(), kCiphertextInMax - held);
  if (in_offset_ > 0 && in_offset_ >= in_.size() / 2) {
    in_.erase(0, in_offset_);
    in_offset_ = 0;
  }
  in_.append(reinterpret_cast<const char*>(bytes.data()), accepted);
  DriveHandshake();
  if (!status_.ok()) return status_;
  return accepted;
}

absl::StatusOr<size_t> TlsEngine::ReadPlaintext(std::string* out, size_t max_bytes) {
  if (!status_.ok()) return status_;
  DriveHandshake();
  if (!status_.ok()) return status_;
  if (!handshake_done_ || peer_closed_) return 0;
  size_t total = 0;
  while (total < max_bytes) {
    size_t want = std::min<size_t>(max_bytes - total, kRecordPlaintextBytes);
    size_t old_size = out->size();
    out->resize(old_size + want);
    ERR_clear_error();
    int rc = SSL_read(ssl_.get(), out->data() + old_size, static_cast<int>(want));
    if (rc > 0) {
      out->resize(old_size + static_cast<size_t>(rc));
      total += static_cast<size_t>(rc);
      continue;
    }
    out->resize(old_size);
    int error = SSL_get_error(ssl_.get(), rc);
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) break;
    if (error == SSL_ERROR_ZERO_RETURN) {
      peer_closed_ = true;
      break;
    }
    Fail(TlsErrorKind::kRecord, "tls record rejected", error);
    return status_;
  }
  return total;
}

absl::StatusOr<size_t> TlsEngine::EncryptFrom(std::span<const uint8_t> plaintext) {
  if (!status_.ok()) return status_;
  if (!handshake_done_) return absl::FailedPreconditionError("tls handshake not finished");
  if (close_sent_) return absl::FailedPreconditionError("tls close_notify already sent");
  size_t consumed = 0;
  while (consumed < plaintext.size() && out_.size() < kCiphertextOutMax) {
    size_t piece = std::min(plaintext.size() - consumed, kRecordPlaintextBytes);
    ERR_clear_error();
    // SSL_write seals straight from the caller's memory into BoringSSL's record buffer.
    int rc = SSL_write(ssl_.get(), plaintext.data() + consumed, static_cast<int>(piece));
    if (rc <= 0) {
      Fail(TlsErrorKind::kRecord, "tls write failed", SSL_get_error(ssl_.get(), rc));
      return status_;
    }
    consumed += static_cast<size_t>(rc);
    plaintext_bytes_encrypted_ += static_cast<uint64_t>(rc);
  }
  return consumed;
}

absl::Status TlsEngine::Close() {
  if (!status_.ok()) return status_;
  if (close_sent_) return absl::OkStatus();
  close_sent_ = true;
  if (!handshake_done_) return absl::OkStatus();  // Nothing to protect; just drop.
  ERR_clear_error();
  int rc = SSL_shutdown(ssl_.get());
  if (rc < 0) {
    int error = SSL_get_error(ssl_.get(), rc);
    if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) {
      Fail(TlsErrorKind::kRecord, "tls close failed", error);
      return status_;
    }
  }
  return absl::OkStatus();
}

std::string TlsEngine::TakeCiphertext() {
  std::string taken = std::move(out_);
  out_.clear();
  return taken;
}

void TlsEngine::SwapCiphertext(std::string* buffer) {
  buffer->clear();
  out_.swap(*buffer);
}

uint16_t TlsEngine::version() const { return static_cast<uint16_t>(SSL_version(ssl_.get())); }

std::string_view TlsEngine::version_name() const { return SSL_get_version(ssl_.get()); }

std::string_view TlsEngine::cipher_name() const {
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_.get());
  return cipher != nullptr ? SSL_CIPHER_standard_name(cipher) : "";
}

bool TlsEngine::resumed() const { return SSL_session_reused(ssl_.get()) == 1; }

absl::StatusOr<KernelTlsKeys> TlsEngine::ExportKernelTlsKeys() const {
  if (!status_.ok()) return status_;
  if (!handshake_done_) return absl::FailedPreconditionError("tls handshake not finished");
  if (!out_.empty()) return absl::FailedPreconditionError("ciphertext still waiting to be sent");
  if (in_.size() != in_offset_ || SSL_pending(ssl_.get()) > 0) {
    return absl::FailedPreconditionError("received data not yet read");
  }
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl_.get());
  if (cipher == nullptr) return absl::FailedPreconditionError("no cipher negotiated");
  KernelTlsKeys keys;
  size_t key_len = 0;
  switch (SSL_CIPHER_get_cipher_nid(cipher)) {
    case NID_aes_128_gcm:
      key_len = 16;
      keys.cipher = TLS_CIPHER_AES_GCM_128;
      break;
    case NID_aes_256_gcm:
      key_len = 32;
      keys.cipher = TLS_CIPHER_AES_GCM_256;
      break;
    default:
      return absl::UnimplementedError(
          absl::StrCat("kernel tls not offered for ", SSL_CIPHER_standard_name(cipher)));
  }
  keys.version = version();
  keys.tx.rec_seq = BigEndian64(SSL_get_write_sequence(ssl_.get()));
  keys.rx.rec_seq = BigEndian64(SSL_get_read_sequence(ssl_.get()));
  keys.tx.key.resize(key_len);
  keys.rx.key.resize(key_len);
  if (keys.version == TLS1_3_VERSION) {
    bssl::Span<const uint8_t> read_secret, write_secret;
    if (!bssl::SSL_get_traffic_secrets(ssl_.get(), &read_secret, &write_secret)) {
      return absl::InternalError("traffic secrets unavailable");
    }
    const EVP_MD* digest = EVP_get_digestbynid(SSL_CIPHER_get_prf_nid(cipher));
    if (digest == nullptr) return absl::InternalError("unknown PRF digest");
    auto derive = [&](bssl::Span<const uint8_t> secret, KernelTlsDirection* dir) {
      uint8_t iv[12];
      if (!ExpandLabel(digest, secret, "key", dir->key.data(), dir->key.size()) ||
          !ExpandLabel(digest, secret, "iv", iv, sizeof(iv))) {
        return false;
      }
      std::memcpy(dir->salt.data(), iv, 4);
      std::memcpy(dir->iv.data(), iv + 4, 8);
      OPENSSL_cleanse(iv, sizeof(iv));
      return true;
    };
    if (!derive(write_secret, &keys.tx) || !derive(read_secret, &keys.rx)) {
      return absl::InternalError("HKDF-Expand-Label failed");
    }
    return keys;
  }
  if (keys.version != TLS1_2_VERSION) {
    return absl::FailedPreconditionError("kernel tls needs TLS 1.2 or 1.3");
  }
  // TLS 1.2 AEAD key block (RFC 5246 6.3, no MAC keys): client key, server key, client
  // implicit IV (4), server implicit IV (4).
  size_t block_len = SSL_get_key_block_len(ssl_.get());
  if (block_len != 2 * key_len + 8) return absl::InternalError("unexpected key block length");
  std::vector<uint8_t> block(block_len);
  if (!SSL_generate_key_block(ssl_.get(), block.data(), block.size())) {
    return absl::InternalError("key block unavailable");
  }
  std::memcpy(keys.rx.key.data(), block.data(), key_len);
  std::memcpy(keys.tx.key.data(), block.data() + key_len, key_len);
  std::memcpy(keys.rx.salt.data(), block.data() + 2 * key_len, 4);
  std::memcpy(keys.tx.salt.data(), block.data() + 2 * key_len + 4, 4);
  OPENSSL_cleanse(block.data(), block.size());
  // The explicit nonce continues from the sequence number, as BoringSSL itself does.
  keys.tx.iv = keys.tx.rec_seq;
  keys.rx.iv = keys.rx.rec_seq;
  return keys;
}

void CountTlsSession(const TlsEngine& engine, TlsCounters* counters) {
  ++counters->sessions;
  if (engine.HandshakeDone()) {
    ++counters->handshakes_completed;
    if (engine.resumed()) ++counters->handshakes_resumed;
  }
  counters->plaintext_bytes_encrypted += engine.plaintext_bytes_encrypted();
  switch (engine.error_kind()) {
    case TlsErrorKind::kNone:
      break;
    case TlsErrorKind::kHandshake:
      ++counters->handshake_errors;
      break;
    case TlsErrorKind::kRecord:
      ++counters->record_errors;
      break;
    case TlsErrorKind::kCertificate:
      ++counters->certificate_errors;
      break;
    case TlsErrorKind::kLimit:
      ++counters->limit_errors;
      break;
    case TlsErrorKind::kInternal:
      ++counters->internal_errors;
      break;
  }
}

}  // namespace posthaste
