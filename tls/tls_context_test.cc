// TlsContextSet: loading, SNI selection rules, reload (changed, broken, removed, added files,
// Kubernetes' symlink swap), engines pinned to their snapshot, ticket key rotation schedule.
#include "tls/tls_context.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "base/log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tls/testing/tls_test_util.h"
#include "tls/tls_engine.h"

namespace posthaste {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class TlsContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTestDir("tls_context");
    cert_dir_ = dir_ + "/certs";
    ASSERT_EQ(mkdir(cert_dir_.c_str(), 0700), 0);
    WriteCertPair(dir_, "default", MakeTestCertificate("default.test", {"default.test"}));
    WriteCertPair(cert_dir_, "a.example.com", MakeTestCertificate("a-old", {"a.example.com"}));
    WriteCertPair(cert_dir_, "b.example.com", MakeTestCertificate("b", {"b.example.com"}));
    options_.cert_path = dir_ + "/default.crt";
    options_.key_path = dir_ + "/default.key";
    options_.cert_dir = cert_dir_;
  }

  std::unique_ptr<TlsContextSet> MakeSet() {
    auto set = TlsContextSet::Create(options_);
    EXPECT_TRUE(set.ok()) << set.status();
    return set.ok() ? *std::move(set) : nullptr;
  }

  // Handshakes a fresh client with SNI `name` against `engine`; returns the peer's CN.
  static std::string PeerCn(TlsEngine& engine, const std::string& name) {
    TestTlsClient client({.server_name = name});
    absl::Status status = client.Handshake(engine);
    EXPECT_TRUE(status.ok()) << status;
    return client.PeerCommonName();
  }

  std::string dir_;
  std::string cert_dir_;
  TlsOptions options_;
};

TEST(CertDirStemTest, MapsFileStemsToNames) {
  EXPECT_EQ(CertDirStemToName("example.com"), "example.com");
  EXPECT_EQ(CertDirStemToName("Mail.Example.COM"), "mail.example.com");
  EXPECT_EQ(CertDirStemToName("_.example.com"), "*.example.com");
  EXPECT_EQ(CertDirStemToName("..data"), std::nullopt);
  EXPECT_EQ(CertDirStemToName(""), std::nullopt);
  EXPECT_EQ(CertDirStemToName("a..b"), std::nullopt);
  EXPECT_EQ(CertDirStemToName("bad name"), std::nullopt);
  EXPECT_EQ(CertDirStemToName("*.example.com"), std::nullopt);  // Use "_." in file names.
}

TEST_F(TlsContextTest, DefaultCertificateIsRequiredAndMustLoad) {
  TlsOptions missing = options_;
  missing.cert_path = dir_ + "/nope.crt";
  auto set = TlsContextSet::Create(missing);
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), absl::StatusCode::kNotFound);

  WriteFileAtomically(dir_ + "/broken.crt", "-----BEGIN CERTIFICATE-----\nnot base64\n");
  TlsOptions broken = options_;
  broken.cert_path = dir_ + "/broken.crt";
  set = TlsContextSet::Create(broken);
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(set.status().message()), HasSubstr("broken.crt"));

  TlsOptions none;
  EXPECT_FALSE(TlsContextSet::Create(none).ok());
}

TEST_F(TlsContextTest, MismatchedKeyIsRefusedWithReason) {
  TestCertificate one = MakeTestCertificate("one", {"one.test"});
  TestCertificate two = MakeTestCertificate("two", {"two.test"});
  WriteFileAtomically(dir_ + "/one.crt", one.cert_pem);
  WriteFileAtomically(dir_ + "/two.key", two.key_pem);
  auto entry = LoadTlsCertEntry("x", dir_ + "/one.crt", dir_ + "/two.key");
  ASSERT_FALSE(entry.ok());
  EXPECT_THAT(std::string(entry.status().message()), HasSubstr("does not match"));
}

TEST_F(TlsContextTest, SelectMatchesExactThenOneLabelWildcardThenDefault) {
  WriteCertPair(cert_dir_, "_.wild.test", MakeTestCertificate("wild", {"*.wild.test"}));
  auto set = MakeSet();
  auto snapshot = set->Current();
  EXPECT_EQ(snapshot->Select("a.example.com").name, "a.example.com");
  EXPECT_EQ(snapshot->Select("A.EXAMPLE.COM.").name, "a.example.com");
  EXPECT_EQ(snapshot->Select("x.wild.test").name, "*.wild.test");
  EXPECT_EQ(snapshot->Select("y.x.wild.test").name, "");
  EXPECT_EQ(snapshot->Select("wild.test").name, "");
  EXPECT_EQ(snapshot->Select("").name, "");
  EXPECT_EQ(snapshot->Select(".").name, "");
  EXPECT_EQ(snapshot->Select(std::string(300, 'a')).name, "");
}

