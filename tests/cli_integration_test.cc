// Runs the real bazel-bin/server/posthaste binary: every subcommand's output, and every kind of
// bad input exits non-zero with one line on stderr and leaves `user list` unchanged.
#include <dirent.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/auth/password_hash.h"
#include "storage/mail_store.h"
#include "tests/subprocess.h"

namespace posthaste {
namespace {

using ::posthaste::testing::MakeTempDir;
using ::posthaste::testing::ProcessResult;
using ::posthaste::testing::RunfilePath;
using ::posthaste::testing::RunProcess;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

size_t Lines(const std::string& text) { return std::count(text.begin(), text.end(), '\n'); }

void WriteFile(const std::string& path, std::string_view content, int64_t mtime = 0) {
  std::ofstream out(path, std::ios::binary);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  out.close();
  if (mtime != 0) {
    struct timeval times[2] = {{mtime, 0}, {mtime, 0}};
    utimes(path.c_str(), times);
  }
}

class PosthasteBinaryTest : public ::testing::Test {
 protected:
  PosthasteBinaryTest()
      : binary_(RunfilePath("server/posthaste")), dir_(MakeTempDir("data") + "/store") {}

  ProcessResult Posthaste(std::vector<std::string> args, std::string_view input = "") {
    args.insert(args.begin(), binary_);
    return RunProcess(args, input);
  }

  ProcessResult Ok(std::vector<std::string> args, std::string_view input = "") {
    ProcessResult result = Posthaste(args, input);
    EXPECT_EQ(result.exit_code, 0) << args[0] << " " << args[1] << ": " << result.err;
    return result;
  }

  std::string List() { return Ok({"user", "list", "--data_dir=" + dir_}).out; }

  // Runs a command that must fail: non-zero exit, exactly one "posthaste: " line on stderr
  // mentioning `needle`, nothing on stdout, and no change to the accounts and counters.
  void ExpectRefused(std::vector<std::string> args, std::string_view input, std::string_view needle,
                     int exit_code = 1) {
    const std::string before = List();
    ProcessResult result = Posthaste(args, input);
    EXPECT_EQ(result.exit_code, exit_code) << result.err;
    EXPECT_EQ(Lines(result.err), 1u) << result.err;
    EXPECT_THAT(result.err, StartsWith("posthaste: "));
    EXPECT_THAT(result.err, HasSubstr(std::string(needle)));
    EXPECT_EQ(result.out, "");
    EXPECT_EQ(List(), before) << "refused command changed the store: " << result.err;
  }

  std::string DataDir() const { return "--data_dir=" + dir_; }

  std::string binary_;
  std::string dir_;
};

TEST_F(PosthasteBinaryTest, HelpAndUnknownCommandsPrintUsageAndExit2) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"--help"}, {}, {"frobnicate"}}) {
    ProcessResult result = Posthaste(args);
    EXPECT_EQ(result.exit_code, 2);
    EXPECT_THAT(result.err, HasSubstr("posthaste user add --data_dir=DIR ADDRESS"));
    EXPECT_THAT(result.err, HasSubstr("posthaste check --data_dir=DIR"));
    EXPECT_EQ(result.out, "");
  }
}

