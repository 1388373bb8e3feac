#include "server/pop3_service/redownload_watch.h"

#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace posthaste::server {
namespace {

struct Case {
  std::string name;
  RedownloadAlarmOptions options;
  uint32_t messages;
  std::vector<uint32_t> retrieved;  // indexes, in order
  int alarm_at;                     // position in `retrieved` that fires it; -1: never
};

TEST(RedownloadWatch, FiresOnceWhenTheShareIsPassed) {
  const std::vector<Case> cases = {
      {"half of 10: the 6th distinct message", {50, 10}, 10, {0, 1, 2, 3, 4, 5, 6}, 5},
      {"exactly the share is not more than it", {50, 10}, 10, {0, 1, 2, 3, 4}, -1},
      {"the same message again counts once", {50, 10}, 10, {0, 0, 1, 1, 2, 2, 3, 3, 4, 4}, -1},
      {"a small mailbox never alarms", {50, 500}, 499, {0, 1, 2, 3}, -1},
      {"messages_min is inclusive", {50, 4}, 4, {0, 1, 2}, 2},
      {"0 percent is off", {0, 1}, 10, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, -1},
      {"100 percent never fires (nothing is more than all)", {100, 1}, 3, {0, 1, 2}, -1},
      {"out-of-range index ignored", {50, 1}, 2, {7, 9}, -1},
      {"after firing, never again", {10, 1}, 5, {0, 1, 2, 3, 4}, 0},
  };
  for (const Case& c : cases) {
    RedownloadWatch watch(c.options);
    watch.MaildropOpened(c.messages, uint64_t{c.messages} * 100);
    int fired_at = -1;
    int fired = 0;
    for (size_t i = 0; i < c.retrieved.size(); ++i) {
      if (watch.Retrieved(c.retrieved[i], 100)) {
        ++fired;
        fired_at = static_cast<int>(i);
      }
    }
    EXPECT_EQ(fired_at, c.alarm_at) << c.name;
    EXPECT_LE(fired, 1) << c.name;
    EXPECT_EQ(watch.alarmed(), c.alarm_at >= 0) << c.name;
  }
}

TEST(RedownloadWatch, CountsDistinctMessagesAndTheirOctets) {
  RedownloadWatch watch({.percent = 50, .messages_min = 2});
  watch.MaildropOpened(4, 1000);
  EXPECT_FALSE(watch.Retrieved(0, 100));
  EXPECT_FALSE(watch.Retrieved(0, 100));
  EXPECT_FALSE(watch.Retrieved(1, 200));
  EXPECT_TRUE(watch.Retrieved(3, 300));
  EXPECT_EQ(watch.retrieved(), 3u);
  EXPECT_EQ(watch.retrieved_octets(), 600u);
  EXPECT_EQ(watch.messages(), 4u);
  EXPECT_EQ(watch.mailbox_octets(), 1000u);
}

TEST(RedownloadWatch, NothingBeforeTheMaildropOpens) {
  RedownloadWatch watch({.percent = 1, .messages_min = 0});
  EXPECT_FALSE(watch.Retrieved(0, 10));
  EXPECT_FALSE(watch.alarmed());
}

}  // namespace
}  // namespace posthaste::server
