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

// Each reactor block is its rows' members, nothing else.
#define PH_COUNT_ROW(...) +1
static_assert(sizeof(reactor::InboxStats) == (0 PH_INBOX_ROWS(PH_COUNT_ROW)) * sizeof(uint64_t));
static_assert(sizeof(reactor::ShardOffloadStats) ==
              (0 PH_SHARD_OFFLOAD_ROWS(PH_COUNT_ROW)) * sizeof(uint64_t));
static_assert(sizeof(reactor::BufferRingStats) ==
              (0 PH_BUFFER_RING_ROWS(PH_COUNT_ROW)) * sizeof(uint64_t));
static_assert(sizeof(reactor::AcceptorStats) ==
              (0 PH_ACCEPTOR_ROWS(PH_COUNT_ROW)) * sizeof(uint64_t));
static_assert(sizeof(reactor::OffloadStats) ==
              (0 PH_OFFLOAD_POOL_ROWS(PH_COUNT_ROW)) * sizeof(uint64_t));
#undef PH_COUNT_ROW

#define PH_INBOX_ROW(...) PH_COUNTER_ROW(reactor::InboxStats, __VA_ARGS__)
constexpr metrics::CounterRow kInboxRows[] = {PH_INBOX_ROWS(PH_INBOX_ROW)};
#undef PH_INBOX_ROW
#define PH_SHARD_OFFLOAD_ROW(...) PH_COUNTER_ROW(reactor::ShardOffloadStats, __VA_ARGS__)
constexpr metrics::CounterRow kShardOffloadRows[] = {PH_SHARD_OFFLOAD_ROWS(PH_SHARD_OFFLOAD_ROW)};
#undef PH_SHARD_OFFLOAD_ROW
#define PH_BUFFER_RING_ROW(...) PH_COUNTER_ROW(reactor::BufferRingStats, __VA_ARGS__)
constexpr metrics::CounterRow kBufferRingRows[] = {PH_BUFFER_RING_ROWS(PH_BUFFER_RING_ROW)};
#undef PH_BUFFER_RING_ROW
#define PH_ACCEPTOR_ROW(...) PH_COUNTER_ROW(reactor::AcceptorStats, __VA_ARGS__)
constexpr metrics::CounterRow kAcceptorRows[] = {PH_ACCEPTOR_ROWS(PH_ACCEPTOR_ROW)};
#undef PH_ACCEPTOR_ROW
#define PH_OFFLOAD_POOL_ROW(...) PH_COUNTER_ROW(reactor::OffloadStats, __VA_ARGS__)
constexpr metrics::CounterRow kOffloadPoolRows[] = {PH_OFFLOAD_POOL_ROWS(PH_OFFLOAD_POOL_ROW)};
#undef PH_OFFLOAD_POOL_ROW

#define PH_PROCESS_ROW(...) PH_COUNTER_ROW(ProcessCounters, __VA_ARGS__)
constexpr metrics::CounterRow kProcessRows[] = {PH_PROCESS_COUNTERS(PH_PROCESS_ROW)};
#undef PH_PROCESS_ROW

}  // namespace

const metrics::CounterTable& RingCounterTable() {
  static const metrics::CounterTable table = PH_COUNTER_TABLE(reactor::RingStats, kRingRows);
  return table;
}

const metrics::CounterTable& InboxCounterTable() {
  static const metrics::CounterTable table = PH_COUNTER_TABLE(reactor::InboxStats, kInboxRows);
  return table;
}

const metrics::CounterTable& ShardOffloadCounterTable() {
  static const metrics::CounterTable table =
      PH_COUNTER_TABLE(reactor::ShardOffloadStats, kShardOffloadRows);
  return table;
}

const metrics::CounterTable& BufferRingCounterTable() {
  static const metrics::CounterTable table =
      PH_COUNTER_TABLE(reactor::BufferRingStats, kBufferRingRows);
  return table;
}

const metrics::CounterTable& AcceptorCounterTable() {
  static const metrics::CounterTable table =
      PH_COUNTER_TABLE(reactor::AcceptorStats, kAcceptorRows);
  return table;
}

const metrics::CounterTable& OffloadPoolCounterTable() {
  static const metrics::CounterTable table =
      PH_COUNTER_TABLE(reactor::OffloadStats, kOffloadPoolRows);
  return table;
}

const metrics::CounterTable& ProcessCounterTable() {
  static const metrics::CounterTable table = PH_COUNTER_TABLE(ProcessCounters, kProcessRows);
  return table;
}

}  // namespace posthaste::server
