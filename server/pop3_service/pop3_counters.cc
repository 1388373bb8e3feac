#include "server/pop3_service/pop3_counters.h"

#include <cstddef>

namespace posthaste::server {
namespace {

// The block is its rows' members and its nested blocks, nothing else: a member added outside
// the X-macro would have no row.
#define PH_COUNT_ROW(...) +1
static_assert(sizeof(ShardStats) ==
              (0 PH_POP3_SHARD_COUNTERS(PH_COUNT_ROW)) * sizeof(uint64_t) +
                  sizeof(reactor::SendStats) + sizeof(TlsCounters) + sizeof(TlsPathCounters) +
                  sizeof(pop3::Pop3SessionCounters) + sizeof(transport::ProxyHeaderCounters) +
                  sizeof(SaslCounters));
#undef PH_COUNT_ROW

#define PH_POP3_ROW(...) PH_COUNTER_ROW(ShardStats, __VA_ARGS__)
#define PH_SASL_SUCCESS(m, mname) PH_SASL_SUCCESS_ROW(ShardStats, m, mname)
#define PH_SASL_FAILURE(m, mname, f, fname) PH_SASL_FAILURE_ROW(ShardStats, m, mname, f, fname)
#define PH_SASL_FAILURES_OF(m, mname) PH_SASL_FAILURES(PH_SASL_FAILURE, m, mname)
constexpr metrics::CounterRow kPop3Rows[] = {
    PH_POP3_SHARD_COUNTERS(PH_POP3_ROW) PH_POP3_SHARD_MORE_ROWS(PH_POP3_ROW)
        PH_SASL_MECHANISMS(PH_SASL_SUCCESS) PH_SASL_MECHANISMS(PH_SASL_FAILURES_OF)};
#undef PH_SASL_FAILURES_OF
#undef PH_SASL_FAILURE
#undef PH_SASL_SUCCESS
#undef PH_POP3_ROW

}  // namespace

const metrics::CounterTable& Pop3ShardCounterTable() {
  static const metrics::CounterTable table = PH_COUNTER_TABLE(ShardStats, kPop3Rows);
  return table;
}

}  // namespace posthaste::server
