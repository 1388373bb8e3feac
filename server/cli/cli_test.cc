#include "server/cli/cli.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/auth/password_hash.h"
#include "server/auth/scram.h"
#include "storage/mail_store.h"

namespace posthaste::server::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct CliRun {
  int status;
  std::string out;
  std::string err;
};

CliRun RunWith(const std::vector<std::string>& args, const std::string& input = "") {
  std::istringstream in(input);
  std::ostringstream out, err;
  int status = RunCli(args, CliStreams{&in, &out, &err, false});
  return CliRun{status, out.str(), err.str()};
}

size_t Lines(const std::string& text) { return std::count(text.begin(), text.end(), '\n'); }

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* base = std::getenv("TEST_TMPDIR");
    dir_ = absl::StrCat(base != nullptr ? base : "/tmp", "/cli-", getpid(), "-", counter_++);
    flag_ = "--data_dir=" + dir_;
  }

  // Asserts a failure with exactly one "posthaste: ..." line on stderr and nothing on stdout.
  static void ExpectOneLineFailure(const CliRun& run, int status, std::string_view needle) {
    EXPECT_EQ(run.status, status) << run.err;
    EXPECT_EQ(Lines(run.err), 1u) << run.err;
    EXPECT_THAT(run.err, StartsWith("posthaste: "));
    EXPECT_THAT(run.err, HasSubstr(std::string(needle)));
    EXPECT_EQ(run.out, "");
  }

  std::string ListAll() { return RunWith({"user", "list", flag_}).out; }

  static int counter_;
  std::string dir_;
  std::string flag_;
};
int CliTest::counter_ = 0;

// Whether RFC 5803 `stored` keys were derived from `password` (no plaintext is stored).
bool ScramKeysMatch(const std::string& stored, std::string_view password) {
  absl::StatusOr<auth::ScramKeys> keys = auth::ParseScramKeys(stored);
  if (!keys.ok()) return false;
  const auth::ScramKeys again =
      auth::DeriveScramKeysWithSalt(keys->hash, password, keys->salt, keys->iterations);
  return again.stored_key == keys->stored_key && again.server_key == keys->server_key;
}

TEST_F(CliTest, UsageAndUnknownCommands) {
  for (const auto& args :
       std::vector<std::vector<std::string>>{{}, {"--help"}, {"help"}, {"user", "add", "--help"}}) {
    CliRun run = RunWith(args);
    EXPECT_EQ(run.status, kExitUsage);
    EXPECT_THAT(run.err, HasSubstr("posthaste import maildir --data_dir=DIR ADDRESS MAILDIR"));
    EXPECT_EQ(run.out, "");
  }
  CliRun unknown = RunWith({"frobnicate"});
  EXPECT_EQ(unknown.status, kExitUsage);
  EXPECT_THAT(unknown.err, StartsWith("posthaste: unknown command \"frobnicate\"\n"));
  EXPECT_EQ(RunWith({"user", "rename", flag_, "a@b.test"}).status, kExitUsage);
  // "help" is a command word only in first position: here it is a domain.
  CliRun domain = RunWith({"user", "list", flag_, "help"});
  EXPECT_EQ(domain.status, kExitFailure);
  EXPECT_THAT(domain.err, HasSubstr("no data directory"));
}

TEST_F(CliTest, ArgumentErrorsAreOneLineUsageErrors) {
  ExpectOneLineFailure(RunWith({"user", "add", "a@example.test"}, "pw\n"), kExitUsage,
                       "missing --data_dir");
  ExpectOneLineFailure(RunWith({"user", "add", flag_}, "pw\n"), kExitUsage, "missing arguments");
  ExpectOneLineFailure(RunWith({"user", "del", flag_, "a@example.test", "extra"}), kExitUsage,
                       "unexpected argument \"extra\"");
  ExpectOneLineFailure(RunWith({"check", "--bogus=1", flag_}), kExitUsage, "unknown flag --bogus");
  ExpectOneLineFailure(RunWith({"check", "-x", flag_}), kExitUsage, "unknown option -x");
  ExpectOneLineFailure(RunWith({"check", "--data_dir"}), kExitUsage, "needs a value");
  ExpectOneLineFailure(RunWith({"check", "--data_dir="}), kExitUsage, "is empty");
  struct stat st;
  EXPECT_NE(stat(dir_.c_str(), &st), 0);  // nothing was created
}

