#include "tls/tls_record_sealer.h"

#include <openssl/digest.h>
#include <openssl/hkdf.h>
#include <openssl/mem.h>

#include <cstring>
#include <limits>


namespace posthaste {
namespace {

constexpr size_t kTagBytes = 16;           // AES-GCM and ChaCha20-Poly1305 alike.
constexpr size_t kTls12ExplicitNonce = 8;  // TLS 1.2 AES-GCM only.

void PutBigEndian64(uint64_t v, uint8_t* out) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<uint8_t>(v & 0xff);
    v >>= 8;
  }
}

void PutHeader(uint8_t type, size_t length, uint8_t* out) {
  out[0] = type;
  out[1] = 0x03;  // legacy_record_version 0x0303 for TLS 1.2 and 1.3 alike.
  out[2] = 0x03;
  out[3] = static_cast<uint8_t>(length >> 8);
  out[4] = static_cast<uint8_t>(length & 0xff);
}

// TLS 1.2 additional data: seq_num || type || version || plaintext length.
void Tls12AdditionalData(uint64_t sequence, uint8_t type, size_t plaintext_len, uint8_t ad[13]) {
  PutBigEndian64(sequence, ad);
  ad[8] = type;
  ad[9] = 0x03;
  ad[10] = 0x03;
  ad[11] = static_cast<uint8_t>(plaintext_len >> 8);
  ad[12] = static_cast<uint8_t>(plaintext_len & 0xff);
}

}  // namespace

bool Tls13ExpandLabel(const EVP_MD* digest, std::span<const uint8_t> secret, std::string_view label,
                      uint8_t* out, size_t out_len) {
  // HkdfLabel: uint16 length, opaque label<7..255> = "tls13 " + label, opaque context<0..255>.
  std::string info;
  info.push_back(static_cast<char>(out_len >> 8));
  info.push_back(static_cast<char>(out_len & 0xff));
  info.push_back(static_cast<char>(6 + label.size()));
  info += "tls13 ";
  info.append(label.data(), label.size());
  info.push_back(0);
  return HKDF_expand(out, out_len, digest, secret.data(), secret.size(),
                     reinterpret_cast<const uint8_t*>(info.data()), info.size()) == 1;
}

absl::StatusOr<std::unique_ptr<TlsRecordSealer>> TlsRecordSealer::FromSsl(const SSL* ssl) {
  if (SSL_in_init(ssl)) return absl::FailedPreconditionError("tls handshake not finished");
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl);
  if (cipher == nullptr) return absl::FailedPreconditionError("no cipher negotiated");
  std::unique_ptr<TlsRecordSealer> sealer(new TlsRecordSealer());
  sealer->version_ = static_cast<uint16_t>(SSL_version(ssl));
  sealer->cipher_nid_ = SSL_CIPHER_get_cipher_nid(cipher);
  size_t key_len = 0;
  size_t tls12_iv_len = 0;
  switch (sealer->cipher_nid_) {
    case NID_aes_128_gcm:
      sealer->aead_ = EVP_aead_aes_128_gcm();
      key_len = 16;
      tls12_iv_len = 4;
      break;
    case NID_aes_256_gcm:
      sealer->aead_ = EVP_aead_aes_256_gcm();
      key_len = 32;
      tls12_iv_len = 4;
      break;
    case NID_chacha20_poly1305:
      sealer->aead_ = EVP_aead_chacha20_poly1305();
      key_len = 32;
      tls12_iv_len = 12;
      break;
    default:
      return nullptr;  // another AEAD: the session keeps BoringSSL's own record layer
  }
  sealer->sequence_ = SSL_get_write_sequence(ssl);
  sealer->key_.resize(key_len);
  if (sealer->version_ == TLS1_3_VERSION) {
    bssl::Span<const uint8_t> read_secret, write_secret;
    if (!bssl::SSL_get_traffic_secrets(ssl, &read_secret, &write_secret)) {
      return absl::InternalError("traffic secrets unavailable");
    }
    sealer->prf_ = EVP_get_digestbynid(SSL_CIPHER_get_prf_nid(cipher));
    if (sealer->prf_ == nullptr) return absl::InternalError("unknown PRF digest");
    sealer->secret_.assign(write_secret.begin(), write_secret.end());
    sealer->overhead_ = kTlsRecordHeaderBytes + 1 + kTagBytes;
    if (!sealer->InstallTls13Secret()) return absl::InternalError("traffic key derivation failed");
    return sealer;
  }
  if (sealer->version_ != TLS1_2_VERSION) return nullptr;  // only TLS 1.2 and 1.3 records
  // TLS 1.2 AEAD key block (RFC 5246 6.3, no MAC keys): client key, server key, client IV,
  // server IV.
  size_t block_len = SSL_get_key_block_len(ssl);
  if (block_len != 2 * (key_len + tls12_iv_len)) {
    return absl::InternalError("unexpected key block length");
  }
  std::vector<uint8_t> block(block_len);
  if (!SSL_generate_key_block(ssl, block.data(), block.size())) {
    return absl::InternalError("key block unavailable");
  }
  std::memcpy(sealer->key_.data(), block.data() + key_len, key_len);
  std::memcpy(sealer->iv_.data(), block.data() + 2 * key_len + tls12_iv_len, tls12_iv_len);
  OPENSSL_cleanse(block.data(), block.size());
  sealer->overhead_ = kTlsRecordHeaderBytes + kTagBytes +
                      (sealer->cipher_nid_ == NID_chacha20_poly1305 ? 0 : kTls12ExplicitNonce);
  if (!sealer->InstallKey()) return absl::InternalError("AEAD key setup failed");
  return sealer;
}