TEST_F(PosthasteBinaryTest, EverySubcommandSucceeds) {
  EXPECT_EQ(Ok({"user", "add", DataDir(), "demo@example.test"}, "demo\n").out,
            "added demo@example.test\n");
  EXPECT_EQ(Ok({"user", "add", "--data_dir", dir_, "zed@other.test"}, "pw").out,
            "added zed@other.test\n");
  ProcessResult delivered =
      Ok({"deliver", DataDir(), "demo@example.test"}, "Subject: hello\n\n.dotted\nbody\n");
  EXPECT_EQ(Lines(delivered.out), 1u);
  EXPECT_TRUE(storage::ValidateUidl(delivered.out.substr(0, delivered.out.size() - 1)).ok());
  // "Subject: hello\r\n\r\n..dotted\r\nbody\r\n" has POP3 size 33 (dot-stuffing not counted).
  EXPECT_EQ(List(), "demo@example.test\t1\t33\nzed@other.test\t0\t0\n");
  EXPECT_EQ(Ok({"user", "list", DataDir(), "example.test"}).out, "demo@example.test\t1\t33\n");
  EXPECT_EQ(Ok({"user", "passwd", DataDir(), "demo@example.test"}, "changed\n").out,
            "password changed for demo@example.test\n");
  EXPECT_THAT(Ok({"check", DataDir()}).out, MatchesRegex("ok: 2 accounts, 1 messages, .*\n"));
  EXPECT_THAT(Ok({"compact", DataDir()}).out, StartsWith("compacted "));
  EXPECT_EQ(Ok({"user", "del", DataDir(), "zed@other.test"}).out, "deleted zed@other.test\n");
  EXPECT_EQ(List(), "demo@example.test\t1\t33\n");

  auto store = storage::MailStore::Open({.data_dir = dir_});
  ASSERT_TRUE(store.ok()) << store.status();
  auto account = (*store)->GetAccount("demo@example.test");
  ASSERT_TRUE(account.ok());
  EXPECT_TRUE(*auth::VerifyPassword("changed", account->password_hash));
  auto snapshot = (*store)->OpenMailbox("demo@example.test");
  ASSERT_TRUE(snapshot.ok());
  EXPECT_EQ(*(*store)->ReadMessageForTest(**snapshot, 0), "Subject: hello\r\n\r\n..dotted\r\nbody\r\n");
}

TEST_F(PosthasteBinaryTest, BadInputExitsNonZeroWithOneLineAndChangesNothing) {
  Ok({"user", "add", DataDir(), "a@example.test"}, "pw\n");
  Ok({"deliver", DataDir(), "a@example.test"}, "Subject: x\n\nx\n");
  {
    auto store = storage::MailStore::Open({.data_dir = dir_});
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->SetQuota("a@example.test", {2, 0}).ok());
    ASSERT_TRUE((*store)->CreateAccount("full@example.test", "{PLAIN}x").ok());
    ASSERT_TRUE((*store)->SetQuota("full@example.test", {0, 10}).ok());
    ASSERT_TRUE((*store)->CreateAccount("big@example.test", "{PLAIN}x").ok());
  }
  // Missing arguments.
  ExpectRefused({"user", "add", DataDir()}, "pw\n", "missing arguments", 2);
  ExpectRefused({"deliver", "a@example.test"}, "x\n", "missing --data_dir", 2);
  ExpectRefused({"import", "maildir", DataDir(), "a@example.test"}, "", "missing arguments", 2);
  // Malformed address, unknown user, duplicate user, empty password.
  ExpectRefused({"user", "add", DataDir(), "no-at-sign"}, "pw\n", "malformed address");
  ExpectRefused({"deliver", DataDir(), "a@@example.test"}, "x\n", "malformed address");
  ExpectRefused({"deliver", DataDir(), "nobody@example.test"}, "x\n", "unknown user");
  ExpectRefused({"user", "del", DataDir(), "nobody@example.test"}, "", "unknown user");
  ExpectRefused({"user", "passwd", DataDir(), "nobody@example.test"}, "pw\n", "unknown user");
  ExpectRefused({"user", "add", DataDir(), "a@example.test"}, "pw\n", "already exists");
  ExpectRefused({"user", "add", DataDir(), "b@example.test"}, "\n", "empty password");
  // Over quota (messages and octets) and over size.
  Ok({"deliver", DataDir(), "a@example.test"}, "Subject: y\n\ny\n");
  ExpectRefused({"deliver", DataDir(), "a@example.test"}, "Subject: z\n\nz\n", "quota");
  ExpectRefused({"deliver", DataDir(), "full@example.test"}, std::string(100, 'x'), "quota");
  ExpectRefused({"deliver", DataDir(), "big@example.test"}, std::string(51 << 20, 'x'),
                "exceeds the maximum message size");
  // Unreadable files and directories for import.
  const std::string maildir = MakeTempDir("maildir");
  mkdir((maildir + "/new").c_str(), 0755);
  WriteFile(maildir + "/new/1000.M1.host", "Subject: a\n\na\n");
  ASSERT_EQ(symlink("/nonexistent", (maildir + "/new/2000.M1.host").c_str()), 0);
  ExpectRefused({"import", "maildir", DataDir(), "full@example.test", maildir}, "", "2000.M1.host");
  ExpectRefused({"import", "maildir", DataDir(), "full@example.test", maildir + "/missing"}, "",
                "missing");
  // A data directory that does not exist is not created by a failing command.
  const std::string absent = MakeTempDir("absent") + "/store";
  ProcessResult result = Posthaste({"deliver", "--data_dir=" + absent, "a@example.test"}, "x\n");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_EQ(Lines(result.err), 1u);
  struct stat st;
  EXPECT_NE(stat(absent.c_str(), &st), 0);
}