TEST_F(CliTest, UserAddRefusesBadInputBeforeTouchingTheDisk) {
  ExpectOneLineFailure(RunWith({"user", "add", flag_, "not-an-address"}, "pw\n"), kExitFailure,
                       "malformed address \"not-an-address\"");
  ExpectOneLineFailure(RunWith({"user", "add", flag_, "a@example.test"}, "\n"), kExitFailure,
                       "empty password");
  ExpectOneLineFailure(RunWith({"user", "add", flag_, "a@example.test"}, ""), kExitFailure,
                       "empty password");
  ExpectOneLineFailure(RunWith({"user", "add", flag_, "a@example.test"},
                               std::string(auth::kPasswordBytesMax + 1, 'p') + "\n"),
                       kExitFailure, "password longer than");
  struct stat st;
  EXPECT_NE(stat(dir_.c_str(), &st), 0);
  // Commands other than `user add` never create a data directory.
  ExpectOneLineFailure(RunWith({"user", "list", flag_}), kExitFailure, "no data directory");
  EXPECT_NE(stat(dir_.c_str(), &st), 0);
}

TEST_F(CliTest, UserLifecycle) {
  CliRun add = RunWith({"user", "add", flag_, "Alice@Example.TEST"}, "s3cret\r\nignored\n");
  ASSERT_EQ(add.status, kExitOk) << add.err;
  EXPECT_EQ(add.out, "added Alice@example.test\n");
  EXPECT_EQ(add.err, "");
  // --flag value form.
  ASSERT_EQ(RunWith({"user", "add", "--data_dir", dir_, "bob@other.test"}, "pw").status, kExitOk);
  EXPECT_EQ(ListAll(), "Alice@example.test\t0\t0\nbob@other.test\t0\t0\n");
  EXPECT_EQ(RunWith({"user", "list", flag_, "OTHER.test"}).out, "bob@other.test\t0\t0\n");
  EXPECT_EQ(RunWith({"user", "list", flag_, "none.test"}).out, "");
  ExpectOneLineFailure(RunWith({"user", "list", flag_, "bad domain"}), kExitFailure,
                       "malformed domain");

  {
    auto store = storage::MailStore::Open({.data_dir = dir_});
    ASSERT_TRUE(store.ok()) << store.status();
    auto account = (*store)->GetAccount("Alice@example.test");
    ASSERT_TRUE(account.ok());
    EXPECT_THAT(account->password_hash, StartsWith("$y$"));
    EXPECT_TRUE(*auth::VerifyPassword("s3cret", account->password_hash));
    EXPECT_TRUE(ScramKeysMatch(account->scram.sha1, "s3cret"));
    EXPECT_TRUE(ScramKeysMatch(account->scram.sha256, "s3cret"));
    EXPECT_THAT(account->scram.sha256, StartsWith("SCRAM-SHA-256$4096:"));
  }

  const std::string before = ListAll();
  ExpectOneLineFailure(RunWith({"user", "add", flag_, "Alice@EXAMPLE.test"}, "x\n"), kExitFailure,
                       "already exists");
  ExpectOneLineFailure(RunWith({"user", "del", flag_, "carol@example.test"}), kExitFailure,
                       "unknown user carol@example.test");
  ExpectOneLineFailure(RunWith({"user", "passwd", flag_, "carol@example.test"}, "x\n"),
                       kExitFailure, "unknown user");
  ExpectOneLineFailure(RunWith({"user", "passwd", flag_, "Alice@example.test"}, "\n"), kExitFailure,
                       "empty password");
  EXPECT_EQ(ListAll(), before);

  CliRun passwd = RunWith({"user", "passwd", flag_, "Alice@example.test"}, "n3w\n");
  ASSERT_EQ(passwd.status, kExitOk) << passwd.err;
  {
    auto store = storage::MailStore::Open({.data_dir = dir_});
    ASSERT_TRUE(store.ok());
    auto account = (*store)->GetAccount("Alice@example.test");
    EXPECT_TRUE(*auth::VerifyPassword("n3w", account->password_hash));
    EXPECT_FALSE(*auth::VerifyPassword("s3cret", account->password_hash));
    EXPECT_TRUE(ScramKeysMatch(account->scram.sha1, "n3w"));
    EXPECT_TRUE(ScramKeysMatch(account->scram.sha256, "n3w"));
  }

  CliRun del = RunWith({"user", "del", flag_, "bob@other.test"});
  ASSERT_EQ(del.status, kExitOk) << del.err;
  EXPECT_EQ(del.out, "deleted bob@other.test\n");
  EXPECT_EQ(ListAll(), "Alice@example.test\t0\t0\n");
}

