#include "server/lmtp_service/lmtp_counters.h"

#include <cstddef>

namespace posthaste::server {
namespace {

// The block is its rows' members and its nested blocks, nothing else: a member added outside
// the X-macro would have no row.
#define PH_COUNT_ROW(...) +1
static_assert(sizeof(LmtpStats) == (0 PH_LMTP_SHARD_COUNTERS(PH_COUNT_ROW)) * sizeof(uint64_t) +
                                       sizeof(reactor::SendStats) +
                                       sizeof(lmtp::LmtpSessionCounters) +
                                       sizeof(transport::ProxyHeaderCounters));
#undef PH_COUNT_ROW

#define PH_LMTP_ROW(...) PH_COUNTER_ROW(LmtpStats, __VA_ARGS__)
constexpr metrics::CounterRow kLmtpRows[] = {PH_LMTP_SHARD_COUNTERS(PH_LMTP_ROW)
                                                 PH_LMTP_SHARD_MORE_ROWS(PH_LMTP_ROW)};
#undef PH_LMTP_ROW

}  // namespace

const metrics::CounterTable& LmtpShardCounterTable() {
  static const metrics::CounterTable table = PH_COUNTER_TABLE(LmtpStats, kLmtpRows);
  return table;
}

metrics::LmtpResult LmtpResultLabelOf(lmtp::LmtpDeliveryResult::Code code) {
  using Code = lmtp::LmtpDeliveryResult::Code;
  switch (code) {
    case Code::kDelivered:
      return metrics::LmtpResult::kDelivered;
    case Code::kOverQuotaTemp:
    case Code::kOverQuotaPerm:
      return metrics::LmtpResult::kOverQuota;
    case Code::kTempFailure:
    case Code::kMoving:   // a temporary refusal like any other: the MTA retries
    case Code::kNoSpace:  // likewise: PosthasteDeliveriesFailingTemporarily watches these
      return metrics::LmtpResult::kTempFailure;
    case Code::kPermFailure:
    case Code::kTooBig:
      return metrics::LmtpResult::kPermFailure;
  }
  return metrics::LmtpResult::kTempFailure;
}

}  // namespace posthaste::server
