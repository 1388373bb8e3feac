// Case-insensitive addresses in MailStore (real RocksDB and segment files under $TEST_TMPDIR):
// every case variant reaches one account, look-alikes cannot be created, and a store written
// with the old case-sensitive account keys is migrated once, keeping messages and UIDLs, while
// accounts that differ only in case are reported by Check and never merged.
//
// Old-format stores are made the way old binaries made them: accounts created through the
// store, then their keys rewritten in place with RocksDB ("A" domain '\0' local, the local part
// in the case the user gave) and the schema version key removed.
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "storage/mail_store.h"
#include "storage/testing/store_test_base.h"

namespace posthaste::storage {
namespace {

using std::string_literals::operator""s;

std::string AccountKey(const std::string& domain, const std::string& local) {
  return "A"s + domain + '\0' + local;
}

std::string U64(uint64_t v) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}

// Direct access to the index of a closed store.
class RawIndex {
 public:
  explicit RawIndex(const std::string& data_dir) {
    rocksdb::DB* raw = nullptr;
    // No merge operator here: callers fold the store's merge operands first (CompactIndex),
    // since replaying them from the WAL without one would stop the recovery there.
    rocksdb::Options options;
    status_ = rocksdb::DB::Open(options, data_dir + "/index", &raw);
    db_.reset(raw);
  }
  ~RawIndex() {
    if (db_ != nullptr) db_->Close().PermitUncheckedError();
  }
  bool ok() const { return status_.ok(); }
  std::optional<std::string> Get(const std::string& key) {
    std::string value;
    if (!db_->Get(rocksdb::ReadOptions(), key, &value).ok()) return std::nullopt;
    return value;
  }
  void Put(const std::string& key, const std::string& value) {
    ASSERT_TRUE(db_->Put(rocksdb::WriteOptions(), key, value).ok());
  }
  void Delete(const std::string& key) {
    ASSERT_TRUE(db_->Delete(rocksdb::WriteOptions(), key).ok());
  }
  // Moves an account record to another key, as if it had been created under it.
  void Rekey(const std::string& from, const std::string& to) {
    std::optional<std::string> value = Get(from);
    ASSERT_TRUE(value.has_value());
    Delete(from);
    Put(to, *value);
  }

 private:
  rocksdb::Status status_;
  std::unique_ptr<rocksdb::DB> db_;
};

class AccountCaseTest : public testing::StoreTestBase {
 protected:
  AccountInfo MustCreate(const std::string& address) {
    auto created = store_->CreateAccount(address, "{PLAIN}x");
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? *created : AccountInfo{};
  }

  // UIDL and stored bytes of every message, in order.
  std::vector<std::pair<std::string, std::string>> Messages(const std::string& address) {
    std::vector<std::pair<std::string, std::string>> out;
    auto snap = store_->OpenMailbox(address);
    EXPECT_TRUE(snap.ok()) << address << ": " << snap.status();
    if (!snap.ok()) return out;
    for (size_t i = 0; i < (*snap)->size(); ++i) {
      auto bytes = store_->ReadMessageForTest(**snap, i);
      EXPECT_TRUE(bytes.ok()) << bytes.status();
      out.emplace_back(std::string((*snap)->uidl(i)), bytes.ok() ? *bytes : "");
    }
    return out;
  }

  uint64_t IncarnationOf(const std::string& address) {
    auto info = store_->GetAccount(address);
    EXPECT_TRUE(info.ok()) << address << ": " << info.status();
    return info.ok() ? info->incarnation : 0;
  }

  std::string DisplayOf(const std::string& address) {
    auto info = store_->GetAccount(address);
    EXPECT_TRUE(info.ok()) << address << ": " << info.status();
    return info.ok() ? info->display_address : "";
  }

  size_t CheckProblems() {
    auto report = store_->Check();
    EXPECT_TRUE(report.ok()) << report.status();
    for (const std::string& problem : report.ok() ? report->problems : std::vector<std::string>()) {
      ADD_FAILURE() << "check: " << problem;
    }
    return report.ok() ? report->problems.size() : 0;
  }