// Dovecot hashes of "correct horse", made by `doveadm pw`
// (server/auth/testdata/dovecot_vectors.sh).
constexpr char kDovecotSsha512[] =
    "{SSHA512}FOnfRIhTC0WR+r/VQjC2EHI6sw+JN/W9yL66+1TU8Wm6rLrFz3/4RqZ7mvyMHyKJ20CTfb2k+gXTurXePTXO"
    "yLid6t4=";
constexpr char kDovecotPbkdf2[] =
    "{PBKDF2}$1$oiiLkHRE.jNcCRYM$5000$29791a1e05096fb6056dbcc2deebe57d8d695b8c";
constexpr char kDovecotCramMd5[] =
    "{CRAM-MD5}38b57fd1a0c4b46c814aa05f20318edd71c455380655f2c0ac35c5b359528d29";

// RFC 6856 "UTF8 USER": logins compare SASLprep'd passwords, so the stored hash is of the
// prepared form; text SASLprep refuses is refused here, and bytes that are not UTF-8 are kept.
TEST_F(CliTest, UserAddHashesTheSaslPreparedPassword) {
  ASSERT_EQ(RunWith({"user", "add", flag_, "ann@example.test"}, "pa\xCC\x88sswort\n").status,
            kExitOk);
  ASSERT_EQ(RunWith({"user", "add", flag_, "cy@example.test"}, "caf\xE9\n").status, kExitOk);
  ExpectOneLineFailure(RunWith({"user", "add", flag_, "eve@example.test"}, "a\xE2\x80\xA8z\n"),
                       kExitFailure, "prohibited character");
  auto store = storage::MailStore::Open({.data_dir = dir_});
  ASSERT_TRUE(store.ok()) << store.status();
  const std::string ann = (*store)->GetAccount("ann@example.test")->password_hash;
  EXPECT_TRUE(*auth::VerifyPassword("p\xC3\xA4sswort", ann));  // precomposed (NFKC)
  EXPECT_FALSE(*auth::VerifyPassword("pa\xCC\x88sswort", ann));
  EXPECT_TRUE(
      ScramKeysMatch((*store)->GetAccount("ann@example.test")->scram.sha256, "p\xC3\xA4sswort"));
  EXPECT_TRUE(
      *auth::VerifyPassword("caf\xE9", (*store)->GetAccount("cy@example.test")->password_hash));
  EXPECT_FALSE((*store)->GetAccount("eve@example.test").ok());
}

TEST_F(CliTest, UserAddAndPasswdTakeAStoredHash) {
  CliRun add = RunWith({"user", "add", flag_, std::string("--hash=") + kDovecotSsha512,
                        "ann@example.test"});  // no stdin read
  ASSERT_EQ(add.status, kExitOk) << add.err;
  EXPECT_EQ(add.out, "added ann@example.test\n");
  CliRun passwd = RunWith({"user", "passwd", flag_, "--hash", kDovecotPbkdf2, "ann@example.test"});
  ASSERT_EQ(passwd.status, kExitOk) << passwd.err;
  ExpectOneLineFailure(RunWith({"user", "add", flag_, "--hash={NOPE}x", "bob@example.test"}),
                       kExitFailure, "--hash: unknown password scheme {NOPE}");
  ExpectOneLineFailure(
      RunWith({"user", "add", flag_, "--hash={SHA512-CRYPT}$6$rounds=999999999$s$x",
               "bob@example.test"}),
      kExitFailure, "--hash:");
  ExpectOneLineFailure(RunWith({"user", "add", flag_, "--hash={PLAIN}x", "--password_scheme=bcrypt",
                                "bob@example.test"}),
                       kExitFailure, "exclude each other");
  // --password_scheme picks the scheme and cost of a password from stdin.
  CliRun chosen = RunWith(
      {"user", "add", flag_, "--password_scheme=sha512-crypt:7000", "cy@example.test"}, "pw\n");
  ASSERT_EQ(chosen.status, kExitOk) << chosen.err;
  ExpectOneLineFailure(
      RunWith({"user", "add", flag_, "--password_scheme=md5-crypt", "dee@example.test"}, "pw\n"),
      kExitFailure, "password scheme");
  // Without either: the documented default.
  ASSERT_EQ(RunWith({"user", "add", flag_, "eve@example.test"}, "pw\n").status, kExitOk);

  auto store = storage::MailStore::Open({.data_dir = dir_});
  ASSERT_TRUE(store.ok()) << store.status();
  const std::string ann = (*store)->GetAccount("ann@example.test")->password_hash;
  EXPECT_EQ(ann, kDovecotPbkdf2);
  EXPECT_TRUE(*auth::VerifyPassword("correct horse", ann));
  EXPECT_FALSE((*store)->GetAccount("bob@example.test").ok());
  EXPECT_THAT((*store)->GetAccount("cy@example.test")->password_hash,
              StartsWith("$6$rounds=7000$"));
  EXPECT_THAT((*store)->GetAccount("eve@example.test")->password_hash, StartsWith("$y$j7T$"));
}

