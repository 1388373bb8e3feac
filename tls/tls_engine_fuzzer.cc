// libFuzzer target for the network-facing side of TlsEngine: bytes from a TLS peer.
//
// Input: byte 0 picks a mode (byte0 % 8: 0-3 mode 0, 4-5 mode 1, 6 mode 2, 7 mode 3; the
// modes with a full handshake are rarer because they cost ~1 ms each), byte 1 a fragment size,
// the rest is data.
//   mode 0: the data is raw ciphertext fed to a fresh server engine (ClientHello parser).
//   mode 1: a real client's ClientHello (version and SNI drawn from the data) with bytes of
//           the data XORed into it at positions the data chooses: near-valid handshakes.
//   mode 2: a real handshake first, then the data as raw records (record layer, alerts); the
//           client then reads whatever the server sent back (an alert sealed by the engine).
//   mode 3: a real handshake, then the client encrypts the data (TLS 1.3: after a KeyUpdate
//           asking for the server's, when byte 1 says so); the server must return it
//           byte-exact whatever the fragmenting, and its sealed answer must open at the client.
// Invariants: no crash or sanitizer report; a failed engine has a non-OK status and an error
// kind, and stays failed; output stays bounded; what the engine sends after the handshake
// always opens at the client (an alert it reads is fine, a record it cannot open is not), and
// re-sealing BoringSSL's own records never fails (no kInternal); mode 3 round-trips exactly.
#include <sys/stat.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "base/check.h"
#include "tls/testing/tls_test_util.h"
#include "tls/tls_context.h"
#include "tls/tls_engine.h"