TEST_F(PosthasteBinaryTest, TenantPolicyIsStoredWithTheTenant) {
  Ok({"user", "add", DataDir(), "a@example.test"}, "pw\n");
  EXPECT_EQ(Ok({"tenant", "policy", DataDir(), "example.test"}).out,
            "example.test\tplaintext_auth=default\n");
  EXPECT_EQ(Ok({"tenant", "policy", DataDir(), "example.test", "--plaintext_auth=allow"}).out,
            "example.test\tplaintext_auth=allow\n");
  Ok({"tenant", "limits", DataDir(), "example.test", "--quota_messages=3"});
  EXPECT_THAT(Ok({"user", "show", DataDir(), "a@example.test"}).out,
              HasSubstr("plaintext_auth\tallow (tenant)\n"));
  EXPECT_EQ(Ok({"tenant", "list", DataDir()}).out,
            "example.test\tquota_messages=3\tquota_octets=unlimited\tmax_message_bytes=default"
            "\tplaintext_auth=allow\n");
  ExpectRefused({"tenant", "policy", DataDir(), "example.test", "--plaintext_auth=yes"}, "",
                "expected default, allow or require_tls");
  ExpectRefused({"tenant", "policy", DataDir(), "example.test", "--plaintext"}, "",
                "unknown flag", 2);
  // What the CLI wrote is what the store reads.
  auto store = storage::MailStore::Open({.data_dir = dir_});
  ASSERT_TRUE(store.ok()) << store.status();
  auto tenant = (*store)->GetTenant("example.test");
  ASSERT_TRUE(tenant.ok());
  EXPECT_EQ(tenant->policy.plaintext_auth, storage::PlaintextAuth::kAllow);
  EXPECT_EQ(tenant->limits.quota_messages, 3u);
}