TEST_F(CliTest, ImportPasswdFileReportsBadLinesAndIsIdempotent) {
  const std::string path = dir_ + ".passwd";
  {
    std::ofstream file(path, std::ios::binary);
    file << "# exported from Dovecot\n"
         << "\n"
         << "alice@example.test:" << kDovecotSsha512 << ":1000:1000::/home/alice::\n"
         << "bob:" << kDovecotPbkdf2 << "\n"
         << "carol@other.test:" << kDovecotCramMd5 << ":::::\r\n"
         << "broken line without colon\n"
         << "dan@example.test:{NOPE}zzz\n"
         << "erin@example.test::1000\n"
         << "frank@example.test:{PLAIN}open sesame";  // no final LF
  }
  CliRun first = RunWith({"import", "passwd-file", flag_, "--domain=Example.TEST", path});
  EXPECT_EQ(first.status, kExitFailure);
  EXPECT_EQ(first.out,
            "passwd-file " + path + ": 9 lines; 4 added, 0 updated, 0 unchanged, 3 refused\n");
  EXPECT_THAT(first.err, HasSubstr(path + ":6: no ':' after the user name\n"));
  EXPECT_THAT(first.err, HasSubstr(path + ":7: unknown password scheme {NOPE}\n"));
  EXPECT_THAT(first.err, HasSubstr(path + ":8: empty password field"));
  EXPECT_THAT(first.err, HasSubstr("3 lines refused"));
  {
    auto store = storage::MailStore::Open({.data_dir = dir_});
    ASSERT_TRUE(store.ok()) << store.status();
    for (const char* user : {"alice@example.test", "bob@example.test", "carol@other.test"}) {
      auto account = (*store)->GetAccount(user);
      ASSERT_TRUE(account.ok()) << user;
      EXPECT_TRUE(*auth::VerifyPassword("correct horse", account->password_hash)) << user;
    }
    EXPECT_TRUE(*auth::VerifyPassword("open sesame",
                                      (*store)->GetAccount("frank@example.test")->password_hash));
    // A rehash at login (or a password change) since the import.
    ASSERT_TRUE((*store)->SetPasswordHash("alice@example.test", "{PLAIN}changed").ok());
  }
  // A second run changes only what differs.
  CliRun again = RunWith({"import", "passwd-file", flag_, "--domain=example.test", path});
  EXPECT_EQ(again.out,
            "passwd-file " + path + ": 9 lines; 0 added, 1 updated, 3 unchanged, 3 refused\n");
  // Without --domain a bare user is refused, by line.
  CliRun bare = RunWith({"import", "passwd-file", flag_, path});
  EXPECT_THAT(bare.err, HasSubstr(path + ":4: user \"bob\" has no @domain (give --domain=DOMAIN)"));
  ExpectOneLineFailure(RunWith({"import", "passwd-file", flag_, dir_ + ".missing"}), kExitFailure,
                       "cannot open");
}

