// TlsEngine against a real BoringSSL client, in memory: versions, ciphers, resumption across
// ticket key rotation, SNI, garbage input, large transfers through EncryptFrom, close_notify.
#include "tls/tls_engine.h"

#include <openssl/rand.h>
#include <sys/stat.h>

#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tls/testing/tls_test_util.h"
#include "tls/tls_context.h"

namespace posthaste {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

class TlsEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTestDir("tls_engine");
    cert_dir_ = dir_ + "/certs";
    ASSERT_EQ(mkdir(cert_dir_.c_str(), 0700), 0);
    TestCertificate def = MakeTestCertificate("default.test", {"default.test"});
    WriteCertPair(dir_, "default", def);
    WriteCertPair(cert_dir_, "a.example.com",
                  MakeTestCertificate("a.example.com", {"a.example.com"}));
    WriteCertPair(cert_dir_, "_.wild.example.com",
                  MakeTestCertificate("wild", {"*.wild.example.com"}));
    TlsOptions options;
    options.cert_path = dir_ + "/default.crt";
    options.key_path = dir_ + "/default.key";
    options.cert_dir = cert_dir_;
    auto set = TlsContextSet::Create(options);
    ASSERT_TRUE(set.ok()) << set.status();
    set_ = *std::move(set);
  }

  std::string dir_;
  std::string cert_dir_;
  std::unique_ptr<TlsContextSet> set_;
};

TEST_F(TlsEngineTest, Tls13NegotiatesAndCarriesData) {
  auto server = set_->NewEngine();
  TestTlsClient client({});
  ASSERT_TRUE(client.Handshake(*server).ok()) << client.Handshake(*server);
  EXPECT_EQ(server->version(), TLS1_3_VERSION);
  EXPECT_EQ(server->version_name(), "TLSv1.3");
  EXPECT_TRUE(server->cipher_name() == "TLS_AES_128_GCM_SHA256" ||
              server->cipher_name() == "TLS_CHACHA20_POLY1305_SHA256")
      << server->cipher_name();
  EXPECT_FALSE(server->resumed());

  ASSERT_TRUE(client.Write(*server, "USER alice\r\n").ok());
  std::string got;
  ASSERT_TRUE(server->ReadPlaintext(&got).ok());
  EXPECT_EQ(got, "USER alice\r\n");
  ASSERT_TRUE(server->WritePlaintext("+OK\r\n").ok());
  EXPECT_EQ(client.Read(*server), "+OK\r\n");
  EXPECT_EQ(server->plaintext_bytes_encrypted(), 5u);
}

// A connection keeps its receive buffer for its lifetime: reading a command must grow it by
// the command, not by a record's worth of space (it used to hold 32 KiB per connection), and
// a full record still arrives whole after it.
TEST_F(TlsEngineTest, ReadPlaintextGrowsTheBufferOnlyByWhatCame) {
  auto server = set_->NewEngine();
  TestTlsClient client({});
  ASSERT_TRUE(client.Handshake(*server).ok());
  ASSERT_TRUE(client.Write(*server, "STAT\r\n").ok());
  std::string received;
  ASSERT_TRUE(server->ReadPlaintext(&received).ok());
  EXPECT_EQ(received, "STAT\r\n");
  EXPECT_LT(received.capacity(), 1024u);

  const std::string record(TlsEngine::kRecordPlaintextBytes, 'u');
  ASSERT_TRUE(client.Write(*server, record + "QUIT\r\n").ok());
  received.clear();
  ASSERT_TRUE(server->ReadPlaintext(&received).ok());
  EXPECT_EQ(received, record + "QUIT\r\n");
}

TEST_F(TlsEngineTest, Tls12NegotiatesAeadOnly) {
  for (const char* cipher : {"", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                             "ECDHE-ECDSA-CHACHA20-POLY1305"}) {
    SCOPED_TRACE(cipher);
    auto server = set_->NewEngine();
    TestTlsClient client({.max_version = TLS1_2_VERSION, .cipher_list = cipher});
    ASSERT_TRUE(client.Handshake(*server).ok()) << server->status();
    EXPECT_EQ(server->version(), TLS1_2_VERSION);
    EXPECT_TRUE((server->cipher_name().find("_GCM_") != std::string_view::npos) ||
                (server->cipher_name().find("CHACHA20_POLY1305") != std::string_view::npos))
        << server->cipher_name();
    EXPECT_THAT(std::string(server->cipher_name()), HasSubstr("ECDHE"));
    ASSERT_TRUE(server->WritePlaintext("+OK ready\r\n").ok());
    EXPECT_EQ(client.Read(*server), "+OK ready\r\n");
  }
}

