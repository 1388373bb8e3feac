#include "server/pop3_import/pop3_import.h"

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "server/pop3_import/testing/fake_pop3_source.h"
#include "storage/testing/store_test_base.h"
#include "tls/testing/tls_test_util.h"

namespace posthaste::server::pop3_import {
namespace {

using testing::FakeBehavior;
using testing::FakeMessage;
using testing::FakePop3Source;
using testing::FakeSourceOptions;

constexpr char kAddress[] = "mover@import.test";

std::vector<FakeMessage> SomeMessages() {
  return {
      {"uidl-0001", "Subject: one\r\n\r\nhello\r\n"},
      {"Z9#custom", "Subject: dots\r\n\r\n..leading dot\r\n...\r\n.. \r\n"},
      {"3", "Subject: empty body\r\n\r\n"},
      {"x.y.z", "Subject: long\r\n\r\n" + std::string(5000, 'L') + "\r\n"},
      {"last!", "Subject: from\r\n\r\nFrom here\r\n>From there\r\n"},
  };
}

class Pop3ImportTest : public storage::testing::StoreTestBase {
 protected:
  void SetUp() override {
    StoreTestBase::SetUp();
    ASSERT_TRUE(store_->CreateAccount(kAddress, "{PLAIN}x").ok());
  }

  Pop3ImportOptions Options(const FakePop3Source& source) {
    Pop3ImportOptions options;
    options.source.host = "127.0.0.1";
    options.source.port = source.port();
    options.source.tls = SourceTls::kNone;
    options.source.io_timeout = absl::Seconds(5);
    options.password = "source secret";
    return options;
  }

  absl::StatusOr<Pop3ImportResult> Import(const Pop3ImportOptions& options) {
    return ImportPop3(*store_, kAddress, options, nullptr);
  }

  // UIDL and stored bytes of every message, in order.
  std::vector<FakeMessage> Stored() {
    std::vector<FakeMessage> out;
    auto snapshot = MustOpen(kAddress);
    for (size_t i = 0; snapshot != nullptr && i < snapshot->size(); ++i) {
      auto bytes = store_->ReadMessageForTest(*snapshot, i);
      EXPECT_TRUE(bytes.ok()) << bytes.status();
      out.push_back({std::string(snapshot->uidl(i)), bytes.ok() ? *bytes : ""});
    }
    return out;
  }

  static void ExpectSame(const std::vector<FakeMessage>& got,
                         const std::vector<FakeMessage>& want) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].uidl, want[i].uidl);
      EXPECT_EQ(got[i].wire, want[i].wire) << want[i].uidl;
    }
  }
};

TEST_F(Pop3ImportTest, KeepsUidlsAndBytesAndRerunAddsNothing) {
  FakePop3Source source({SomeMessages()});
  std::vector<Pop3ImportProgress> reports;
  auto result = ImportPop3(*store_, kAddress, Options(source),
                           [&](const Pop3ImportProgress& p) { reports.push_back(p); });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->total, 5u);
  EXPECT_EQ(result->imported, 5u);
  EXPECT_EQ(result->skipped, 0u);
  ExpectSame(Stored(), SomeMessages());
  ASSERT_FALSE(reports.empty());
  EXPECT_EQ(reports.back().done, 5u);
  EXPECT_EQ(reports.back().total, 5u);
  EXPECT_EQ(reports.back().octets, result->octets);
  EXPECT_EQ(source.logins(), std::vector<std::string>{"mover"});

  auto again = Import(Options(source));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->imported, 0u);
  EXPECT_EQ(again->skipped, 5u);
  EXPECT_EQ(source.retr_count(), 5u);  // the rerun fetched nothing
  EXPECT_EQ(source.dele_count(), 0u);
  ExpectSame(Stored(), SomeMessages());
}

