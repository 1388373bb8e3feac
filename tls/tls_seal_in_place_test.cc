// TlsEngine::SealInto against a real BoringSSL client, in memory: bodies of sizes around the
// record size decrypt byte-exact over TLS 1.2 and 1.3 and every cipher the server offers; many
// records go into one send buffer; the record schedule after BeginReply; held ciphertext keeps
// its place; a KeyUpdate the client asks for mid-body, the alert after a bad record and
// close_notify all come out under the engine's own sequence numbers; and a randomised mix of
// all of these always gives the client exactly the bytes sent.
#include <openssl/rand.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tls/testing/tls_test_util.h"
#include "tls/tls_context.h"
#include "tls/tls_engine.h"

namespace posthaste {
namespace {

using ::testing::HasSubstr;

struct CipherCase {
  const char* name;
  uint16_t max_version;
  const char* cipher_list;
  size_t overhead;  // Bytes a record adds to its plaintext.
};
constexpr CipherCase kCiphers[] = {
    {"Tls13", TLS1_3_VERSION, "", 22},
    {"Tls12Aes128", TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256", 29},
    {"Tls12Aes256", TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384", 29},
    {"Tls12Chacha", TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305", 21},
};

struct Record {
  uint8_t type;
  size_t length;  // Of the record body (after the 5-byte header).
};

// Splits `wire` into records; fails the test on a malformed header or a torn record.
std::vector<Record> ParseRecords(std::string_view wire) {
  std::vector<Record> records;
  size_t pos = 0;
  while (pos < wire.size()) {
    EXPECT_GE(wire.size() - pos, 5u) << "torn record header";
    if (wire.size() - pos < 5) break;
    const auto* h = reinterpret_cast<const uint8_t*>(wire.data() + pos);
    EXPECT_EQ(h[1], 0x03);
    EXPECT_EQ(h[2], 0x03);
    const size_t length = (size_t{h[3]} << 8) | h[4];
    EXPECT_LE(length, 16384u + 256u);
    records.push_back({h[0], length});
    pos += 5 + length;
  }
  EXPECT_EQ(pos, wire.size()) << "torn record";
  return records;
}

std::string Bytes(size_t size, uint32_t seed) {
  std::string s(size, '\0');
  std::mt19937 rng(seed);
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

std::span<const uint8_t> AsSpan(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

class SealInPlaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string dir = MakeTestDir("tls_seal");
    WriteCertPair(dir, "default", MakeTestCertificate("default.test", {"default.test"}));
    TlsOptions options;
    options.cert_path = dir + "/default.crt";
    options.key_path = dir + "/default.key";
    auto set = TlsContextSet::Create(options);
    ASSERT_TRUE(set.ok()) << set.status();
    set_ = *std::move(set);
  }

  // A handshaken pair; the tickets are delivered so later output is application data only.
  void Connect(const CipherCase& c) {
    server_ = set_->NewEngine();
    client_ = std::make_unique<TestTlsClient>(
        TestTlsClient::Options{.max_version = c.max_version, .cipher_list = c.cipher_list});
    ASSERT_TRUE(client_->Handshake(*server_).ok()) << server_->status();
    ASSERT_EQ(client_->Read(*server_), "");
    ASSERT_TRUE(server_->SealsInPlace());
  }

  // Seals all of `body` through `buffer` (reused between calls, as a driver reuses its send
  // buffer), hands each full buffer to the client and returns what it decrypted. Records the
  // wire bytes of every call in *sends when given.
  std::string SealAll(std::string_view body, TlsSendBuffer& buffer,
                      std::vector<std::string>* sends = nullptr) {
    std::string received;
    size_t offset = 0;
    for (int calls = 0; offset < body.size() || calls == 0; ++calls) {
      EXPECT_LT(calls, 100000);
      if (calls >= 100000) break;
      buffer.Clear();
      auto consumed = server_->SealInto(AsSpan(body.substr(offset)), &buffer);
      EXPECT_TRUE(consumed.ok()) << consumed.status();
      if (!consumed.ok()) break;
      offset += *consumed;
      std::string wire(buffer.bytes().data(), buffer.size());
      if (sends != nullptr) sends->push_back(wire);
      received += client_->DecryptFromServer(wire);
      EXPECT_EQ(client_->client_error(), "");
      if (*consumed == 0 && buffer.empty()) break;  // Nothing moved: the test will fail below.
    }
    return received;
  }

  std::unique_ptr<TlsContextSet> set_;
  std::unique_ptr<TlsEngine> server_;
  std::unique_ptr<TestTlsClient> client_;
};

class BodySizeTest : public SealInPlaceTest,
                     public ::testing::WithParamInterface<std::tuple<CipherCase, size_t>> {};

TEST_P(BodySizeTest, DecryptsByteExactThroughFullAndTinyBuffers) {
  const auto& [cipher, size] = GetParam();
  const std::string body = Bytes(size, static_cast<uint32_t>(size));
  for (size_t capacity : {TlsEngine::kSendBufferBytes, size_t{5000}}) {
    SCOPED_TRACE(capacity);
    Connect(cipher);
    TlsSendBuffer buffer;
    buffer.Reserve(capacity);
    std::vector<std::string> sends;
    const std::string received = SealAll(body, buffer, &sends);
    ASSERT_EQ(received.size(), body.size());
    EXPECT_TRUE(received == body);
    EXPECT_EQ(server_->plaintext_bytes_encrypted(), body.size());
    size_t records = 0;
    for (const std::string& wire : sends) {
      for (const Record& r : ParseRecords(wire)) {
        EXPECT_EQ(r.type, 23);  // application_data (TLS 1.3 hides the inner type).
        EXPECT_LE(r.length, 16384 + cipher.overhead - 5);
        EXPECT_GE(r.length, cipher.overhead - 5);
        ++records;
      }
    }
    const size_t per_record = std::min<size_t>(16384, capacity - cipher.overhead);
    EXPECT_EQ(records, (size + per_record - 1) / per_record)
        << "records of 16 KiB in a full buffer, of what fits in a small one";
    if (capacity == TlsEngine::kSendBufferBytes && size > (1 << 20)) {
      // One send carries 64 full records: a mebibyte goes in one (the last 7 bytes in a second
      // where TLS 1.2 AES-GCM's larger overhead leaves no room for them).
      EXPECT_EQ(sends.size(), cipher.overhead == 29 ? 2u : 1u);
      EXPECT_EQ(ParseRecords(sends[0]).size(), cipher.overhead == 29 ? 64u : 65u);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, BodySizeTest,
                         ::testing::Combine(::testing::ValuesIn(kCiphers),
                                            ::testing::Values(size_t{0}, size_t{1}, size_t{16383},
                                                              size_t{16384}, size_t{16385},
                                                              size_t{(1 << 20) + 7})),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  std::to_string(std::get<1>(info.param));
                         });

class CipherTest : public SealInPlaceTest, public ::testing::WithParamInterface<CipherCase> {};

TEST_P(CipherTest, RecordScheduleStartsAtOneSegmentAndDoublesToSixteenKib) {
  const CipherCase& c = GetParam();
  Connect(c);
  const std::string body = Bytes(100000, 7);
  TlsSendBuffer buffer;
  auto plaintext_sizes = [&](std::string_view wire) {
    std::vector<size_t> sizes;
    for (const Record& r : ParseRecords(wire)) sizes.push_back(r.length - (c.overhead - 5));
    return sizes;
  };
  // Without BeginReply: bulk records.
  ASSERT_TRUE(server_->SealInto(body.substr(0, 40000), &buffer).ok());
  EXPECT_THAT(plaintext_sizes(std::string(buffer.bytes().data(), buffer.size())),
              ::testing::ElementsAre(16384, 16384, 40000 - 2 * 16384));
  client_->DecryptFromServer(std::string(buffer.bytes().data(), buffer.size()));

  // A reply on a path of 1448-byte segments: one segment, one, two, four, eight, then 16 KiB.
  server_->SetPathSegmentBytes(1448);
  server_->BeginReply();
  buffer.Clear();
  ASSERT_EQ(*server_->SealInto(body, &buffer), body.size());
  const std::string wire(buffer.bytes().data(), buffer.size());
  const size_t s = 1448 - c.overhead;
  std::vector<size_t> expected = {s, s, 2 * s, 4 * s, 8 * s};
  size_t rest = body.size() - 16 * s;
  while (rest > 0) {
    expected.push_back(std::min<size_t>(rest, 16384));
    rest -= expected.back();
  }
  EXPECT_EQ(plaintext_sizes(wire), expected);
  EXPECT_EQ(client_->DecryptFromServer(wire), body);

  // The next reply ramps again; a reply smaller than a segment is one record.
  server_->BeginReply();
  buffer.Clear();
  ASSERT_EQ(*server_->SealInto("+OK 2 messages\r\n", &buffer), 16u);
  EXPECT_THAT(plaintext_sizes(std::string(buffer.bytes().data(), buffer.size())),
              ::testing::ElementsAre(16));
  EXPECT_EQ(server_->NextRecordPlaintextBytes(), s);
}

TEST_P(CipherTest, HeldCiphertextGoesFirstEvenThroughATinyBuffer) {
  Connect(GetParam());
  ASSERT_TRUE(server_->WritePlaintext("+OK 20000 octets\r\n").ok());
  const std::string body = Bytes(20000, 3);
  std::string wire;
  uint8_t tiny[7];
  // The held record comes out 7 bytes at a time; no plaintext is taken meanwhile.
  for (int i = 0; i < 1000 && server_->PendingCiphertextBytes() > 0; ++i) {
    auto sealed = server_->SealInto(AsSpan(body), tiny);
    ASSERT_TRUE(sealed.ok());
    EXPECT_EQ(sealed->plaintext_bytes, 0u);
    wire.append(reinterpret_cast<const char*>(tiny), sealed->ciphertext_bytes);
  }
  TlsSendBuffer buffer;
  std::string received = client_->DecryptFromServer(wire);
  received += SealAll(body, buffer);
  EXPECT_EQ(received, "+OK 20000 octets\r\n" + body);
  EXPECT_EQ(client_->client_error(), "");
}

TEST_P(CipherTest, AlertAfterABadRecordIsSealedInSequence) {
  Connect(GetParam());
  TlsSendBuffer buffer;
  const std::string body = Bytes(50000, 5);
  ASSERT_EQ(SealAll(body, buffer), body);
  // A client record with one byte flipped: BoringSSL answers with a bad_record_mac alert,
  // which the engine must seal again under its own sequence number.
  ASSERT_EQ(SSL_write(client_->ssl(), "LIST\r\n", 6), 6);
  BIO* wbio = SSL_get_wbio(client_->ssl());
  std::string record(BIO_pending(wbio), '\0');
  ASSERT_EQ(BIO_read(wbio, record.data(), record.size()), static_cast<int>(record.size()));
  record[record.size() - 3] ^= 0x01;
  (void)server_->FeedCiphertext(record);
  std::string out;
  auto read = server_->ReadPlaintext(&out);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(server_->error_kind(), TlsErrorKind::kRecord);
  ASSERT_GT(server_->PendingCiphertextBytes(), 0u);
  client_->DecryptFromServer(server_->TakeCiphertext());
  // The client read the alert (not a record it could not open).
  EXPECT_THAT(client_->client_error(), HasSubstr("ALERT_BAD_RECORD_MAC"));
}

TEST_P(CipherTest, CloseNotifyFollowsSealedRecords) {
  Connect(GetParam());
  TlsSendBuffer buffer;
  ASSERT_EQ(*server_->SealInto("+OK bye\r\n", &buffer), 9u);
  ASSERT_TRUE(server_->Close().ok());
  EXPECT_EQ(server_->SealInto("late", &buffer).status().code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_EQ(*server_->SealInto(std::span<const uint8_t>(), &buffer), 0u);  // Takes the alert.
  EXPECT_EQ(client_->DecryptFromServer(std::string(buffer.bytes().data(), buffer.size())),
            "+OK bye\r\n");
  EXPECT_TRUE(client_->ReceivedCloseNotify());
  EXPECT_EQ(client_->client_error(), "");
}

INSTANTIATE_TEST_SUITE_P(Ciphers, CipherTest, ::testing::ValuesIn(kCiphers),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(SealInPlaceTest, KeyUpdateAskedForMidBodyIsAnsweredAndFollowed) {
  Connect(kCiphers[0]);
  const std::string body = Bytes(300000, 11);
  TlsSendBuffer buffer;
  std::string received = SealAll(body.substr(0, 100000), buffer);
  for (int round = 0; round < 3; ++round) {
    // The client updates its keys and asks the server to update its own (RFC 8446 4.6.3).
    ASSERT_EQ(SSL_key_update(client_->ssl(), SSL_KEY_UPDATE_REQUESTED), 1);
    ASSERT_TRUE(client_->Write(*server_, "NOOP\r\n").ok());
    std::string commands;
    ASSERT_TRUE(server_->ReadPlaintext(&commands).ok()) << server_->status();
    EXPECT_EQ(commands, "NOOP\r\n");
    // The server's answering KeyUpdate is held; it leaves ahead of the next records, which are
    // sealed under the next key from sequence number 0.
    EXPECT_GT(server_->PendingCiphertextBytes(), 0u);
    received += SealAll(body.substr(100000 + round * 50000, 50000), buffer);
    EXPECT_EQ(client_->client_error(), "");
  }
  received += SealAll(body.substr(250000), buffer);
  EXPECT_TRUE(received == body);
  auto keys = server_->ExportKernelTlsKeys();
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_LT(keys->tx.rec_seq[7], 16) << "the sequence restarted at the last KeyUpdate";
  // Later traffic both ways still works.
  ASSERT_TRUE(client_->Write(*server_, "QUIT\r\n").ok());
  std::string commands;
  ASSERT_TRUE(server_->ReadPlaintext(&commands).ok());
  EXPECT_EQ(commands, "QUIT\r\n");
}

// Random interleavings of everything a driver does, for every cipher: replies, bodies through
// buffers of random sizes, held output, segment sizes, client data and (TLS 1.3) client
// KeyUpdates. The client must always decrypt exactly the bytes sent, in order.
TEST_F(SealInPlaceTest, RandomDriverSequencesRoundTrip) {
  const std::string pool = Bytes(300000, 99);
  for (const CipherCase& c : kCiphers) {
    for (uint32_t seed = 1; seed <= 12; ++seed) {
      SCOPED_TRACE(testing::Message() << c.name << " seed " << seed);
      Connect(c);
      std::mt19937 rng(seed);
      std::string sent;
      std::string received;
      TlsSendBuffer buffer;
      for (int step = 0; step < 40; ++step) {
        const size_t offset = rng() % 100000;
        const size_t length = rng() % 4 == 0 ? rng() % 200000 : rng() % 3000;
        std::string_view piece = std::string_view(pool).substr(offset, length);
        switch (rng() % 7) {
          case 0:
            ASSERT_TRUE(server_->WritePlaintext(piece.substr(0, 2000)).ok());
            sent += piece.substr(0, 2000);
            break;
          case 1:
            server_->BeginReply();
            break;
          case 2:
            server_->SetPathSegmentBytes(rng() % 2 ? 0 : 200 + rng() % 9000);
            break;
          case 3:
            if (c.max_version == TLS1_3_VERSION) {
              ASSERT_EQ(SSL_key_update(client_->ssl(), rng() % 2 ? SSL_KEY_UPDATE_REQUESTED
                                                                 : SSL_KEY_UPDATE_NOT_REQUESTED),
                        1);
            }
            [[fallthrough]];
          case 4: {
            ASSERT_TRUE(client_->Write(*server_, "DELE 1\r\n").ok());
            std::string commands;
            ASSERT_TRUE(server_->ReadPlaintext(&commands).ok()) << server_->status();
            EXPECT_EQ(commands, "DELE 1\r\n");
            break;
          }
          default: {
            buffer.Clear();
            buffer.Release();
            buffer.Reserve(rng() % 2 ? TlsEngine::kSendBufferBytes : 100 + rng() % 40000);
            received += SealAll(piece, buffer);
            sent += piece;
            break;
          }
        }
        ASSERT_EQ(client_->client_error(), "");
      }
      received += client_->DecryptFromServer(server_->TakeCiphertext());
      ASSERT_EQ(client_->client_error(), "");
      ASSERT_EQ(received.size(), sent.size());
      ASSERT_TRUE(received == sent);
    }
  }
}

TEST(TlsSendBufferTest, ReusesItsMemoryAndReleasesIt) {
  TlsSendBuffer buffer;
  EXPECT_EQ(buffer.capacity(), 0u);
  buffer.Reserve(100);
  const uint8_t* memory = buffer.free_space().data();
  buffer.Commit(60);
  EXPECT_EQ(buffer.size(), 60u);
  EXPECT_EQ(buffer.free_space().size(), 40u);
  buffer.Clear();
  buffer.Reserve(50);  // Enough already: the same memory.
  EXPECT_EQ(buffer.free_space().data(), memory);
  buffer.Release();
  EXPECT_EQ(buffer.capacity(), 0u);
  EXPECT_TRUE(buffer.free_space().empty());
}

}  // namespace
}  // namespace posthaste