TlsRecordSealer::~TlsRecordSealer() {
  OPENSSL_cleanse(key_.data(), key_.size());
  OPENSSL_cleanse(secret_.data(), secret_.size());
  OPENSSL_cleanse(iv_.data(), iv_.size());
}

bool TlsRecordSealer::InstallKey() {
  EVP_AEAD_CTX_cleanup(ctx_.get());
  EVP_AEAD_CTX_zero(ctx_.get());
  return EVP_AEAD_CTX_init(ctx_.get(), aead_, key_.data(), key_.size(), EVP_AEAD_DEFAULT_TAG_LENGTH,
                           nullptr) == 1;
}

bool TlsRecordSealer::InstallTls13Secret() {
  return Tls13ExpandLabel(prf_, secret_, "key", key_.data(), key_.size()) &&
         Tls13ExpandLabel(prf_, secret_, "iv", iv_.data(), iv_.size()) && InstallKey();
}

bool TlsRecordSealer::RotateAfterKeyUpdate() {
  if (version_ != TLS1_3_VERSION) return false;
  std::vector<uint8_t> next(secret_.size());
  if (!Tls13ExpandLabel(prf_, secret_, "traffic upd", next.data(), next.size())) return false;
  OPENSSL_cleanse(secret_.data(), secret_.size());
  secret_.swap(next);
  sequence_ = 0;
  return InstallTls13Secret();
}

void TlsRecordSealer::Nonce(uint64_t sequence, uint8_t nonce[12]) const {
  if (version_ == TLS1_2_VERSION && cipher_nid_ != NID_chacha20_poly1305) {
    std::memcpy(nonce, iv_.data(), 4);  // Salt || explicit nonce (= the sequence number).
    PutBigEndian64(sequence, nonce + 4);
    return;
  }
  std::memcpy(nonce, iv_.data(), 12);
  uint8_t seq[8];
  PutBigEndian64(sequence, seq);
  for (int i = 0; i < 8; ++i) nonce[4 + i] ^= seq[i];
}