TEST_F(TlsEngineTest, OldVersionsRefused) {
  for (uint16_t version : {TLS1_VERSION, TLS1_1_VERSION}) {
    auto server = set_->NewEngine();
    TestTlsClient client({.min_version = TLS1_VERSION, .max_version = version});
    absl::Status status = client.Handshake(*server);
    EXPECT_FALSE(status.ok());
    ASSERT_TRUE(server->Failed());
    EXPECT_EQ(server->status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(server->error_kind(), TlsErrorKind::kHandshake);
    EXPECT_THAT(std::string(server->status().message()), HasSubstr("UNSUPPORTED_PROTOCOL"));
    EXPECT_FALSE(client.handshake_done());
  }
}

TEST_F(TlsEngineTest, NonAeadCipherRefused) {
  auto server = set_->NewEngine();
  TestTlsClient client({.max_version = TLS1_2_VERSION,
                        .cipher_list = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:"
                                       "ECDHE-RSA-AES128-SHA:AES128-SHA:AES128-GCM-SHA256"});
  EXPECT_FALSE(client.Handshake(*server).ok());
  ASSERT_TRUE(server->Failed());
  EXPECT_THAT(std::string(server->status().message()), HasSubstr("NO_SHARED_CIPHER"));
  // The failure alert is queued for the driver to send.
  EXPECT_FALSE(client.handshake_done());
}

// A session from a first connection; resumes while its ticket key is current or previous.
class ResumptionTest : public TlsEngineTest, public ::testing::WithParamInterface<uint16_t> {
 protected:
  bssl::UniquePtr<SSL_SESSION> FirstSession() {
    auto server = set_->NewEngine();
    TestTlsClient client({.max_version = GetParam()});
    EXPECT_TRUE(client.Handshake(*server).ok());
    EXPECT_TRUE(server->WritePlaintext("+OK\r\n").ok());  // TLS 1.3 tickets come with it.
    EXPECT_EQ(client.Read(*server), "+OK\r\n");
    SSL_SESSION* session =
        client.session() != nullptr ? client.session() : SSL_get_session(client.ssl());
    SSL_SESSION_up_ref(session);
    return bssl::UniquePtr<SSL_SESSION>(session);
  }
  bool Resumes(SSL_SESSION* session) {
    auto server = set_->NewEngine();
    TestTlsClient client({.max_version = GetParam(), .session = session});
    EXPECT_TRUE(client.Handshake(*server).ok()) << server->status();
    EXPECT_TRUE(server->WritePlaintext("+OK\r\n").ok());
    EXPECT_EQ(client.Read(*server), "+OK\r\n");
    EXPECT_EQ(server->resumed(), SSL_session_reused(client.ssl()) == 1);
    return server->resumed();
  }
};

TEST_P(ResumptionTest, TicketSurvivesOneRotationNotTwo) {
  bssl::UniquePtr<SSL_SESSION> session = FirstSession();
  ASSERT_NE(session, nullptr);
  EXPECT_TRUE(Resumes(session.get()));
  set_->RotateTicketKeys();
  EXPECT_TRUE(Resumes(session.get())) << "previous ticket key must still decrypt";
  set_->RotateTicketKeys();
  EXPECT_FALSE(Resumes(session.get())) << "a key two rotations old must be gone";
}

TEST_P(ResumptionTest, TicketFromOneTenantDoesNotResumeAnother) {
  bssl::UniquePtr<SSL_SESSION> session;
  {
    auto server = set_->NewEngine();
    TestTlsClient client({.server_name = "a.example.com", .max_version = GetParam()});
    ASSERT_TRUE(client.Handshake(*server).ok());
    ASSERT_TRUE(server->WritePlaintext("+OK\r\n").ok());
    client.Read(*server);
    SSL_SESSION* s = client.session() != nullptr ? client.session() : SSL_get_session(client.ssl());
    SSL_SESSION_up_ref(s);
    session.reset(s);
  }
  auto server = set_->NewEngine();
  TestTlsClient client(
      {.server_name = "x.wild.example.com", .max_version = GetParam(), .session = session.get()});
  ASSERT_TRUE(client.Handshake(*server).ok());
  EXPECT_FALSE(server->resumed());
  EXPECT_EQ(server->certificate_name(), "*.wild.example.com");
}

INSTANTIATE_TEST_SUITE_P(Versions, ResumptionTest,
                         ::testing::Values(TLS1_2_VERSION, TLS1_3_VERSION), [](const auto& info) {
                           return info.param == TLS1_3_VERSION ? "Tls13" : "Tls12";
                         });

TEST_F(TlsEngineTest, SniPicksTenantCertificate) {
  struct Case {
    std::string sni;
    std::string cert_name;
    std::string dns;
  };
  for (const Case& c : std::vector<Case>{
           {"a.example.com", "a.example.com", "a.example.com"},
           {"A.Example.COM", "a.example.com", "a.example.com"},
           {"mail.wild.example.com", "*.wild.example.com", "*.wild.example.com"},
           {"a.b.wild.example.com", "", "default.test"},  // Wildcards are one label deep.
           {"wild.example.com", "", "default.test"},
           {"unknown.example.org", "", "default.test"},
           {"", "", "default.test"},
       }) {
    SCOPED_TRACE(c.sni);
    auto server = set_->NewEngine();
    TestTlsClient client({.server_name = c.sni});
    ASSERT_TRUE(client.Handshake(*server).ok()) << server->status();
    EXPECT_EQ(server->certificate_name(), c.cert_name);
    EXPECT_EQ(server->server_name(), c.sni);
    EXPECT_THAT(client.PeerDnsNames(), Contains(c.dns));
  }
}

TEST_F(TlsEngineTest, GarbageBeforeHandshakeIsAnErrorNotACrash) {
  for (std::string garbage :
       {std::string("GET / HTTP/1.0\r\n\r\n"), std::string("\x16\x03\x01\xff\xff", 5),
        std::string(1000, '\0'), std::string("\x15\x03\x03\x00\x02\x02\x28", 7)}) {
    auto server = set_->NewEngine();
    auto accepted = server->FeedCiphertext(garbage);
    std::string out;
    auto read = server->ReadPlaintext(&out);
    EXPECT_FALSE(accepted.ok() && read.ok() && !server->Failed());
    EXPECT_TRUE(server->Failed());
    EXPECT_EQ(server->error_kind(), TlsErrorKind::kHandshake);
    // Sticky: later calls give the same error.
    EXPECT_EQ(server->FeedCiphertext("more").status(), server->status());
    EXPECT_FALSE(server->WritePlaintext("x").ok());
  }
}

TEST_F(TlsEngineTest, RandomCiphertextNeverCrashes) {
  for (int i = 0; i < 200; ++i) {
    auto server = set_->NewEngine();
    std::string bytes(1 + i * 37 % 3000, '\0');
    RAND_bytes(reinterpret_cast<uint8_t*>(bytes.data()), bytes.size());
    if (i % 2 == 0) bytes[0] = 0x16;  // Looks like a handshake record.
    (void)server->FeedCiphertext(bytes);
    std::string out;
    (void)server->ReadPlaintext(&out);
    EXPECT_TRUE(out.empty());
  }
}

TEST_F(TlsEngineTest, TamperedRecordAfterHandshakeIsDataLoss) {
  auto server = set_->NewEngine();
  auto bystander = set_->NewEngine();
  TestTlsClient client({});
  TestTlsClient other({});
  ASSERT_TRUE(client.Handshake(*server).ok());
  ASSERT_TRUE(other.Handshake(*bystander).ok());
  ASSERT_TRUE(server->WritePlaintext("+OK\r\n").ok());
  client.Read(*server);  // Takes the tickets and the reply.
  // Seal a record on the client, flip one ciphertext byte, feed it raw.
  ASSERT_EQ(SSL_write(client.ssl(), "LIST\r\n", 6), 6);
  BIO* wbio = SSL_get_wbio(client.ssl());
  std::string record(BIO_pending(wbio), '\0');
  ASSERT_EQ(BIO_read(wbio, record.data(), record.size()), static_cast<int>(record.size()));
  record[record.size() - 3] ^= 0x01;
  (void)server->FeedCiphertext(record);
  std::string out;
  auto read = server->ReadPlaintext(&out);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(server->error_kind(), TlsErrorKind::kRecord);
  EXPECT_THAT(std::string(read.status().message()), HasSubstr("BAD_RECORD_MAC"));
  // The other connection is untouched.
  ASSERT_TRUE(other.Write(*bystander, "STAT\r\n").ok());
  std::string got;
  ASSERT_TRUE(bystander->ReadPlaintext(&got).ok());
  EXPECT_EQ(got, "STAT\r\n");
}

// Checks every record in `ciphertext` is a TLS application-data-or-alert record no longer than
// one full-size record.
void ExpectRecordSized(std::string_view ciphertext) {
  size_t pos = 0;
  while (pos + 5 <= ciphertext.size()) {
    size_t len = (static_cast<uint8_t>(ciphertext[pos + 3]) << 8) |
                 static_cast<uint8_t>(ciphertext[pos + 4]);
    ASSERT_LE(len, 16384u + 256u);
    pos += 5 + len;
  }
  EXPECT_EQ(pos, ciphertext.size());
}

class LargeTransferTest : public TlsEngineTest, public ::testing::WithParamInterface<uint16_t> {};

TEST_P(LargeTransferTest, TenMebibytesRoundTripThroughEncryptFrom) {
  auto server = set_->NewEngine();
  TestTlsClient client({.max_version = GetParam()});
  ASSERT_TRUE(client.Handshake(*server).ok());
  std::string body(10 << 20, '\0');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>((i * 131 + i / 4099) & 0xff);
  std::span<const uint8_t> stored(reinterpret_cast<const uint8_t*>(body.data()), body.size());
  std::string received;
  size_t offset = 0;
  int calls = 0;
  while (offset < stored.size()) {
    ASSERT_LT(++calls, 10000);
    auto consumed = server->EncryptFrom(stored.subspan(offset));
    ASSERT_TRUE(consumed.ok()) << consumed.status();
    ASSERT_GT(*consumed, 0u);
    offset += *consumed;
    EXPECT_LE(server->PendingCiphertextBytes(), TlsEngine::kCiphertextOutMax + 16384 + 512);
    std::string ciphertext = server->TakeCiphertext();
    ExpectRecordSized(ciphertext);
    received += client.DecryptFromServer(ciphertext);
    ASSERT_EQ(client.client_error(), "");
  }
  EXPECT_GT(calls, 1) << "output must be bounded per call";
  EXPECT_EQ(server->plaintext_bytes_encrypted(), body.size());
  ASSERT_EQ(received.size(), body.size());
  EXPECT_TRUE(received == body);
}

INSTANTIATE_TEST_SUITE_P(Versions, LargeTransferTest,
                         ::testing::Values(TLS1_2_VERSION, TLS1_3_VERSION), [](const auto& info) {
                           return info.param == TLS1_3_VERSION ? "Tls13" : "Tls12";
                         });

TEST_F(TlsEngineTest, CloseNotifyBothWays) {
  auto server = set_->NewEngine();
  TestTlsClient client({});
  ASSERT_TRUE(client.Handshake(*server).ok());
  ASSERT_TRUE(server->WritePlaintext("+OK bye\r\n").ok());
  ASSERT_TRUE(server->Close().ok());
  ASSERT_TRUE(server->Close().ok());  // Idempotent.
  EXPECT_FALSE(server->WritePlaintext("late").ok());
  EXPECT_EQ(client.DecryptFromServer(server->TakeCiphertext()), "+OK bye\r\n");
  EXPECT_TRUE(client.ReceivedCloseNotify());

  auto server2 = set_->NewEngine();
  TestTlsClient client2({});
  ASSERT_TRUE(client2.Handshake(*server2).ok());
  client2.Shutdown(*server2);
  std::string out;
  auto read = server2->ReadPlaintext(&out);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, 0u);
  EXPECT_TRUE(server2->PeerClosed());
}

