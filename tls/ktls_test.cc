// Kernel TLS: the probe, the exported keys (checked by decrypting real records with them, which
// needs no kernel support), and the per-session path choice. On machines without the `tls`
// module the kTLS-positive test is skipped with a message and the fallback test asserts, and
// prints, that the userspace path was taken.
#include "tls/ktls.h"

#include <arpa/inet.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <openssl/aead.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tls/testing/tls_test_util.h"
#include "tls/tls_context.h"
#include "tls/tls_engine.h"

namespace posthaste {
namespace {

using ::testing::HasSubstr;

// A connected loopback TCP pair; both ends closed on destruction.
struct TcpPair {
  int server = -1;
  int client = -1;
  TcpPair() {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(listener, 1), 0);
    EXPECT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    client = socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    server = accept(listener, nullptr, nullptr);
    close(listener);
  }
  ~TcpPair() {
    close(server);
    close(client);
  }
};

void SendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = write(fd, bytes.data(), bytes.size());
    ASSERT_GT(n, 0) << std::strerror(errno);
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

std::string ReceiveExactly(int fd, size_t size) {
  std::string out;
  while (out.size() < size) {
    char buf[4096];
    ssize_t n = read(fd, buf, std::min(sizeof(buf), size - out.size()));
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

class KtlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string dir = MakeTestDir("ktls");
    WriteCertPair(dir, "default", MakeTestCertificate("default.test", {"default.test"}));
    TlsOptions options;
    options.cert_path = dir + "/default.crt";
    options.key_path = dir + "/default.key";
    auto set = TlsContextSet::Create(options);
    ASSERT_TRUE(set.ok()) << set.status();
    set_ = *std::move(set);
  }

  // A handshaken engine/client pair with the tickets and a first reply already delivered, so
  // nothing is in flight (the state in which keys may go to the kernel).
  void Connect(TestTlsClient::Options options) {
    engine_ = set_->NewEngine();
    client_ = std::make_unique<TestTlsClient>(options);
    ASSERT_TRUE(client_->Handshake(*engine_).ok()) << engine_->status();
    ASSERT_TRUE(engine_->WritePlaintext("+OK\r\n").ok());
    ASSERT_EQ(client_->Read(*engine_), "+OK\r\n");
    ASSERT_EQ(engine_->PendingCiphertextBytes(), 0u);
  }

  std::unique_ptr<TlsContextSet> set_;
  std::unique_ptr<TlsEngine> engine_;
  std::unique_ptr<TestTlsClient> client_;
};

// Opens one TLS record with the exported keys, as the kernel would.
std::string OpenRecord(const KernelTlsKeys& keys, const KernelTlsDirection& dir,
                       std::string_view record) {
  const EVP_AEAD* aead =
      keys.cipher == TLS_CIPHER_AES_GCM_128 ? EVP_aead_aes_128_gcm() : EVP_aead_aes_256_gcm();
  bssl::ScopedEVP_AEAD_CTX ctx;
  EXPECT_EQ(EVP_AEAD_CTX_init(ctx.get(), aead, dir.key.data(), dir.key.size(),
                              EVP_AEAD_DEFAULT_TAG_LENGTH, nullptr),
            1);
  EXPECT_GE(record.size(), 5u + 16u);
  const auto* bytes = reinterpret_cast<const uint8_t*>(record.data());
  uint8_t nonce[12];
  std::string out(record.size(), '\0');
  size_t out_len = 0;
  if (keys.version == TLS1_3_VERSION) {
    std::memcpy(nonce, dir.salt.data(), 4);
    std::memcpy(nonce + 4, dir.iv.data(), 8);
    for (int i = 0; i < 8; ++i) nonce[4 + i] ^= dir.rec_seq[i];
    if (!EVP_AEAD_CTX_open(ctx.get(), reinterpret_cast<uint8_t*>(out.data()), &out_len, out.size(),
                           nonce, sizeof(nonce), bytes + 5, record.size() - 5, bytes, 5)) {
      return "<open failed>";
    }
    out.resize(out_len);
    while (!out.empty() && out.back() == 0) out.pop_back();
    EXPECT_FALSE(out.empty());
    EXPECT_EQ(out.back(), 0x17);  // Inner content type: application data.
    out.pop_back();
    return out;
  }
  std::memcpy(nonce, dir.salt.data(), 4);
  std::memcpy(nonce + 4, bytes + 5, 8);  // Explicit nonce.
  size_t plaintext_len = record.size() - 5 - 8 - 16;
  uint8_t ad[13];
  std::memcpy(ad, dir.rec_seq.data(), 8);
  ad[8] = bytes[0];
  ad[9] = bytes[1];
  ad[10] = bytes[2];
  ad[11] = static_cast<uint8_t>(plaintext_len >> 8);
  ad[12] = static_cast<uint8_t>(plaintext_len);
  if (!EVP_AEAD_CTX_open(ctx.get(), reinterpret_cast<uint8_t*>(out.data()), &out_len, out.size(),
                         nonce, sizeof(nonce), bytes + 13, record.size() - 13, ad, sizeof(ad))) {
    return "<open failed>";
  }
  out.resize(out_len);
  return out;
}

struct KeyCase {
  const char* name;
  uint16_t max_version;
  const char* cipher_list;
  uint16_t expected_cipher;
};

class KtlsKeysTest : public KtlsTest, public ::testing::WithParamInterface<KeyCase> {};

TEST_P(KtlsKeysTest, ExportedKeysOpenTheEnginesRecordsBothWays) {
  Connect({.max_version = GetParam().max_version, .cipher_list = GetParam().cipher_list});
  auto keys = engine_->ExportKernelTlsKeys();
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->version, GetParam().max_version);
  EXPECT_EQ(keys->cipher, GetParam().expected_cipher);
  EXPECT_EQ(keys->tx.key.size(), GetParam().expected_cipher == TLS_CIPHER_AES_GCM_128 ? 16u : 32u);

