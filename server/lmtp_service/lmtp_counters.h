// What the LMTP service counts on one shard: LmtpStats (plain per-shard integers) and the label
// of a per-recipient delivery result in metrics::ShardMetrics' lmtp_deliveries.
//
// Threading: an LmtpStats is written only by its shard's thread.
#ifndef POSTHASTE_SERVER_LMTP_SERVICE_LMTP_COUNTERS_H_
#define POSTHASTE_SERVER_LMTP_SERVICE_LMTP_COUNTERS_H_

#include <cstdint>

#include "metrics/shard_metrics.h"
#include "server/lmtp/session.h"
#include "server/reactor/send.h"

namespace posthaste::server {

// Per-shard LMTP counters, written only by the shard's thread.
struct LmtpStats {
  uint64_t connections_accepted = 0;
  uint64_t connections_closed = 0;
  uint64_t recipients_checked = 0;
  uint64_t recipients_refused = 0;
  uint64_t messages_received = 0;
  uint64_t copies_delivered = 0;  // durable copies acknowledged with 250
  uint64_t copies_failed = 0;
  uint64_t timeouts_idle = 0;
  uint64_t timeouts_send_stall = 0;
  uint64_t offload_rejected = 0;
  reactor::SendStats send;
};

// The metric label of an LMTP per-recipient delivery result.
metrics::LmtpResult LmtpResultLabelOf(lmtp::LmtpDeliveryResult::Code code);

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_LMTP_SERVICE_LMTP_COUNTERS_H_