  // Closes the store for RawIndex (see there).
  void CloseForRawAccess() {
    ASSERT_TRUE(store_->CompactIndex().ok());
    store_.reset();
  }

  // Closes the store and rewrites it into the shape old (case-sensitive) binaries left:
  // `renames` moves records between local parts of `domain`, and the schema version goes.
  void MakeOldFormat(const std::string& domain,
                     const std::vector<std::pair<std::string, std::string>>& renames) {
    CloseForRawAccess();
    RawIndex raw(options_.data_dir);
    ASSERT_TRUE(raw.ok());
    ASSERT_TRUE(raw.Get("Mschema_version").has_value()) << "new stores record their version";
    for (const auto& [from, to] : renames)
      raw.Rekey(AccountKey(domain, from), AccountKey(domain, to));
    raw.Delete("Mschema_version");
  }
};

TEST_F(AccountCaseTest, CaseVariantsReachOneAccount) {
  const AccountInfo created = MustCreate("Alice@T.Test");
  EXPECT_EQ(created.address, "alice@t.test");
  EXPECT_EQ(created.display_address, "Alice@t.test");
  for (const char* variant : {"alice@t.test", "ALICE@T.TEST", "Alice@t.test", "aLiCe@T.tEsT"}) {
    auto info = store_->GetAccount(variant);
    ASSERT_TRUE(info.ok()) << variant << ": " << info.status();
    EXPECT_EQ(info->incarnation, created.incarnation) << variant;
    EXPECT_EQ(info->address, "alice@t.test") << variant;
    EXPECT_EQ(info->display_address, "Alice@t.test") << variant;
  }
  MustDeliver("ALICE@T.TEST", "Subject: one\r\n\r\nx\r\n");
  MustDeliver("alice@t.test", "Subject: two\r\n\r\ny\r\n");
  EXPECT_EQ(Messages("aLiCe@t.test").size(), 2u);
  ASSERT_TRUE(store_->SetQuota("ALICE@t.test", AccountQuota{7, 0}).ok());
  ASSERT_TRUE(store_->SetDisabled("alice@T.TEST", false).ok());
  ASSERT_TRUE(store_->SetPasswordHash("AlIcE@t.test", "{PLAIN}y").ok());
  Reopen();
  auto usage = store_->GetUsage("alice@t.test");
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->address, "alice@t.test");
  EXPECT_EQ(usage->display_address, "Alice@t.test");  // the case given at creation
  EXPECT_EQ(usage->quota.messages, 7u);
  EXPECT_EQ(usage->stats.messages, 2u);
  auto changed = store_->GetAccount("ALICE@T.TEST");
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_EQ(changed->password_hash, "{PLAIN}y");
  auto stats = store_->GetMailboxStats("ALICE@T.TEST");
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->messages, 2u);
  auto list = store_->ListAccounts();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].address, "alice@t.test");
  EXPECT_EQ((*list)[0].display_address, "Alice@t.test");
  // A snapshot opened through one spelling commits deletions for the same account.
  auto snap = store_->OpenMailbox("ALICE@T.TEST");
  ASSERT_TRUE(snap.ok());
  auto deleted = store_->CommitDeletions(**snap, {0});
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  auto after = store_->GetMailboxStats("alice@t.test");
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->messages, 1u);

  ASSERT_TRUE(store_->DeleteAccount("ALICE@T.TEST").ok());
  for (const char* variant : {"alice@t.test", "Alice@t.test"}) {
    EXPECT_EQ(store_->GetAccount(variant).status().code(), absl::StatusCode::kNotFound);
  }
  EXPECT_EQ(CheckProblems(), 0u);
}

