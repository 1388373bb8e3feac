// What the LMTP service counts on one shard, declared once (docs/CONTRIBUTING.md, "Counters"):
// LmtpStats, plain per-shard integers made from the X-macro table below, one row per counter,
// X(member, kind, metric name, labels, help) (kinds and rules in metrics/counter_table.h); the
// rows, with PH_LMTP_SHARD_MORE_ROWS over the nested blocks (the send paths, the sessions' own
// counters), are the table /metrics reads the block through. Every nested member has a row or
// is listed in PH_LMTP_SHARD_NOT_EXPORTED with the reason (server/counters_test.cc checks it).
// Also: the label of a per-recipient delivery result in metrics::ShardMetrics' lmtp_deliveries.
//
// Counting: `++stats.timeouts_idle` on the shard's thread; a session's own counters are added
// when it ends (`stats.session += session.counters()`, LmtpAdapter). The LmtpShard registers
// the block with its shard's counter blocks when it starts listening; a scrape copies it on the
// shard's thread.
//
// Threading: an LmtpStats is written only by its shard's thread.
#ifndef POSTHASTE_SERVER_LMTP_SERVICE_LMTP_COUNTERS_H_
#define POSTHASTE_SERVER_LMTP_SERVICE_LMTP_COUNTERS_H_

#include <cstdint>

#include "base/counter_fields.h"
#include "metrics/counter_table.h"
#include "metrics/shard_metrics.h"
#include "server/lmtp/session.h"
#include "server/reactor/send.h"
#include "server/transport/proxy_header_reader.h"

