// FakePop3Source: a scripted POP3 server on 127.0.0.1 for the importer's tests. It serves a
// fixed mailbox (UIDL, LIST, RETR of wire-form bodies), optionally over STLS or implicit TLS
// with a test certificate, records what the client did (logins, RETRs, any DELE), and can
// misbehave in the ways a hostile source would (silence, endless lines, oversize bodies, a
// connection cut mid-body).
//
// Threading: one server thread, connections served one at a time; the accessors may be called
// from the test thread at any time. The destructor stops the thread (bounded: every wait polls
// the stop flag).
#ifndef POSTHASTE_SERVER_POP3_IMPORT_TESTING_FAKE_POP3_SOURCE_H_
#define POSTHASTE_SERVER_POP3_IMPORT_TESTING_FAKE_POP3_SOURCE_H_

#include <openssl/ssl.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace posthaste::server::pop3_import::testing {

struct FakeMessage {
  std::string uidl;
  std::string wire;  // RETR body as sent: CRLF lines, dot-stuffed, no terminator
};

enum class FakeBehavior : uint8_t {
  kNormal,
  kSilent,           // accepts and never answers
  kEndlessGreeting,  // a greeting line that never ends (1 MiB, then silence)
  kOversizeRetr,     // RETR sends 8 MiB of body lines, no terminator
  kCutInRetr,        // RETR sends half a body, then closes
};

struct FakeSourceOptions {
  std::vector<FakeMessage> messages;
  FakeBehavior behavior = FakeBehavior::kNormal;
  std::string password = "source secret";
  enum class Tls : uint8_t { kNone, kStls, kImplicit } tls = Tls::kNone;
  bool refuse_stls = false;
  std::string cert_pem;  // for TLS
  std::string key_pem;
};

class FakePop3Source {
 public:
  explicit FakePop3Source(FakeSourceOptions options);
  ~FakePop3Source();

  uint16_t port() const { return port_; }
  std::vector<std::string> logins() const;  // USER names that logged in
  uint64_t retr_count() const;
  uint64_t dele_count() const;

 private:
  void Serve();
  void ServeConnection(int fd);

  FakeSourceOptions options_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  bssl::UniquePtr<SSL_CTX> ctx_;
  std::atomic<bool> stop_{false};
  mutable absl::Mutex mu_;
  std::vector<std::string> logins_;
  uint64_t retr_count_ = 0;
  uint64_t dele_count_ = 0;
  std::thread thread_;
};

}  // namespace posthaste::server::pop3_import::testing

#endif  // POSTHASTE_SERVER_POP3_IMPORT_TESTING_FAKE_POP3_SOURCE_H_