TEST_F(TlsEngineTest, FeedIsBoundedUntilPlaintextIsRead) {
  auto server = set_->NewEngine();
  TestTlsClient client({});
  ASSERT_TRUE(client.Handshake(*server).ok());
  std::string big(200000, 'x');
  ASSERT_EQ(SSL_write(client.ssl(), big.data(), big.size()), static_cast<int>(big.size()));
  BIO* wbio = SSL_get_wbio(client.ssl());
  std::string wire(BIO_pending(wbio), '\0');
  ASSERT_EQ(BIO_read(wbio, wire.data(), wire.size()), static_cast<int>(wire.size()));
  std::string got;
  size_t fed = 0;
  int rounds = 0;
  while (fed < wire.size()) {
    ASSERT_LT(++rounds, 1000);
    auto accepted = server->FeedCiphertext(std::string_view(wire).substr(fed));
    ASSERT_TRUE(accepted.ok());
    EXPECT_LE(*accepted, TlsEngine::kCiphertextInMax);
    fed += *accepted;
    ASSERT_TRUE(server->ReadPlaintext(&got).ok());
  }
  EXPECT_GT(rounds, 1);
  EXPECT_EQ(got, big);
}

TEST_F(TlsEngineTest, CountersTallyEachSessionOutcome) {
  TlsCounters counters;
  auto ok = set_->NewEngine();
  TestTlsClient client({});
  ASSERT_TRUE(client.Handshake(*ok).ok());
  ASSERT_TRUE(ok->WritePlaintext("+OK\r\n").ok());
  CountTlsSession(*ok, &counters);
  auto bad = set_->NewEngine();
  (void)bad->FeedCiphertext("GET / HTTP/1.0\r\n\r\n");
  CountTlsSession(*bad, &counters);
  EXPECT_EQ(counters.sessions, 2u);
  EXPECT_EQ(counters.handshakes_completed, 1u);
  EXPECT_EQ(counters.handshake_errors, 1u);
  EXPECT_EQ(counters.record_errors, 0u);
  EXPECT_EQ(counters.plaintext_bytes_encrypted, 5u);
}