namespace posthaste::server {

#define PH_LMTP_SHARD_COUNTERS(X)                                                                \
  X(connections_accepted, kCounter, "posthaste_lmtp_connections_accepted_total", "",             \
    "LMTP connections accepted.")                                                                \
  X(connections_open, kGaugePerShard, "posthaste_lmtp_connections_open", "",                     \
    "LMTP connections open, by shard.")                                                          \
  X(connections_closed, kCounter, "posthaste_lmtp_connections_closed_total", "",                 \
    "LMTP connections closed and freed.")                                                        \
  X(limit_per_shard, kCounter, "posthaste_lmtp_limit_rejections_total", "limit=per_shard",       \
    "LMTP connections refused by a limit (421).")                                                \
  X(recipients_checked, kCounter, "posthaste_lmtp_recipient_lookups_total", "",                  \
    "RCPT TO addresses looked up in the store.")                                                 \
  X(recipients_refused, kCounter, "posthaste_lmtp_recipients_refused_total", "reason=lookup",    \
    "RCPT TO refused, by reason (lookup: unknown, disabled, over quota or store trouble).")      \
  X(messages_received, kCounter, "posthaste_lmtp_delivery_attempts_total", "",                   \
    "Messages handed to the store for their accepted recipients.")                               \
  X(copies_delivered, kCounter, "posthaste_lmtp_copies_total", "result=delivered",               \
    "Message copies stored or not, per recipient (by detail: posthaste_lmtp_deliveries_total).") \
  X(copies_failed, kCounter, "posthaste_lmtp_copies_total", "result=failed", "")                 \
  X(timeouts_idle, kCounter, "posthaste_lmtp_timeouts_total", "timeout=idle",                    \
    "LMTP connections closed by a timeout.")                                                     \
  X(timeouts_send_stall, kCounter, "posthaste_lmtp_timeouts_total", "timeout=send_stall", "")    \
  X(offload_rejected, kCounter, "posthaste_offload_rejected_total", "",                          \
    "Jobs refused by a full offload queue (POP3 and LMTP).")

// Per-shard LMTP counters, written only by the shard's thread: the rows above, then the nested
// blocks.
struct LmtpStats {
  PH_LMTP_SHARD_COUNTERS(PH_COUNTER_MEMBER)
  reactor::SendStats send;
  lmtp::LmtpSessionCounters session;  // ended sessions' own counters, summed
  transport::ProxyHeaderCounters proxy;  // PROXY headers read on the LMTP listener
};

#define PH_LMTP_SHARD_MORE_ROWS(X)                                                                \
  X(send.plain_bytes, kCounter, "posthaste_lmtp_reply_bytes_total", "", "LMTP reply bytes sent.") \
  X(send.partial_sends, kCounter, "posthaste_lmtp_partial_sends_total", "",                       \
    "Sends resubmitted after the socket took part of them.")                                      \
  X(send.socket_full_waits, kCounter, "posthaste_lmtp_socket_full_waits_total", "",               \
    "Sends that found the socket buffer full and waited for it to drain.")                        \
  X(session.commands, kCounter, "posthaste_lmtp_command_lines_total", "",                         \
    "Command lines handled by ended sessions, any verdict.")                                      \
  X(session.command_line_too_long, kCounter, "posthaste_lmtp_command_line_too_long_total", "",    \
    "Command lines over the line limit (ended sessions).")                                        \
  X(session.bad_commands, kCounter, "posthaste_lmtp_bad_commands_total", "",                      \
    "Commands answered 500/501/502/503/555 (ended sessions).")                                    \
  X(session.bare_line_feed_closes, kCounter, "posthaste_lmtp_protocol_closes_total",              \
    "reason=bare_line_feed",                                                                      \
    "Sessions the server closed for breaking a protocol rule or limit, by reason.")               \
  X(session.bad_command_limit_closes, kCounter, "posthaste_lmtp_protocol_closes_total",           \
    "reason=bad_commands_max", "")                                                                \
  X(session.transactions, kCounter, "posthaste_lmtp_transactions_total", "",                      \
    "MAIL FROM commands accepted (ended sessions).")                                              \
  X(session.recipients_accepted, kCounter, "posthaste_lmtp_recipients_accepted_total", "",        \
    "RCPT TO commands accepted (ended sessions).")                                                \
  X(session.recipients_over_limit, kCounter, "posthaste_lmtp_recipients_refused_total",           \
    "reason=recipients_max", "")                                                                  \
  X(session.messages_received, kCounter, "posthaste_lmtp_messages_received_total", "",            \
    "Messages whose DATA was read to its end, any size (ended sessions).")                        \
  X(session.message_bytes_received, kCounter, "posthaste_lmtp_received_bytes_total", "",          \
    "Message bytes received, after unstuffing (ended sessions).")                                 \
  X(session.declared_size_too_large, kCounter, "posthaste_lmtp_messages_refused_total",           \
    "reason=declared_size",                                                                       \
    "Messages refused as too big: by MAIL SIZE= or once read (ended sessions).")                  \
  X(session.messages_too_large, kCounter, "posthaste_lmtp_messages_refused_total",                \
    "reason=message_bytes_max", "")                                                               \
  X(session.output_blocked, kCounter, "posthaste_lmtp_output_blocked_total", "",                  \
    "Times a session stopped reading commands while its output queue was full.")                  \
  X(session.input_over_limit, kCounter, "posthaste_lmtp_input_over_limit_total", "",              \
    "Input that reached a session past its input buffer limit (ended sessions).")                 \
  X(session.proxy_header_refusals, kCounter, "posthaste_proxy_header_refusals_total",             \
    "service=lmtp,reason=untrusted",                                                              \
    "Connections closed over a PROXY header, by reason: not from --proxy_networks (untrusted), "  \
    "malformed or too long (invalid), not whole in time (timeout), peer gone first "              \
    "(peer_closed).")                                                                             \
  X(proxy.refused_invalid, kCounter, "posthaste_proxy_header_refusals_total",                     \
    "service=lmtp,reason=invalid", "")                                                            \
  X(proxy.refused_timeout, kCounter, "posthaste_proxy_header_refusals_total",                     \
    "service=lmtp,reason=timeout", "")                                                            \
  X(proxy.refused_peer_closed, kCounter, "posthaste_proxy_header_refusals_total",                 \
    "service=lmtp,reason=peer_closed", "")                                                        \
  X(proxy.headers_accepted, kCounter, "posthaste_proxy_headers_total",                            \
    "service=lmtp,kind=client",                                                                   \
    "PROXY headers read from trusted proxies: naming the client, or LOCAL/UNKNOWN (local).")      \
  X(proxy.headers_local, kCounter, "posthaste_proxy_headers_total", "service=lmtp,kind=local", "")

#define PH_LMTP_SHARD_NOT_EXPORTED(X)                                                     \
  X(proxy.refused_untrusted, "LMTP counts it in the session: session.proxy_header_refusals")\
  X(send.zc_bytes, "LMTP replies go by plain send")                                       \
  X(send.splice_bytes, "LMTP streams no files")                                           \
  X(send.copy_bytes, "LMTP streams no files")                                             \
  X(send.zc_notifs, "LMTP replies go by plain send")                                      \
  X(send.zc_notifs_copied, "LMTP replies go by plain send")                               \
  X(send.zc_fallbacks, "LMTP replies go by plain send")                                   \
  X(send.zc_fallback_bytes, "LMTP replies go by plain send")                              \
  X(send.streams_ok, "LMTP streams no files")                                             \
  X(send.streams_failed, "LMTP streams no files")                                         \
  X(session.recipients_checked, "the driver counts the same lookups: recipients_checked") \
  X(session.deliveries, "the driver counts the same messages: messages_received")         \
  X(session.recipients_delivered, "the driver counts the same copies: copies_delivered")

// The table the exporter reads an LmtpStats through (ValidateCounterTable holds for it).
const metrics::CounterTable& LmtpShardCounterTable();

// The metric label of an LMTP per-recipient delivery result.
metrics::LmtpResult LmtpResultLabelOf(lmtp::LmtpDeliveryResult::Code code);

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_LMTP_SERVICE_LMTP_COUNTERS_H_
