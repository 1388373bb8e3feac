// Mailbox pages between two real stores (RocksDB and segment files on disk).
#include "storage/migration/mailbox_transfer.h"

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/mail_store.h"
#include "storage/testing/store_test_base.h"

namespace posthaste::storage::migration {
namespace {

using ::posthaste::storage::testing::NewDataDirForTest;

class MailboxTransferTest : public ::posthaste::storage::testing::StoreTestBase {
 protected:
  void SetUp() override {
    StoreTestBase::SetUp();
    StoreOptions target_options;
    target_options.data_dir = NewDataDirForTest();
    auto target = MailStore::Open(target_options);
    ASSERT_TRUE(target.ok()) << target.status();
    target_ = *std::move(target);
    ASSERT_TRUE(store_->CreateAccount("Ann@Example.org", "$hash$ann").ok());
    ASSERT_TRUE(store_->SetQuota("ann@example.org", AccountQuota{5000, 0}).ok());
  }

  // UIDL -> stored bytes of every message of `address` in `store`.
  static std::map<std::string, std::string> Contents(MailStore& store, std::string_view address) {
    std::map<std::string, std::string> out;
    auto snapshot = store.OpenMailbox(address);
    EXPECT_TRUE(snapshot.ok()) << snapshot.status();
    if (!snapshot.ok()) return out;
    for (size_t i = 0; i < (*snapshot)->size(); ++i) {
      auto bytes = store.ReadMessageForTest(**snapshot, i);
      EXPECT_TRUE(bytes.ok());
      out[std::string((*snapshot)->uidl(i))] = bytes.ok() ? *bytes : "";
    }
    return out;
  }

  // Copies every page from the source to the target, starting after `after_seq`.
  ImportPageResult CopyPass(uint64_t page_bytes_max, uint64_t after_seq = 0) {
    ImportPageResult total;
    for (int pages = 0; pages < 10000; ++pages) {
      std::string page;
      auto exported = ExportMailboxPage(*store_, "ann@example.org",
                                        ExportPageOptions{after_seq, page_bytes_max}, &page);
      EXPECT_TRUE(exported.ok()) << exported.status();
      if (!exported.ok()) break;
      auto imported = ImportMailboxPage(*target_, "ann@example.org", page);
      EXPECT_TRUE(imported.ok()) << imported.status();
      if (!imported.ok()) break;
      total.imported += imported->imported;
      total.skipped += imported->skipped;
      total.deleted += imported->deleted;
      total.account_created |= imported->account_created;
      EXPECT_EQ(imported->complete, exported->complete);
      after_seq = exported->next_after_seq;
      if (exported->complete) {
        total.complete = true;
        break;
      }
    }
    return total;
  }