bool TlsRecordSealer::Seal(uint8_t type, std::span<const uint8_t> plaintext, uint8_t* out) {
  if (plaintext.size() > kTlsMaxPlaintextBytes) return false;
  // A sequence number must never repeat under one key (RFC 8446 5.3, RFC 5246 6.1).
  if (sequence_ == std::numeric_limits<uint64_t>::max()) return false;
  uint8_t nonce[12];
  Nonce(sequence_, nonce);
  const size_t record_len = plaintext.size() + overhead_ - kTlsRecordHeaderBytes;
  size_t tag_len = 0;
  if (version_ == TLS1_3_VERSION) {
    PutHeader(kTlsContentApplicationData, record_len, out);
    uint8_t* body = out + kTlsRecordHeaderBytes;
    // The inner content type follows the content: sealed as extra input, its ciphertext lands
    // before the tag, right after the content's.
    if (!EVP_AEAD_CTX_seal_scatter(ctx_.get(), body, body + plaintext.size(), &tag_len,
                                   1 + kTagBytes, nonce, sizeof(nonce), plaintext.data(),
                                   plaintext.size(), &type, 1, out, kTlsRecordHeaderBytes) ||
        tag_len != 1 + kTagBytes) {
      return false;
    }
  } else {
    PutHeader(type, record_len, out);
    uint8_t* body = out + kTlsRecordHeaderBytes;
    if (cipher_nid_ != NID_chacha20_poly1305) {
      PutBigEndian64(sequence_, body);
      body += kTls12ExplicitNonce;
    }
    uint8_t ad[13];
    Tls12AdditionalData(sequence_, type, plaintext.size(), ad);
    if (!EVP_AEAD_CTX_seal_scatter(ctx_.get(), body, body + plaintext.size(), &tag_len, kTagBytes,
                                   nonce, sizeof(nonce), plaintext.data(), plaintext.size(),
                                   nullptr, 0, ad, sizeof(ad)) ||
        tag_len != kTagBytes) {
      return false;
    }
  }
  ++sequence_;
  return true;
}

bool TlsRecordSealer::Open(std::span<const uint8_t> record, uint64_t sequence, uint8_t* type,
                           std::string* plaintext) const {
  if (record.size() < kTlsRecordHeaderBytes) return false;
  const size_t length = (size_t{record[3]} << 8) | record[4];
  if (record.size() != kTlsRecordHeaderBytes + length ||
      length < overhead_ - kTlsRecordHeaderBytes) {
    return false;
  }
  uint8_t nonce[12];
  Nonce(sequence, nonce);
  std::span<const uint8_t> body = record.subspan(kTlsRecordHeaderBytes);
  plaintext->resize(body.size());
  size_t out_len = 0;
  auto* out = reinterpret_cast<uint8_t*>(plaintext->data());
  if (version_ == TLS1_3_VERSION) {
    if (record[0] != kTlsContentApplicationData ||
        !EVP_AEAD_CTX_open(ctx_.get(), out, &out_len, plaintext->size(), nonce, sizeof(nonce),
                           body.data(), body.size(), record.data(), kTlsRecordHeaderBytes)) {
      plaintext->clear();
      return false;
    }
    plaintext->resize(out_len);
    // Strip padding; the last non-zero byte is the inner content type.
    while (!plaintext->empty() && plaintext->back() == 0) plaintext->pop_back();
    if (plaintext->empty()) return false;
    *type = static_cast<uint8_t>(plaintext->back());
    plaintext->pop_back();
    return true;
  }
  if (cipher_nid_ != NID_chacha20_poly1305) {
    std::memcpy(nonce + 4, body.data(), kTls12ExplicitNonce);
    body = body.subspan(kTls12ExplicitNonce);
  }
  uint8_t ad[13];
  Tls12AdditionalData(sequence, record[0], body.size() - kTagBytes, ad);
  if (!EVP_AEAD_CTX_open(ctx_.get(), out, &out_len, plaintext->size(), nonce, sizeof(nonce),
                         body.data(), body.size(), ad, sizeof(ad))) {
    plaintext->clear();
    return false;
  }
  plaintext->resize(out_len);
  *type = record[0];
  return true;
}

std::array<uint8_t, 4> TlsRecordSealer::kernel_salt() const {
  std::array<uint8_t, 4> salt;
  std::memcpy(salt.data(), iv_.data(), 4);
  return salt;
}

std::array<uint8_t, 8> TlsRecordSealer::kernel_iv() const {
  std::array<uint8_t, 8> iv;
  if (version_ == TLS1_3_VERSION) {
    std::memcpy(iv.data(), iv_.data() + 4, 8);
  } else {
    PutBigEndian64(sequence_, iv.data());  // The explicit nonce continues from the sequence.
  }
  return iv;
}

}  // namespace posthaste