namespace posthaste {
namespace {

TlsContextSet& Contexts() {
  static TlsContextSet* set = [] {
    std::string dir = MakeTestDir("tls_engine_fuzzer");
    WriteCertPair(dir, "default", MakeTestCertificate("default.test", {"default.test"}));
    std::string tenants = dir + "/certs";
    PH_CHECK(mkdir(tenants.c_str(), 0700) == 0);
    WriteCertPair(tenants, "a.example.com", MakeTestCertificate("a", {"a.example.com"}));
    WriteCertPair(tenants, "_.wild.example.com", MakeTestCertificate("w", {"*.wild.example.com"}));
    TlsOptions options;
    options.cert_path = dir + "/default.crt";
    options.key_path = dir + "/default.key";
    options.cert_dir = tenants;
    auto created = TlsContextSet::Create(options);
    PH_CHECK(created.ok());
    std::filesystem::remove_all(dir);  // Loaded into memory; leave nothing behind.
    return created->release();
  }();
  return *set;
}

void CheckFailureShape(const TlsEngine& engine) {
  if (engine.Failed()) {
    PH_CHECK(!engine.status().ok());
    PH_CHECK(engine.error_kind() != TlsErrorKind::kNone);
  } else {
    PH_CHECK(engine.error_kind() == TlsErrorKind::kNone);
  }
}

// Feeds `data` in fragments of `fragment` bytes, reading plaintext between them. The
// ciphertext the engine produces meanwhile is appended to *sent when given.
std::string FeedFragmented(TlsEngine& engine, std::string_view data, size_t fragment,
                           std::string* sent = nullptr) {
  std::string plaintext;
  int stalls = 0;
  while (!data.empty() && stalls < 4) {
    auto accepted = engine.FeedCiphertext(data.substr(0, fragment));
    CheckFailureShape(engine);
    if (!accepted.ok()) break;
    PH_CHECK(*accepted <= fragment);
    data.remove_prefix(*accepted);
    auto read = engine.ReadPlaintext(&plaintext);
    CheckFailureShape(engine);
    if (!read.ok()) break;
    stalls = (*accepted == 0 && *read == 0) ? stalls + 1 : 0;
    PH_CHECK(engine.PendingCiphertextBytes() < (1 << 20));
    std::string taken = engine.TakeCiphertext();
    if (sent != nullptr) *sent += taken;
  }
  if (engine.Failed()) {
    // Sticky.
    PH_CHECK(engine.FeedCiphertext("x").status() == engine.status());
  }
  return plaintext;
}

}  // namespace
}  // namespace posthaste

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace posthaste;
  if (size < 2) return 0;
  static constexpr int kModes[8] = {0, 0, 0, 0, 1, 1, 2, 3};
  int mode = kModes[data[0] % 8];
  size_t fragment = 1 + (data[1] % 64) * (data[1] >= 128 ? 512 : 1);
  std::string_view input(reinterpret_cast<const char*>(data + 2), size - 2);
  std::unique_ptr<TlsEngine> engine = Contexts().NewEngine();

  if (mode == 0) {
    FeedFragmented(*engine, input, fragment);
    (void)engine->Close();
    return 0;
  }
  if (mode == 1) {
    TestTlsClient::Options options;
    options.max_version = (input.size() > 0 && input[0] & 1) ? TLS1_3_VERSION : TLS1_2_VERSION;
    if (input.size() > 1 && input[1] & 1) options.server_name = "a.example.com";
    if (input.size() > 1 && input[1] & 2) options.server_name = "x.wild.example.com";
    TestTlsClient client(options);
    SSL_do_handshake(client.ssl());
    BIO* wbio = SSL_get_wbio(client.ssl());
    std::string hello(BIO_pending(wbio), '\0');
    BIO_read(wbio, hello.data(), static_cast<int>(hello.size()));
    // Pairs (position, xor) from the rest of the input.
    for (size_t i = 2; i + 1 < input.size() && !hello.empty(); i += 2) {
      hello[static_cast<uint8_t>(input[i]) * 7 % hello.size()] ^= input[i + 1];
    }
    FeedFragmented(*engine, hello, fragment);
    return 0;
  }
  TestTlsClient client(
      {.max_version = static_cast<uint16_t>((data[1] & 1) ? TLS1_2_VERSION : TLS1_3_VERSION)});
  if (!client.Handshake(*engine).ok()) std::abort();  // A real handshake must succeed.
  if (mode == 2) {
    std::string to_client;
    FeedFragmented(*engine, input, fragment, &to_client);
    PH_CHECK(engine->error_kind() != TlsErrorKind::kInternal);
    to_client += engine->TakeCiphertext();
    client.DecryptFromServer(to_client);
    PH_CHECK(client.client_error().empty() ||
             client.client_error().find("ALERT") != std::string::npos);
    return 0;
  }
  // Mode 3: exact round trip of client plaintext.
  if ((data[1] & 2) && SSL_version(client.ssl()) == TLS1_3_VERSION) {
    PH_CHECK(SSL_key_update(client.ssl(), SSL_KEY_UPDATE_REQUESTED) == 1);
  }
  std::string sent(input);
  if (!sent.empty()) {
    PH_CHECK(SSL_write(client.ssl(), sent.data(), static_cast<int>(sent.size())) ==
             static_cast<int>(sent.size()));
  }
  BIO* wbio = SSL_get_wbio(client.ssl());
  std::string wire(BIO_pending(wbio), '\0');
  BIO_read(wbio, wire.data(), static_cast<int>(wire.size()));
  std::string to_client;
  std::string got = FeedFragmented(*engine, wire, fragment, &to_client);
  PH_CHECK(!engine->Failed());
  PH_CHECK(got == sent);
  // The answer, sealed in place behind anything the engine owed (a KeyUpdate), opens exactly.
  // One send buffer for every input, as a connection reuses its own (1 MiB: allocating it per
  // input was most of this mode's time).
  static TlsSendBuffer& buffer = *new TlsSendBuffer;
  buffer.Clear();
  absl::StatusOr<size_t> sealed = engine->SealInto("+OK fuzz\r\n", &buffer);
  PH_CHECK(sealed.ok() && *sealed == 10);
  to_client.append(buffer.bytes().data(), buffer.size());
  PH_CHECK(client.DecryptFromServer(to_client) == "+OK fuzz\r\n");
  PH_CHECK(client.client_error().empty());
  return 0;
}
