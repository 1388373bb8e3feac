// The StoreError kind of every error MailStore reports, on a real store under $TEST_TMPDIR:
// each kind where it should appear, and the payload surviving a batch's "message i of n".
#include "storage/store_error.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/mail_store.h"
#include "storage/testing/store_test_base.h"

namespace posthaste::storage {
namespace {

using testing::NewDataDirForTest;

class StoreErrorTest : public testing::StoreTestBase {
 protected:
  void Create(const std::string& address) {
    auto created = store_->CreateAccount(address, "{PLAIN}x");
    ASSERT_TRUE(created.ok()) << created.status();
  }
};

TEST(StoreErrorKind, OkAndForeignStatusesCarryNone) {
  EXPECT_EQ(ErrorOf(absl::OkStatus()), StoreError::kNone);
  EXPECT_EQ(ErrorOf(absl::NotFoundError("not from storage")), StoreError::kNone);
  EXPECT_EQ(ErrorOf(absl::StatusOr<int>(3)), StoreError::kNone);
  EXPECT_EQ(StoreErrorName(StoreError::kNone), "none");
}

TEST(StoreErrorKind, EveryKindRoundTripsWithItsCodeAndName) {
  const struct {
    StoreError kind;
    absl::StatusCode code;
  } kCases[] = {
      {StoreError::kUnknownAccount, absl::StatusCode::kNotFound},
      {StoreError::kUnknownTenant, absl::StatusCode::kNotFound},
      {StoreError::kAccountExists, absl::StatusCode::kAlreadyExists},
      {StoreError::kDisabled, absl::StatusCode::kFailedPrecondition},
      {StoreError::kOverQuota, absl::StatusCode::kResourceExhausted},
      {StoreError::kMessageTooBig, absl::StatusCode::kResourceExhausted},
      {StoreError::kInvalidAddress, absl::StatusCode::kInvalidArgument},
      {StoreError::kInvalidUidl, absl::StatusCode::kInvalidArgument},
      {StoreError::kUidlInUse, absl::StatusCode::kAlreadyExists},
      {StoreError::kNotWireForm, absl::StatusCode::kInvalidArgument},
      {StoreError::kInvalidArgument, absl::StatusCode::kInvalidArgument},
      {StoreError::kNoSuchMessage, absl::StatusCode::kOutOfRange},
      {StoreError::kNoStore, absl::StatusCode::kNotFound},
      {StoreError::kStoreLocked, absl::StatusCode::kUnavailable},
      {StoreError::kNewerSchema, absl::StatusCode::kFailedPrecondition},
      {StoreError::kTemporary, absl::StatusCode::kUnavailable},
      {StoreError::kCorrupt, absl::StatusCode::kDataLoss},
      {StoreError::kIo, absl::StatusCode::kInternal},
      {StoreError::kAccountHeld, absl::StatusCode::kUnavailable},
      {StoreError::kTenantExists, absl::StatusCode::kAlreadyExists},
      {StoreError::kTenantNotEmpty, absl::StatusCode::kFailedPrecondition},
      {StoreError::kStaleRevision, absl::StatusCode::kFailedPrecondition},
      {StoreError::kNoSpace, absl::StatusCode::kResourceExhausted},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(StoreErrorName(c.kind));
    const absl::Status status = StoreErrorStatus(c.kind, "what happened");
    EXPECT_EQ(status.code(), c.code);
    EXPECT_EQ(status.message(), "what happened");
    EXPECT_EQ(ErrorOf(status), c.kind);
    // Logs print Status::ToString(): the kind shows by name.
    EXPECT_NE(status.ToString().find(std::string(StoreErrorName(c.kind))), std::string::npos);
  }
}

TEST(StoreErrorKind, WithStoreErrorKeepsCodeAndMessage) {
  const absl::Status tagged =
      WithStoreError(absl::PermissionDeniedError("open x: denied"), StoreError::kIo);
  EXPECT_EQ(tagged.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(tagged.message(), "open x: denied");
  EXPECT_EQ(ErrorOf(tagged), StoreError::kIo);
  EXPECT_EQ(ErrorOf(WithStoreError(tagged, StoreError::kCorrupt)), StoreError::kCorrupt);
  EXPECT_TRUE(WithStoreError(absl::OkStatus(), StoreError::kIo).ok());
}

TEST(StoreErrorKind, AddressAndUidlRules) {
  EXPECT_EQ(ErrorOf(ParseAddress("no-at-sign")), StoreError::kInvalidAddress);
  EXPECT_EQ(ErrorOf(CanonicalAddress("a@-bad.example")), StoreError::kInvalidAddress);
  EXPECT_EQ(ErrorOf(NormalizeDomain("a..b")), StoreError::kInvalidAddress);
  EXPECT_EQ(ErrorOf(ValidateUidl("has space")), StoreError::kInvalidUidl);
  EXPECT_EQ(ErrorOf(ValidateUidl(std::string(71, 'x'))), StoreError::kInvalidUidl);
}

TEST_F(StoreErrorTest, UnknownAccountEverywhereAnAddressIsLookedUp) {
  const std::string ghost = "ghost@x.org";
  EXPECT_EQ(ErrorOf(store_->GetAccount(ghost)), StoreError::kUnknownAccount);
  EXPECT_EQ(ErrorOf(store_->GetUsage(ghost)), StoreError::kUnknownAccount);
  EXPECT_EQ(ErrorOf(store_->GetMailboxStats(ghost)), StoreError::kUnknownAccount);
  EXPECT_EQ(ErrorOf(store_->OpenMailbox(ghost)), StoreError::kUnknownAccount);
  EXPECT_EQ(ErrorOf(store_->Deliver(ghost, "a\r\n")), StoreError::kUnknownAccount);
  EXPECT_EQ(ErrorOf(store_->DeleteAccount(ghost)), StoreError::kUnknownAccount);
  EXPECT_EQ(ErrorOf(store_->SetDisabled(ghost, true)), StoreError::kUnknownAccount);
  EXPECT_EQ(ErrorOf(store_->SetQuota(ghost, {1, 1})), StoreError::kUnknownAccount);
  EXPECT_EQ(ErrorOf(store_->SetPasswordHash(ghost, "x")), StoreError::kUnknownAccount);
  // Deleted accounts are unknown too, also to a snapshot taken before.
  Create("gone@x.org");
  MustDeliver("gone@x.org", "a\r\n");
  auto snapshot = MustOpen("gone@x.org");
  ASSERT_TRUE(store_->DeleteAccount("gone@x.org").ok());
  EXPECT_EQ(ErrorOf(store_->GetUsage("gone@x.org")), StoreError::kUnknownAccount);
  EXPECT_EQ(ErrorOf(store_->Deliver("gone@x.org", "a\r\n")), StoreError::kUnknownAccount);
  EXPECT_EQ(ErrorOf(store_->CommitDeletions(*snapshot, {0})), StoreError::kUnknownAccount);
}

TEST_F(StoreErrorTest, MalformedAddressesAndDomains) {
  EXPECT_EQ(ErrorOf(store_->CreateAccount("no-at-sign", "x")), StoreError::kInvalidAddress);
  EXPECT_EQ(ErrorOf(store_->GetUsage("a@b@c")), StoreError::kInvalidAddress);
  EXPECT_EQ(ErrorOf(store_->Deliver("@x.org", "a\r\n")), StoreError::kInvalidAddress);
  EXPECT_EQ(ErrorOf(store_->OpenMailbox("a b@x.org")), StoreError::kInvalidAddress);
  EXPECT_EQ(ErrorOf(store_->GetTenant("bad..domain")), StoreError::kInvalidAddress);
  EXPECT_EQ(ErrorOf(store_->ListAccounts("-x.org")), StoreError::kInvalidAddress);
}

TEST_F(StoreErrorTest, TenantsAndAccountsThatExistOrNot) {
  EXPECT_EQ(ErrorOf(store_->GetTenant("x.org")), StoreError::kUnknownTenant);
  Create("Ann@x.org");
  EXPECT_EQ(ErrorOf(store_->CreateAccount("ann@x.org", "x")), StoreError::kAccountExists);
  EXPECT_EQ(ErrorOf(store_->CreateAccount("Ann@x.org", "x")), StoreError::kAccountExists);
  EXPECT_TRUE(store_->GetTenant("x.org").ok());
  EXPECT_EQ(ErrorOf(store_->SetPasswordHash("ann@x.org", std::string(2000, 'h'))),
            StoreError::kInvalidArgument);
  EXPECT_EQ(ErrorOf(store_->SetTenantLimits("x.org", {0, 0, kMessageBytesMaxConfigurable + 1})),
            StoreError::kInvalidArgument);
}

TEST_F(StoreErrorTest, DeliveryRefusals) {
  Create("u@x.org");
  ASSERT_TRUE(store_->SetTenantLimits("x.org", {0, 0, 100}).ok());
  EXPECT_EQ(ErrorOf(store_->Deliver("u@x.org", std::string(200, 'a'))), StoreError::kMessageTooBig);
  // Under the limit as given, over it once every bare LF became CRLF.
  EXPECT_EQ(ErrorOf(store_->Deliver("u@x.org", std::string(60, '\n'))), StoreError::kMessageTooBig);
  ASSERT_TRUE(store_->SetQuota("u@x.org", {1, 0}).ok());
  MustDeliver("u@x.org", "first\r\n");
  const absl::StatusOr<DeliverResult> over = store_->Deliver("u@x.org", "second\r\n");
  EXPECT_EQ(ErrorOf(over), StoreError::kOverQuota);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(store_->SetQuota("u@x.org", {0, 12}).ok());
  EXPECT_EQ(ErrorOf(store_->Deliver("u@x.org", "second\r\n")), StoreError::kOverQuota);
  ASSERT_TRUE(store_->SetQuota("u@x.org", {0, 0}).ok());
  ASSERT_TRUE(store_->SetDisabled("u@x.org", true).ok());
  EXPECT_EQ(ErrorOf(store_->Deliver("u@x.org", "x\r\n")), StoreError::kDisabled);
}

TEST_F(StoreErrorTest, ImportedUidls) {
  Create("u@x.org");
  DeliverOptions bad;
  bad.uidl = "two words";
  EXPECT_EQ(ErrorOf(store_->Deliver("u@x.org", "a\r\n", bad)), StoreError::kInvalidUidl);
  DeliverOptions kept;
  kept.uidl = "uidl-1";
  MustDeliver("u@x.org", "a\r\n", kept);
  EXPECT_EQ(ErrorOf(store_->Deliver("u@x.org", "b\r\n", kept)), StoreError::kUidlInUse);
  const std::vector<DeliveryItem> twice = {{"a\r\n", {std::string("dup"), {}}},
                                           {"b\r\n", {std::string("dup"), {}}}};
  EXPECT_EQ(ErrorOf(store_->DeliverBatch("u@x.org", twice)), StoreError::kUidlInUse);
}

TEST_F(StoreErrorTest, ABatchNamesTheMessageAndKeepsTheKind) {
  Create("u@x.org");
  ASSERT_TRUE(store_->SetTenantLimits("x.org", {0, 0, 100}).ok());
  const std::string big(150, 'b');
  const std::vector<DeliveryItem> items = {{"a\r\n", {}}, {big, {}}, {"c\r\n", {}}};
  const auto delivered = store_->DeliverBatch("u@x.org", items);
  ASSERT_FALSE(delivered.ok());
  EXPECT_EQ(delivered.status().message().substr(0, 14), "message 2 of 3");
  EXPECT_EQ(ErrorOf(delivered), StoreError::kMessageTooBig);
}

TEST_F(StoreErrorTest, SnapshotIndexesOutOfRange) {
  Create("u@x.org");
  MustDeliver("u@x.org", "a\r\n");
  auto snapshot = MustOpen("u@x.org");
  EXPECT_EQ(ErrorOf(store_->CommitDeletions(*snapshot, {1})), StoreError::kNoSuchMessage);
  EXPECT_EQ(ErrorOf(store_->ReadMessageForTest(*snapshot, 5)), StoreError::kNoSuchMessage);
}

TEST_F(StoreErrorTest, OpeningTheStore) {
  EXPECT_EQ(ErrorOf(MailStore::Open(options_)), StoreError::kStoreLocked);
  StoreOptions missing;
  missing.data_dir = NewDataDirForTest();
  missing.create_if_missing = false;
  EXPECT_EQ(ErrorOf(MailStore::Open(missing)), StoreError::kNoStore);
  StoreOptions bad;
  bad.data_dir = NewDataDirForTest();
  bad.segment_roll_bytes = 10;
  EXPECT_EQ(ErrorOf(MailStore::Open(bad)), StoreError::kInvalidArgument);
}

TEST_F(StoreErrorTest, MissingSegmentIsCorrupt) {
  Create("u@x.org");
  MustDeliver("u@x.org", "a\r\n");
  store_.reset();
  const std::string segments = options_.data_dir + "/segments";
  ASSERT_EQ(::rename(segments.c_str(), (segments + ".away").c_str()), 0);
  ASSERT_EQ(::mkdir(segments.c_str(), 0700), 0);
  Reopen();
  EXPECT_EQ(ErrorOf(store_->OpenMailbox("u@x.org")), StoreError::kCorrupt);
}

// A file system error while delivering is an I/O failure, whatever its errno's code: a
// vanished segment directory (ENOENT, code NotFound) must not read as "no such account".
TEST_F(StoreErrorTest, SegmentDirectoryGoneWhileDeliveringIsIo) {
  Create("u@x.org");
  const std::string segments = options_.data_dir + "/segments";
  ASSERT_EQ(::rename(segments.c_str(), (segments + ".away").c_str()), 0);
  const auto delivered = store_->Deliver("u@x.org", "a\r\n");
  ASSERT_FALSE(delivered.ok());
  EXPECT_EQ(delivered.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrorOf(delivered), StoreError::kIo);
  // A file where the directory was: ENOTDIR.
  const int fd = ::open(segments.c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);
  EXPECT_EQ(ErrorOf(store_->Deliver("u@x.org", "a\r\n")), StoreError::kIo);
}

}  // namespace
}  // namespace posthaste::storage
