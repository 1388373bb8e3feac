#include "tls/tls_engine.h"

#include <linux/tls.h>
#include <openssl/bio.h>
#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/hkdf.h>
#include <openssl/mem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <span>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/status_macros.h"
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

// True when a TLS 1.3 handshake record's content holds a KeyUpdate message (type 24): the
// sender's write keys change after that record (RFC 8446 4.6.3).
bool ContainsKeyUpdate(std::string_view content) {
  size_t pos = 0;
  while (pos + 4 <= content.size()) {
    const auto* m = reinterpret_cast<const uint8_t*>(content.data() + pos);
    if (m[0] == 24) return true;
    pos += 4 + ((size_t{m[1]} << 16) | (size_t{m[2]} << 8) | m[3]);
  }
  return false;
}

std::array<uint8_t, 8> BigEndian64(uint64_t v) {
  std::array<uint8_t, 8> out;
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<uint8_t>(v & 0xff);
    v >>= 8;
  }
  return out;
}

// The engine's own write state for kernel TLS: the sealer owns the sequence once it exists.
void CopySealerKeys(const TlsRecordSealer& sealer, KernelTlsDirection* tx) {
  OPENSSL_cleanse(tx->key.data(), tx->key.size());
  tx->key = sealer.key();
  tx->salt = sealer.kernel_salt();
  tx->iv = sealer.kernel_iv();
  tx->rec_seq = BigEndian64(sealer.sequence());
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
  if (sealer_ == nullptr) {
    out_.append(reinterpret_cast<const char*>(in), static_cast<size_t>(std::max(len, 0)));
    return len;
  }
  // BoringSSL sealed these with its own, stale, sequence numbers: never send them as they are.
  library_out_.append(reinterpret_cast<const char*>(in), static_cast<size_t>(std::max(len, 0)));
  ResealLibraryRecords();
  return len;
}

void TlsEngine::ResealLibraryRecords() {
  size_t pos = 0;
  std::string content;
  while (status_.ok() && library_out_.size() - pos >= kTlsRecordHeaderBytes) {
    const auto* header = reinterpret_cast<const uint8_t*>(library_out_.data() + pos);
    const size_t record_len = kTlsRecordHeaderBytes + ((size_t{header[3]} << 8) | header[4]);
    if (library_out_.size() - pos < record_len) break;  // The rest comes in the next write.
    uint8_t type = 0;
    const bool opened = sealer_->Open(std::span<const uint8_t>(header, record_len),
                                      library_sequence_++, &type, &content);
    pos += record_len;
    if (!opened || content.size() > kTlsMaxPlaintextBytes) {
      Fail(TlsErrorKind::kInternal, "cannot re-seal a record from the TLS library", 0);
      break;
    }
    if (close_sent_) continue;  // Nothing may follow close_notify.
    const bool key_update = sealer_->version() == TLS1_3_VERSION && type == kTlsContentHandshake &&
                            ContainsKeyUpdate(content);
    if (!AppendRecord(type,
                      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(content.data()),
                                               content.size()))) {
      break;
    }
    if (key_update) {
      // BoringSSL moved to the next write secret right after sealing this record; so do we.
      if (!sealer_->RotateAfterKeyUpdate()) {
        Fail(TlsErrorKind::kInternal, "tls key update failed", 0);
        break;
      }
      library_sequence_ = 0;
    }
  }
  library_out_.erase(0, pos);
}

bool TlsEngine::AppendRecord(uint8_t type, std::span<const uint8_t> content) {
  const size_t old_size = out_.size();
  out_.resize(old_size + content.size() + sealer_->overhead());
  if (!sealer_->Seal(type, content, reinterpret_cast<uint8_t*>(out_.data() + old_size))) {
    out_.resize(old_size);
    Fail(TlsErrorKind::kInternal, "tls record sealing failed", 0);
    return false;
  }
  return true;
}

void TlsEngine::FlushLibraryWrites() {
  if (sealer_ == nullptr || close_sent_ || !status_.ok()) return;
  // A zero-length write sends nothing of its own but flushes BoringSSL's pending handshake
  // messages (the KeyUpdate it owes after the peer's) through the BIO, where they are re-sealed.
  ERR_clear_error();
  if (SSL_write(ssl_.get(), "", 0) < 0) ERR_clear_error();
}

