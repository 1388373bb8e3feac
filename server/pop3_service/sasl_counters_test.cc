// The SASL counter rows: one success row per mechanism and one failure row per mechanism and
// reason, each labelled with the names sasl_exchange.h gives, and the table valid.
#include "server/pop3_service/sasl_counters.h"

#include <set>
#include <string>

#include "gtest/gtest.h"
#include "metrics/counter_table.h"
#include "server/pop3_service/pop3_counters.h"

namespace posthaste::server {
namespace {

TEST(SaslCountersTest, RowsNameEveryMechanismAndReasonAsTheEnumsDo) {
  const metrics::CounterTable& table = Pop3ShardCounterTable();
  ASSERT_TRUE(metrics::ValidateCounterTable(table).ok());
  std::set<std::string> successes;
  std::set<std::string> failures;
  for (const metrics::CounterRow& row : table.rows) {
    if (row.name == "posthaste_auth_successes_total") successes.insert(std::string(row.labels));
    if (row.name == "posthaste_auth_failures_total") failures.insert(std::string(row.labels));
  }
  EXPECT_EQ(successes.size(), static_cast<size_t>(auth::kSaslMechanismCount));
  EXPECT_EQ(failures.size(),
            static_cast<size_t>(auth::kSaslMechanismCount * auth::kSaslFailureCount));
  for (int m = 0; m < auth::kSaslMechanismCount; ++m) {
    const std::string mechanism(auth::SaslMechanismName(static_cast<auth::SaslMechanism>(m)));
    EXPECT_TRUE(successes.contains("mechanism=" + mechanism)) << mechanism;
    for (int f = 0; f < auth::kSaslFailureCount; ++f) {
      const std::string reason(auth::SaslFailureName(static_cast<auth::SaslFailure>(f)));
      EXPECT_TRUE(failures.contains("mechanism=" + mechanism + ",reason=" + reason))
          << mechanism << " " << reason;
    }
  }
  // A count lands in the row its labels name.
  ShardStats stats;
  stats.sasl.CountFailure(auth::SaslMechanism::kScramSha256, auth::SaslFailure::kBadCredentials);
  const metrics::CounterBlockCopy copy =
      metrics::CounterBlockCopy::Of(metrics::CounterBlockRef::Of(table, stats));
  for (const metrics::CounterRow& row : table.rows) {
    if (row.name != "posthaste_auth_failures_total") continue;
    EXPECT_EQ(copy.value(row),
              row.labels == "mechanism=SCRAM-SHA-256,reason=bad_credentials" ? 1u : 0u)
        << row.labels;
  }
}

}  // namespace
}  // namespace posthaste::server