  std::unique_ptr<MailStore> target_;
};

TEST_F(MailboxTransferTest, CopiesAccountAndMessagesWithUidlsAndArrivalTimes) {
  for (int i = 0; i < 40; ++i) {
    DeliverOptions options;
    options.arrival_time = absl::FromUnixSeconds(1700000000 + i);
    MustDeliver(
        "ann@example.org",
        absl::StrCat("Subject: ", i, "\r\n\r\n.dotted line ", std::string(i * 50, 'x'), "\r\n"),
        options);
  }
  const ImportPageResult result = CopyPass(/*page_bytes_max=*/512);
  EXPECT_TRUE(result.complete);
  EXPECT_TRUE(result.account_created);
  EXPECT_EQ(result.imported, 40u);
  EXPECT_EQ(Contents(*target_, "ann@example.org"), Contents(*store_, "ann@example.org"));

  auto account = target_->GetAccount("ann@example.org");
  ASSERT_TRUE(account.ok()) << account.status();
  EXPECT_EQ(account->display_address, "Ann@example.org");
  EXPECT_EQ(account->password_hash, "$hash$ann");
  EXPECT_EQ(account->quota.messages, 5000u);
  auto source = MustOpen("ann@example.org");
  auto target = target_->OpenMailbox("ann@example.org");
  ASSERT_TRUE(target.ok());
  ASSERT_EQ((*target)->size(), source->size());
  for (size_t i = 0; i < source->size(); ++i) {
    EXPECT_EQ((*target)->uidl(i), source->uidl(i));
    EXPECT_EQ((*target)->arrival_time(i), source->arrival_time(i));
    EXPECT_EQ((*target)->pop3_size(i), source->pop3_size(i));
  }
}

TEST_F(MailboxTransferTest, CarriesScramVerifiersAndTheSharedSecretAndTheirRemoval) {
  ASSERT_TRUE(store_
                  ->SetPasswordHash("ann@example.org", "$hash$ann2",
                                    ScramVerifiers{.sha1 = "SCRAM-SHA-1$v1", .sha256 = "v256"})
                  .ok());
  ASSERT_TRUE(store_->SetSharedSecret("ann@example.org", "tanstaaf").ok());
  MustDeliver("ann@example.org", "Subject: s\r\n\r\nx\r\n");
  EXPECT_TRUE(CopyPass(/*page_bytes_max=*/512).complete);
  auto account = target_->GetAccount("ann@example.org");
  ASSERT_TRUE(account.ok()) << account.status();
  EXPECT_EQ(account->password_hash, "$hash$ann2");
  EXPECT_EQ(account->scram.sha1, "SCRAM-SHA-1$v1");
  EXPECT_EQ(account->scram.sha256, "v256");
  EXPECT_EQ(account->shared_secret, "tanstaaf");
  // The source drops both (a new password without verifiers, the secret removed): so does a
  // repeated pass.
  ASSERT_TRUE(store_->SetPasswordHash("ann@example.org", "$hash$ann3").ok());
  ASSERT_TRUE(store_->SetSharedSecret("ann@example.org", "").ok());
  EXPECT_TRUE(CopyPass(/*page_bytes_max=*/512).complete);
  account = target_->GetAccount("ann@example.org");
  ASSERT_TRUE(account.ok()) << account.status();
  EXPECT_EQ(account->password_hash, "$hash$ann3");
  EXPECT_TRUE(account->scram.sha256.empty());
  EXPECT_TRUE(account->shared_secret.empty());
}

TEST_F(MailboxTransferTest, SecretsFrameOnlyOnceAndBeforeMessages) {
  ASSERT_TRUE(store_->SetSharedSecret("ann@example.org", "tanstaaf").ok());
  MustDeliver("ann@example.org", "Subject: s\r\n\r\nx\r\n");
  std::string page;
  ASSERT_TRUE(ExportMailboxPage(*store_, "ann@example.org", {}, &page).ok());
  ASSERT_TRUE(CheckMailboxPage(page).ok());
  // Find the 'S' frame (kind, u32 length, u32 CRC, payload) and repeat it after itself.
  const size_t a_length_at = kTransferMagic.size() + 1;
  uint32_t a_length = 0;
  for (int i = 3; i >= 0; --i)
    a_length = a_length << 8 | static_cast<uint8_t>(page[a_length_at + i]);
  const size_t s_at = kTransferMagic.size() + 9 + a_length;
  ASSERT_EQ(page[s_at], 'S');
  uint32_t s_length = 0;
  for (int i = 3; i >= 0; --i) s_length = s_length << 8 | static_cast<uint8_t>(page[s_at + 1 + i]);
  const std::string s_frame = page.substr(s_at, 9 + s_length);
  std::string twice = page;
  twice.insert(s_at, s_frame);
  EXPECT_EQ(CheckMailboxPage(twice).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MailboxTransferTest, RepeatedPassesNeitherDuplicateNorLoseAndCarryDeletions) {
  for (int i = 0; i < 30; ++i)
    MustDeliver("ann@example.org", absl::StrCat("Subject: ", i, "\r\n\r\nbody\r\n"));
  EXPECT_EQ(CopyPass(300).imported, 30u);
  // Meanwhile the source serves: a client deletes two messages, two more arrive.
  auto snapshot = MustOpen("ann@example.org");
  ASSERT_TRUE(store_->CommitDeletions(*snapshot, {0, 7}).ok());
  MustDeliver("ann@example.org", "Subject: late 1\r\n\r\nx\r\n");
  MustDeliver("ann@example.org", "Subject: late 2\r\n\r\ny\r\n");
  ASSERT_TRUE(store_->SetPasswordHash("ann@example.org", "$hash$new").ok());

  const ImportPageResult delta = CopyPass(300);
  EXPECT_EQ(delta.imported, 2u);
  EXPECT_EQ(delta.skipped, 28u);
  EXPECT_EQ(delta.deleted, 2u);
  EXPECT_EQ(Contents(*target_, "ann@example.org"), Contents(*store_, "ann@example.org"));
  EXPECT_EQ(target_->GetAccount("ann@example.org")->password_hash, "$hash$new");

  // A third pass (a re-run after a crash) changes nothing.
  const ImportPageResult again = CopyPass(1 << 20);
  EXPECT_EQ(again.imported, 0u);
  EXPECT_EQ(again.deleted, 0u);
  EXPECT_EQ(target_->GetMailboxStats("ann@example.org")->messages, 30u);
}

TEST_F(MailboxTransferTest, ResumesFromTheCursorAfterAnInterruptedPass) {
  for (int i = 0; i < 20; ++i)
    MustDeliver("ann@example.org", absl::StrCat("Subject: ", i, "\r\n\r\nb\r\n"));
  std::string page;
  auto first = ExportMailboxPage(*store_, "ann@example.org", ExportPageOptions{0, 100}, &page);
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first->complete);
  ASSERT_TRUE(ImportMailboxPage(*target_, "ann@example.org", page).ok());
  // The same page imported twice (the acknowledgement was lost) stores nothing new.
  auto twice = ImportMailboxPage(*target_, "ann@example.org", page);
  ASSERT_TRUE(twice.ok());
  EXPECT_EQ(twice->imported, 0u);
  EXPECT_EQ(twice->skipped, first->messages);
  const ImportPageResult rest = CopyPass(100, first->next_after_seq);
  EXPECT_TRUE(rest.complete);
  EXPECT_EQ(rest.imported + first->messages, 20u);
  EXPECT_EQ(Contents(*target_, "ann@example.org"), Contents(*store_, "ann@example.org"));
}

TEST_F(MailboxTransferTest, DisabledAccountStaysDisabledAndStillGetsItsMail) {
  MustDeliver("ann@example.org", "Subject: a\r\n\r\nb\r\n");
  ASSERT_TRUE(store_->SetDisabled("ann@example.org", true).ok());
  EXPECT_TRUE(CopyPass(1 << 20).complete);
  EXPECT_TRUE(target_->GetAccount("ann@example.org")->disabled);
  EXPECT_EQ(target_->GetMailboxStats("ann@example.org")->messages, 1u);
}

TEST_F(MailboxTransferTest, DamagedPagesAreRefusedBeforeAnythingIsStored) {
  for (int i = 0; i < 3; ++i)
    MustDeliver("ann@example.org", absl::StrCat("Subject: ", i, "\r\n\r\nb\r\n"));
  std::string page;
  ASSERT_TRUE(ExportMailboxPage(*store_, "ann@example.org", ExportPageOptions{}, &page).ok());
  ASSERT_TRUE(CheckMailboxPage(page).ok());

  std::string flipped = page;
  flipped[page.size() / 2] ^= 0x40;
  EXPECT_EQ(ImportMailboxPage(*target_, "ann@example.org", flipped).status().code(),
            absl::StatusCode::kDataLoss);
  for (size_t cut : {size_t{0}, size_t{5}, size_t{8}, size_t{12}, page.size() - 1}) {
    EXPECT_FALSE(CheckMailboxPage(page.substr(0, cut)).ok()) << cut;
  }
  EXPECT_FALSE(CheckMailboxPage(page + "E").ok());
  EXPECT_EQ(ErrorOf(target_->GetAccount("ann@example.org")), StoreError::kUnknownAccount);
  // A page for another account is refused.
  EXPECT_EQ(ImportMailboxPage(*target_, "bob@example.org", page).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(MailboxTransferTest, UnknownAccountIsTheStoresError) {
  std::string page;
  EXPECT_EQ(ErrorOf(ExportMailboxPage(*store_, "nobody@example.org", ExportPageOptions{}, &page)),
            StoreError::kUnknownAccount);
}

}  // namespace
}  // namespace posthaste::storage::migration