TEST_F(TlsEngineTest, ShardContextsFollowReloads) {
  TlsShardContexts shard(*set_);
  auto before = shard.NewEngine();
  TestTlsClient c1({.server_name = "a.example.com"});
  ASSERT_TRUE(c1.Handshake(*before).ok());
  EXPECT_EQ(c1.PeerCommonName(), "a.example.com");
  WriteCertPair(cert_dir_, "a.example.com", MakeTestCertificate("a-v2", {"a.example.com"}));
  ASSERT_TRUE(set_->Reload().ok());
  auto after = shard.NewEngine();
  TestTlsClient c2({.server_name = "a.example.com"});
  ASSERT_TRUE(c2.Handshake(*after).ok());
  EXPECT_EQ(c2.PeerCommonName(), "a-v2");
  EXPECT_EQ(shard.snapshot().generation, set_->Current()->generation);
}

TEST_F(TlsEngineTest, SwapCiphertextRecyclesTheBuffer) {
  auto server = set_->NewEngine();
  TestTlsClient client({});
  ASSERT_TRUE(client.Handshake(*server).ok());
  std::string buffer;
  buffer.reserve(1 << 16);
  ASSERT_TRUE(server->WritePlaintext("+OK\r\n").ok());
  server->SwapCiphertext(&buffer);
  EXPECT_EQ(client.DecryptFromServer(buffer), "+OK\r\n");
  EXPECT_EQ(server->PendingCiphertextBytes(), 0u);
}

}  // namespace
}  // namespace posthaste

