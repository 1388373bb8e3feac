#include "server/counters.h"

#include <cstddef>

namespace posthaste::server {
namespace {

// The block is its rows' members, nothing else: a member added outside the X-macro would have
// no row.
#define PH_COUNT_ROW(...) +1
static_assert(sizeof(reactor::RingStats) == (0 PH_RING_ROWS(PH_COUNT_ROW)) * sizeof(uint64_t));
#undef PH_COUNT_ROW

#define PH_RING_ROW(...) PH_COUNTER_ROW(reactor::RingStats, __VA_ARGS__)
constexpr metrics::CounterRow kRingRows[] = {PH_RING_ROWS(PH_RING_ROW)};
#undef PH_RING_ROW

#define PH_PROCESS_ROW(...) PH_COUNTER_ROW(ProcessCounters, __VA_ARGS__)
constexpr metrics::CounterRow kProcessRows[] = {PH_PROCESS_COUNTERS(PH_PROCESS_ROW)};
#undef PH_PROCESS_ROW

}  // namespace

const metrics::CounterTable& RingCounterTable() {
  static const metrics::CounterTable table = PH_COUNTER_TABLE(reactor::RingStats, kRingRows);
  return table;
}

const metrics::CounterTable& ProcessCounterTable() {
  static const metrics::CounterTable table = PH_COUNTER_TABLE(ProcessCounters, kProcessRows);
  return table;
}

}  // namespace posthaste::server
