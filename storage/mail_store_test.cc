// MailStore against real RocksDB and real segment files under $TEST_TMPDIR.
#include "storage/mail_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "rocksdb/utilities/options_util.h"
#include "storage/testing/store_test_base.h"

namespace posthaste::storage {
namespace {

using std::string_literals::operator""s;

using testing::NewDataDirForTest;

absl::string_view AbslViewForTest(std::string_view s) { return {s.data(), s.size()}; }

std::vector<std::string> SegmentFiles(const std::string& data_dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir((data_dir + "/segments").c_str());
  if (d == nullptr) return out;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.size() > 4 && name.substr(name.size() - 4) == ".seg") {
      out.push_back(data_dir + "/segments/" + name);
    }
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

class MailStoreTest : public testing::StoreTestBase {
 protected:
  void Create(const std::string& address) {
    auto created = store_->CreateAccount(address, "{PLAIN}x");
    ASSERT_TRUE(created.ok()) << created.status();
  }

  void ExpectCheckClean() {
    auto report = store_->Check();
    ASSERT_TRUE(report.ok()) << report.status();
    for (const auto& p : report->problems) ADD_FAILURE() << p;
  }
};

// ---- data directory lock ----

TEST_F(MailStoreTest, SecondOpenOfTheDataDirectoryFailsWithOneClearLine) {
  auto second = MailStore::Open(options_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(second.status().message(),
            absl::StrCat("data directory ", options_.data_dir,
                         " is in use by another process (pid ", ::getpid(), ")"));
  store_.reset();
  auto third = MailStore::Open(options_);
  EXPECT_TRUE(third.ok()) << third.status();
}

TEST_F(MailStoreTest, MissingStoreWithoutCreateIsNotFound) {
  StoreOptions options;
  options.data_dir = NewDataDirForTest();
  options.create_if_missing = false;
  EXPECT_EQ(MailStore::Open(options).status().code(), absl::StatusCode::kNotFound);
}

// ---- accounts and tenants ----

TEST_F(MailStoreTest, AccountLifecycle) {
  auto created = store_->CreateAccount("Alice@Example.COM", "hash1");
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->address, "alice@example.com");  // identity: canonical
  EXPECT_EQ(created->display_address, "Alice@example.com");
  EXPECT_GT(created->incarnation, 0u);
  EXPECT_EQ(store_->CreateAccount("Alice@example.com", "h").status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store_->CreateAccount("not-an-address", "h").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->CreateAccount("a@b@c", "h").status().code(),
            absl::StatusCode::kInvalidArgument);

  ASSERT_TRUE(store_->SetPasswordHash("Alice@example.com", "hash2").ok());
  ASSERT_TRUE(store_->SetDisabled("Alice@example.com", true).ok());
  ASSERT_TRUE(store_->SetQuota("Alice@example.com", AccountQuota{10, 1000}).ok());
  Reopen();
  auto info = store_->GetAccount("Alice@EXAMPLE.com");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->password_hash, "hash2");
  EXPECT_TRUE(info->disabled);
  EXPECT_EQ(info->quota.messages, 10u);
  EXPECT_EQ(info->quota.octets, 1000u);
  EXPECT_EQ(info->incarnation, created->incarnation);

  auto tenant = store_->GetTenant("example.com");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  EXPECT_EQ(store_->GetTenant("other.org").status().code(), absl::StatusCode::kNotFound);

  ASSERT_TRUE(store_->DeleteAccount("Alice@example.com").ok());
  EXPECT_EQ(store_->GetAccount("Alice@example.com").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->DeleteAccount("Alice@example.com").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->SetPasswordHash("nobody@example.com", "x").code(), absl::StatusCode::kNotFound);
  auto again = store_->CreateAccount("Alice@example.com", "h");
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again->incarnation, created->incarnation);
}

// The daily download count: added per day, kept across a restart, earlier days dropped when a
// new day starts, removed with the account (a re-created account starts from zero).
TEST_F(MailStoreTest, DownloadCountsAddUpPerDayAndSurviveARestart) {
  ASSERT_TRUE(store_->CreateAccount("dl@example.com", "h").ok());
  constexpr uint32_t kDay = 20'000;
  EXPECT_EQ(*store_->DownloadedOctets("dl@example.com", kDay), 0u);
  ASSERT_TRUE(store_->AddDownloadedOctets("dl@example.com", kDay, 1000).ok());
  ASSERT_TRUE(store_->AddDownloadedOctets("DL@example.com", kDay, 234).ok());
  EXPECT_EQ(*store_->DownloadedOctets("dl@example.com", kDay), 1234u);
  Reopen();
  EXPECT_EQ(*store_->DownloadedOctets("dl@example.com", kDay), 1234u);
  EXPECT_EQ(*store_->DownloadedOctets("dl@example.com", kDay + 1), 0u);

  // The next day starts from zero and drops the day before.
  ASSERT_TRUE(store_->AddDownloadedOctets("dl@example.com", kDay + 1, 7).ok());
  EXPECT_EQ(*store_->DownloadedOctets("dl@example.com", kDay + 1), 7u);
  EXPECT_EQ(*store_->DownloadedOctets("dl@example.com", kDay), 0u);

  EXPECT_EQ(store_->AddDownloadedOctets("nobody@example.com", kDay, 1).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->DownloadedOctets("nobody@example.com", kDay).status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(store_->DeleteAccount("dl@example.com").ok());
  ASSERT_TRUE(store_->CreateAccount("dl@example.com", "h").ok());
  EXPECT_EQ(*store_->DownloadedOctets("dl@example.com", kDay + 1), 0u);
  auto report = store_->Check();
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->ok()) << (report->problems.empty() ? "" : report->problems[0]);
}

TEST_F(MailStoreTest, ReplacePasswordHashOnlyWhileUnchanged) {
  ASSERT_TRUE(store_->CreateAccount("bob@example.com", "old").ok());
  ASSERT_TRUE(store_->SetPasswordHash("bob@example.com", "changed").ok());
  EXPECT_EQ(store_->ReplacePasswordHash("bob@example.com", "old", "rehashed").code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->GetAccount("bob@example.com")->password_hash, "changed");
  ASSERT_TRUE(store_->ReplacePasswordHash("BOB@example.com", "changed", "rehashed").ok());
  Reopen();
  EXPECT_EQ(store_->GetAccount("bob@example.com")->password_hash, "rehashed");
  EXPECT_EQ(store_->ReplacePasswordHash("nobody@example.com", "x", "y").code(),
            absl::StatusCode::kNotFound);
}

TEST_F(MailStoreTest, ListAccountsWithCountsAndDomainFilter) {
  Create("b@one.org");
  Create("a@one.org");
  Create("z@two.org");
  MustDeliver("a@one.org", "Subject: x\r\n\r\nhello\r\n");
  MustDeliver("a@one.org", "Subject: y\r\n\r\nhi\r\n");
  auto all = store_->ListAccounts();
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].address, "a@one.org");
  EXPECT_EQ((*all)[0].stats.messages, 2u);
  EXPECT_EQ((*all)[0].stats.octets, 21u + 18u);
  EXPECT_EQ((*all)[1].address, "b@one.org");
  EXPECT_EQ((*all)[2].address, "z@two.org");
  auto two = store_->ListAccounts("TWO.org");
  ASSERT_TRUE(two.ok());
  ASSERT_EQ(two->size(), 1u);
  EXPECT_EQ((*two)[0].address, "z@two.org");
  auto none = store_->ListAccounts("one.or");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

// ---- delivery and reading ----