TEST_F(CliTest, ImportPasswdFileShowsProgressOnLargeFiles) {
  const std::string path = dir_ + ".large.passwd";
  {
    std::ofstream file(path, std::ios::binary);
    for (int i = 0; i < 2500; ++i) file << "u" << i << "@example.test:{PLAIN}pw" << i << "\n";
  }
  CliRun run = RunWith({"import", "passwd-file", flag_, path});
  ASSERT_EQ(run.status, kExitOk) << run.err;
  EXPECT_THAT(run.err, HasSubstr("posthaste: import passwd-file: 1000 lines\n"));
  EXPECT_THAT(run.err, HasSubstr("posthaste: import passwd-file: 2500 lines\n"));
  EXPECT_THAT(run.out, HasSubstr("2500 added"));
}

TEST_F(CliTest, DeliverPrintsTheUidlAndCountsShowInList) {
  ASSERT_EQ(RunWith({"user", "add", flag_, "a@example.test"}, "pw\n").status, kExitOk);
  CliRun first = RunWith({"deliver", flag_, "a@example.test"}, "Subject: hi\n\nbody\n");
  ASSERT_EQ(first.status, kExitOk) << first.err;
  EXPECT_EQ(Lines(first.out), 1u);
  const std::string uidl = first.out.substr(0, first.out.size() - 1);
  EXPECT_TRUE(storage::ValidateUidl(uidl).ok()) << uidl;
  CliRun second = RunWith({"deliver", flag_, "a@example.test"}, "Subject: hi\n\nbody\n");
  ASSERT_EQ(second.status, kExitOk);
  EXPECT_NE(second.out, first.out);
  // "Subject: hi\r\n\r\nbody\r\n" = 21 octets, twice.
  EXPECT_EQ(ListAll(), "a@example.test\t2\t42\n");

  const std::string before = ListAll();
  ExpectOneLineFailure(RunWith({"deliver", flag_, "b@example.test"}, "x\n"), kExitFailure,
                       "unknown user b@example.test");
  ExpectOneLineFailure(RunWith({"deliver", flag_, "@example.test"}, "x\n"), kExitFailure,
                       "malformed address");
  EXPECT_EQ(ListAll(), before);
}

TEST_F(CliTest, DeliverOverSizeAndOverQuotaChangeNothing) {
  ASSERT_EQ(RunWith({"user", "add", flag_, "a@example.test"}, "pw\n").status, kExitOk);
  {
    auto store = storage::MailStore::Open({.data_dir = dir_});
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->SetQuota("a@example.test", {1, 0}).ok());
  }
  ASSERT_EQ(RunWith({"deliver", flag_, "a@example.test"}, "x\n").status, kExitOk);
  const std::string before = ListAll();
  ExpectOneLineFailure(RunWith({"deliver", flag_, "a@example.test"}, "y\n"), kExitFailure, "quota");
  ExpectOneLineFailure(RunWith({"deliver", flag_, "a@example.test"}, std::string(51 << 20, 'x')),
                       kExitFailure, "exceeds the maximum message size");
  EXPECT_EQ(ListAll(), before);
}

// --message_bytes_max is the limit's name; --max_message_bytes, its earlier name, still works.
TEST_F(CliTest, TenantLimitsTakesTheSizeLimitUnderEitherName) {
  CliRun set = RunWith({"tenant", "limits", flag_, "example.test", "--message_bytes_max=2000"});
  ASSERT_EQ(set.status, kExitOk) << set.err;
  EXPECT_EQ(set.out,
            "example.test\tquota_messages=unlimited\tquota_octets=unlimited\t"
            "max_message_bytes=2000\n");
  CliRun old_name =
      RunWith({"tenant", "limits", flag_, "example.test", "--max_message_bytes=3000"});
  ASSERT_EQ(old_name.status, kExitOk) << old_name.err;
  EXPECT_EQ(old_name.out,
            "example.test\tquota_messages=unlimited\tquota_octets=unlimited\t"
            "max_message_bytes=3000\n");
  ExpectOneLineFailure(RunWith({"tenant", "limits", flag_, "example.test", "--message_bytes_max=1",
                                "--max_message_bytes=2"}),
                       kExitFailure, "give only one");
}

