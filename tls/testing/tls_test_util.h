// Test helpers for //tls and its users: self-signed certificates generated at test time (no
// private keys in the tree), files written atomically the way a Secret update lands, and a
// BoringSSL client driven against a server TlsEngine entirely in memory.
// Threading: single-threaded test code.
#ifndef POSTHASTE_TLS_TESTING_TLS_TEST_UTIL_H_
#define POSTHASTE_TLS_TESTING_TLS_TEST_UTIL_H_

#include <openssl/ssl.h>

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "tls/tls_engine.h"

namespace posthaste {

struct TestCertificate {
  std::string cert_pem;
  std::string key_pem;
};

// A self-signed ECDSA P-256 certificate, subject CN=`common_name`, one DNS SAN per name.
// With `email_names`, also one email SAN per entry (client certificates).
TestCertificate MakeTestCertificate(std::string_view common_name,
                                    const std::vector<std::string>& dns_names,
                                    const std::vector<std::string>& email_names = {});

// A fresh directory under $TEST_TMPDIR (or /tmp).
std::string MakeTestDir(std::string_view prefix);

// Writes `content` to path.tmp and renames it over `path` (a new inode, like a real update).
void WriteFileAtomically(const std::string& path, std::string_view content);

// Writes DIR/STEM.crt and DIR/STEM.key.
void WriteCertPair(const std::string& dir, std::string_view stem, const TestCertificate& cert);

// A client connection in memory. Verification is off: tests inspect the peer certificate.
class TestTlsClient {
 public:
  struct Options {
    std::string server_name;  // SNI; empty sends none.
    uint16_t min_version = TLS1_2_VERSION;
    uint16_t max_version = TLS1_3_VERSION;
    std::string cipher_list;         // TLS 1.2 and below; empty keeps BoringSSL's default.
    SSL_SESSION* session = nullptr;  // To resume (not owned).
    // Presented when the server asks for a client certificate (not owned; may be null).
    const TestCertificate* client_certificate = nullptr;
  };
  explicit TestTlsClient(const Options& options);
  ~TestTlsClient();

  // Moves bytes both ways until nothing moves (bounded). Drives the client handshake.
  void Pump(TlsEngine& server);
  // Pumps until both handshakes finish or one side fails. OK when both finished.
  absl::Status Handshake(TlsEngine& server);

  // Encrypts on the client and pumps it into the server.
  absl::Status Write(TlsEngine& server, std::string_view plaintext);
  // Reads whatever plaintext the client has after pumping.
  std::string Read(TlsEngine& server);
  // Feeds ciphertext (from TlsEngine::TakeCiphertext) to the client and reads all plaintext.
  std::string DecryptFromServer(std::string_view ciphertext);
  // Client sends close_notify.
  void Shutdown(TlsEngine& server);
  bool ReceivedCloseNotify();

  bool handshake_done() const { return SSL_is_init_finished(ssl_) == 1; }
  std::string client_error() const { return client_error_; }
  SSL* ssl() { return ssl_; }
  // The last session (ticket) the server issued, or null.
  SSL_SESSION* session() const { return session_.get(); }
  std::string PeerCommonName() const;
  std::vector<std::string> PeerDnsNames() const;

 private:
  static int OnNewSession(SSL* ssl, SSL_SESSION* session);
  void MoveClientOutput(TlsEngine& server);

  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;  // Network -> client (owned by ssl_).
  BIO* wbio_ = nullptr;  // Client -> network (owned by ssl_).
  bssl::UniquePtr<SSL_SESSION> session_;
  std::string client_error_;
  std::string pending_to_server_;
};

}  // namespace posthaste

#endif  // POSTHASTE_TLS_TESTING_TLS_TEST_UTIL_H_