TEST_F(MailStoreTest, DeliverErrors) {
  EXPECT_EQ(store_->Deliver("nobody@x.org", "hi").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Deliver("bad address", "hi").status().code(),
            absl::StatusCode::kInvalidArgument);
  Create("u@x.org");
  ASSERT_TRUE(store_->SetDisabled("u@x.org", true).ok());
  EXPECT_EQ(store_->Deliver("u@x.org", "hi").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(MailStoreTest, StoredBytesAreNormalisedDotStuffedAndByteExact) {
  Create("u@x.org");
  const std::string long_line(3000, 'L');
  const std::vector<std::string> raws = {
      "Subject: plain\r\n\r\nbody\r\n",
      "Subject: bare lf\n\n.starts with dot\n..two dots\n.\nend",
      "Subject: bare cr\r\r.x\ry",
      "Subject: nul and 8bit \xe2\x82\xac\r\n\r\na\0b\xff\r\n"s,
      "Subject: long\r\n\r\n" + long_line + "\r\n",
      "No-Body: true\r\n",
      "",
  };
  std::vector<DeliverResult> results;
  for (const auto& raw : raws) results.push_back(MustDeliver("u@x.org", raw));
  auto check = [&] {
    auto snap = MustOpen("u@x.org");
    ASSERT_EQ(snap->size(), raws.size());
    uint64_t total = 0;
    for (size_t i = 0; i < raws.size(); ++i) {
      const NormalizedMessage expected = NormalizeForStorage(raws[i]);
      auto bytes = store_->ReadMessageForTest(*snap, i);
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      EXPECT_EQ(*bytes, expected.stored) << i;
      EXPECT_EQ(snap->pop3_size(i), expected.pop3_size) << i;
      EXPECT_EQ(results[i].pop3_size, expected.pop3_size) << i;
      EXPECT_EQ(results[i].stored_bytes, expected.stored.size()) << i;
      EXPECT_EQ(snap->uidl(i), results[i].uidl) << i;
      const MessageRef ref = snap->Ref(i);
      EXPECT_EQ(ref.length, expected.stored.size());
      EXPECT_EQ(ref.header_length, expected.header_length);
      EXPECT_GE(ref.fd, 0);
      total += expected.pop3_size;
    }
    EXPECT_EQ(snap->total_octets(), total);
    auto stats = store_->GetMailboxStats("u@x.org");
    ASSERT_TRUE(stats.ok());
    EXPECT_EQ(stats->messages, raws.size());
    EXPECT_EQ(stats->octets, total);
  };
  check();
  // The second message: dots stuffed, CRLF endings, final CRLF added.
  auto snap = MustOpen("u@x.org");
  EXPECT_EQ(*store_->ReadMessageForTest(*snap, 1),
            "Subject: bare lf\r\n\r\n..starts with dot\r\n...two dots\r\n..\r\nend\r\n");
  EXPECT_EQ(snap->Ref(1).header_length, 20u);
  // Without a blank line, the header is the whole message (TOP n 0 sends it all).
  EXPECT_EQ(snap->Ref(5).header_length, snap->Ref(5).length);
  EXPECT_EQ(store_->ReadMessageForTest(*snap, 99).status().code(), absl::StatusCode::kOutOfRange);
  Reopen();
  check();
  ExpectCheckClean();
}

// TOP's length: header block plus the first N stored body lines, found by reading the segment.
TEST_F(MailStoreTest, TopLengthCountsStoredBodyLines) {
  Create("u@x.org");
  MustDeliver("u@x.org", "Subject: t\r\n\r\none\r\n.two\r\nthree\r\n");
  MustDeliver("u@x.org", "No-Body: true\r\n");
  auto snap = MustOpen("u@x.org");
  const std::string stored = *store_->ReadMessageForTest(*snap, 0);
  ASSERT_EQ(stored, "Subject: t\r\n\r\none\r\n..two\r\nthree\r\n");
  const uint64_t header = snap->Ref(0).header_length;
  ASSERT_EQ(header, 14u);
  EXPECT_EQ(*snap->TopLength(0, 0), header);
  EXPECT_EQ(*snap->TopLength(0, 1), header + 5);
  EXPECT_EQ(*snap->TopLength(0, 2), header + 5 + 7);
  EXPECT_EQ(*snap->TopLength(0, 3), stored.size());
  EXPECT_EQ(*snap->TopLength(0, 1000), stored.size());
  EXPECT_EQ(*snap->TopLength(1, 5), snap->Ref(1).length);  // no body at all
}

// A byte changed in place in a segment file (under the index's feet) fails the message's
// recorded checksum; its neighbour in the same segment still verifies.
TEST_F(MailStoreTest, VerifyStoredBytesFindsAByteChangedInPlace) {
  Create("u@x.org");
  MustDeliver("u@x.org", "Subject: a\r\n\nfirst body\r\n");
  MustDeliver("u@x.org", "Subject: b\r\n\nsecond body\r\n");
  auto snap = MustOpen("u@x.org");
  ASSERT_TRUE(snap->VerifyStoredBytes(0).ok());
  ASSERT_TRUE(snap->VerifyStoredBytes(1).ok());
  const MessageRef ref = snap->Ref(0);
  // The segment's descriptor is read-only: reopen the same file for writing.
  const int fd = open(absl::StrCat("/proc/self/fd/", ref.fd).c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, "X", 1, static_cast<off_t>(ref.offset + ref.length - 4)), 1);
  close(fd);
  const absl::Status damaged = snap->VerifyStoredBytes(0);
  EXPECT_EQ(damaged.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(damaged.message().find(absl::StrCat("offset ", ref.offset)), std::string::npos)
      << damaged;
  EXPECT_NE(damaged.message().find("segment "), std::string::npos) << damaged;
  EXPECT_TRUE(snap->VerifyStoredBytes(1).ok());
}

TEST_F(MailStoreTest, ArrivalTimeIsKept) {
  Create("u@x.org");
  DeliverOptions options;
  options.arrival_time = absl::FromUnixSeconds(1234567890);
  MustDeliver("u@x.org", "a\r\n", options);
  auto snap = MustOpen("u@x.org");
  EXPECT_EQ(snap->arrival_time(0), absl::FromUnixSeconds(1234567890));
}

TEST_F(MailStoreTest, DeliverBatchIsAllOrNothing) {
  Create("u@x.org");
  const std::string a = "Subject: a\r\n\r\nA\r\n", b = "Subject: b\n\nB", c = "c";
  DeliverOptions keep;
  keep.uidl = "imported-1";
  auto ok = store_->DeliverBatch("u@x.org", {{a, {}}, {b, keep}, {c, {}}});
  ASSERT_TRUE(ok.ok()) << ok.status();
  ASSERT_EQ(ok->size(), 3u);
  EXPECT_EQ((*ok)[1].uidl, "imported-1");
  auto snap = MustOpen("u@x.org");
  ASSERT_EQ(snap->size(), 3u);
  EXPECT_EQ(*store_->ReadMessageForTest(*snap, 1), "Subject: b\r\n\r\nB\r\n");
  EXPECT_EQ(snap->uidl(2), (*ok)[2].uidl);

  auto expect_nothing_changed = [&](const absl::StatusOr<std::vector<DeliverResult>>& r,
                                    absl::StatusCode code, std::string_view text) {
    EXPECT_EQ(r.status().code(), code) << r.status();
    EXPECT_NE(r.status().message().find(AbslViewForTest(text)), absl::string_view::npos)
        << r.status();
    EXPECT_EQ(store_->GetMailboxStats("u@x.org")->messages, 3u);
    EXPECT_EQ(MustOpen("u@x.org")->size(), 3u);
  };
  const std::string huge(options_.message_bytes_max + 1, 'x');
  expect_nothing_changed(store_->DeliverBatch("u@x.org", {{a, {}}, {huge, {}}, {c, {}}}),
                         absl::StatusCode::kResourceExhausted, "message 2 of 3");
  DeliverOptions fresh;
  fresh.uidl = "fresh";
  expect_nothing_changed(store_->DeliverBatch("u@x.org", {{a, fresh}, {b, fresh}}),
                         absl::StatusCode::kAlreadyExists, "twice");
  expect_nothing_changed(store_->DeliverBatch("u@x.org", {{a, fresh}, {b, keep}}),
                         absl::StatusCode::kAlreadyExists, "message 2 of 2");
  ASSERT_TRUE(store_->SetQuota("u@x.org", AccountQuota{4, 0}).ok());
  expect_nothing_changed(store_->DeliverBatch("u@x.org", {{a, {}}, {b, {}}}),
                         absl::StatusCode::kResourceExhausted, "quota");
  // "fresh" was never stored, so it is still free.
  ASSERT_TRUE(store_->DeliverBatch("u@x.org", {{a, fresh}}).ok());
  ExpectCheckClean();
}

TEST_F(MailStoreTest, UsageReportsEffectiveLimitsAndExactCounters) {
  Create("u@x.org");
  auto usage = store_->GetUsage("u@X.org");
  ASSERT_TRUE(usage.ok()) << usage.status();
  EXPECT_EQ(usage->address, "u@x.org");
  EXPECT_EQ(usage->effective_quota.messages, 0u);
  EXPECT_EQ(usage->message_bytes_max, options_.message_bytes_max);
  EXPECT_FALSE(usage->WouldExceedQuota(1u << 30));  // unlimited

  // Tenant defaults apply until the account sets its own.
  ASSERT_TRUE(store_->SetTenantLimits("x.org", TenantLimits{2, 100, 60}).ok());
  MustDeliver("u@x.org", "Subject: a\r\n\r\nbody\r\n");  // 20 octets
  usage = store_->GetUsage("u@x.org");
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->stats.messages, 1u);
  EXPECT_EQ(usage->stats.octets, 20u);
  EXPECT_EQ(usage->effective_quota.messages, 2u);
  EXPECT_EQ(usage->effective_quota.octets, 100u);
  EXPECT_EQ(usage->quota.messages, 0u);
  EXPECT_EQ(usage->message_bytes_max, 60u);
  EXPECT_FALSE(usage->WouldExceedQuota(80));
  EXPECT_TRUE(usage->WouldExceedQuota(81));  // octets

  ASSERT_TRUE(store_->SetQuota("u@x.org", AccountQuota{1, 0}).ok());
  usage = store_->GetUsage("u@x.org");
  ASSERT_TRUE(usage.ok());
  EXPECT_EQ(usage->effective_quota.messages, 1u);
  EXPECT_EQ(usage->effective_quota.octets, 100u);
  EXPECT_TRUE(usage->WouldExceedQuota(0));  // messages
  EXPECT_EQ(store_->Deliver("u@x.org", "x").status().code(), absl::StatusCode::kResourceExhausted);

  ASSERT_TRUE(store_->SetDisabled("u@x.org", true).ok());
  EXPECT_TRUE(store_->GetUsage("u@x.org")->disabled);
  EXPECT_EQ(store_->GetUsage("nobody@x.org").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetUsage("no at sign").status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- UIDLs ----

TEST_F(MailStoreTest, GeneratedUidlsAreUniqueValidAndNeverReused) {
  Create("u@x.org");
  std::set<std::string> first;
  for (int i = 0; i < 50; ++i) {
    DeliverResult r = MustDeliver("u@x.org", absl::StrCat("Subject: ", i, "\r\n\r\nx\r\n"));
    EXPECT_TRUE(ValidateUidl(r.uidl).ok()) << r.uidl;
    EXPECT_TRUE(first.insert(r.uidl).second) << r.uidl;
  }
  // Delete the newest: the next delivery must not get its UIDL back.
  auto snap = MustOpen("u@x.org");
  const std::string last_uidl(snap->uidl(49));
  ASSERT_TRUE(store_->CommitDeletions(*snap, {49}).ok());
  Reopen();
  DeliverResult after = MustDeliver("u@x.org", "x\r\n");
  EXPECT_EQ(first.count(after.uidl), 0u);
  EXPECT_NE(after.uidl, last_uidl);
  // Delete and re-create the account: none of the old UIDLs come back.
  ASSERT_TRUE(store_->DeleteAccount("u@x.org").ok());
  Create("u@x.org");
  for (int i = 0; i < 60; ++i) {
    DeliverResult r = MustDeliver("u@x.org", "y\r\n");
    EXPECT_EQ(first.count(r.uidl), 0u) << r.uidl;
    EXPECT_NE(r.uidl, after.uidl);
  }
}

TEST_F(MailStoreTest, ImportedUidlsAreKeptValidatedAndUniquePerAccount) {
  Create("u@x.org");
  Create("v@x.org");
  DeliverOptions keep;
  keep.uidl = "00000001505f3a01";
  EXPECT_EQ(MustDeliver("u@x.org", "a\r\n", keep).uidl, "00000001505f3a01");
  // Same UIDL in another account is fine; twice in one account is not.
  EXPECT_TRUE(store_->Deliver("v@x.org", "a\r\n", keep).ok());
  EXPECT_EQ(store_->Deliver("u@x.org", "b\r\n", keep).status().code(),
            absl::StatusCode::kAlreadyExists);
  for (std::string bad : {""s, "has space"s, std::string(71, 'a'), "tab\t"s, "\x80"s}) {
    DeliverOptions o;
    o.uidl = bad;
    EXPECT_EQ(store_->Deliver("u@x.org", "c\r\n", o).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
  // A generated UIDL cannot be imported over.
  DeliverResult generated = MustDeliver("u@x.org", "g\r\n");
  DeliverOptions clash;
  clash.uidl = generated.uidl;
  EXPECT_EQ(store_->Deliver("u@x.org", "c\r\n", clash).status().code(),
            absl::StatusCode::kAlreadyExists);
  // Deleting the imported message does not free its UIDL.
  auto snap = MustOpen("u@x.org");
  ASSERT_EQ(snap->uidl(0), "00000001505f3a01");
  ASSERT_TRUE(store_->CommitDeletions(*snap, {0}).ok());
  Reopen();
  EXPECT_EQ(store_->Deliver("u@x.org", "d\r\n", keep).status().code(),
            absl::StatusCode::kAlreadyExists);
  auto stats = store_->GetMailboxStats("u@x.org");
  EXPECT_EQ(stats->messages, 1u);
  ExpectCheckClean();
}

// ---- limits ----

// A filesystem with less free space than the reserve refuses deliveries as temporary (the MTA
// keeps the mail) before anything is written: RocksDB must never be the one to meet ENOSPC.
TEST_F(MailStoreTest, DeliveryRefusedWhileFreeSpaceBelowReserve) {
  Create("u@x.org");
  options_.free_bytes_min = uint64_t{1} << 62;  // more than any test filesystem has
  Reopen();
  auto refused = store_->Deliver("u@x.org", "Subject: a\r\n\r\nbody\r\n");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  // Its own kind (not kTemporary): LMTP answers a full disk with 452 4.3.1.
  EXPECT_EQ(ErrorOf(refused.status()), StoreError::kNoSpace);
  EXPECT_NE(refused.status().message().find("disk full"), absl::string_view::npos)
      << refused.status();
  EXPECT_EQ(store_->GetUsage("u@x.org")->stats.messages, 0u);

  options_.free_bytes_min = 0;  // as if space were freed: the next delivery goes through
  Reopen();
  EXPECT_TRUE(store_->Deliver("u@x.org", "Subject: a\r\n\r\nbody\r\n").ok());
  ExpectCheckClean();
}

// The memtable bound is what keeps the server's memory flat under load (docs/RELIABILITY.md,
// "Soak"); the OPTIONS file RocksDB writes is the index as it really runs.
TEST_F(MailStoreTest, IndexMemtablesAreBounded) {
  rocksdb::ConfigOptions config;
  rocksdb::DBOptions db_options;
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  ASSERT_TRUE(
      rocksdb::LoadLatestOptions(config, options_.data_dir + "/index", &db_options, &families)
          .ok());
  ASSERT_FALSE(families.empty());
  EXPECT_EQ(families[0].options.write_buffer_size, options_.index_write_buffer_bytes);
  EXPECT_EQ(families[0].options.write_buffer_size, size_t{16} << 20);
  EXPECT_EQ(families[0].options.max_write_buffer_number, 2);
}

TEST_F(MailStoreTest, MessageAndOctetQuotas) {
  Create("u@x.org");
  ASSERT_TRUE(store_->SetQuota("u@x.org", AccountQuota{2, 0}).ok());
  MustDeliver("u@x.org", "a\r\n");
  MustDeliver("u@x.org", "b\r\n");
  auto over = store_->Deliver("u@x.org", "c\r\n");
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(over.status().message().find("messages"), absl::string_view::npos);

  ASSERT_TRUE(store_->SetQuota("u@x.org", AccountQuota{0, 10}).ok());
  auto octets = store_->Deliver("u@x.org", "12345\r\n");  // 6 + 7 > 10
  EXPECT_EQ(octets.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(octets.status().message().find("octets"), absl::string_view::npos);
  MustDeliver("u@x.org", "1\r\n");  // 6 + 3 = 9
  // Deleting frees quota.
  auto snap = MustOpen("u@x.org");
  ASSERT_TRUE(store_->CommitDeletions(*snap, {0, 1, 2}).ok());
  MustDeliver("u@x.org", "12345\r\n");
}

TEST_F(MailStoreTest, TenantDefaultsApplyUnlessTheAccountOverrides) {
  Create("u@x.org");
  ASSERT_TRUE(store_->SetTenantLimits("x.org", TenantLimits{1, 0, 0}).ok());
  MustDeliver("u@x.org", "a\r\n");
  EXPECT_EQ(store_->Deliver("u@x.org", "b\r\n").status().code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(store_->SetQuota("u@x.org", AccountQuota{5, 0}).ok());
  MustDeliver("u@x.org", "b\r\n");
  Reopen();
  auto tenant = store_->GetTenant("x.org");
  ASSERT_TRUE(tenant.ok());
  EXPECT_EQ(tenant->limits.quota_messages, 1u);
}

TEST_F(MailStoreTest, TenantPolicyRoundTripsAndKeepsLimits) {
  Create("u@x.org");
  auto before = store_->GetTenant("x.org");
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->policy.plaintext_auth, PlaintextAuth::kDefault);
  const uint64_t generation = store_->tenant_generation();
  ASSERT_TRUE(store_->SetTenantLimits("x.org", TenantLimits{7, 0, 0}).ok());
  ASSERT_TRUE(store_->SetTenantPolicy("x.org", TenantPolicy{PlaintextAuth::kAllow}).ok());
  ASSERT_TRUE(store_->SetTenantPolicy("Other.ORG", TenantPolicy{PlaintextAuth::kRequireTls}).ok());
  EXPECT_EQ(store_->tenant_generation(), generation + 3);
  // Setting limits keeps the policy, and the other way round.
  ASSERT_TRUE(store_->SetTenantLimits("x.org", TenantLimits{8, 0, 0}).ok());
  Reopen();
  auto x = store_->GetTenant("x.org");
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(x->policy.plaintext_auth, PlaintextAuth::kAllow);
  EXPECT_EQ(x->limits.quota_messages, 8u);
  auto tenants = store_->ListTenants();
  ASSERT_TRUE(tenants.ok()) << tenants.status();
  ASSERT_EQ(tenants->size(), 2u);
  EXPECT_EQ((*tenants)[0].domain, "other.org");
  EXPECT_EQ((*tenants)[0].policy.plaintext_auth, PlaintextAuth::kRequireTls);
  EXPECT_EQ((*tenants)[1].domain, "x.org");
  EXPECT_EQ((*tenants)[1].policy.plaintext_auth, PlaintextAuth::kAllow);
  EXPECT_EQ((*tenants)[1].limits.quota_messages, 8u);
  // Back to default.
  ASSERT_TRUE(store_->SetTenantPolicy("x.org", TenantPolicy{}).ok());
  Reopen();
  EXPECT_EQ(store_->GetTenant("x.org")->policy.plaintext_auth, PlaintextAuth::kDefault);
  EXPECT_EQ(store_->GetTenant("x.org")->limits.quota_messages, 8u);
}

// The admin API's tenant resource: create refuses an existing record, delete refuses while
// accounts exist, and a policy change with an expected revision refuses a stale one.
TEST_F(MailStoreTest, TenantCreateDeleteAndRevisionCheck) {
  TenantPolicy policy;
  policy.plaintext_auth = PlaintextAuth::kAllow;
  policy.master_users = {"Boss@new.example"};
  ASSERT_TRUE(store_->CreateTenant("New.Example", TenantLimits{5, 6, 7}, policy).ok());
  auto created = store_->GetTenant("new.example");
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->limits.quota_octets, 6u);
  EXPECT_EQ(created->policy.plaintext_auth, PlaintextAuth::kAllow);
  EXPECT_EQ(created->policy.master_users, std::vector<std::string>{"boss@new.example"});
  EXPECT_EQ(created->policy.revision, 1u);
  EXPECT_EQ(ErrorOf(store_->CreateTenant("new.example", TenantLimits{}, TenantPolicy{})),
            StoreError::kTenantExists);
  EXPECT_EQ(store_->GetTenant("new.example")->limits.quota_octets, 6u);  // untouched
  // A bad policy creates nothing.
  TenantPolicy foreign;
  foreign.master_users = {"boss@elsewhere.example"};
  EXPECT_EQ(ErrorOf(store_->CreateTenant("other.example", TenantLimits{}, foreign)),
            StoreError::kInvalidArgument);
  EXPECT_EQ(ErrorOf(store_->GetTenant("other.example")), StoreError::kUnknownTenant);

  // If-Match: the stored revision must be the expected one.
  policy.apop_allowed = true;
  EXPECT_EQ(ErrorOf(store_->SetTenantPolicy("new.example", policy, /*expected_revision=*/0)),
            StoreError::kStaleRevision);
  EXPECT_FALSE(store_->GetTenant("new.example")->policy.apop_allowed);
  const uint64_t generation = store_->tenant_generation();
  ASSERT_TRUE(store_->SetTenantPolicy("new.example", policy, /*expected_revision=*/1).ok());
  EXPECT_TRUE(store_->GetTenant("new.example")->policy.apop_allowed);
  EXPECT_EQ(store_->GetTenant("new.example")->policy.revision, 2u);
  EXPECT_EQ(store_->tenant_generation(), generation + 1);

  // Delete: refused while an account exists, then gone (also after a reopen).
  Create("u@new.example");
  const absl::Status busy = store_->DeleteTenant("new.example");
  EXPECT_EQ(ErrorOf(busy), StoreError::kTenantNotEmpty);
  EXPECT_NE(busy.message().find("accounts"), absl::string_view::npos);
  ASSERT_TRUE(store_->DeleteAccount("u@new.example").ok());
  ASSERT_TRUE(store_->DeleteTenant("NEW.example").ok());
  EXPECT_EQ(ErrorOf(store_->GetTenant("new.example")), StoreError::kUnknownTenant);
  EXPECT_EQ(ErrorOf(store_->DeleteTenant("new.example")), StoreError::kUnknownTenant);
  Reopen();
  EXPECT_EQ(ErrorOf(store_->GetTenant("new.example")), StoreError::kUnknownTenant);
  auto tenants = store_->ListTenants();
  ASSERT_TRUE(tenants.ok());
  EXPECT_TRUE(tenants->empty());
  // A new first account makes a fresh record with the store's defaults.
  Create("v@new.example");
  EXPECT_EQ(store_->GetTenant("new.example")->limits.quota_octets, 0u);
}

TEST_F(MailStoreTest, TenantRecordsFromBeforePoliciesDecodeAsDefault) {
  store_.reset();
  // A version 1 tenant record as older binaries wrote it: version byte, then quota_messages,
  // quota_octets and message_bytes_max as little-endian 64-bit integers.
  std::string v1(1, '\x01');
  for (uint64_t v : {uint64_t{3}, uint64_t{4000}, uint64_t{5000}}) {
    for (int i = 0; i < 8; ++i) v1.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  {
    rocksdb::DB* raw = nullptr;
    rocksdb::Options db_options;
    ASSERT_TRUE(rocksdb::DB::Open(db_options, options_.data_dir + "/index", &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "Told.example", v1).ok());
    // A record with an out-of-range policy byte is reported, not misread.
    std::string bad = v1;
    bad[0] = '\x02';
    bad.push_back('\x09');
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "Tbad.example", bad).ok());
    ASSERT_TRUE(db->Close().ok());
  }
  Reopen();
  auto old = store_->GetTenant("old.example");
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_EQ(old->policy.plaintext_auth, PlaintextAuth::kDefault);
  EXPECT_EQ(old->limits.quota_messages, 3u);
  EXPECT_EQ(old->limits.quota_octets, 4000u);
  EXPECT_EQ(old->limits.message_bytes_max, 5000u);
  EXPECT_EQ(store_->GetTenant("bad.example").status().code(), absl::StatusCode::kDataLoss);
  // Updating the policy of an old record keeps its limits.
  ASSERT_TRUE(store_->SetTenantPolicy("old.example", TenantPolicy{PlaintextAuth::kAllow}).ok());
  Reopen();
  old = store_->GetTenant("old.example");
  EXPECT_EQ(old->policy.plaintext_auth, PlaintextAuth::kAllow);
  EXPECT_EQ(old->limits.quota_octets, 4000u);
}

TEST_F(MailStoreTest, TenantServiceSettingsRoundTripWithARevisionPerChange) {
  Create("u@x.org");
  EXPECT_EQ(store_->GetTenant("x.org")->policy.revision, 0u);
  TenantPolicy policy;
  policy.apop_allowed = true;
  TenantServiceSettings& service = policy.service;
  service.login_delay_s = 0;  // set, unlike unset: advertised as LOGIN-DELAY 0
  service.expire_days = TenantServiceSettings::kExpireNever;
  service.daily_download_bytes = 5ull << 32;
  service.list_newest = 100;
  service.idle_timeout_s = 30;
  service.connections_per_user = 2;
  service.login_mechanisms = "PLAIN,USER";
  service.lang = "de";
  ASSERT_TRUE(store_->SetTenantPolicy("x.org", policy).ok());
  Reopen();
  TenantPolicy stored = store_->GetTenant("x.org")->policy;
  EXPECT_EQ(stored.service, service);
  EXPECT_TRUE(stored.apop_allowed);
  EXPECT_EQ(stored.revision, 1u);
  // Limits keep the settings and the revision; each policy change moves it on.
  ASSERT_TRUE(store_->SetTenantLimits("x.org", TenantLimits{9, 0, 0}).ok());
  EXPECT_EQ(store_->GetTenant("x.org")->policy.service, service);
  EXPECT_EQ(store_->GetTenant("x.org")->policy.revision, 1u);
  stored.service = TenantServiceSettings();
  stored.service.expire_days = 0;
  ASSERT_TRUE(store_->SetTenantPolicy("x.org", stored).ok());
  Reopen();
  EXPECT_EQ(store_->GetTenant("x.org")->policy.service.expire_days, 0u);
  EXPECT_FALSE(store_->GetTenant("x.org")->policy.service.login_delay_s.has_value());
  EXPECT_EQ(store_->GetTenant("x.org")->policy.revision, 2u);
  stored.service.lang = std::string(kLanguageTagBytesMax + 1, 'x');
  EXPECT_EQ(store_->SetTenantPolicy("x.org", stored).code(), absl::StatusCode::kInvalidArgument);
  stored.service.lang.clear();
  stored.service.login_mechanisms = std::string(kLoginMechanismsBytesMax + 1, 'X');
  EXPECT_EQ(store_->SetTenantPolicy("x.org", stored).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->GetTenant("x.org")->policy.revision, 2u);
}

TEST_F(MailStoreTest, ApopAndMasterUsersRoundTripAndKeepOlderFields) {
  Create("u@x.org");
  Create("boss@x.org");
  ASSERT_TRUE(store_->SetTenantLimits("x.org", TenantLimits{7, 0, 0}).ok());
  TenantPolicy policy;
  policy.plaintext_auth = PlaintextAuth::kAllow;
  policy.apop_allowed = true;
  policy.master_users = {"Boss@X.org", "admin@x.org", "boss@x.org"};
  ASSERT_TRUE(store_->SetTenantPolicy("x.org", policy).ok());
  // Master users belong to the tenant: another domain's address is refused.
  policy.master_users = {"boss@y.org"};
  EXPECT_EQ(store_->SetTenantPolicy("x.org", policy).code(), absl::StatusCode::kInvalidArgument);
  policy.master_users.assign(kTenantMasterUsersMax + 1, "a@x.org");
  EXPECT_EQ(store_->SetTenantPolicy("x.org", policy).code(), absl::StatusCode::kInvalidArgument);
  Reopen();
  auto tenant = store_->GetTenant("x.org");
  ASSERT_TRUE(tenant.ok()) << tenant.status();
  EXPECT_TRUE(tenant->policy.apop_allowed);
  EXPECT_EQ(tenant->policy.plaintext_auth, PlaintextAuth::kAllow);
  EXPECT_EQ(tenant->policy.master_users, (std::vector<std::string>{"admin@x.org", "boss@x.org"}));
  EXPECT_EQ(tenant->limits.quota_messages, 7u);
  // The tenant's password scheme: kept with the other fields, cleared alone.
  TenantPolicy with_scheme = store_->GetTenant("x.org")->policy;
  with_scheme.password_scheme = "sha512-crypt";
  ASSERT_TRUE(store_->SetTenantPolicy("x.org", with_scheme).ok());
  Reopen();
  EXPECT_EQ(store_->GetTenant("x.org")->policy.password_scheme, "sha512-crypt");
  EXPECT_TRUE(store_->GetTenant("x.org")->policy.apop_allowed);
  with_scheme.password_scheme = std::string(kTenantPasswordSchemeBytesMax + 1, 'x');
  EXPECT_EQ(store_->SetTenantPolicy("x.org", with_scheme).code(),
            absl::StatusCode::kInvalidArgument);
  with_scheme.password_scheme.clear();
  ASSERT_TRUE(store_->SetTenantPolicy("x.org", with_scheme).ok());
  Reopen();
  EXPECT_TRUE(store_->GetTenant("x.org")->policy.password_scheme.empty());
  // Limits changes keep them; clearing them goes back to an older record form.
  ASSERT_TRUE(store_->SetTenantLimits("x.org", TenantLimits{9, 0, 0}).ok());
  EXPECT_TRUE(store_->GetTenant("x.org")->policy.apop_allowed);
  ASSERT_TRUE(store_->SetTenantPolicy("x.org", TenantPolicy{}).ok());
  Reopen();
  EXPECT_FALSE(store_->GetTenant("x.org")->policy.apop_allowed);
  EXPECT_TRUE(store_->GetTenant("x.org")->policy.master_users.empty());

  // The APOP secret: set, kept across reopen and password changes, removed by an empty one.
  EXPECT_TRUE(store_->GetAccount("u@x.org")->shared_secret.empty());
  ASSERT_TRUE(store_->SetSharedSecret("U@x.org", "tanstaaf").ok());
  ASSERT_TRUE(store_->SetPasswordHash("u@x.org", "{PLAIN}other").ok());
  Reopen();
  auto account = store_->GetAccount("u@x.org");
  ASSERT_TRUE(account.ok()) << account.status();
  EXPECT_EQ(account->shared_secret, "tanstaaf");
  EXPECT_EQ(account->password_hash, "{PLAIN}other");
  EXPECT_EQ(store_->SetSharedSecret("u@x.org", std::string(kMaxSharedSecretLength + 1, 's')).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->SetSharedSecret("nobody@x.org", "s").code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store_->SetSharedSecret("u@x.org", "").ok());
  Reopen();
  EXPECT_TRUE(store_->GetAccount("u@x.org")->shared_secret.empty());
}

TEST_F(MailStoreTest, AccountWithSecretAndDisplayCaseKeepsBoth) {
  Create("Mixed.Case@x.org");
  ASSERT_TRUE(store_->SetSharedSecret("mixed.case@x.org", "s3cret").ok());
  Reopen();
  auto account = store_->GetAccount("MIXED.case@x.org");
  ASSERT_TRUE(account.ok()) << account.status();
  EXPECT_EQ(account->display_address, "Mixed.Case@x.org");
  EXPECT_EQ(account->shared_secret, "s3cret");
}

// The account record's optional fields (the display case, the hold, SCRAM verifiers, the APOP
// secret) share one tagged record form: each survives a reopen and a change of the others.
TEST_F(MailStoreTest, AccountRecordFieldsLiveTogether) {
  Create("All.Fields@x.org");
  ASSERT_TRUE(store_->SetSharedSecret("all.fields@x.org", "s3cret").ok());
  ASSERT_TRUE(store_
                  ->SetPasswordHash("all.fields@x.org", "{PLAIN}pw",
                                    ScramVerifiers{.sha1 = "v1", .sha256 = "v256"})
                  .ok());
  ASSERT_TRUE(store_->HoldAccount("all.fields@x.org", true).ok());
  Reopen();
  auto account = store_->GetAccount("all.fields@x.org");
  ASSERT_TRUE(account.ok()) << account.status();
  EXPECT_EQ(account->display_address, "All.Fields@x.org");
  EXPECT_EQ(account->shared_secret, "s3cret");
  EXPECT_EQ(account->scram.sha1, "v1");
  EXPECT_EQ(account->scram.sha256, "v256");
  EXPECT_EQ(account->password_hash, "{PLAIN}pw");
  EXPECT_TRUE(account->held);
  // Releasing the hold and clearing the verifiers keep the secret; then it goes too.
  ASSERT_TRUE(store_->HoldAccount("all.fields@x.org", false).ok());
  ASSERT_TRUE(store_->SetPasswordHash("all.fields@x.org", "{PLAIN}pw2").ok());
  Reopen();
  account = store_->GetAccount("all.fields@x.org");
  ASSERT_TRUE(account.ok()) << account.status();
  EXPECT_FALSE(account->held);
  EXPECT_TRUE(account->scram.sha256.empty());
  EXPECT_EQ(account->shared_secret, "s3cret");
  ASSERT_TRUE(store_->SetSharedSecret("all.fields@x.org", "").ok());
  Reopen();
  account = store_->GetAccount("all.fields@x.org");
  ASSERT_TRUE(account.ok()) << account.status();
  EXPECT_TRUE(account->shared_secret.empty());
  EXPECT_EQ(account->display_address, "All.Fields@x.org");
}

TEST(PlaintextAuthTest, NamesRoundTrip) {
  for (PlaintextAuth v :
       {PlaintextAuth::kDefault, PlaintextAuth::kAllow, PlaintextAuth::kRequireTls}) {
    EXPECT_EQ(ParsePlaintextAuth(PlaintextAuthName(v)), v);
  }
  EXPECT_EQ(ParsePlaintextAuth("ALLOW"), std::nullopt);
  EXPECT_EQ(ParsePlaintextAuth(""), std::nullopt);
}

TEST_F(MailStoreTest, StoreDefaultsAreCopiedIntoNewTenants) {
  options_.default_quota_messages = 1;
  Reopen();
  Create("u@fresh.org");
  MustDeliver("u@fresh.org", "a\r\n");
  EXPECT_EQ(store_->Deliver("u@fresh.org", "b\r\n").status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST_F(MailStoreTest, MaximumMessageSize) {
  options_.message_bytes_max = 100;
  Reopen();
  Create("u@x.org");
  MustDeliver("u@x.org", std::string(98, 'a') + "\r\n");  // exactly 100
  auto too_big = store_->Deliver("u@x.org", std::string(99, 'a') + "\r\n");
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(too_big.status().message().find("maximum message size"), absl::string_view::npos);
  // 99 bare-LF lines: 99 raw octets but 198 with CRLF.
  EXPECT_EQ(store_->Deliver("u@x.org", std::string(99, '\n')).status().code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(store_->SetTenantLimits("x.org", TenantLimits{0, 0, 10}).ok());
  EXPECT_EQ(store_->Deliver("u@x.org", "0123456789\r\n").status().code(),
            absl::StatusCode::kResourceExhausted);
  auto stats = store_->GetMailboxStats("u@x.org");
  EXPECT_EQ(stats->messages, 1u);
}

// ---- snapshots and deletions ----

TEST_F(MailStoreTest, SnapshotIsIsolatedFromLaterDeliveries) {
  Create("u@x.org");
  MustDeliver("u@x.org", "one\r\n");
  MustDeliver("u@x.org", "two\r\n");
  auto snap = MustOpen("u@x.org");
  MustDeliver("u@x.org", "three\r\n");
  ASSERT_EQ(snap->size(), 2u);
  EXPECT_EQ(snap->total_octets(), 10u);
  EXPECT_EQ(*store_->ReadMessageForTest(*snap, 1), "two\r\n");
  auto later = MustOpen("u@x.org");
  ASSERT_EQ(later->size(), 3u);
  EXPECT_EQ(*store_->ReadMessageForTest(*later, 2), "three\r\n");
}

TEST_F(MailStoreTest, CommitDeletionsIsAtomicAndCountsOnce) {
  Create("u@x.org");
  for (int i = 0; i < 5; ++i) MustDeliver("u@x.org", absl::StrCat("m", i, "\r\n"));
  auto a = MustOpen("u@x.org");
  auto b = MustOpen("u@x.org");
  // A bad index fails the whole commit.
  EXPECT_EQ(store_->CommitDeletions(*a, {1, 7}).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(store_->GetMailboxStats("u@x.org")->messages, 5u);

  auto first = store_->CommitDeletions(*a, {1, 3, 3});
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->deleted, 2u);
  EXPECT_EQ(first->already_gone, 0u);
  EXPECT_EQ(first->stats_after.messages, 3u);
  EXPECT_EQ(first->stats_after.octets, 12u);
  // A concurrent session deleting an overlapping set: the overlap is not counted again.
  auto second = store_->CommitDeletions(*b, {0, 1, 3});
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->deleted, 1u);
  EXPECT_EQ(second->already_gone, 2u);
  EXPECT_EQ(second->stats_after.messages, 2u);
  // Old snapshots still read their messages (the bytes are still in the segment).
  EXPECT_EQ(*store_->ReadMessageForTest(*a, 1), "m1\r\n");
  Reopen();
  auto now = MustOpen("u@x.org");
  ASSERT_EQ(now->size(), 2u);
  EXPECT_EQ(*store_->ReadMessageForTest(*now, 0), "m2\r\n");
  EXPECT_EQ(*store_->ReadMessageForTest(*now, 1), "m4\r\n");
  EXPECT_EQ(store_->GetMailboxStats("u@x.org")->messages, 2u);
  EXPECT_EQ(store_->GetMailboxStats("u@x.org")->octets, 8u);
  ExpectCheckClean();
}

TEST_F(MailStoreTest, CommitDeletionsAfterAccountDeletionIsNotFound) {
  Create("u@x.org");
  MustDeliver("u@x.org", "a\r\n");
  auto snap = MustOpen("u@x.org");
  ASSERT_TRUE(store_->DeleteAccount("u@x.org").ok());
  Create("u@x.org");
  MustDeliver("u@x.org", "b\r\n");
  EXPECT_EQ(store_->CommitDeletions(*snap, {0}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetMailboxStats("u@x.org")->messages, 1u);
  ExpectCheckClean();
}

TEST_F(MailStoreTest, DeleteAccountRemovesItsMessages) {
  Create("u@x.org");
  for (int i = 0; i < 300; ++i) MustDeliver("u@x.org", "a\r\n");  // spans several index chunks
  ASSERT_TRUE(store_->DeleteAccount("u@x.org").ok());
  Create("u@x.org");
  EXPECT_EQ(MustOpen("u@x.org")->size(), 0u);
  EXPECT_EQ(store_->GetMailboxStats("u@x.org")->messages, 0u);
  ExpectCheckClean();
}

// ---- concurrency and group commit ----

TEST_F(MailStoreTest, ConcurrentDeliveriesShareSegmentSyncs) {
  constexpr int kThreads = 32;
  constexpr int kPerThread = 10;
  Create("u@x.org");
  Create("v@x.org");
  std::vector<std::thread> threads;
  std::vector<std::vector<std::string>> uidls(kThreads);
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto r = store_->Deliver(t % 2 ? "u@x.org" : "v@x.org",
                                 absl::StrCat("From: t", t, "\r\n\r\n", i, "\r\n"));
        if (!r.ok()) {
          failures.fetch_add(1);
        } else {
          uidls[t].push_back(r->uidl);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(failures.load(), 0);
  const StoreCounters counters = store_->Counters();
  EXPECT_EQ(counters.deliveries, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_LT(counters.segment_syncs, counters.deliveries) << "no fdatasync was shared";
  EXPECT_GT(counters.segment_syncs, 0u);
  std::set<std::string> unique;
  for (const auto& v : uidls) unique.insert(v.begin(), v.end());
  EXPECT_EQ(unique.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(store_->GetMailboxStats("u@x.org")->messages, kThreads * kPerThread / 2u);
  auto snap = MustOpen("u@x.org");
  ASSERT_EQ(snap->size(), kThreads * kPerThread / 2u);
  for (size_t i = 1; i < snap->size(); ++i) EXPECT_LT(snap->entry(i - 1).seq, snap->entry(i).seq);
  ExpectCheckClean();
}

TEST_F(MailStoreTest, ConcurrentOverlappingDeletionsCountEachMessageOnce) {
  Create("u@x.org");
  for (int i = 0; i < 200; ++i) MustDeliver("u@x.org", absl::StrCat("m", i, "\r\n"));
  constexpr int kSessions = 8;
  std::vector<std::shared_ptr<const MailboxSnapshot>> snaps;
  for (int t = 0; t < kSessions; ++t) snaps.push_back(MustOpen("u@x.org"));
  std::atomic<uint64_t> deleted{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kSessions; ++t) {
    threads.emplace_back([&, t] {
      std::vector<size_t> mine;  // every session deletes the even messages, plus its own residue
      for (size_t i = 0; i < 200; ++i) {
        if (i % 2 == 0 || i % kSessions == static_cast<size_t>(t)) mine.push_back(i);
      }
      auto r = store_->CommitDeletions(*snaps[t], mine);
      if (!r.ok()) {
        errors.fetch_add(1);
        return;
      }
      deleted.fetch_add(r->deleted);
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ(errors.load(), 0);
  // Even messages (100) and the odd ones whose residue belongs to some session (all 100).
  EXPECT_EQ(deleted.load(), 200u);
  EXPECT_EQ(store_->GetMailboxStats("u@x.org")->messages, 0u);
  EXPECT_EQ(store_->GetMailboxStats("u@x.org")->octets, 0u);
  ExpectCheckClean();
}

TEST_F(MailStoreTest, DeleteAccountWhileDeliveriesAreInFlight) {
  Create("u@x.org");
  std::atomic<int> delivered{0};
  std::atomic<int> attempts{0};
  std::atomic<int> unexpected{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 30; ++i) {
        auto r = store_->Deliver("u@x.org", "in flight\r\n");
        attempts.fetch_add(1);
        if (r.ok()) {
          delivered.fetch_add(1);
        } else if (r.status().code() != absl::StatusCode::kNotFound) {
          unexpected.fetch_add(1);
        }
      }
    });
  }
  // Bounded: ends when 20 deliveries are in, or when every attempt is over.
  while (delivered.load() < 20 && attempts.load() < 8 * 30) std::this_thread::yield();
  ASSERT_TRUE(store_->DeleteAccount("u@x.org").ok());
  for (auto& th : threads) th.join();
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_EQ(store_->GetAccount("u@x.org").status().code(), absl::StatusCode::kNotFound);
  // Nothing of the old incarnation is left behind (Check reports orphaned rows).
  ExpectCheckClean();
  Create("u@x.org");
  EXPECT_EQ(MustOpen("u@x.org")->size(), 0u);
}

// ---- compaction ----

TEST_F(MailStoreTest, CompactionReclaimsSpaceWhileOldSnapshotsKeepReading) {
  options_.segment_roll_bytes = 4096;
  Reopen();
  Create("u@x.org");
  std::vector<std::string> bodies;
  for (int i = 0; i < 200; ++i) {
    bodies.push_back(
        absl::StrCat("Subject: ", i, "\r\n\r\n", std::string(100 + i, 'a' + i % 26), "\r\n"));
    MustDeliver("u@x.org", bodies.back());
  }
  auto old_snapshot = MustOpen("u@x.org");
  const auto files_before = SegmentFiles(options_.data_dir);
  ASSERT_GT(files_before.size(), 5u);
  // Delete 3 of every 4 messages.
  std::vector<size_t> doomed;
  for (size_t i = 0; i < 200; ++i) {
    if (i % 4 != 0) doomed.push_back(i);
  }
  ASSERT_TRUE(store_->CommitDeletions(*old_snapshot, doomed).ok());
  // A pinned message outlives even the snapshot.
  PinnedMessage pinned = old_snapshot->PinForTest(0);

  std::vector<CompactionProgress> progress;
  auto result = store_->Compact([&](const CompactionProgress& p) { progress.push_back(p); });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GT(result->segments_rewritten, 0u);
  EXPECT_GT(result->bytes_reclaimed, result->bytes_copied);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back().segments_done, progress.back().segments_total);

  // Old segment files are gone from the directory...
  const auto files_after = SegmentFiles(options_.data_dir);
  EXPECT_LT(files_after.size(), files_before.size());
  struct stat st;
  EXPECT_NE(::stat(files_before.front().c_str(), &st), 0) << "first segment still on disk";
  // ...but the old snapshot reads correct bytes from its open fds, deleted messages included.
  for (size_t i = 0; i < 200; ++i) {
    auto bytes = store_->ReadMessageForTest(*old_snapshot, i);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    EXPECT_EQ(*bytes, bodies[i]) << i;
  }
  old_snapshot.reset();
  std::string pinned_bytes(pinned.ref.length, '\0');
  ASSERT_EQ(::pread(pinned.ref.fd, pinned_bytes.data(), pinned.ref.length,
                    static_cast<off_t>(pinned.ref.offset)),
            static_cast<ssize_t>(pinned.ref.length));
  EXPECT_EQ(pinned_bytes, bodies[0]);

  // A new snapshot reads the survivors from the new segments, with the same UIDLs.
  auto fresh = MustOpen("u@x.org");
  ASSERT_EQ(fresh->size(), 50u);
  for (size_t i = 0; i < 50; ++i) EXPECT_EQ(*store_->ReadMessageForTest(*fresh, i), bodies[i * 4]);
  ExpectCheckClean();
  Reopen();
  fresh = MustOpen("u@x.org");
  ASSERT_EQ(fresh->size(), 50u);
  for (size_t i = 0; i < 50; ++i) EXPECT_EQ(*store_->ReadMessageForTest(*fresh, i), bodies[i * 4]);
  ExpectCheckClean();
  // After the restart the former delivery segment is closed and gets compacted too; then
  // nothing is left to do.
  ASSERT_TRUE(store_->Compact().ok());
  fresh = MustOpen("u@x.org");
  for (size_t i = 0; i < 50; ++i) EXPECT_EQ(*store_->ReadMessageForTest(*fresh, i), bodies[i * 4]);
  auto again = store_->Compact();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->segments_rewritten, 0u);
}

TEST_F(MailStoreTest, CompactionRunsConcurrentlyWithDeliveriesAndDeletions) {
  options_.segment_roll_bytes = 8192;
  Reopen();
  Create("u@x.org");
  Create("v@x.org");
  for (int i = 0; i < 100; ++i) MustDeliver("u@x.org", absl::StrCat("seed ", i, "\r\n"));
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::thread deliverer([&] {
    for (int i = 0; i < 200 && errors.load() == 0; ++i) {
      if (!store_->Deliver(i % 2 ? "u@x.org" : "v@x.org", absl::StrCat("live ", i, "\r\n")).ok()) {
        errors.fetch_add(1);
      }
    }
    stop = true;
  });
  std::thread deleter([&] {
    while (!stop.load()) {
      auto snap = store_->OpenMailbox("u@x.org");
      if (!snap.ok()) {
        errors.fetch_add(1);
        return;
      }
      std::vector<size_t> doomed;
      for (size_t i = 0; i < (*snap)->size(); i += 3) doomed.push_back(i);
      if (!store_->CommitDeletions(**snap, doomed).ok()) errors.fetch_add(1);
      for (size_t i = 0; i < (*snap)->size(); ++i) {
        if (!store_->ReadMessageForTest(**snap, i).ok()) errors.fetch_add(1);
      }
    }
  });
  int compactions = 0;
  while (!stop.load()) {
    if (!store_->Compact().ok()) errors.fetch_add(1);
    ++compactions;
  }
  deliverer.join();
  deleter.join();
  ASSERT_TRUE(store_->Compact().ok());
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(compactions, 0);
  ExpectCheckClean();
  Reopen();
  ExpectCheckClean();
}

TEST_F(MailStoreTest, OpenMailboxReadsAgainWhenCompactionRetiresASegmentMidway) {
  options_.segment_roll_bytes = 4096;
  Reopen();
  Create("u@x.org");
  Create("v@x.org");
  for (int i = 0; i < 100; ++i) {
    MustDeliver("u@x.org", absl::StrCat("keep ", i, "\r\n"));
    MustDeliver("v@x.org", absl::StrCat("drop ", i, " ", std::string(200, 'd'), "\r\n"));
  }
  auto v = MustOpen("v@x.org");
  std::vector<size_t> all(v->size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  ASSERT_TRUE(store_->CommitDeletions(*v, all).ok());
  int reads = 0;
  uint64_t rewritten = 0;
  store_->SetAfterIndexReadHookForTest([&] {
    if (++reads == 1) {
      auto r = store_->Compact();
      ASSERT_TRUE(r.ok()) << r.status();
      rewritten = r->segments_rewritten;
    }
  });
  auto u = MustOpen("u@x.org");
  store_->SetAfterIndexReadHookForTest(nullptr);
  EXPECT_GT(rewritten, 0u);
  EXPECT_EQ(reads, 2) << "the index should have been read again after the retirement";
  ASSERT_EQ(u->size(), 100u);
  for (size_t i = 0; i < 100; ++i) {
    EXPECT_EQ(*store_->ReadMessageForTest(*u, i), absl::StrCat("keep ", i, "\r\n"));
  }
  ExpectCheckClean();
}

TEST_F(MailStoreTest, CompactionMergesSmallSegmentsLeftByRestarts) {
  options_.segment_roll_bytes = 64 * 1024;
  Reopen();
  Create("u@x.org");
  for (int i = 0; i < 6; ++i) {
    MustDeliver("u@x.org", absl::StrCat("restart ", i, "\r\n"));
    Reopen();  // each run of the store starts a new delivery segment
  }
  ASSERT_EQ(SegmentFiles(options_.data_dir).size(), 6u);
  auto result = store_->Compact();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->segments_rewritten, 6u);
  EXPECT_EQ(SegmentFiles(options_.data_dir).size(), 1u);
  auto snap = MustOpen("u@x.org");
  ASSERT_EQ(snap->size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(*store_->ReadMessageForTest(*snap, i), absl::StrCat("restart ", i, "\r\n"));
  }
  // One small segment alone is left as it is.
  auto again = store_->Compact();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->segments_rewritten, 0u);
  ExpectCheckClean();
}

// ---- check ----

TEST_F(MailStoreTest, CheckDetectsATruncatedSegment) {
  Create("u@x.org");
  MustDeliver("u@x.org", "Subject: a\r\n\r\nfirst\r\n");
  MustDeliver("u@x.org", "Subject: b\r\n\r\nsecond\r\n");
  ExpectCheckClean();
  store_.reset();
  const auto files = SegmentFiles(options_.data_dir);
  ASSERT_EQ(files.size(), 1u);
  ASSERT_EQ(::truncate(files[0].c_str(), 30), 0);
  Reopen();
  auto report = store_->Check();
  ASSERT_TRUE(report.ok());
  ASSERT_FALSE(report->ok());
  EXPECT_NE(report->problems[0].find("points outside segment"), std::string::npos)
      << report->problems[0];
  auto snap = MustOpen("u@x.org");
  EXPECT_EQ(store_->ReadMessageForTest(*snap, 1).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(MailStoreTest, CheckDetectsCorruptedBytes) {
  Create("u@x.org");
  MustDeliver("u@x.org", "Subject: a\r\n\r\nfirst\r\n");
  store_.reset();
  const auto files = SegmentFiles(options_.data_dir);
  ASSERT_EQ(files.size(), 1u);
  int fd = ::open(files[0].c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, "X", 1, 3), 1);
  ::close(fd);
  Reopen();
  auto report = store_->Check();
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->problems.size(), 1u);
  EXPECT_NE(report->problems[0].find("checksum"), std::string::npos) << report->problems[0];
}

TEST_F(MailStoreTest, CheckDetectsAMissingSegment) {
  Create("u@x.org");
  MustDeliver("u@x.org", "a\r\n");
  store_.reset();
  const auto files = SegmentFiles(options_.data_dir);
  ASSERT_EQ(files.size(), 1u);
  ASSERT_EQ(::unlink(files[0].c_str()), 0);
  Reopen();
  auto report = store_->Check();
  ASSERT_TRUE(report.ok());
  EXPECT_FALSE(report->ok());
  EXPECT_EQ(store_->OpenMailbox("u@x.org").status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(MailStoreTest, UnreferencedSegmentsFromACrashAreRemovedOnOpen) {
  Create("u@x.org");
  MustDeliver("u@x.org", "a\r\n");
  store_.reset();
  // A segment created just before a crash, never indexed.
  const std::string stray = options_.data_dir + "/segments/00000000000000ff.seg";
  int fd = ::open(stray.c_str(), O_CREAT | O_WRONLY, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "garbage", 7), 7);
  ::close(fd);
  Reopen();
  struct stat st;
  EXPECT_NE(::stat(stray.c_str(), &st), 0);
  EXPECT_EQ(SegmentFiles(options_.data_dir).size(), 1u);
  ExpectCheckClean();
}

// ---- store stats (for metrics) ----

TEST_F(MailStoreTest, StatsFollowDeliveriesDeletionsAndCompaction) {
  options_.segment_roll_bytes = 4096;
  Reopen();
  Create("a@x.org");
  Create("b@y.org");
  auto empty = store_->Stats();
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->accounts, 2u);
  EXPECT_EQ(empty->messages, 0u);
  for (int i = 0; i < 20; ++i) MustDeliver("a@x.org", std::string(1000, 'm') + "\r\n");
  MustDeliver("b@y.org", "Subject: hi\r\n\r\nbody\r\n");
  auto full = store_->Stats();
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->messages, 21u);
  EXPECT_EQ(full->octets, 20u * 1002 + 21);
  EXPECT_GE(full->segments, 2u);
  EXPECT_EQ(full->live_bytes, full->segment_file_bytes);
  EXPECT_EQ(full->dead_bytes, 0u);
  EXPECT_EQ(full->counters.deliveries, 21u);

  auto snap = MustOpen("a@x.org");
  std::vector<size_t> all(snap->size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  ASSERT_TRUE(store_->CommitDeletions(*snap, all).ok());
  auto deleted = store_->Stats();
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(deleted->messages, 1u);
  EXPECT_GT(deleted->dead_bytes, 0u);
  EXPECT_EQ(deleted->compactions, 0u);

  snap.reset();
  Reopen();  // the delivery segment closes, so compaction may take it
  auto compacted = store_->Compact();
  ASSERT_TRUE(compacted.ok()) << compacted.status();
  ASSERT_GT(compacted->segments_rewritten, 0u);
  auto after = store_->Stats();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->compactions, 1u);
  EXPECT_EQ(after->compacted_segments, compacted->segments_rewritten);
  EXPECT_LT(after->dead_bytes, deleted->dead_bytes);
  // The index was read through the block cache: RocksDB's tickers are on.
  MustOpen("b@y.org");
  auto cached = store_->Stats();
  ASSERT_TRUE(cached.ok());
  EXPECT_GT(cached->block_cache_hits + cached->block_cache_misses, 0u);
  EXPECT_FALSE(cached->write_stopped);
  // The index's memory by part, for the metrics: the memtable holds these writes, the block
  // cache what was read from the index's files, both within their configured bounds.
  EXPECT_GT(cached->index_memtable_bytes, 0u);
  EXPECT_LE(cached->index_memtable_bytes, 2 * options_.index_write_buffer_bytes);
  EXPECT_EQ(cached->index_block_cache_capacity, options_.index_cache_bytes);
  EXPECT_LE(cached->index_block_cache_bytes, cached->index_block_cache_capacity);
}

// A held account (a live move's final copy) refuses writes with kAccountHeld, keeps serving
// reads, and takes writes again once released.
TEST_F(MailStoreTest, HeldAccountRefusesDeliveriesAndDeletionsUntilReleased) {
  ASSERT_TRUE(store_->CreateAccount("Held@example.org", "h").ok());
  MustDeliver("held@example.org", "Subject: before\r\n\r\nx\r\n");
  auto before = MustOpen("held@example.org");
  ASSERT_TRUE(store_->HoldAccount("HELD@example.org", true).ok());
  EXPECT_TRUE(store_->GetUsage("held@example.org")->held);
  EXPECT_EQ(ErrorOf(store_->Deliver("held@example.org", "Subject: during\r\n\r\ny\r\n")),
            StoreError::kAccountHeld);
  EXPECT_EQ(ErrorOf(store_->CommitDeletions(*before, {0})), StoreError::kAccountHeld);
  auto during = MustOpen("held@example.org");
  ASSERT_NE(during, nullptr);
  EXPECT_EQ(during->size(), 1u);
  // Another account is not held.
  ASSERT_TRUE(store_->CreateAccount("free@example.org", "h").ok());
  MustDeliver("free@example.org", "Subject: free\r\n\r\nz\r\n");

  ASSERT_TRUE(store_->HoldAccount("held@example.org", false).ok());
  EXPECT_FALSE(store_->GetUsage("held@example.org")->held);
  MustDeliver("held@example.org", "Subject: after\r\n\r\ny\r\n");
  EXPECT_TRUE(store_->CommitDeletions(*before, {0}).ok());
  EXPECT_EQ(ErrorOf(store_->HoldAccount("nobody@example.org", true)), StoreError::kUnknownAccount);
}

// The hold is stored with the account: a store reopened mid-move (a restarted backend) still
// refuses deliveries and deletions and reports the hold, keeps the account's other fields
// (here a display spelling, which shares the record's tail with the hold), and a snapshot
// taken while held says so. Releasing, or deleting the account, ends it durably.
TEST_F(MailStoreTest, HoldSurvivesReopenUntilReleasedOrDeleted) {
  ASSERT_TRUE(store_->CreateAccount("Moving@example.org", "hash-1").ok());
  ASSERT_TRUE(store_->CreateAccount("plain@example.org", "hash-2").ok());
  MustDeliver("moving@example.org", "Subject: before\r\n\r\nx\r\n");
  MustDeliver("plain@example.org", "Subject: before\r\n\r\nx\r\n");
  ASSERT_TRUE(store_->HoldAccount("moving@example.org", true).ok());
  ASSERT_TRUE(store_->HoldAccount("plain@example.org", true).ok());
  ASSERT_TRUE(store_->HoldAccount("plain@example.org", true).ok());  // idempotent
  Reopen();

  for (const char* address : {"moving@example.org", "plain@example.org"}) {
    SCOPED_TRACE(address);
    auto usage = store_->GetUsage(address);
    ASSERT_TRUE(usage.ok()) << usage.status();
    EXPECT_TRUE(usage->held);
    EXPECT_TRUE(store_->GetAccount(address)->held);
    EXPECT_EQ(ErrorOf(store_->Deliver(address, "Subject: during\r\n\r\ny\r\n")),
              StoreError::kAccountHeld);
    auto snapshot = MustOpen(address);
    ASSERT_NE(snapshot, nullptr);
    EXPECT_TRUE(snapshot->held());
    EXPECT_EQ(snapshot->size(), 1u);
    EXPECT_EQ(ErrorOf(store_->CommitDeletions(*snapshot, {0})), StoreError::kAccountHeld);
  }
  auto moving = store_->GetAccount("moving@example.org");
  EXPECT_EQ(moving->display_address, "Moving@example.org");
  EXPECT_EQ(moving->password_hash, "hash-1");
  // Other account changes keep the hold.
  ASSERT_TRUE(store_->SetDisabled("moving@example.org", false).ok());
  EXPECT_TRUE(store_->GetUsage("moving@example.org")->held);

  ASSERT_TRUE(store_->HoldAccount("moving@example.org", false).ok());
  ASSERT_TRUE(store_->DeleteAccount("plain@example.org").ok());
  ASSERT_TRUE(store_->HoldAccount("plain@example.org", false).ok());  // gone: still OK
  Reopen();
  EXPECT_FALSE(store_->GetUsage("moving@example.org")->held);
  EXPECT_FALSE(MustOpen("moving@example.org")->held());
  EXPECT_EQ(store_->GetAccount("moving@example.org")->display_address, "Moving@example.org");
  MustDeliver("moving@example.org", "Subject: after\r\n\r\ny\r\n");
  // A new account of the deleted address starts unheld.
  ASSERT_TRUE(store_->CreateAccount("plain@example.org", "hash-3").ok());
  EXPECT_FALSE(store_->GetUsage("plain@example.org")->held);
  MustDeliver("plain@example.org", "Subject: new\r\n\r\nz\r\n");
  auto check = store_->Check();
  ASSERT_TRUE(check.ok());
  EXPECT_TRUE(check->ok());
}

}  // namespace
}  // namespace posthaste::storage