TEST_F(PosthasteBinaryTest, ImportMaildirKeepsDovecotUidlsAndReimportSkips) {
  Ok({"user", "add", DataDir(), "m@example.test"}, "pw\n");
  const std::string maildir = MakeTempDir("maildir");
  for (const char* sub : {"cur", "new", "tmp"}) mkdir((maildir + "/" + sub).c_str(), 0755);
  WriteFile(maildir + "/dovecot-uidlist",
            "3 V1700000000 N4 G0123456789abcdef0123456789abcdef\n"
            "1 :1700000001.M1P1.host,S=20:2,S\n"
            "2 W30 :1700000002.M2P1.host,S=20\n"
            "3 P7f000001-legacy :1700000003.M3P1.host,S=20:2,RS\n");
  WriteFile(maildir + "/cur/1700000001.M1P1.host,S=20:2,S", "Subject: 1\n\none\n", 1700000001);
  WriteFile(maildir + "/new/1700000002.M2P1.host,S=20", "Subject: 2\n\ntwo\n", 1700000002);
  WriteFile(maildir + "/cur/1700000003.M3P1.host,S=20:2,RS", "Subject: 3\n\nthree\n", 1700000003);
  WriteFile(maildir + "/tmp/1700000004.M4P1.host", "Subject: tmp\n\nnot imported\n");

  ProcessResult first = Ok({"import", "maildir", DataDir(), "m@example.test", maildir});
  EXPECT_THAT(first.out, StartsWith("imported 3 messages"));
  EXPECT_THAT(first.out, HasSubstr("skipped 0"));
  EXPECT_THAT(first.err, HasSubstr("3/3 messages"));  // progress shown

  ProcessResult again = Ok({"import", "maildir", DataDir(), "m@example.test", maildir});
  EXPECT_THAT(again.out, StartsWith("imported 0 messages"));
  EXPECT_THAT(again.out, HasSubstr("skipped 3 already present"));
  EXPECT_EQ(List(), "m@example.test\t3\t59\n");

  auto store = storage::MailStore::Open({.data_dir = dir_});
  ASSERT_TRUE(store.ok());
  auto snapshot = (*store)->OpenMailbox("m@example.test");
  ASSERT_TRUE(snapshot.ok());
  std::vector<std::string> uidls;
  for (size_t i = 0; i < (*snapshot)->size(); ++i) uidls.emplace_back((*snapshot)->uidl(i));
  EXPECT_THAT(uidls, ElementsAre("000000016553f100", "000000026553f100", "7f000001-legacy"));
  EXPECT_EQ((*snapshot)->arrival_time(2), absl::FromUnixSeconds(1700000003));
  EXPECT_EQ(*(*store)->ReadMessageForTest(**snapshot, 1), "Subject: 2\r\n\r\ntwo\r\n");
}

TEST_F(PosthasteBinaryTest, CheckReportsIndexEntriesPointingOutsideASegment) {
  Ok({"user", "add", DataDir(), "a@example.test"}, "pw\n");
  Ok({"deliver", DataDir(), "a@example.test"}, "Subject: x\n\n" + std::string(5000, 'x') + "\n");
  EXPECT_THAT(Ok({"check", DataDir()}).out, StartsWith("ok: 1 accounts, 1 messages"));
  // Cut every segment file short: the index now points past their ends.
  const std::string segments = dir_ + "/segments";
  std::unique_ptr<DIR, int (*)(DIR*)> d(opendir(segments.c_str()), closedir);
  ASSERT_NE(d, nullptr);
  int truncated = 0;
  while (dirent* entry = readdir(d.get())) {
    if (entry->d_name[0] == '.') continue;
    ASSERT_EQ(truncate((segments + "/" + entry->d_name).c_str(), 100), 0);
    ++truncated;
  }
  ASSERT_GT(truncated, 0);
  ProcessResult check = Posthaste({"check", DataDir()});
  EXPECT_EQ(check.exit_code, 1);
  EXPECT_GE(Lines(check.out), 1u);  // one line per problem
  EXPECT_THAT(check.out, HasSubstr("a@example.test"));
  EXPECT_EQ(Lines(check.err), 1u) << check.err;
  EXPECT_THAT(check.err, MatchesRegex("posthaste: check: [0-9]+ problems found .*\n"));
}

TEST_F(PosthasteBinaryTest, HeldDataDirectoryIsReportedInOneLine) {
  Ok({"user", "add", DataDir(), "a@example.test"}, "pw\n");
  auto holder = storage::MailStore::Open({.data_dir = dir_});
  ASSERT_TRUE(holder.ok()) << holder.status();
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"user", "list", DataDir()},
                                             {"deliver", DataDir(), "a@example.test"},
                                             {"check", DataDir()},
                                             {"user", "del", DataDir(), "a@example.test"}}) {
    ProcessResult result = Posthaste(args, "Subject: x\n\nx\n");
    EXPECT_EQ(result.exit_code, 1) << args[0];
    EXPECT_EQ(Lines(result.err), 1u) << result.err;
    EXPECT_THAT(result.err, HasSubstr("in use"));
    EXPECT_THAT(result.err, HasSubstr(std::to_string(getpid())));
  }
  holder->reset();
  EXPECT_EQ(List(), "a@example.test\t0\t0\n");
}

}  // namespace
}  // namespace posthaste