TEST_F(CliTest, QuotaDisableAndTenantLimits) {
  ASSERT_EQ(RunWith({"user", "add", flag_, "a@example.test"}, "pw\n").status, kExitOk);
  CliRun tenant = RunWith({"tenant", "limits", flag_, "EXAMPLE.test", "--quota_messages=5",
                           "--max_message_bytes", "1000"});
  ASSERT_EQ(tenant.status, kExitOk) << tenant.err;
  EXPECT_EQ(tenant.out,
            "example.test\tquota_messages=5\tquota_octets=unlimited\tmax_message_bytes=1000\n");
  CliRun quota = RunWith({"user", "quota", flag_, "a@example.test", "--octets=30"});
  ASSERT_EQ(quota.status, kExitOk) << quota.err;
  ASSERT_EQ(RunWith({"deliver", flag_, "a@example.test"}, "Subject: hi\n\nbody\n").status, kExitOk);
  CliRun show = RunWith({"user", "show", flag_, "a@example.test"});
  ASSERT_EQ(show.status, kExitOk) << show.err;
  EXPECT_EQ(show.out,
            "address\ta@example.test\nstate\tenabled\nmessages\t1\noctets\t21\n"
            "quota_messages\t5 (tenant default)\nquota_octets\t30\nmax_message_bytes\t1000\n"
            "plaintext_auth\tdefault (tenant)\n");
  ExpectOneLineFailure(RunWith({"deliver", flag_, "a@example.test"}, "Subject: hi\n\nbody\n"),
                       kExitFailure, "quota");
  ASSERT_EQ(RunWith({"user", "disable", flag_, "a@example.test"}).out, "disabled a@example.test\n");
  EXPECT_THAT(RunWith({"user", "show", flag_, "a@example.test"}).out,
              HasSubstr("state\tdisabled\n"));
  ASSERT_EQ(RunWith({"user", "enable", flag_, "a@example.test"}).status, kExitOk);
  ExpectOneLineFailure(RunWith({"user", "quota", flag_, "a@example.test"}), kExitFailure,
                       "--messages");
  ExpectOneLineFailure(RunWith({"user", "quota", flag_, "a@example.test", "--messages=x"}),
                       kExitFailure, "expected a number");
  ExpectOneLineFailure(RunWith({"user", "show", flag_, "b@example.test"}), kExitFailure,
                       "unknown user");
  EXPECT_EQ(RunWith({"user", "show", flag_, "a@example.test", "--octets=1"}).status, kExitUsage);
}

TEST_F(CliTest, TenantPolicyShowSetAndList) {
  ASSERT_EQ(RunWith({"user", "add", flag_, "a@example.test"}, "pw\n").status, kExitOk);
  CliRun show = RunWith({"tenant", "policy", flag_, "example.test"});
  ASSERT_EQ(show.status, kExitOk) << show.err;
  EXPECT_EQ(show.out, "example.test\tplaintext_auth=default\n");
  CliRun set = RunWith({"tenant", "policy", flag_, "EXAMPLE.test", "--plaintext_auth=allow"});
  ASSERT_EQ(set.status, kExitOk) << set.err;
  EXPECT_EQ(set.out, "example.test\tplaintext_auth=allow\n");
  // A tenant without accounts yet can be given a policy; its limits stay the defaults.
  set = RunWith({"tenant", "policy", flag_, "strict.test", "--plaintext_auth", "require_tls"});
  ASSERT_EQ(set.status, kExitOk) << set.err;
  // Limits and policy are independent settings of one record.
  ASSERT_EQ(RunWith({"tenant", "limits", flag_, "example.test", "--quota_messages=5"}).status,
            kExitOk);
  EXPECT_EQ(RunWith({"tenant", "policy", flag_, "example.test"}).out,
            "example.test\tplaintext_auth=allow\n");
  EXPECT_EQ(RunWith({"tenant", "list", flag_}).out,
            "example.test\tquota_messages=5\tquota_octets=unlimited\tmax_message_bytes=default"
            "\tplaintext_auth=allow\n"
            "strict.test\tquota_messages=unlimited\tquota_octets=unlimited\t"
            "max_message_bytes=default\tplaintext_auth=require_tls\n");
  EXPECT_THAT(RunWith({"user", "show", flag_, "a@example.test"}).out,
              HasSubstr("plaintext_auth\tallow (tenant)\n"));
  ExpectOneLineFailure(
      RunWith({"tenant", "policy", flag_, "example.test", "--plaintext_auth=maybe"}), kExitFailure,
      "expected default, allow or require_tls");
  ExpectOneLineFailure(RunWith({"tenant", "policy", flag_, "bad domain"}), kExitFailure,
                       "malformed domain");
  EXPECT_EQ(RunWith({"tenant", "policy", flag_, "example.test", "--quota_messages=1"}).status,
            kExitUsage);
  ASSERT_EQ(RunWith({"tenant", "policy", flag_, "example.test", "--plaintext_auth=default"}).status,
            kExitOk);
  EXPECT_EQ(RunWith({"tenant", "policy", flag_, "example.test"}).out,
            "example.test\tplaintext_auth=default\n");
}

