#include "storage/migration/maildir_import.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/mail_store.h"

namespace posthaste::storage::migration {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kUidlist[] =
    "3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n"
    "25006 :1276528487.M364837P9451.kurkku,S=1355,W=1394:2,\n"
    "25017 W2048 P0001abcd :1276528490.M1P2.kurkku:2,S\n"
    "\n"
    "25018 G0123 O5 :1276528491.M1P2.kurkku\r\n";

TEST(ParseDovecotUidlist, Version3) {
  absl::StatusOr<DovecotUidlist> parsed = ParseDovecotUidlist(kUidlist);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->version, 3u);
  EXPECT_EQ(parsed->uid_validity, 1275660208u);
  EXPECT_EQ(parsed->next_uid, 25022u);
  ASSERT_EQ(parsed->records.size(), 3u);
  const auto& first = parsed->records.at("1276528487.M364837P9451.kurkku,S=1355,W=1394");
  EXPECT_EQ(first.uid, 25006u);
  EXPECT_EQ(first.pop3_uidl, "");
  const auto& second = parsed->records.at("1276528490.M1P2.kurkku");
  EXPECT_EQ(second.uid, 25017u);
  EXPECT_EQ(second.pop3_uidl, "0001abcd");
  EXPECT_EQ(parsed->records.at("1276528491.M1P2.kurkku").uid, 25018u);
}

TEST(ParseDovecotUidlist, Version1CourierCompatible) {
  absl::StatusOr<DovecotUidlist> parsed =
      ParseDovecotUidlist("1 1275660208 30\n12 1276528487.M1P1.host:2,S\n");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->version, 1u);
  EXPECT_EQ(parsed->uid_validity, 1275660208u);
  EXPECT_EQ(parsed->records.at("1276528487.M1P1.host").uid, 12u);
}