namespace posthaste {
namespace {

// A tenant with NAME.client_ca.pem asks for client certificates without requiring them:
// a certificate its CA issued yields an identity (email SAN, else CN); a client without one,
// or with one from another CA, still completes the handshake with no identity; a tenant
// without a client CA never asks.
class ClientCertificateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTestDir("tls_client_ca");
    cert_dir_ = dir_ + "/certs";
    ASSERT_EQ(mkdir(cert_dir_.c_str(), 0700), 0);
    WriteCertPair(dir_, "default", MakeTestCertificate("default.test", {"default.test"}));
    WriteCertPair(cert_dir_, "mail.ca.test", MakeTestCertificate("mail.ca.test", {"mail.ca.test"}));
    WriteCertPair(cert_dir_, "mail.plain.test",
                  MakeTestCertificate("mail.plain.test", {"mail.plain.test"}));
    // Self-signed client certificates: each is its own CA.
    with_email_ = MakeTestCertificate("Ann Example", {}, {"ann@ca.test"});
    with_cn_ = MakeTestCertificate("bob@ca.test", {});
    stranger_ = MakeTestCertificate("eve@ca.test", {});
    WriteFileAtomically(cert_dir_ + "/mail.ca.test.client_ca.pem",
                        with_email_.cert_pem + with_cn_.cert_pem);
    TlsOptions options;
    options.cert_path = dir_ + "/default.crt";
    options.key_path = dir_ + "/default.key";
    options.cert_dir = cert_dir_;
    auto set = TlsContextSet::Create(options);
    ASSERT_TRUE(set.ok()) << set.status();
    set_ = *std::move(set);
  }

