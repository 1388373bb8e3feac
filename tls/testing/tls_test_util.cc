#include "tls/testing/tls_test_util.h"

#include <openssl/bio.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/strings.h"

namespace posthaste {
namespace {

std::string BioToString(BIO* bio) {
  const uint8_t* data = nullptr;
  size_t len = 0;
  BIO_mem_contents(bio, &data, &len);
  return std::string(reinterpret_cast<const char*>(data), len);
}

int ClientExIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

std::string LastSslError() {
  uint32_t error = ERR_peek_last_error();
  const char* reason = error != 0 ? ERR_reason_error_string(error) : nullptr;
  ERR_clear_error();
  return reason != nullptr ? reason : "unknown";
}

}  // namespace

TestCertificate MakeTestCertificate(std::string_view common_name,
                                    const std::vector<std::string>& dns_names,
                                    const std::vector<std::string>& email_names) {
  static long serial = 1;
  bssl::UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
  EC_KEY* ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
  PH_CHECK(ec != nullptr && EC_KEY_generate_key(ec) == 1);
  PH_CHECK(EVP_PKEY_assign_EC_KEY(key.get(), ec) == 1);

  bssl::UniquePtr<X509> x509(X509_new());
  PH_CHECK(X509_set_version(x509.get(), X509_VERSION_3) == 1);
  PH_CHECK(ASN1_INTEGER_set(X509_get_serialNumber(x509.get()), serial++) == 1);
  PH_CHECK(X509_gmtime_adj(X509_getm_notBefore(x509.get()), -3600) != nullptr);
  PH_CHECK(X509_gmtime_adj(X509_getm_notAfter(x509.get()), 30L * 86400) != nullptr);
  X509_NAME* name = X509_get_subject_name(x509.get());
  std::string cn(common_name);
  PH_CHECK(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                      reinterpret_cast<const uint8_t*>(cn.c_str()), -1, -1,
                                      0) == 1);
  PH_CHECK(X509_set_issuer_name(x509.get(), name) == 1);
  PH_CHECK(X509_set_pubkey(x509.get(), key.get()) == 1);
  if (!dns_names.empty() || !email_names.empty()) {
    GENERAL_NAMES* names = sk_GENERAL_NAME_new_null();
    auto add = [names](const std::string& text, int type) {
      GENERAL_NAME* general = GENERAL_NAME_new();
      ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
      PH_CHECK(ASN1_STRING_set(ia5, text.data(), static_cast<int>(text.size())) == 1);
      GENERAL_NAME_set0_value(general, type, ia5);
      sk_GENERAL_NAME_push(names, general);
    };
    for (const std::string& dns : dns_names) add(dns, GEN_DNS);
    for (const std::string& email : email_names) add(email, GEN_EMAIL);
    PH_CHECK(X509_add1_ext_i2d(x509.get(), NID_subject_alt_name, names, 0, 0) == 1);
    GENERAL_NAMES_free(names);
  }
  PH_CHECK(X509_sign(x509.get(), key.get(), EVP_sha256()) > 0);

  TestCertificate out;
  bssl::UniquePtr<BIO> cert_bio(BIO_new(BIO_s_mem()));
  PH_CHECK(PEM_write_bio_X509(cert_bio.get(), x509.get()) == 1);
  out.cert_pem = BioToString(cert_bio.get());
  bssl::UniquePtr<BIO> key_bio(BIO_new(BIO_s_mem()));
  PH_CHECK(PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr,
                                    nullptr) == 1);
  out.key_pem = BioToString(key_bio.get());
  return out;
}

std::string MakeTestDir(std::string_view prefix) {
  const char* base = getenv("TEST_TMPDIR");
  std::string templ =
      absl::StrCat(base != nullptr ? base : "/tmp", "/", AbslView(prefix), "XXXXXX");
  PH_CHECK(mkdtemp(templ.data()) != nullptr);
  return templ;
}

void WriteFileAtomically(const std::string& path, std::string_view content) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    PH_CHECK(out.good());
  }
  PH_CHECK(rename(tmp.c_str(), path.c_str()) == 0);
}

void WriteCertPair(const std::string& dir, std::string_view stem, const TestCertificate& cert) {
  WriteFileAtomically(absl::StrCat(dir, "/", AbslView(stem), ".crt"), cert.cert_pem);
  WriteFileAtomically(absl::StrCat(dir, "/", AbslView(stem), ".key"), cert.key_pem);
}

TestTlsClient::TestTlsClient(const Options& options) {
  ctx_ = SSL_CTX_new(TLS_method());
  PH_CHECK(ctx_ != nullptr);
  PH_CHECK(SSL_CTX_set_min_proto_version(ctx_, options.min_version) == 1);
  PH_CHECK(SSL_CTX_set_max_proto_version(ctx_, options.max_version) == 1);
  if (!options.cipher_list.empty()) {
    PH_CHECK(SSL_CTX_set_strict_cipher_list(ctx_, options.cipher_list.c_str()) == 1);
  }
  SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_CLIENT);
  SSL_CTX_sess_set_new_cb(ctx_, &TestTlsClient::OnNewSession);
  ssl_ = SSL_new(ctx_);
  PH_CHECK(ssl_ != nullptr);
  SSL_set_ex_data(ssl_, ClientExIndex(), this);
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(rbio_, -1);
  SSL_set_bio(ssl_, rbio_, wbio_);
  if (!options.server_name.empty()) {
    PH_CHECK(SSL_set_tlsext_host_name(ssl_, options.server_name.c_str()) == 1);
  }
  if (options.session != nullptr) PH_CHECK(SSL_set_session(ssl_, options.session) == 1);
  if (options.client_certificate != nullptr) {
    bssl::UniquePtr<BIO> cert_bio(BIO_new_mem_buf(options.client_certificate->cert_pem.data(),
                                                  options.client_certificate->cert_pem.size()));
    bssl::UniquePtr<X509> cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
    bssl::UniquePtr<BIO> key_bio(BIO_new_mem_buf(options.client_certificate->key_pem.data(),
                                                 options.client_certificate->key_pem.size()));
    bssl::UniquePtr<EVP_PKEY> key(
        PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
    PH_CHECK(cert != nullptr && key != nullptr);
    PH_CHECK(SSL_use_certificate(ssl_, cert.get()) == 1);
    PH_CHECK(SSL_use_PrivateKey(ssl_, key.get()) == 1);
  }
  SSL_set_connect_state(ssl_);
}