TEST_F(AccountCaseTest, CreatingACaseVariantFailsWithAlreadyExists) {
  MustCreate("alice@t.test");
  for (const char* variant : {"ALICE@T.TEST", "Alice@t.test", "alice@T.TEST"}) {
    auto again = store_->CreateAccount(variant, "{PLAIN}other");
    EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists) << variant;
  }
  EXPECT_NE(store_->CreateAccount("ALICE@T.TEST", "h").status().message().find("alice@t.test"),
            std::string::npos)
      << "the message names the existing account";
  auto list = store_->ListAccounts();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 1u);
  auto kept = store_->GetAccount("ALICE@T.TEST");
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->password_hash, "{PLAIN}x");
}

TEST_F(AccountCaseTest, LowercaseAccountsKeepTheRecordOlderBinariesRead) {
  MustCreate("lower@t.test");
  MustCreate("Mixed@t.test");
  CloseForRawAccess();
  RawIndex raw(options_.data_dir);
  ASSERT_TRUE(raw.ok());
  auto lower = raw.Get(AccountKey("t.test", "lower"));
  auto mixed = raw.Get(AccountKey("t.test", "mixed"));
  ASSERT_TRUE(lower.has_value());
  ASSERT_TRUE(mixed.has_value()) << "keyed by the canonical form";
  EXPECT_FALSE(raw.Get(AccountKey("t.test", "Mixed")).has_value());
  EXPECT_EQ((*lower)[0], '\x01');  // version 1: nothing to add
  EXPECT_EQ((*mixed)[0], '\x02');  // version 2: + the display local part
  EXPECT_EQ(mixed->substr(mixed->size() - 6), "\x05Mixed"s);
  EXPECT_EQ(raw.Get("Mschema_version"), U64(2));
}

// SCRAM verifiers ride beside the hash: stored, returned, replaced (or cleared) with it, and
// only records that carry them use the new version 3 (older records still decode).
TEST_F(AccountCaseTest, ScramVerifiersAreKeptBesideTheHashAndClearedWithIt) {
  const ScramVerifiers scram{.sha1 = "SCRAM-SHA-1$4096:a$b:c",
                             .sha256 = "SCRAM-SHA-256$4096:d$e:f"};
  ASSERT_TRUE(store_->CreateAccount("Scram@t.test", "{PLAIN}x", scram).ok());
  ASSERT_TRUE(store_->CreateAccount("plain@t.test", "{PLAIN}y").ok());
  auto got = store_->GetAccount("scram@t.test");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->scram.sha1, scram.sha1);
  EXPECT_EQ(got->scram.sha256, scram.sha256);
  EXPECT_EQ(got->display_address, "Scram@t.test");
  EXPECT_TRUE(store_->GetAccount("plain@t.test")->scram.sha256.empty());
  CloseForRawAccess();
  {
    RawIndex raw(options_.data_dir);
    ASSERT_TRUE(raw.ok());
    EXPECT_EQ((*raw.Get(AccountKey("t.test", "scram")))[0], '\x03');
    EXPECT_EQ((*raw.Get(AccountKey("t.test", "plain")))[0], '\x01');  // as older binaries wrote
  }
  Reopen();
  EXPECT_EQ(store_->GetAccount("scram@t.test")->scram.sha256, scram.sha256);
  // A new hash without verifiers (an imported hash) must not leave the old password usable.
  ASSERT_TRUE(store_->SetPasswordHash("scram@t.test", "{PLAIN}z").ok());
  got = store_->GetAccount("scram@t.test");
  EXPECT_TRUE(got->scram.sha1.empty());
  EXPECT_TRUE(got->scram.sha256.empty());
  EXPECT_EQ(got->display_address, "Scram@t.test");
  ASSERT_TRUE(store_->SetPasswordHash("plain@t.test", "{PLAIN}w", scram).ok());
  EXPECT_EQ(store_->GetAccount("plain@t.test")->scram.sha1, scram.sha1);
}