void TlsEngine::StartSealing() {
  absl::StatusOr<std::unique_ptr<TlsRecordSealer>> sealer = TlsRecordSealer::FromSsl(ssl_.get());
  if (!sealer.ok()) {
    const absl::string_view message = sealer.status().message();
    Fail(TlsErrorKind::kInternal, std::string_view(message.data(), message.size()), 0);
    return;
  }
  // A cipher the sealer does not know keeps SSL_write (all of ours are known).
  if (*sealer == nullptr) return;
  sealer_ = *std::move(sealer);
  library_sequence_ = sealer_->sequence();
}

void TlsEngine::BeginReply() {
  reply_ramp_ = true;
  reply_bytes_ = 0;
}

void TlsEngine::SetPathSegmentBytes(size_t bytes) {
  segment_bytes_ = bytes == 0 ? kDefaultSegmentBytes : bytes;
}

size_t TlsEngine::NextRecordPlaintextBytes() const {
  if (!reply_ramp_) return kRecordPlaintextBytes;
  const size_t overhead = sealer_ != nullptr ? sealer_->overhead() : kMaxRecordOverheadBytes;
  // The first record fills one segment (at least 512 bytes on an odd path); each next one may
  // be as large as the reply so far, so sizes double up to the maximum.
  const size_t first = segment_bytes_ > overhead + 512 ? segment_bytes_ - overhead : 512;
  return std::min(std::max(first, reply_bytes_), kRecordPlaintextBytes);
}

void TlsEngine::CountSealed(size_t plaintext_bytes) {
  plaintext_bytes_encrypted_ += plaintext_bytes;
  if (reply_ramp_) {
    reply_bytes_ += plaintext_bytes;
    if (reply_bytes_ >= kRecordPlaintextBytes) reply_ramp_ = false;
  }
}

namespace {

std::string Asn1Text(const ASN1_STRING* text) {
  if (text == nullptr) return {};
  std::string out(reinterpret_cast<const char*>(ASN1_STRING_get0_data(text)),
                  static_cast<size_t>(ASN1_STRING_length(text)));
  return out.find('\0') == std::string::npos ? out : std::string();
}

}  // namespace

std::string TlsEngine::VerifiedClientIdentity(const SSL* ssl) {
  if (SSL_get_verify_mode(ssl) == SSL_VERIFY_NONE) return {};
  if (SSL_get_verify_result(ssl) != X509_V_OK) return {};
  bssl::UniquePtr<X509> peer(SSL_get_peer_certificate(ssl));
  if (peer == nullptr) return {};
  bssl::UniquePtr<GENERAL_NAMES> names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(peer.get(), NID_subject_alt_name, nullptr, nullptr)));
  if (names != nullptr) {
    for (size_t i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
      const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
      if (name->type == GEN_EMAIL) return Asn1Text(name->d.rfc822Name);
    }
  }
  X509_NAME* subject = X509_get_subject_name(peer.get());
  const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0) return {};
  ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
  uint8_t* utf8 = nullptr;
  const int length = ASN1_STRING_to_UTF8(&utf8, cn);
  if (length < 0) return {};
  std::string out(reinterpret_cast<const char*>(utf8), static_cast<size_t>(length));
  OPENSSL_free(utf8);
  return out.find('\0') == std::string::npos ? out : std::string();
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
    client_identity_ = VerifiedClientIdentity(ssl_.get());
    // BoringSSL holds TLS 1.3 NewSessionTicket messages until the first write; a zero-length
    // write seals them now, so they go out with the handshake and are never stranded by a
    // kernel TLS hand-off before the first reply.
    ERR_clear_error();
    if (SSL_write(ssl_.get(), "", 0) < 0) ERR_clear_error();
    StartSealing();
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

namespace {

// One record's plaintext, per thread. SSL_read decrypts into it and ReadPlaintext appends what
// came: a caller's buffer grows by what was read (a POP3 command: a few dozen bytes) instead of
// by a zero-filled record per read, and a connection keeps no record-sized buffer of its own.
std::span<char> RecordScratch() {
  thread_local std::unique_ptr<char[]> scratch(new char[TlsEngine::kRecordPlaintextBytes]);
  return {scratch.get(), TlsEngine::kRecordPlaintextBytes};
}

}  // namespace