TEST_F(TlsContextTest, BrokenTenantFileAtStartupSkipsOnlyThatTenant) {
  WriteFileAtomically(cert_dir_ + "/c.example.com.crt", "garbage");
  WriteFileAtomically(cert_dir_ + "/c.example.com.key", "garbage");
  WriteFileAtomically(cert_dir_ + "/d.example.com.crt",
                      MakeTestCertificate("d", {"d.example.com"}).cert_pem);  // No key.
  auto set = MakeSet();
  ASSERT_NE(set, nullptr);
  auto snapshot = set->Current();
  EXPECT_TRUE(snapshot->by_name.contains("a.example.com"));
  EXPECT_FALSE(snapshot->by_name.contains("c.example.com"));
  EXPECT_FALSE(snapshot->by_name.contains("d.example.com"));
  EXPECT_EQ(snapshot->Select("c.example.com").name, "");
}

TEST_F(TlsContextTest, ReloadReplacesOneTenantWhileEarlierEnginesKeepWorking) {
  auto set = MakeSet();
  EXPECT_FALSE(set->NeedsReload());

  // A session handshaken before the reload, and an engine created before it that handshakes
  // after it.
  auto before = set->NewEngine();
  TestTlsClient before_client({.server_name = "a.example.com"});
  ASSERT_TRUE(before_client.Handshake(*before).ok());
  EXPECT_EQ(before_client.PeerCommonName(), "a-old");
  auto created_before = set->NewEngine();

  WriteCertPair(cert_dir_, "a.example.com", MakeTestCertificate("a-new", {"a.example.com"}));
  EXPECT_TRUE(set->NeedsReload());
  TlsReloadReport report;
  ASSERT_TRUE(set->Reload(&report).ok());
  EXPECT_FALSE(set->NeedsReload());
  EXPECT_EQ(report.loaded, 1u);  // Only the changed tenant is rebuilt.
  EXPECT_EQ(report.unchanged, 2u);
  EXPECT_EQ(report.kept_old, 0u);

  auto after = set->NewEngine();
  EXPECT_EQ(PeerCn(*after, "a.example.com"), "a-new");
  EXPECT_EQ(PeerCn(*created_before, "a.example.com"), "a-old");
  auto b_engine = set->NewEngine();
  EXPECT_EQ(PeerCn(*b_engine, "b.example.com"), "b");

  // The earlier session still carries data both ways.
  ASSERT_TRUE(before_client.Write(*before, "NOOP\r\n").ok());
  std::string got;
  ASSERT_TRUE(before->ReadPlaintext(&got).ok());
  EXPECT_EQ(got, "NOOP\r\n");
  ASSERT_TRUE(before->WritePlaintext("+OK\r\n").ok());
  EXPECT_EQ(before_client.Read(*before), "+OK\r\n");
}

TEST_F(TlsContextTest, BrokenNewFileKeepsOldCertificateAndSaysWhy) {
  auto set = MakeSet();
  std::string log_path = dir_ + "/log.txt";
  int log_fd = open(log_path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0600);
  ASSERT_GE(log_fd, 0);
  SetLogFdForTest(log_fd);

  WriteFileAtomically(cert_dir_ + "/a.example.com.crt", "-----BEGIN CERTIFICATE-----\ntruncated");
  EXPECT_TRUE(set->NeedsReload());
  TlsReloadReport report;
  absl::Status status = set->Reload(&report);
  SetLogFdForTest(-1);
  close(log_fd);

  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("a.example.com"));
  EXPECT_THAT(std::string(status.message()), HasSubstr("bad certificate chain"));
  EXPECT_EQ(report.kept_old, 1u);
  ASSERT_EQ(report.errors.size(), 1u);
  std::string log = ReadFile(log_path);
  EXPECT_THAT(log, HasSubstr("keeping the old one"));
  EXPECT_THAT(log, HasSubstr("a.example.com"));

  auto engine = set->NewEngine();
  EXPECT_EQ(PeerCn(*engine, "a.example.com"), "a-old");
  // The failure is remembered in the fingerprint: no reload storm until the file changes.
  EXPECT_FALSE(set->NeedsReload());

  // Fixing the file is picked up.
  WriteCertPair(cert_dir_, "a.example.com", MakeTestCertificate("a-fixed", {"a.example.com"}));
  EXPECT_TRUE(set->NeedsReload());
  EXPECT_TRUE(set->Reload().ok());
  auto fixed = set->NewEngine();
  EXPECT_EQ(PeerCn(*fixed, "a.example.com"), "a-fixed");
}

TEST_F(TlsContextTest, BrokenDefaultOnReloadKeepsOldDefault) {
  auto set = MakeSet();
  WriteFileAtomically(options_.key_path, "not a key");
  EXPECT_TRUE(set->NeedsReload());
  TlsReloadReport report;
  absl::Status status = set->Reload(&report);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("(default)"));
  EXPECT_EQ(report.kept_old, 1u);
  auto engine = set->NewEngine();
  EXPECT_EQ(PeerCn(*engine, "other.test"), "default.test");
}