  // Server to client: the next record the engine seals opens with tx at rec_seq.
  ASSERT_TRUE(engine_->WritePlaintext("+OK 2 messages\r\n").ok());
  EXPECT_EQ(OpenRecord(*keys, keys->tx, engine_->TakeCiphertext()), "+OK 2 messages\r\n");
  // Client to server: the client's next record opens with rx at rec_seq.
  ASSERT_EQ(SSL_write(client_->ssl(), "RETR 1\r\n", 8), 8);
  BIO* wbio = SSL_get_wbio(client_->ssl());
  std::string record(BIO_pending(wbio), '\0');
  ASSERT_EQ(BIO_read(wbio, record.data(), record.size()), static_cast<int>(record.size()));
  EXPECT_EQ(OpenRecord(*keys, keys->rx, record), "RETR 1\r\n");
}

INSTANTIATE_TEST_SUITE_P(
    Ciphers, KtlsKeysTest,
    ::testing::Values(KeyCase{"Tls13Aes128", TLS1_3_VERSION, "", TLS_CIPHER_AES_GCM_128},
                      KeyCase{"Tls12Aes128", TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256",
                              TLS_CIPHER_AES_GCM_128},
                      KeyCase{"Tls12Aes256", TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384",
                              TLS_CIPHER_AES_GCM_256}),
    [](const auto& info) { return info.param.name; });

// The engine seals its own records (and follows KeyUpdates itself), so the keys and sequence
// number the kernel gets must be the engine's, not BoringSSL's stale ones.
TEST_F(KtlsTest, ExportedKeysFollowTheEnginesKeyUpdate) {
  Connect({});
  ASSERT_EQ(SSL_key_update(client_->ssl(), SSL_KEY_UPDATE_REQUESTED), 1);
  ASSERT_TRUE(client_->Write(*engine_, "NOOP\r\n").ok());
  std::string commands;
  ASSERT_TRUE(engine_->ReadPlaintext(&commands).ok());
  ASSERT_EQ(commands, "NOOP\r\n");
  ASSERT_EQ(client_->Read(*engine_), "");  // Takes the engine's answering KeyUpdate.
  ASSERT_EQ(engine_->PendingCiphertextBytes(), 0u);
  auto keys = engine_->ExportKernelTlsKeys();
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->tx.rec_seq, (std::array<uint8_t, 8>{}));  // A new key starts at 0.
  ASSERT_TRUE(engine_->WritePlaintext("+OK updated\r\n").ok());
  EXPECT_EQ(OpenRecord(*keys, keys->tx, engine_->TakeCiphertext()), "+OK updated\r\n");
}

// TLS 1.3 tickets must not wait for the first reply: keys may go to the kernel right after
// the handshake, and tickets still unsent then would be lost (no resumption on kTLS sessions).
TEST_F(KtlsTest, TicketsLeaveWithTheHandshakeSoKeysCanBeExportedAtOnce) {
  engine_ = set_->NewEngine();
  client_ = std::make_unique<TestTlsClient>(TestTlsClient::Options{});
  ASSERT_TRUE(client_->Handshake(*engine_).ok());
  EXPECT_EQ(client_->Read(*engine_), "");
  EXPECT_NE(client_->session(), nullptr) << "client got no ticket from the handshake flight";
  EXPECT_EQ(engine_->PendingCiphertextBytes(), 0u);
  EXPECT_TRUE(engine_->ExportKernelTlsKeys().ok());
}