absl::StatusOr<size_t> TlsEngine::ReadPlaintext(std::string* out, size_t max_bytes) {
  if (!status_.ok()) return status_;
  DriveHandshake();
  if (!status_.ok()) return status_;
  if (!handshake_done_ || peer_closed_) return 0;
  std::span<char> scratch = RecordScratch();
  size_t total = 0;
  while (total < max_bytes) {
    size_t want = std::min(max_bytes - total, scratch.size());
    ERR_clear_error();
    int rc = SSL_read(ssl_.get(), scratch.data(), static_cast<int>(want));
    if (rc > 0) {
      out->append(scratch.data(), static_cast<size_t>(rc));
      OPENSSL_cleanse(scratch.data(), static_cast<size_t>(rc));  // it may hold a PASS line
      total += static_cast<size_t>(rc);
      continue;
    }
    int error = SSL_get_error(ssl_.get(), rc);
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) break;
    if (error == SSL_ERROR_ZERO_RETURN) {
      peer_closed_ = true;
      break;
    }
    Fail(TlsErrorKind::kRecord, "tls record rejected", error);
    return status_;
  }
  FlushLibraryWrites();
  if (!status_.ok()) return status_;
  return total;
}

absl::StatusOr<size_t> TlsEngine::EncryptFrom(std::span<const uint8_t> plaintext) {
  if (!status_.ok()) return status_;
  if (!handshake_done_) return absl::FailedPreconditionError("tls handshake not finished");
  if (close_sent_) return absl::FailedPreconditionError("tls close_notify already sent");
  size_t consumed = 0;
  while (consumed < plaintext.size() && out_.size() < kCiphertextOutMax) {
    size_t piece = std::min(plaintext.size() - consumed, NextRecordPlaintextBytes());
    if (sealer_ != nullptr) {
      if (!AppendRecord(kTlsContentApplicationData, plaintext.subspan(consumed, piece))) {
        return status_;
      }
    } else {
      ERR_clear_error();
      // SSL_write seals straight from the caller's memory into BoringSSL's record buffer.
      int rc = SSL_write(ssl_.get(), plaintext.data() + consumed, static_cast<int>(piece));
      if (rc <= 0) {
        Fail(TlsErrorKind::kRecord, "tls write failed", SSL_get_error(ssl_.get(), rc));
        return status_;
      }
      piece = static_cast<size_t>(rc);
    }
    consumed += piece;
    CountSealed(piece);
  }
  return consumed;
}

absl::StatusOr<TlsEngine::SealResult> TlsEngine::SealInto(std::span<const uint8_t> plaintext,
                                                          std::span<uint8_t> out) {
  if (!status_.ok()) return status_;
  if (!handshake_done_) return absl::FailedPreconditionError("tls handshake not finished");
  if (!plaintext.empty() && close_sent_) {
    return absl::FailedPreconditionError("tls close_notify already sent");
  }
  SealResult result;
  // Held ciphertext first: it was produced before this plaintext.
  if (!out_.empty()) {
    const size_t n = std::min(out_.size(), out.size());
    std::memcpy(out.data(), out_.data(), n);
    out_.erase(0, n);
    result.ciphertext_bytes = n;
    if (!out_.empty()) return result;
  }
  if (plaintext.empty()) return result;
  while (result.plaintext_bytes < plaintext.size()) {
    const size_t rest = plaintext.size() - result.plaintext_bytes;
    const size_t room = out.size() - result.ciphertext_bytes;
    const size_t limit = std::min(rest, NextRecordPlaintextBytes());
    const size_t overhead =
        sealer_ != nullptr ? sealer_->overhead() : SSL_max_seal_overhead(ssl_.get());
    if (room <= overhead) break;
    const size_t piece = std::min(limit, room - overhead);
    // Full enough: a short record only where nothing else would go.
    if (piece < limit && piece < kMinPartialRecordBytes && result.ciphertext_bytes > 0) break;
    std::span<const uint8_t> in = plaintext.subspan(result.plaintext_bytes, piece);
    uint8_t* dest = out.data() + result.ciphertext_bytes;
    size_t written = piece + overhead;
    if (sealer_ != nullptr) {
      if (!sealer_->Seal(kTlsContentApplicationData, in, dest)) {
        Fail(TlsErrorKind::kInternal, "tls record sealing failed", 0);
        return status_;
      }
    } else {
      // SSL_write: BoringSSL seals into its own buffer, the BIO appends it to out_.
      ERR_clear_error();
      int rc = SSL_write(ssl_.get(), in.data(), static_cast<int>(in.size()));
      if (rc <= 0 || static_cast<size_t>(rc) != piece || out_.size() > room) {
        Fail(TlsErrorKind::kRecord, "tls write failed", SSL_get_error(ssl_.get(), rc));
        return status_;
      }
      written = out_.size();
      std::memcpy(dest, out_.data(), written);
      out_.clear();
    }
    result.plaintext_bytes += piece;
    result.ciphertext_bytes += written;
    CountSealed(piece);
  }
  return result;
}

