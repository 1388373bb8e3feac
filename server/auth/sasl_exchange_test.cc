#include "server/auth/sasl_exchange.h"

#include "gtest/gtest.h"

namespace posthaste::auth {
namespace {

TEST(SaslExchangeTest, EveryMechanismNameParsesBackToItself) {
  for (int i = 0; i < kSaslMechanismCount; ++i) {
    const auto mechanism = static_cast<SaslMechanism>(i);
    EXPECT_EQ(ParseSaslMechanism(SaslMechanismName(mechanism)), mechanism);
  }
}

TEST(SaslExchangeTest, NamesAreCaseInsensitiveAndExact) {
  EXPECT_EQ(ParseSaslMechanism("scram-sha-256-plus"), SaslMechanism::kScramSha256Plus);
  EXPECT_EQ(ParseSaslMechanism("xoauth2"), SaslMechanism::kXOAuth2);
  EXPECT_EQ(ParseSaslMechanism("SCRAM-SHA-256-"), std::nullopt);
  EXPECT_EQ(ParseSaslMechanism("GSSAPI"), std::nullopt);
  EXPECT_EQ(ParseSaslMechanism(""), std::nullopt);
}

TEST(SaslExchangeTest, FailureNamesAreDistinctLabels) {
  for (int i = 0; i < kSaslFailureCount; ++i) {
    for (int j = i + 1; j < kSaslFailureCount; ++j) {
      EXPECT_NE(SaslFailureName(static_cast<SaslFailure>(i)),
                SaslFailureName(static_cast<SaslFailure>(j)));
    }
  }
}

}  // namespace
}  // namespace posthaste::auth