TEST(ParseDovecotUidlist, MalformedInputIsAnErrorNamingTheLine) {
  for (const char* text : {"", "x V1\n", "3 N5\n", "7 V1 N2\n", "1 12\n", "3 V1 N2\n0 :name\n",
                           "3 V1 N2\nabc :n\n", "3 V1 N2\n5\n", "3 V1 N2\n5 W12\n",
                           "3 V1 N2\n5 :\n", "3 V1 N2\n99999999999 :n\n", "3 Vx N2\n"}) {
    absl::StatusOr<DovecotUidlist> parsed = ParseDovecotUidlist(text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << text;
  }
  EXPECT_THAT(std::string(ParseDovecotUidlist("3 V1 N2\n5 :a\nbad\n").status().message()),
              HasSubstr("line 3"));
}

TEST(DovecotDefaultUidl, IsUidThenUidValidityAsEightLowercaseHexDigits) {
  EXPECT_EQ(DovecotDefaultUidl(25006, 1275660208), "000061ae4c0907b0");
  EXPECT_EQ(DovecotDefaultUidl(1, 1), "0000000100000001");
  EXPECT_EQ(DovecotDefaultUidl(0xffffffff, 0xabcdef01), "ffffffffabcdef01");
}

TEST(MaildirNames, BaseNameAndFallbackUidl) {
  EXPECT_EQ(MaildirBaseName("1276528487.M1P2.host,S=12:2,RS"), "1276528487.M1P2.host,S=12");
  EXPECT_EQ(MaildirBaseName("1276528487.M1P2.host"), "1276528487.M1P2.host");
  EXPECT_EQ(FallbackUidl("1276528487.M1P2.host,S=12"), "1276528487.M1P2.host,S=12");
  const std::string long_name(100, 'a');
  const std::string fallback = FallbackUidl(long_name);
  EXPECT_EQ(fallback.size(), 42u);
  EXPECT_EQ(fallback.substr(0, 2), "MD");
  EXPECT_EQ(fallback, FallbackUidl(long_name));  // deterministic
  EXPECT_NE(fallback, FallbackUidl(std::string(101, 'a')));
  EXPECT_TRUE(storage::ValidateUidl(FallbackUidl("with space")).ok());
}

TEST(MaildirOrder, TimestampNumericallyThenName) {
  EXPECT_TRUE(MaildirOrderLess("999.a.host", "1000.a.host"));
  EXPECT_FALSE(MaildirOrderLess("1000.a.host", "999.a.host"));
  EXPECT_TRUE(MaildirOrderLess("1000.a.host", "1000.b.host"));
  EXPECT_TRUE(MaildirOrderLess("noprefix", "5.x"));
}

// ---- Helpers for on-disk Maildirs ----

std::string TempDir(std::string_view name) {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string dir =
      absl::StrCat(base != nullptr ? base : "/tmp", "/", name.data(), "-", getpid(), "-", rand());
  EXPECT_EQ(mkdir(dir.c_str(), 0755), 0) << dir;
  return dir;
}

void WriteFile(const std::string& path, std::string_view content, int64_t mtime = 0) {
  std::ofstream out(path, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  out.close();
  if (mtime != 0) {
    struct timeval times[2] = {{mtime, 0}, {mtime, 0}};
    EXPECT_EQ(utimes(path.c_str(), times), 0);
  }
}

std::string MakeMaildir() {
  std::string dir = TempDir("maildir");
  for (const char* sub : {"cur", "new", "tmp"}) mkdir((dir + "/" + sub).c_str(), 0755);
  return dir;
}

TEST(ListMaildir, CurAndNewInMaildirOrderSkippingTmpAndDotFiles) {
  std::string dir = MakeMaildir();
  WriteFile(dir + "/cur/1000.b.host:2,S", "b");
  WriteFile(dir + "/new/999.z.host", "z");
  WriteFile(dir + "/cur/1000.a.host:2,", "a");
  WriteFile(dir + "/tmp/1.tmp.host", "t");
  WriteFile(dir + "/cur/.hidden", "h");
  mkdir((dir + "/cur/subdir").c_str(), 0755);
  absl::StatusOr<std::vector<MaildirFile>> files = ListMaildir(dir);
  ASSERT_TRUE(files.ok()) << files.status();
  std::vector<std::string> names;
  for (const MaildirFile& f : *files) names.push_back(f.name);
  EXPECT_THAT(names, ElementsAre("999.z.host", "1000.a.host:2,", "1000.b.host:2,S"));
  EXPECT_EQ((*files)[0].path, dir + "/new/999.z.host");
  EXPECT_EQ((*files)[0].file_bytes, 1u);

  EXPECT_EQ(ListMaildir(TempDir("empty")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ListMaildir(dir + "/nonexistent").status().code(), absl::StatusCode::kNotFound);
}

// ---- ImportMaildir against a real store ----

class ImportMaildirTest : public ::testing::Test {
 protected:
  void SetUp() override { OpenStore(storage::StoreOptions{}); }

  void OpenStore(storage::StoreOptions options) {
    store_.reset();
    if (data_dir_.empty()) data_dir_ = TempDir("store");
    options.data_dir = data_dir_;
    auto store = storage::MailStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    if (!store_->GetAccount(kUser).ok()) {
      ASSERT_TRUE(store_->CreateAccount(kUser, "{PLAIN}x").ok());
    }
  }

  std::vector<std::string> Uidls() {
    auto snapshot = store_->OpenMailbox(kUser);
    EXPECT_TRUE(snapshot.ok()) << snapshot.status();
    std::vector<std::string> out;
    for (size_t i = 0; i < (*snapshot)->size(); ++i) out.emplace_back((*snapshot)->uidl(i));
    return out;
  }

  absl::StatusOr<ImportResult> Import(const std::string& dir) {
    return ImportMaildir(
        *store_, kUser, dir, [this](const ImportProgress& p) { progress_.push_back(p); }, 2);
  }

  static constexpr char kUser[] = "alice@example.test";
  std::string data_dir_;
  std::unique_ptr<storage::MailStore> store_;
  std::vector<ImportProgress> progress_;
};

TEST_F(ImportMaildirTest, KeepsDovecotUidlsOrderArrivalTimeAndBytes) {
  std::string dir = MakeMaildir();
  WriteFile(dir + "/dovecot-uidlist", kUidlist);
  const std::string first = "Subject: one\n\n.dot line\nbody\n";
  const std::string second = "Subject: two\r\n\r\nno final newline";
  const std::string third = "Subject: three\n\nx\n";
  const std::string unlisted = "Subject: four\n\ny\n";
  WriteFile(dir + "/cur/1276528487.M364837P9451.kurkku,S=1355,W=1394:2,S", first, 1276528487);
  WriteFile(dir + "/cur/1276528490.M1P2.kurkku:2,", second, 1276528490);
  WriteFile(dir + "/new/1276528491.M1P2.kurkku", third, 1276528491);
  WriteFile(dir + "/new/1276528499.M9P9.kurkku", unlisted, 1276528499);

  absl::StatusOr<ImportResult> result = Import(dir);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->total, 4u);
  EXPECT_EQ(result->imported, 4u);
  EXPECT_EQ(result->skipped, 0u);
  EXPECT_EQ(result->uidls_from_dovecot, 3u);
  EXPECT_THAT(Uidls(), ElementsAre("000061ae4c0907b0", "0001abcd", "000061ba4c0907b0",
                                   "1276528499.M9P9.kurkku"));
  auto snapshot = store_->OpenMailbox(kUser);
  ASSERT_TRUE(snapshot.ok());
  const std::string raws[] = {first, second, third, unlisted};
  for (size_t i = 0; i < 4; ++i) {
    auto stored = store_->ReadMessageForTest(**snapshot, i);
    ASSERT_TRUE(stored.ok()) << stored.status();
    EXPECT_EQ(*stored, storage::NormalizeForStorage(raws[i]).stored) << i;
  }
  EXPECT_EQ((*snapshot)->arrival_time(0), absl::FromUnixSeconds(1276528487));
  EXPECT_EQ((*snapshot)->arrival_time(3), absl::FromUnixSeconds(1276528499));
  ASSERT_FALSE(progress_.empty());
  EXPECT_EQ(progress_.back().done, 4u);
  EXPECT_EQ(progress_.back().total, 4u);
}

TEST_F(ImportMaildirTest, RerunSkipsEverythingAlreadyImported) {
  std::string dir = MakeMaildir();
  WriteFile(dir + "/dovecot-uidlist", kUidlist);
  WriteFile(dir + "/cur/1276528490.M1P2.kurkku:2,", "Subject: a\n\na\n");
  WriteFile(dir + "/new/1276528600.M5P5.kurkku", "Subject: b\n\nb\n");
  ASSERT_TRUE(Import(dir).ok());
  // Delete one: its UIDL is never reused, so a re-run must not bring it back either.
  auto snapshot = store_->OpenMailbox(kUser);
  ASSERT_TRUE(snapshot.ok());
  ASSERT_TRUE(store_->CommitDeletions(**snapshot, {0}).ok());
  WriteFile(dir + "/new/1276528700.M6P6.kurkku", "Subject: c\n\nc\n");

  absl::StatusOr<ImportResult> again = Import(dir);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->imported, 1u);
  EXPECT_EQ(again->skipped, 2u);
  EXPECT_THAT(Uidls(), ElementsAre("1276528600.M5P5.kurkku", "1276528700.M6P6.kurkku"));
}

TEST_F(ImportMaildirTest, LargeImportsGoInOrderedBatchesWithProgress) {
  std::string dir = MakeMaildir();
  // Names whose timestamps sort differently as text and as numbers.
  std::vector<std::string> expected;
  for (int i = 0; i < 600; ++i) {
    const std::string name = absl::StrCat(900 + i * 7, ".M", i, ".host");
    WriteFile(absl::StrCat(dir, i % 2 ? "/cur/" : "/new/", name, i % 2 ? ":2,S" : ""),
              absl::StrCat("Subject: ", i, "\n\nbody\n"));
    expected.push_back(name);
  }
  absl::StatusOr<ImportResult> result = ImportMaildir(
      *store_, kUser, dir, [this](const ImportProgress& p) { progress_.push_back(p); }, 100);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->imported, 600u);
  EXPECT_EQ(Uidls(), expected);
  std::vector<uint64_t> done;
  for (const ImportProgress& p : progress_) done.push_back(p.done);
  EXPECT_THAT(done, ElementsAre(256, 512, 600));  // one report per batch of 256, and the end
}