absl::StatusOr<size_t> TlsEngine::SealInto(std::span<const uint8_t> plaintext,
                                           TlsSendBuffer* buffer) {
  if (buffer->capacity() == 0) buffer->Reserve(kSendBufferBytes);
  PH_ASSIGN_OR_RETURN(SealResult result, SealInto(plaintext, buffer->free_space()));
  buffer->Commit(result.ciphertext_bytes);
  return result.plaintext_bytes;
}

absl::Status TlsEngine::Close() {
  if (!status_.ok()) return status_;
  if (close_sent_) return absl::OkStatus();
  if (!handshake_done_) {
    close_sent_ = true;
    return absl::OkStatus();  // Nothing to protect; just drop.
  }
  if (sealer_ != nullptr) {
    static constexpr uint8_t kCloseNotify[2] = {1, 0};  // Level warning, close_notify.
    if (!AppendRecord(kTlsContentAlert, kCloseNotify)) return status_;
    close_sent_ = true;
    return absl::OkStatus();
  }
  close_sent_ = true;
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

std::string TlsEngine::TlsExporterChannelBinding() const {
  static constexpr std::string_view kLabel = "EXPORTER-Channel-Binding";
  if (SSL_version(ssl_.get()) != TLS1_3_VERSION) return {};
  std::string out(32, '\0');
  if (!SSL_export_keying_material(ssl_.get(), reinterpret_cast<uint8_t*>(out.data()), out.size(),
                                  kLabel.data(), kLabel.size(), nullptr, 0,
                                  /*use_context=*/0)) {
    return {};
  }
  return out;
}

absl::StatusOr<KernelTlsKeys> TlsEngine::ExportKernelTlsKeys() const {
  if (!status_.ok()) return status_;
  if (!handshake_done_) return absl::FailedPreconditionError("tls handshake not finished");
  if (!out_.empty() || !library_out_.empty()) {
    return absl::FailedPreconditionError("ciphertext still waiting to be sent");
  }
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
  keys.tx.rec_seq =
      BigEndian64(sealer_ != nullptr ? sealer_->sequence() : SSL_get_write_sequence(ssl_.get()));
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
      if (!Tls13ExpandLabel(digest, secret, "key", dir->key.data(), dir->key.size()) ||
          !Tls13ExpandLabel(digest, secret, "iv", iv, sizeof(iv))) {
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
    if (sealer_ != nullptr) CopySealerKeys(*sealer_, &keys.tx);  // After a KeyUpdate too.
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
  if (sealer_ != nullptr) CopySealerKeys(*sealer_, &keys.tx);
  return keys;
}

void TlsSendBuffer::Reserve(size_t capacity) {
  PH_CHECK(size_ == 0);
  if (capacity_ >= capacity) return;
  data_.reset(new uint8_t[capacity]);  // Default-initialised: never zero-filled.
  capacity_ = capacity;
}

void TlsSendBuffer::Release() {
  PH_CHECK(size_ == 0);
  data_.reset();
  capacity_ = 0;
}

void TlsSendBuffer::Commit(size_t bytes) {
  PH_CHECK(bytes <= capacity_ - size_);
  size_ += bytes;
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