TEST_F(CliTest, TenantServiceSettingsSetShownAndReset) {
  ASSERT_EQ(RunWith({"user", "add", flag_, "a@example.test"}, "pw\n").status, kExitOk);
  CliRun set = RunWith({"tenant", "policy", flag_, "example.test", "--login_delay_s=900",
                        "--expire_days=0", "--daily_download_bytes=1000000", "--list_newest=50",
                        "--lang=de", "--login_mechanisms=user,scram-sha-256"});
  ASSERT_EQ(set.status, kExitOk) << set.err;
  EXPECT_EQ(set.out,
            "example.test\tplaintext_auth=default\tlogin_delay_s=900\texpire_days=0"
            "\tdaily_download_bytes=1000000\tlist_newest=50\tlogin_mechanisms=SCRAM-SHA-256,USER"
            "\tlang=de\n");
  // One bad value: refused by name, nothing changed (not even the good flags beside it).
  ExpectOneLineFailure(RunWith({"tenant", "policy", flag_, "example.test", "--login_delay_s=5",
                                "--expire_days=soon"}),
                       kExitFailure, "expire_days: expected days, never or default");
  EXPECT_EQ(RunWith({"tenant", "policy", flag_, "example.test"}).out, set.out);
  set = RunWith({"tenant", "policy", flag_, "example.test", "--expire_days=never",
                 "--login_delay_s=default", "--daily_download_bytes=0", "--list_newest=0",
                 "--lang=default", "--login_mechanisms=default"});
  ASSERT_EQ(set.status, kExitOk) << set.err;
  EXPECT_EQ(set.out, "example.test\tplaintext_auth=default\texpire_days=never\n");
}

TEST_F(CliTest, ApopSecretAndAuthPolicies) {
  ASSERT_EQ(RunWith({"user", "add", flag_, "a@example.test"}, "pw\n").status, kExitOk);
  CliRun set = RunWith({"user", "apop-secret", flag_, "A@example.test"}, "tanstaaf\n");
  ASSERT_EQ(set.status, kExitOk) << set.err;
  EXPECT_THAT(set.out, HasSubstr("APOP secret set for A@example.test (stored recoverably"));
  EXPECT_THAT(RunWith({"user", "show", flag_, "a@example.test"}).out,
              HasSubstr("apop_secret\tset\n"));
  ExpectOneLineFailure(RunWith({"user", "apop-secret", flag_, "b@example.test"}, "x\n"),
                       kExitFailure, "unknown user");
  ExpectOneLineFailure(RunWith({"user", "apop-secret", flag_, "a@example.test"}, "\n"),
                       kExitFailure, "empty password");
  ExpectOneLineFailure(RunWith({"user", "apop-secret", flag_, "--remove=no", "a@example.test"}),
                       kExitFailure, "--remove=yes");
  set = RunWith({"user", "apop-secret", flag_, "--remove=yes", "a@example.test"});
  ASSERT_EQ(set.status, kExitOk) << set.err;
  EXPECT_EQ(set.out, "APOP secret removed for a@example.test\n");
  EXPECT_THAT(RunWith({"user", "show", flag_, "a@example.test"}).out,
              ::testing::Not(HasSubstr("apop_secret")));
  CliRun help = RunWith({"user", "apop-secret", "--help"});
  EXPECT_THAT(help.out + help.err, HasSubstr("recoverably"));

  set = RunWith({"tenant", "policy", flag_, "example.test", "--apop=allow",
                 "--master_users=Boss@example.test,help@example.test"});
  ASSERT_EQ(set.status, kExitOk) << set.err;
  EXPECT_EQ(set.out,
            "example.test\tplaintext_auth=default\tapop=allow"
            "\tmaster_users=boss@example.test,help@example.test\n");
  // Changing one setting keeps the others.
  set = RunWith({"tenant", "policy", flag_, "example.test", "--plaintext_auth=allow"});
  EXPECT_EQ(set.out,
            "example.test\tplaintext_auth=allow\tapop=allow"
            "\tmaster_users=boss@example.test,help@example.test\n");
  EXPECT_THAT(RunWith({"tenant", "list", flag_}).out,
              HasSubstr("\tplaintext_auth=allow\tapop=allow\tmaster_users=boss@example.test,"));
  ExpectOneLineFailure(
      RunWith({"tenant", "policy", flag_, "example.test", "--master_users=x@other.test"}),
      kExitFailure, "is not an address of example.test");
  ExpectOneLineFailure(RunWith({"tenant", "policy", flag_, "example.test", "--apop=yes"}),
                       kExitFailure, "expected allow or deny");
  set = RunWith({"tenant", "policy", flag_, "example.test", "--apop=deny", "--master_users=none"});
  EXPECT_EQ(set.out, "example.test\tplaintext_auth=allow\n");
}