TestTlsClient::~TestTlsClient() {
  SSL_free(ssl_);
  SSL_CTX_free(ctx_);
}

int TestTlsClient::OnNewSession(SSL* ssl, SSL_SESSION* session) {
  auto* self = static_cast<TestTlsClient*>(SSL_get_ex_data(ssl, ClientExIndex()));
  self->session_.reset(session);  // Takes ownership (return 1).
  return 1;
}

void TestTlsClient::MoveClientOutput(TlsEngine& server) {
  while (BIO_pending(wbio_) > 0) {
    char buf[16384];
    int n = BIO_read(wbio_, buf, sizeof(buf));
    if (n <= 0) break;
    pending_to_server_.append(buf, static_cast<size_t>(n));
  }
  while (!pending_to_server_.empty()) {
    absl::StatusOr<size_t> accepted = server.FeedCiphertext(pending_to_server_);
    // Full (the test must read the server's plaintext first) or failed: keep the rest.
    if (!accepted.ok() || *accepted == 0) return;
    pending_to_server_.erase(0, *accepted);
  }
}

void TestTlsClient::Pump(TlsEngine& server) {
  for (int round = 0; round < 64; ++round) {
    if (!handshake_done() && client_error_.empty()) {
      ERR_clear_error();
      int rc = SSL_do_handshake(ssl_);
      if (rc != 1) {
        int error = SSL_get_error(ssl_, rc);
        if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE) {
          client_error_ = LastSslError();
        }
      }
    }
    size_t before = BIO_pending(wbio_) + pending_to_server_.size();
    MoveClientOutput(server);
    std::string to_client = server.TakeCiphertext();
    if (!to_client.empty()) {
      BIO_write(rbio_, to_client.data(), static_cast<int>(to_client.size()));
    }
    if (before == 0 && to_client.empty() && BIO_pending(wbio_) == 0) break;
  }
}

absl::Status TestTlsClient::Handshake(TlsEngine& server) {
  Pump(server);
  if (server.Failed()) return server.status();
  if (!client_error_.empty()) return absl::InternalError(absl::StrCat("client: ", client_error_));
  if (!handshake_done() || !server.HandshakeDone()) {
    return absl::DeadlineExceededError("handshake did not finish");
  }
  return absl::OkStatus();
}

absl::Status TestTlsClient::Write(TlsEngine& server, std::string_view plaintext) {
  ERR_clear_error();
  if (!plaintext.empty() &&
      SSL_write(ssl_, plaintext.data(), static_cast<int>(plaintext.size())) <= 0) {
    return absl::InternalError(absl::StrCat("client write: ", LastSslError()));
  }
  Pump(server);
  return absl::OkStatus();
}

std::string TestTlsClient::DecryptFromServer(std::string_view ciphertext) {
  if (!ciphertext.empty()) {
    BIO_write(rbio_, ciphertext.data(), static_cast<int>(ciphertext.size()));
  }
  std::string out;
  char buf[16384];
  for (;;) {
    ERR_clear_error();
    int n = SSL_read(ssl_, buf, sizeof(buf));
    if (n <= 0) {
      int error = SSL_get_error(ssl_, n);
      if (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_ZERO_RETURN) {
        client_error_ = LastSslError();
      }
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string TestTlsClient::Read(TlsEngine& server) {
  Pump(server);
  std::string out = DecryptFromServer("");
  Pump(server);  // Anything the client owes the server (e.g. after a KeyUpdate).
  return out;
}

void TestTlsClient::Shutdown(TlsEngine& server) {
  SSL_shutdown(ssl_);
  Pump(server);
}

bool TestTlsClient::ReceivedCloseNotify() {
  DecryptFromServer("");
  return (SSL_get_shutdown(ssl_) & SSL_RECEIVED_SHUTDOWN) != 0;
}

std::string TestTlsClient::PeerCommonName() const {
  bssl::UniquePtr<X509> peer(SSL_get_peer_certificate(ssl_));
  if (peer == nullptr) return "";
  char cn[256] = "";
  X509_NAME_get_text_by_NID(X509_get_subject_name(peer.get()), NID_commonName, cn, sizeof(cn));
  return cn;
}

std::vector<std::string> TestTlsClient::PeerDnsNames() const {
  std::vector<std::string> out;
  bssl::UniquePtr<X509> peer(SSL_get_peer_certificate(ssl_));
  if (peer == nullptr) return out;
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(peer.get(), NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  for (size_t i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name->type != GEN_DNS) continue;
    const ASN1_IA5STRING* dns = name->d.dNSName;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                     static_cast<size_t>(ASN1_STRING_length(dns)));
  }
  GENERAL_NAMES_free(names);
  return out;
}

}  // namespace posthaste