TEST_F(Pop3ImportTest, ResumesWhereAnEarlierRunStopped) {
  FakePop3Source source({SomeMessages()});
  // A first run cut after two messages (as kill -9 after a batch leaves it).
  storage::DeliverOptions first;
  first.uidl = "uidl-0001";
  MustDeliver(kAddress, "Subject: one\r\n\r\nhello\r\n", first);
  first.uidl = "Z9#custom";
  MustDeliver(kAddress, "Subject: dots\r\n\r\n.leading dot\r\n..\r\n. \r\n", first);
  auto result = Import(Options(source));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->imported, 3u);
  EXPECT_EQ(result->skipped, 2u);
  EXPECT_EQ(source.retr_count(), 3u);
  auto stored = Stored();
  ASSERT_EQ(stored.size(), 5u);
  EXPECT_EQ(stored[4].uidl, "last!");
}

TEST_F(Pop3ImportTest, SourceUserAndACutConnectionThenARerun) {
  FakeSourceOptions cut{SomeMessages(), FakeBehavior::kCutInRetr};
  Pop3ImportOptions options;
  {
    FakePop3Source source(cut);
    options = Options(source);
    options.source_user = "mover*master";
    auto result = Import(options);
    ASSERT_FALSE(result.ok());
    EXPECT_TRUE(absl::IsUnavailable(result.status())) << result.status();
    EXPECT_NE(result.status().message().find("closed the connection"), std::string::npos);
    EXPECT_EQ(source.logins(), std::vector<std::string>{"mover*master"});
  }
  EXPECT_TRUE(Stored().empty());  // the batch with message 1 was never delivered
  FakePop3Source source({SomeMessages()});
  options.source.port = source.port();
  auto result = Import(options);
  ASSERT_TRUE(result.ok()) << result.status();
  ExpectSame(Stored(), SomeMessages());
}

TEST_F(Pop3ImportTest, SizeLimitAndQuotaRefuseBeforeStoringAnything) {
  FakePop3Source source({SomeMessages()});
  storage::TenantLimits limits;
  limits.message_bytes_max = 1000;
  ASSERT_TRUE(store_->SetTenantLimits("import.test", limits).ok());
  auto too_big = Import(Options(source));
  ASSERT_FALSE(too_big.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(too_big.status())) << too_big.status();
  EXPECT_NE(too_big.status().message().find("UIDL x.y.z"), std::string::npos) << too_big.status();
  EXPECT_NE(too_big.status().message().find("maximum message size of 1000"), std::string::npos);

  ASSERT_TRUE(store_->SetTenantLimits("import.test", storage::TenantLimits()).ok());
  ASSERT_TRUE(store_->SetQuota(kAddress, storage::AccountQuota{4, 0}).ok());
  auto over_quota = Import(Options(source));
  ASSERT_FALSE(over_quota.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(over_quota.status())) << over_quota.status();
  EXPECT_NE(over_quota.status().message().find("quota of 4 messages"), std::string::npos);
  EXPECT_TRUE(Stored().empty());
  EXPECT_EQ(source.retr_count(), 0u);
}

TEST_F(Pop3ImportTest, HostileSourcesGetAClearErrorWithinTheDeadline) {
  {
    FakePop3Source silent({SomeMessages(), FakeBehavior::kSilent});
    Pop3ImportOptions options = Options(silent);
    options.source.io_timeout = absl::Milliseconds(300);
    const absl::Time start = absl::Now();
    auto result = Import(options);
    EXPECT_TRUE(absl::IsDeadlineExceeded(result.status())) << result.status();
    EXPECT_LT(absl::Now() - start, absl::Seconds(5));  // bounded, not a performance figure
  }
  {
    FakePop3Source endless({SomeMessages(), FakeBehavior::kEndlessGreeting});
    auto result = Import(Options(endless));
    EXPECT_TRUE(absl::IsInvalidArgument(result.status())) << result.status();
    EXPECT_NE(result.status().message().find("status line over"), std::string::npos);
  }
  {
    storage::TenantLimits limits;
    limits.message_bytes_max = 1 << 20;
    ASSERT_TRUE(store_->SetTenantLimits("import.test", limits).ok());
    FakePop3Source oversize({SomeMessages(), FakeBehavior::kOversizeRetr});
    auto result = Import(Options(oversize));
    EXPECT_TRUE(absl::IsInvalidArgument(result.status())) << result.status();
    EXPECT_NE(result.status().message().find("exceeds"), std::string::npos) << result.status();
  }
  EXPECT_TRUE(Stored().empty());
}