TEST_F(KtlsTest, ExportNeedsAQuiescentAesGcmSession) {
  engine_ = set_->NewEngine();
  EXPECT_EQ(engine_->ExportKernelTlsKeys().status().code(),
            absl::StatusCode::kFailedPrecondition);  // No handshake yet.
  Connect({});
  ASSERT_TRUE(engine_->WritePlaintext("unsent").ok());
  EXPECT_EQ(engine_->ExportKernelTlsKeys().status().code(), absl::StatusCode::kFailedPrecondition);

  Connect({.max_version = TLS1_2_VERSION, .cipher_list = "ECDHE-ECDSA-CHACHA20-POLY1305"});
  EXPECT_EQ(engine_->ExportKernelTlsKeys().status().code(), absl::StatusCode::kUnimplemented);
}

// Runs everywhere: whatever the kernel offers, the session gets a working path and it is
// counted. On these machines that is the userspace fallback, and the test says so.
TEST_F(KtlsTest, ProbeAndPathChoiceFallBackWhenKernelTlsIsMissing) {
  KtlsCapability capability = ProbeKernelTls();
  Connect({});
  TcpPair pair;
  TlsPathCounters counters;
  std::string why;
  TlsDataPath path = ChooseTlsDataPath(pair.server, *engine_, capability, &counters, &why);
  if (capability.available) {
    EXPECT_EQ(path, TlsDataPath::kKernelTls) << why;
    EXPECT_EQ(counters.kernel_tls_sessions, 1u);
    RecordProperty("tls_data_path", "kernel");
    return;
  }
  std::cout << "[ KTLS     ] kernel TLS " << capability.reason
            << " -> session took the userspace fallback (" << why << ")" << std::endl;
  RecordProperty("tls_data_path", "userspace");
  RecordProperty("ktls_probe", capability.reason);
  EXPECT_EQ(capability.error_number, ENOENT) << capability.reason;
  EXPECT_THAT(capability.reason, HasSubstr("unavailable: ENOENT"));
  EXPECT_EQ(path, TlsDataPath::kUserspace);
  EXPECT_EQ(TlsDataPathName(path), "userspace");
  EXPECT_EQ(counters.userspace_sessions, 1u);
  EXPECT_EQ(counters.kernel_tls_sessions, 0u);
  EXPECT_THAT(why, HasSubstr("ENOENT"));

  // Asking the kernel directly fails the same way and leaves the socket usable.
  absl::Status direct = EnableKernelTls(pair.server, *engine_);
  EXPECT_EQ(direct.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(direct.message()), HasSubstr("ENOENT"));

  // The fallback really carries the session: userspace records over the real socket.
  ASSERT_TRUE(engine_->WritePlaintext("+OK userspace path\r\n").ok());
  std::string wire = engine_->TakeCiphertext();
  SendAll(pair.server, wire);
  EXPECT_EQ(client_->DecryptFromServer(ReceiveExactly(pair.client, wire.size())),
            "+OK userspace path\r\n");
}

TEST_F(KtlsTest, KernelTlsCarriesRecordsWhenAvailable) {
  KtlsCapability capability = ProbeKernelTls();
  if (!capability.available) {
    GTEST_SKIP() << "kernel TLS " << capability.reason
                 << "; this machine takes the userspace fallback (asserted by "
                    "ProbeAndPathChoiceFallBackWhenKernelTlsIsMissing)";
  }
  Connect({});
  TcpPair pair;
  TlsPathCounters counters;
  std::string why;
  ASSERT_EQ(ChooseTlsDataPath(pair.server, *engine_, capability, &counters, &why),
            TlsDataPath::kKernelTls)
      << why;
  EXPECT_EQ(counters.kernel_tls_sessions, 1u);
  // Plain write(2) on the socket now produces TLS records the client opens.
  std::string body = "+OK kernel path\r\n";
  SendAll(pair.server, body);
  std::string wire;
  std::string got;
  for (int i = 0; i < 100 && got.size() < body.size(); ++i) {
    char buf[4096];
    ssize_t n = read(pair.client, buf, sizeof(buf));
    if (n <= 0) break;
    got += client_->DecryptFromServer(std::string_view(buf, static_cast<size_t>(n)));
  }
  EXPECT_EQ(got, body);
}

}  // namespace
}  // namespace posthaste