  // The server's identity for a client of `server_name` presenting `cert` (may be null).
  std::string IdentityFor(const std::string& server_name, const TestCertificate* cert,
                          uint16_t max_version = TLS1_3_VERSION) {
    auto server = set_->NewEngine();
    TestTlsClient client(
        {.server_name = server_name, .max_version = max_version, .client_certificate = cert});
    absl::Status handshake = client.Handshake(*server);
    EXPECT_TRUE(handshake.ok()) << handshake << " " << server->status();
    return std::string(server->client_certificate_identity());
  }

  std::string dir_;
  std::string cert_dir_;
  TestCertificate with_email_;
  TestCertificate with_cn_;
  TestCertificate stranger_;
  std::unique_ptr<TlsContextSet> set_;
};

TEST_F(ClientCertificateTest, IdentityOnlyFromTheTenantsCa) {
  for (uint16_t version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    EXPECT_EQ(IdentityFor("mail.ca.test", &with_email_, version), "ann@ca.test");
    EXPECT_EQ(IdentityFor("mail.ca.test", &with_cn_, version), "bob@ca.test");
    EXPECT_EQ(IdentityFor("mail.ca.test", &stranger_, version), "");
    EXPECT_EQ(IdentityFor("mail.ca.test", nullptr, version), "");
    // Names without a client CA never ask, so a certificate is not even sent.
    EXPECT_EQ(IdentityFor("mail.plain.test", &with_email_, version), "");
    EXPECT_EQ(IdentityFor("", &with_email_, version), "");
  }
}

TEST_F(ClientCertificateTest, CaFileChangesAreReloaded) {
  WriteFileAtomically(cert_dir_ + "/mail.ca.test.client_ca.pem", stranger_.cert_pem);
  EXPECT_TRUE(set_->NeedsReload());
  ASSERT_TRUE(set_->Reload().ok());
  EXPECT_EQ(IdentityFor("mail.ca.test", &with_email_), "");
  EXPECT_EQ(IdentityFor("mail.ca.test", &stranger_), "eve@ca.test");
  ASSERT_EQ(unlink((cert_dir_ + "/mail.ca.test.client_ca.pem").c_str()), 0);
  EXPECT_TRUE(set_->NeedsReload());
  ASSERT_TRUE(set_->Reload().ok());
  EXPECT_EQ(IdentityFor("mail.ca.test", &stranger_), "");
  // A broken CA file keeps the name's previous entry in service.
  WriteFileAtomically(cert_dir_ + "/mail.ca.test.client_ca.pem", "not a certificate\n");
  EXPECT_FALSE(set_->Reload().ok());
  EXPECT_EQ(IdentityFor("mail.ca.test", &stranger_), "");
}

}  // namespace
}  // namespace posthaste