TEST_F(Pop3ImportTest, WrongPasswordIsPermissionDenied) {
  FakePop3Source source({SomeMessages()});
  Pop3ImportOptions options = Options(source);
  options.password = "wrong";
  auto result = Import(options);
  EXPECT_TRUE(absl::IsPermissionDenied(result.status())) << result.status();
  EXPECT_NE(result.status().message().find("wrong password"), std::string::npos);
}

TEST_F(Pop3ImportTest, PlaintextOnlyToLoopback) {
  Pop3ImportOptions options;
  options.source.host = "192.0.2.1";  // TEST-NET-1: never contacted, refused before
  options.source.port = 110;
  options.source.tls = SourceTls::kNone;
  auto result = Import(options);
  EXPECT_TRUE(absl::IsInvalidArgument(result.status())) << result.status();
  EXPECT_NE(result.status().message().find("loopback"), std::string::npos);
}

class Pop3ImportTlsTest : public Pop3ImportTest {
 protected:
  void SetUp() override {
    Pop3ImportTest::SetUp();
    cert_ = MakeTestCertificate("localhost", {"localhost"});
    const std::string dir = MakeTestDir("pop3-import-ca");
    ca_file_ = dir + "/ca.pem";
    std::ofstream(ca_file_) << cert_.cert_pem;
  }
  FakeSourceOptions TlsSource(FakeSourceOptions::Tls tls) {
    FakeSourceOptions options{SomeMessages()};
    options.tls = tls;
    options.cert_pem = cert_.cert_pem;
    options.key_pem = cert_.key_pem;
    return options;
  }
  TestCertificate cert_;
  std::string ca_file_;
};

TEST_F(Pop3ImportTlsTest, StlsAndImplicitVerifyTheCertificateAndTheName) {
  FakePop3Source stls(TlsSource(FakeSourceOptions::Tls::kStls));
  Pop3ImportOptions options = Options(stls);
  options.source.host = "localhost";
  options.source.tls = SourceTls::kStls;
  options.source.ca_file = ca_file_;
  auto result = Import(options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->imported, 5u);

  FakePop3Source implicit(TlsSource(FakeSourceOptions::Tls::kImplicit));
  options.source.port = implicit.port();
  options.source.tls = SourceTls::kImplicit;
  result = Import(options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->skipped, 5u);

  // The certificate names localhost, not 127.0.0.1; and without the CA it is not trusted.
  options.source.host = "127.0.0.1";
  result = Import(options);
  EXPECT_TRUE(absl::IsPermissionDenied(result.status())) << result.status();
  EXPECT_NE(result.status().message().find("not trusted"), std::string::npos);
  options.source.host = "localhost";
  options.source.ca_file.clear();
  result = Import(options);
  EXPECT_TRUE(absl::IsPermissionDenied(result.status())) << result.status();
}

TEST_F(Pop3ImportTlsTest, RefusedStlsIsAClearError) {
  FakeSourceOptions source_options = TlsSource(FakeSourceOptions::Tls::kStls);
  source_options.refuse_stls = true;
  FakePop3Source source(source_options);
  Pop3ImportOptions options = Options(source);
  options.source.tls = SourceTls::kStls;
  auto result = Import(options);
  EXPECT_TRUE(absl::IsFailedPrecondition(result.status())) << result.status();
  EXPECT_NE(result.status().message().find("refused STLS"), std::string::npos);
}

TEST(ParseHostPortTest, Forms) {
  SourceOptions options;
  ASSERT_TRUE(ParseHostPort("mail.example.org:995", &options).ok());
  EXPECT_EQ(options.host, "mail.example.org");
  EXPECT_EQ(options.port, 995);
  ASSERT_TRUE(ParseHostPort("[::1]:110", &options).ok());
  EXPECT_EQ(options.host, "::1");
  EXPECT_FALSE(ParseHostPort("mail.example.org", &options).ok());
  EXPECT_FALSE(ParseHostPort("host:0", &options).ok());
  EXPECT_FALSE(ParseHostPort("host:70000", &options).ok());
  EXPECT_FALSE(ParseHostPort(":110", &options).ok());
  EXPECT_FALSE(ParseSourceTls("ssl").ok());
}

}  // namespace
}  // namespace posthaste::server::pop3_import