TEST_F(TlsContextTest, AddedAndRemovedTenantsAreNoticed) {
  auto set = MakeSet();
  WriteCertPair(cert_dir_, "c.example.com", MakeTestCertificate("c", {"c.example.com"}));
  EXPECT_TRUE(set->NeedsReload());
  ASSERT_TRUE(set->Reload().ok());
  EXPECT_TRUE(set->Current()->by_name.contains("c.example.com"));

  ASSERT_EQ(unlink((cert_dir_ + "/b.example.com.crt").c_str()), 0);
  ASSERT_EQ(unlink((cert_dir_ + "/b.example.com.key").c_str()), 0);
  EXPECT_TRUE(set->NeedsReload());
  TlsReloadReport report;
  ASSERT_TRUE(set->Reload(&report).ok());
  EXPECT_EQ(report.removed, 1u);
  EXPECT_FALSE(set->Current()->by_name.contains("b.example.com"));
  EXPECT_FALSE(set->NeedsReload());
}

TEST_F(TlsContextTest, UnreadableDirectoryKeepsTenantsInService) {
  auto set = MakeSet();
  std::string moved = dir_ + "/certs-away";
  ASSERT_EQ(rename(cert_dir_.c_str(), moved.c_str()), 0);
  EXPECT_TRUE(set->NeedsReload());
  TlsReloadReport report;
  absl::Status status = set->Reload(&report);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("cannot open --tls_cert_dir"));
  EXPECT_EQ(report.removed, 0u);
  EXPECT_TRUE(set->Current()->by_name.contains("a.example.com"));
  auto engine = set->NewEngine();
  EXPECT_EQ(PeerCn(*engine, "a.example.com"), "a-old");

  ASSERT_EQ(rename(moved.c_str(), cert_dir_.c_str()), 0);
  EXPECT_TRUE(set->NeedsReload());
  EXPECT_TRUE(set->Reload().ok());
  EXPECT_TRUE(set->Current()->by_name.contains("b.example.com"));
}

// Kubernetes mounts a Secret as DIR/NAME -> ..data/NAME, ..data -> ..TIMESTAMP/, and updates
// it by writing a new ..TIMESTAMP2/ and renaming a new ..data symlink over the old one.
TEST_F(TlsContextTest, KubernetesSecretSymlinkSwapIsDetected) {
  std::string secret = dir_ + "/secret";
  ASSERT_EQ(mkdir(secret.c_str(), 0700), 0);
  ASSERT_EQ(mkdir((secret + "/..2026_11_22_01").c_str(), 0700), 0);
  WriteCertPair(secret + "/..2026_11_22_01", "k.example.com",
                MakeTestCertificate("k-old", {"k.example.com"}));
  ASSERT_EQ(symlink("..2026_11_22_01", (secret + "/..data").c_str()), 0);
  ASSERT_EQ(symlink("..data/k.example.com.crt", (secret + "/k.example.com.crt").c_str()), 0);
  ASSERT_EQ(symlink("..data/k.example.com.key", (secret + "/k.example.com.key").c_str()), 0);
  options_.cert_dir = secret;
  auto set = MakeSet();
  auto engine = set->NewEngine();
  EXPECT_EQ(PeerCn(*engine, "k.example.com"), "k-old");
  EXPECT_FALSE(set->NeedsReload());

  ASSERT_EQ(mkdir((secret + "/..2026_11_22_02").c_str(), 0700), 0);
  WriteCertPair(secret + "/..2026_11_22_02", "k.example.com",
                MakeTestCertificate("k-new", {"k.example.com"}));
  ASSERT_EQ(symlink("..2026_11_22_02", (secret + "/..data_tmp").c_str()), 0);
  ASSERT_EQ(rename((secret + "/..data_tmp").c_str(), (secret + "/..data").c_str()), 0);

  EXPECT_TRUE(set->NeedsReload());
  ASSERT_TRUE(set->Reload().ok());
  auto after = set->NewEngine();
  EXPECT_EQ(PeerCn(*after, "k.example.com"), "k-new");
}

TEST_F(TlsContextTest, TicketKeysRotateOnSchedule) {
  options_.ticket_key_rotation = absl::Hours(1);
  auto set = MakeSet();
  auto first = set->Current()->ticket_keys;
  EXPECT_FALSE(set->MaybeRotateTicketKeys(absl::Now() + absl::Minutes(30)));
  EXPECT_EQ(set->Current()->ticket_keys, first);
  EXPECT_TRUE(set->MaybeRotateTicketKeys(absl::Now() + absl::Minutes(61)));
  auto second = set->Current()->ticket_keys;
  ASSERT_NE(second, first);
  ASSERT_TRUE(second->previous.has_value());
  EXPECT_EQ(second->previous->name, first->current.name);
  EXPECT_NE(second->current.name, first->current.name);
  // Certificates are shared, not rebuilt, by a rotation.
  EXPECT_EQ(set->Current()->default_cert, set->Current()->default_cert);
}

}  // namespace
}  // namespace posthaste
