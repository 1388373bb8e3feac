#include "server/pop3/mailbox_snapshot.h"

#include "gtest/gtest.h"

namespace posthaste::pop3 {
namespace {

TEST(MailboxSnapshotTest, HoldsSizesUidlsAndRefs) {
  MailboxSnapshot::Builder builder;
  ASSERT_TRUE(builder.Add(120, "whqtswO00WBw418f9t5JxYwZ", 7).ok());
  ASSERT_TRUE(builder.Add(200, "QhdPYR:00WBw1Ph7x7", 9).ok());
  auto snapshot = std::move(builder).Build();
  EXPECT_EQ(snapshot->count(), 2u);
  EXPECT_EQ(snapshot->total_octets(), 320u);
  EXPECT_EQ(snapshot->size_octets(MessageIndex(1)), 200u);
  EXPECT_EQ(snapshot->uidl(MessageIndex(0)), "whqtswO00WBw418f9t5JxYwZ");
  EXPECT_EQ(snapshot->uidl(MessageIndex(1)), "QhdPYR:00WBw1Ph7x7");
  EXPECT_EQ(snapshot->ref(MessageIndex(1)), 9u);
}

TEST(MailboxSnapshotTest, RefusesUidlsThatWouldBreakTheListing) {
  MailboxSnapshot::Builder builder;
  EXPECT_EQ(builder.Add(1, "", 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(builder.Add(1, "a b", 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(builder.Add(1, "a\r\nb", 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(builder.Add(1, std::string(71, 'a'), 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(builder.Add(1, std::string(70, '~'), 0).ok());
  EXPECT_EQ(std::move(builder).Build()->count(), 1u);
}

TEST(MessageNumberTest, ConvertsBetweenWireNumbersAndIndexes) {
  EXPECT_EQ(MessageNumber(1).ToIndex(), MessageIndex(0));
  EXPECT_EQ(MessageNumber::FromIndex(MessageIndex(41)).value(), 42u);
}

}  // namespace
}  // namespace posthaste::pop3