TEST_F(ImportMaildirTest, QuotaIsCheckedBeforeAnythingIsDelivered) {
  ASSERT_TRUE(store_->SetQuota(kUser, storage::AccountQuota{2, 0}).ok());
  std::string dir = MakeMaildir();
  for (int i = 0; i < 3; ++i) {
    WriteFile(absl::StrCat(dir, "/new/", 1000 + i, ".M1.host"), "Subject: q\n\nq\n");
  }
  absl::StatusOr<ImportResult> result = Import(dir);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("quota"));
  EXPECT_TRUE(Uidls().empty());

  ASSERT_TRUE(store_->SetQuota(kUser, storage::AccountQuota{0, 20}).ok());
  result = Import(dir);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(Uidls().empty());
}

TEST_F(ImportMaildirTest, OversizedMessageRefusedBeforeAnythingIsDelivered) {
  storage::StoreOptions options;
  options.message_bytes_max = 100;
  OpenStore(options);
  std::string dir = MakeMaildir();
  WriteFile(dir + "/new/1000.M1.host", "Subject: small\n\nok\n");
  // 60 bare LFs: 60 bytes on disk, 120 octets in POP3 form.
  WriteFile(dir + "/new/2000.M1.host", std::string(60, '\n'));
  absl::StatusOr<ImportResult> result = Import(dir);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("2000.M1.host"));
  EXPECT_TRUE(Uidls().empty());
}

TEST_F(ImportMaildirTest, BadInputChangesNothing) {
  std::string dir = MakeMaildir();
  WriteFile(dir + "/new/1000.M1.host", "Subject: a\n\na\n");
  ASSERT_EQ(symlink("/nonexistent/file", (dir + "/new/2000.M1.host").c_str()), 0);
  absl::StatusOr<ImportResult> result = Import(dir);
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("2000.M1.host"));
  EXPECT_TRUE(Uidls().empty());

  std::string bad_uidlist = MakeMaildir();
  WriteFile(bad_uidlist + "/dovecot-uidlist", "3 N5\n");
  WriteFile(bad_uidlist + "/new/1000.M1.host", "Subject: a\n\na\n");
  result = Import(bad_uidlist);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Uidls().empty());

  result = ImportMaildir(*store_, "nobody@example.test", dir, nullptr);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(result.status().message()), HasSubstr("unknown user"));

  result = Import(TempDir("notmaildir"));
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace posthaste::storage::migration