TEST_F(CliTest, CheckAndCompact) {
  ASSERT_EQ(RunWith({"user", "add", flag_, "a@example.test"}, "pw\n").status, kExitOk);
  ASSERT_EQ(RunWith({"deliver", flag_, "a@example.test"}, "x\n").status, kExitOk);
  CliRun check = RunWith({"check", flag_});
  ASSERT_EQ(check.status, kExitOk) << check.err;
  EXPECT_EQ(check.out, "ok: 1 accounts, 1 messages, 1 segments\n");
  CliRun compact = RunWith({"compact", flag_});
  ASSERT_EQ(compact.status, kExitOk) << compact.err;
  EXPECT_THAT(compact.out, StartsWith("compacted "));
}

TEST_F(CliTest, StoreExpireRunsOnePassAtTheGivenTime) {
  ASSERT_EQ(RunWith({"user", "add", flag_, "a@example.test"}, "pw\n").status, kExitOk);
  ASSERT_EQ(RunWith({"deliver", flag_, "a@example.test"}, "x\n").status, kExitOk);
  ASSERT_EQ(RunWith({"deliver", flag_, "a@example.test"}, "y\n").status, kExitOk);
  ASSERT_EQ(RunWith({"tenant", "policy", flag_, "example.test", "--expire_days=2"}).status,
            kExitOk);
  {
    auto store = storage::MailStore::Open({.data_dir = dir_});
    ASSERT_TRUE(store.ok()) << store.status();
    auto snap = (*store)->OpenMailbox("a@example.test");
    ASSERT_TRUE(snap.ok());
    ASSERT_TRUE((*store)->RecordRetrievals(**snap, {0}, absl::FromUnixSeconds(1'000'000)).ok());
  }
  CliRun early = RunWith({"store", "expire", flag_, "--now=1172799"});
  ASSERT_EQ(early.status, kExitOk) << early.err;
  EXPECT_THAT(early.out, StartsWith("expired 0 messages"));
  CliRun due = RunWith({"store", "expire", flag_, "--now=1172800"});
  ASSERT_EQ(due.status, kExitOk) << due.err;
  EXPECT_THAT(due.out, StartsWith("expired 1 messages"));
  EXPECT_THAT(due.out, HasSubstr("in 1 accounts of 1 tenants"));
  EXPECT_THAT(due.err, HasSubstr("tenant example.test (EXPIRE 2)"));
  EXPECT_THAT(ListAll(), HasSubstr("a@example.test\t1\t"));
  ExpectOneLineFailure(RunWith({"store", "expire", flag_, "--now=soon"}), kExitFailure,
                       "--now takes unix seconds");
}

TEST_F(CliTest, HeldDataDirectoryIsReportedInOneLine) {
  ASSERT_EQ(RunWith({"user", "add", flag_, "a@example.test"}, "pw\n").status, kExitOk);
  auto holder = storage::MailStore::Open({.data_dir = dir_});
  ASSERT_TRUE(holder.ok()) << holder.status();
  for (const auto& [args, input] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"user", "list", flag_}, ""},
           {{"user", "add", flag_, "b@example.test"}, "pw\n"},
           {{"deliver", flag_, "a@example.test"}, "x\n"},
           {{"check", flag_}, ""}}) {
    ExpectOneLineFailure(RunWith(args, input), kExitFailure, "in use");
  }
  holder->reset();
  EXPECT_EQ(ListAll(), "a@example.test\t0\t0\n");
}

}  // namespace
}  // namespace posthaste::server::cli
