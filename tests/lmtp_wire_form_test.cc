// The LMTP session hands storage wire form that is byte for byte what the path it replaced
// stored (the session unstuffed DATA, tests/lmtp_handover.h's reference, then storage
// normalised it): for fixed messages and many random ones fed in random pieces, checked on the
// bytes and through a real MailStore.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "storage/mail_store.h"
#include "storage/message_format.h"
#include "tests/lmtp_handover.h"

namespace posthaste::tests {
namespace {

using std::string_literals::operator""s;

// Message bytes built from the pieces DATA framing and dot-stuffing care about.
std::string RandomMessage(std::mt19937* rng) {
  static const std::string kPieces[] = {
      "\r\n", "\r\n", "\r\n.", "..", ".", "\n", "\r", "\r\r\n", "\n\r", "x", "yz", " ", "\0"s,
  };
  std::uniform_int_distribution<int> count(0, 40);
  std::uniform_int_distribution<size_t> pick(0, std::size(kPieces) - 1);
  std::string message;
  for (int n = count(*rng); n > 0; --n) message += kPieces[pick(*rng)];
  return message;
}

const std::string kFixedMessages[] = {
    "",
    "Subject: x\r\n\r\nbody",
    "..\r\n..leading\r\n...\r\nmid.dle.\r\n. x",
    "a\nb\r\nbare\rcr\r\n..\n.",
    "x\r\n.\r\nafter an early end",
    ".\r\n",
    "\r.\r\n\n.\n\r\n.\r",
    "a\r",
    "\r\r\r\n\n\n",
    "Subject: nul\r\n\r\na\0b\xff"s,
};

LmtpHandover ExpectHandover(const std::string& data, uint32_t seed) {
  SCOPED_TRACE(::testing::PrintToString(data) + " seed " + std::to_string(seed));
  LmtpHandover handover = RunLmtpHandover(data, seed);
  EXPECT_TRUE(handover.delivered_once);
  const storage::NormalizedMessage old_path = storage::NormalizeForStorage(handover.unstuffed);
  EXPECT_EQ(handover.delivered, old_path.stored);
  const auto checked = storage::CheckWireForm(handover.delivered);
  EXPECT_TRUE(checked.ok()) << checked.status();
  if (checked.ok()) {
    EXPECT_EQ(checked->pop3_size, old_path.pop3_size);
    EXPECT_EQ(checked->header_length, old_path.header_length);
  }
  return handover;
}

TEST(LmtpHandoverTest, FixedMessages) {
  for (const std::string& message : kFixedMessages) {
    for (uint32_t seed : {1u, 2u, 0x10001u, 0x12345u}) ExpectHandover(message, seed);
  }
}

TEST(LmtpHandoverTest, RandomMessagesInRandomPieces) {
  std::mt19937 rng(14);
  for (int i = 0; i < 20000; ++i) ExpectHandover(RandomMessage(&rng), static_cast<uint32_t>(rng()));
}

// The old path and the new one through a real store: the unstuffed message delivered as text
// to one account, the session's wire form to another; both mailboxes read the same.
TEST(LmtpHandoverTest, TheStoreKeepsTheSameBytesOnBothPaths) {
  storage::StoreOptions options;
  const char* tmp = std::getenv("TEST_TMPDIR");
  options.data_dir =
      std::string(tmp != nullptr ? tmp : "/tmp") + "/handover-" + std::to_string(::getpid());
  auto opened = storage::MailStore::Open(options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::unique_ptr<storage::MailStore> store = *std::move(opened);
  ASSERT_TRUE(store->CreateAccount("old@x.test", "x").ok());
  ASSERT_TRUE(store->CreateAccount("new@x.test", "x").ok());

  std::vector<LmtpHandover> handovers;
  for (const std::string& message : kFixedMessages) handovers.push_back(ExpectHandover(message, 7));
  std::mt19937 rng(2033);
  for (int i = 0; i < 400; ++i) {
    handovers.push_back(ExpectHandover(RandomMessage(&rng), static_cast<uint32_t>(rng())));
  }
  std::vector<storage::DeliveryItem> old_path;
  std::vector<storage::DeliveryItem> new_path;
  for (const LmtpHandover& h : handovers) {
    old_path.push_back({h.unstuffed, {}});
    storage::DeliverOptions wire;
    wire.input = storage::MessageInput::kWireForm;
    new_path.push_back({h.delivered, wire});
  }
  ASSERT_TRUE(store->DeliverBatch("old@x.test", old_path).ok());
  ASSERT_TRUE(store->DeliverBatch("new@x.test", new_path).ok());
  auto old_box = store->OpenMailbox("old@x.test");
  auto new_box = store->OpenMailbox("new@x.test");
  ASSERT_TRUE(old_box.ok() && new_box.ok());
  ASSERT_EQ((*old_box)->size(), handovers.size());
  ASSERT_EQ((*new_box)->size(), handovers.size());
  for (size_t i = 0; i < handovers.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(*store->ReadMessageForTest(**new_box, i), *store->ReadMessageForTest(**old_box, i));
    EXPECT_EQ((*new_box)->pop3_size(i), (*old_box)->pop3_size(i));
    EXPECT_EQ((*new_box)->Ref(i).header_length, (*old_box)->Ref(i).header_length);
  }
  EXPECT_EQ((*new_box)->total_octets(), (*old_box)->total_octets());
}

}  // namespace
}  // namespace posthaste::tests