TEST_F(AccountCaseTest, MigratesMixedCaseKeysKeepingMessagesAndUidls) {
  const AccountInfo alice = MustCreate("alice@t.test");
  const AccountInfo bob = MustCreate("bob@t.test");
  MustDeliver("alice@t.test", "Subject: a1\r\n\r\none\r\n");
  DeliverOptions imported;
  imported.uidl = "imported-uidl-1";
  MustDeliver("alice@t.test", "Subject: a2\r\n\r\ntwo\r\n", imported);
  MustDeliver("alice@t.test", "Subject: a3\r\n\r\nthree\r\n");
  MustDeliver("bob@t.test", "Subject: b1\r\n\r\nbob\r\n");
  ASSERT_TRUE(store_->SetQuota("alice@t.test", AccountQuota{50, 0}).ok());
  const auto alice_messages = Messages("alice@t.test");
  const auto bob_messages = Messages("bob@t.test");
  ASSERT_EQ(alice_messages.size(), 3u);
  // Old binaries stored "Alice@t.test" under its own case.
  MakeOldFormat("t.test", {{"alice", "Alice"}});

  Reopen();  // migrates
  for (const char* variant : {"alice@t.test", "Alice@t.test", "ALICE@T.TEST"}) {
    auto info = store_->GetAccount(variant);
    ASSERT_TRUE(info.ok()) << variant << ": " << info.status();
    EXPECT_EQ(info->incarnation, alice.incarnation);
    EXPECT_EQ(info->address, "alice@t.test");
    EXPECT_EQ(info->display_address, "Alice@t.test");
    EXPECT_EQ(info->quota.messages, 50u);
  }
  EXPECT_EQ(Messages("ALICE@t.test"), alice_messages);  // same UIDLs, same bytes
  EXPECT_EQ(Messages("bob@t.test"), bob_messages);
  EXPECT_EQ(IncarnationOf("BOB@t.test"), bob.incarnation);
  // The imported UIDL is still known to the account (never reused).
  DeliverOptions reuse;
  reuse.uidl = "imported-uidl-1";
  EXPECT_EQ(store_->Deliver("alice@t.test", "x\r\n", reuse).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->CreateAccount("ALICE@t.test", "h").status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(CheckProblems(), 0u);
  MustDeliver("Alice@T.test", "Subject: a4\r\n\r\nfour\r\n");

  // Recorded once: the keys are canonical and the version is current; reopening changes
  // nothing.
  CloseForRawAccess();
  {
    RawIndex raw(options_.data_dir);
    ASSERT_TRUE(raw.ok());
    EXPECT_TRUE(raw.Get(AccountKey("t.test", "alice")).has_value());
    EXPECT_FALSE(raw.Get(AccountKey("t.test", "Alice")).has_value());
    EXPECT_EQ(raw.Get("Mschema_version"), U64(2));
    EXPECT_FALSE(raw.Get("Mcase_collisions").has_value());
  }
  Reopen();
  EXPECT_EQ(Messages("alice@t.test").size(), 4u);
  EXPECT_EQ(DisplayOf("alice@t.test"), "Alice@t.test");
}

TEST_F(AccountCaseTest, CollisionsAreReportedAndNeverMerged) {
  const AccountInfo bob = MustCreate("bob@t.test");
  const AccountInfo other_bob = MustCreate("carol@t.test");  // becomes BOB@t.test
  const AccountInfo eve1 = MustCreate("eve1@t.test");        // becomes Eve@t.test
  const AccountInfo eve2 = MustCreate("eve2@t.test");        // becomes EVE@t.test
  MustDeliver("bob@t.test", "Subject: to bob\r\n\r\n1\r\n");
  MustDeliver("carol@t.test", "Subject: to BOB\r\n\r\n1\r\n");
  MustDeliver("carol@t.test", "Subject: to BOB\r\n\r\n2\r\n");
  MustDeliver("eve1@t.test", "Subject: to Eve\r\n\r\n1\r\n");
  const auto bob_messages = Messages("bob@t.test");
  const auto other_bob_messages = Messages("carol@t.test");
  const auto eve1_messages = Messages("eve1@t.test");
  MakeOldFormat("t.test", {{"carol", "BOB"}, {"eve1", "Eve"}, {"eve2", "EVE"}});

  Reopen();
  // Nothing merged: each account keeps its own mailbox, reached by its exact old spelling;
  // other spellings reach the canonical account when there is one.
  EXPECT_EQ(IncarnationOf("bob@t.test"), bob.incarnation);
  EXPECT_EQ(IncarnationOf("Bob@t.test"), bob.incarnation);
  EXPECT_EQ(IncarnationOf("BOB@t.test"), other_bob.incarnation);
  EXPECT_EQ(IncarnationOf("Eve@t.test"), eve1.incarnation);
  EXPECT_EQ(IncarnationOf("EVE@t.test"), eve2.incarnation);
  EXPECT_EQ(store_->GetAccount("eve@t.test").status().code(), absl::StatusCode::kNotFound)
      << "ambiguous: neither is the canonical account";
  EXPECT_EQ(Messages("bob@t.test"), bob_messages);
  EXPECT_EQ(Messages("BOB@t.test"), other_bob_messages);
  EXPECT_EQ(Messages("Eve@t.test"), eve1_messages);
  EXPECT_EQ(DisplayOf("BOB@t.test"), "BOB@t.test");
  // No further look-alike can be created.
  for (const char* variant : {"BoB@t.test", "eve@t.test", "eVE@t.test"}) {
    EXPECT_EQ(store_->CreateAccount(variant, "h").status().code(), absl::StatusCode::kAlreadyExists)
        << variant;
  }

  auto check = store_->Check();
  ASSERT_TRUE(check.ok());
  EXPECT_EQ(check->accounts, 4u);
  ASSERT_EQ(check->problems.size(), 2u);
  EXPECT_NE(check->problems[0].find("accounts BOB@t.test and bob@t.test differ only in case"),
            std::string::npos)
      << check->problems[0];
  EXPECT_NE(check->problems[1].find("accounts EVE@t.test and Eve@t.test differ only in case"),
            std::string::npos)
      << check->problems[1];
  // Reopening keeps them apart (the migration is not redone on top of them).
  Reopen();
  EXPECT_EQ(IncarnationOf("BOB@t.test"), other_bob.incarnation);
  auto again = store_->Check();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->problems.size(), 2u);

  // The operator resolves each group by deleting all but one account.
  ASSERT_TRUE(store_->DeleteAccount("BOB@t.test").ok());
  EXPECT_EQ(IncarnationOf("BOB@t.test"), bob.incarnation);
  EXPECT_EQ(Messages("BOB@t.test"), bob_messages);
  ASSERT_TRUE(store_->DeleteAccount("EVE@t.test").ok());
  EXPECT_EQ(IncarnationOf("eve@t.test"), eve1.incarnation) << "the only one left of its group";
  EXPECT_EQ(IncarnationOf("EVE@t.test"), eve1.incarnation);
  EXPECT_EQ(CheckProblems(), 0u);
  // The next open moves the survivor to its canonical key, keeping its spelling and mail.
  Reopen();
  EXPECT_EQ(IncarnationOf("eve@t.test"), eve1.incarnation);
  EXPECT_EQ(DisplayOf("eve@t.test"), "Eve@t.test");
  EXPECT_EQ(Messages("EVE@T.TEST"), eve1_messages);
  CloseForRawAccess();
  RawIndex raw(options_.data_dir);
  ASSERT_TRUE(raw.ok());
  EXPECT_TRUE(raw.Get(AccountKey("t.test", "eve")).has_value());
  EXPECT_FALSE(raw.Get(AccountKey("t.test", "Eve")).has_value());
  EXPECT_FALSE(raw.Get("Mcase_collisions").has_value());
}

TEST_F(AccountCaseTest, StoreFromANewerBinaryIsRefused) {
  store_.reset();
  {
    RawIndex raw(options_.data_dir);
    ASSERT_TRUE(raw.ok());
    raw.Put("Mschema_version", U64(3));
  }
  auto opened = MailStore::Open(options_);
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kFailedPrecondition) << opened.status();
  EXPECT_EQ(ErrorOf(opened), StoreError::kNewerSchema);
}

}  // namespace
}  // namespace posthaste::storage
