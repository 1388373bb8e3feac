// What the POP3 service counts on one shard, declared once (docs/CONTRIBUTING.md, "Counters"):
// ShardStats, plain per-shard integers made from the X-macro table below, one row per counter,
// X(member, kind, metric name, labels, help) (kinds and rules in metrics/counter_table.h); the
// rows, with PH_POP3_SHARD_MORE_ROWS over the nested blocks (the send paths, TLS, the sessions'
// own counters), are the table /metrics reads the block through. The nested blocks are declared
// by their packages (PH_SEND_STATS, PH_TLS_COUNTERS, PH_TLS_PATH_COUNTERS,
// PH_POP3_SESSION_COUNTERS); each of their members has a row or is listed in
// PH_POP3_SHARD_NOT_EXPORTED with the reason (server/counters_test.cc checks it).
//
// Counting: `++stats.timeouts_idle` on the shard's thread, plain integers, no atomics; the
// transport counts into the nested blocks through TransportEnv. A session's own counters are
// added when it ends (`stats.session += end.session`, Pop3ShardBackend::Finished). The shard
// registers the block with its counter blocks when it starts listening; a scrape copies it on
// the shard's thread.
//
// Threading: a ShardStats is written only by its shard's thread.
#ifndef POSTHASTE_SERVER_POP3_SERVICE_POP3_COUNTERS_H_
#define POSTHASTE_SERVER_POP3_SERVICE_POP3_COUNTERS_H_

#include <cstdint>

#include "base/counter_fields.h"
#include "metrics/counter_table.h"
#include "server/pop3/session.h"
#include "server/pop3_service/sasl_counters.h"
#include "server/reactor/send.h"
#include "server/transport/proxy_header_reader.h"
#include "tls/ktls.h"
#include "tls/tls_engine.h"

namespace posthaste::server {

#define PH_POP3_SHARD_COUNTERS(X)                                                                  \
  X(connections_accepted, kCounter, "posthaste_pop3_connections_accepted_total", "",               \
    "POP3 connections accepted.")                                                                  \
  X(connections_open, kGaugePerShard, "posthaste_pop3_connections_open", "",                       \
    "POP3 connections open, by shard.")                                                            \
  X(connections_closed, kCounter, "posthaste_pop3_connections_closed_total", "",                   \
    "POP3 connections closed and freed.")                                                          \
  X(sessions_authenticated, kCounter, "posthaste_pop3_sessions_authenticated_total", "",           \
    "Successful logins (maildrop opened or not).")                                                 \
  X(auth_failures, kCounter, "posthaste_pop3_auth_failures_total", "", "Failed logins.")           \
  X(auth_cache_hits, kCounter, "posthaste_pop3_auth_cache_hits_total", "",                         \
    "Logins verified from the password verification cache.")                                       \
  X(master_logins, kCounter, "posthaste_pop3_master_logins_total", "result=ok",                    \
    "SASL PLAIN logins with an authorisation id: a tenant's master user as another of its users.") \
  X(master_refusals, kCounter, "posthaste_pop3_master_logins_total", "result=refused", "")         \
  X(auth_rehashes, kCounter, "posthaste_pop3_auth_rehashes_total", "",                             \
    "Stored password hashes replaced at login by one at --password_scheme.")                       \
  X(maildrops_opened, kCounter, "posthaste_pop3_maildrops_opened_total", "", "Maildrops opened.")  \
  X(commits_ok, kCounter, "posthaste_pop3_commits_total", "result=ok", "QUIT commits.")            \
  X(commits_failed, kCounter, "posthaste_pop3_commits_total", "result=failed", "")                 \
  X(in_use_refusals, kCounter, "posthaste_pop3_in_use_refusals_total", "",                         \
    "Logins refused with [IN-USE].")                                                               \
  X(takeovers, kCounter, "posthaste_pop3_takeovers_total", "",                                     \
    "Idle sessions ended for a newcomer.")                                                         \
  X(ended_for_move, kCounter, "posthaste_pop3_sessions_ended_for_move_total", "",                  \
    "Sessions ended without commit because their account was held for a move.")                    \
  X(held_refusals, kCounter, "posthaste_pop3_held_refusals_total", "",                             \
    "Logins refused with [SYS/TEMP] because the account is held for a move.")                      \
  X(limit_per_shard, kCounter, "posthaste_pop3_limit_rejections_total", "limit=per_shard",         \
    "Connections or logins refused by a limit.")                                                   \
  X(limit_per_ip, kCounter, "posthaste_pop3_limit_rejections_total", "limit=per_ip", "")           \
  X(limit_per_user_ip, kCounter, "posthaste_pop3_limit_rejections_total", "limit=per_user_ip", "") \
  X(limit_per_user, kCounter, "posthaste_pop3_logins_refused_total", "reason=connections_per_user", \
    "Logins refused by their tenant's policy after the credentials were right, by reason.")        \
  X(mechanism_refusals, kCounter, "posthaste_pop3_logins_refused_total", "reason=mechanism", "")   \
  X(timeouts_auth, kCounter, "posthaste_pop3_timeouts_total", "timeout=authorization",             \
    "Connections closed by a timeout.")                                                            \
  X(timeouts_idle, kCounter, "posthaste_pop3_timeouts_total", "timeout=idle", "")                  \
  X(timeouts_send_stall, kCounter, "posthaste_pop3_timeouts_total", "timeout=send_stall", "")      \
  X(auth_checks_expired, kCounter, "posthaste_pop3_auth_checks_expired_total", "",                 \
    "Login checks skipped: still queued when their connection's login time ran out.")              \
  X(offload_rejected, kCounter, "posthaste_offload_rejected_total", "",                            \
    "Jobs refused by a full offload queue (POP3 and LMTP).")                                       \
  X(post_rejected, kCounter, "posthaste_inbox_rejected_total", "",                                 \
    "Cross-shard messages refused (full inbox).")                                                  \
  X(tls_stls_started, kCounter, "posthaste_tls_connections_total", "mode=stls",                    \
    "TLS connections started, by how.")                                                            \
  X(tls_implicit_accepted, kCounter, "posthaste_tls_connections_total", "mode=implicit", "")       \
  X(tls_body_bytes, kCounter, "posthaste_pop3_body_bytes_total", "path=tls_userspace",             \
    "Message body bytes (RETR/TOP) by the send path submitted.")                                   \
  X(damaged_messages, kCounter, "posthaste_store_damaged_messages_total", "",                      \
    "Stored messages refused to RETR or TOP with -ERR [SYS/PERM]: their bytes failed the "         \
    "checksum recorded at delivery, or could not be read.")

// Per-shard POP3 counters, written only by the shard's thread: the rows above, then the nested
// blocks.
struct ShardStats {
  PH_POP3_SHARD_COUNTERS(PH_COUNTER_MEMBER)
  reactor::SendStats send;
  // Outcomes of finished TLS sessions, and per session which data path it took.
  TlsCounters tls;
  TlsPathCounters tls_path;
  pop3::Pop3SessionCounters session;     // ended sessions' own counters, summed
  transport::ProxyHeaderCounters proxy;  // PROXY headers read on the POP3 and POP3S listeners
  SaslCounters sasl;  // SASL beyond PLAIN and LOGIN (rows: server/pop3_service/sasl_counters.h)
};

// Rows over ShardStats' nested blocks, and second series of a counter kept for dashboards.
#define PH_POP3_SHARD_MORE_ROWS(X)                                                                 \
  X(send.splice_bytes, kCounter, "posthaste_pop3_body_bytes_total", "path=splice", "")             \
  X(send.zc_bytes, kCounter, "posthaste_pop3_body_bytes_total", "path=send_zc", "")                \
  X(send.copy_bytes, kCounter, "posthaste_pop3_body_bytes_total", "path=copy", "")                 \
  X(send.zc_fallback_bytes, kCounter, "posthaste_pop3_body_bytes_total",                           \
    "path=send_zc_refused_copy", "")                                                               \
  X(send.splice_bytes, kCounter, "posthaste_pop3_retrieved_bytes_total", "path=zero_copy",         \
    "RETR and TOP body bytes: zero_copy (splice, SEND_ZC) or copied through user memory.")         \
  X(send.zc_bytes, kCounter, "posthaste_pop3_retrieved_bytes_total", "path=zero_copy", "")         \
  X(send.copy_bytes, kCounter, "posthaste_pop3_retrieved_bytes_total", "path=copied", "")          \
  X(send.zc_fallback_bytes, kCounter, "posthaste_pop3_retrieved_bytes_total", "path=copied", "")   \
  X(tls_body_bytes, kCounter, "posthaste_pop3_retrieved_bytes_total", "path=copied", "")           \
  X(send.plain_bytes, kCounter, "posthaste_pop3_reply_bytes_total", "",                            \
    "Reply bytes sent by plain send.")                                                             \
  X(send.streams_ok, kCounter, "posthaste_pop3_streams_total", "result=ok", "Message streams.")    \
  X(send.streams_failed, kCounter, "posthaste_pop3_streams_total", "result=failed", "")            \
  X(send.partial_sends, kCounter, "posthaste_pop3_partial_sends_total", "",                        \
    "Sends and splices resubmitted after the socket took part of them.")                           \
  X(send.socket_full_waits, kCounter, "posthaste_pop3_socket_full_waits_total", "",                \
    "Sends that found the socket buffer full and waited for it to drain.")                         \
  X(send.zc_notifs, kCounter, "posthaste_pop3_zc_notifications_total", "",                         \
    "SEND_ZC completion notifications.")                                                           \
  X(send.zc_notifs_copied, kCounter, "posthaste_pop3_zc_notifications_copied_total", "",           \
    "SEND_ZC notifications reporting the kernel copied anyway (always on loopback).")              \
  X(send.zc_fallbacks, kCounter, "posthaste_pop3_zc_fallbacks_total", "",                          \
    "SEND_ZC chunks the kernel refused (pinned-page limits), sent by copy instead.")               \
  X(tls.sessions, kCounter, "posthaste_tls_sessions_closed_total", "",                             \
    "TLS sessions ended (the connections that began TLS).")                                        \
  X(tls.handshake_errors, kCounter, "posthaste_tls_errors_total", "kind=handshake",                \
    "TLS connections closed by an error, by kind (closed sessions).")                              \
  X(tls.record_errors, kCounter, "posthaste_tls_errors_total", "kind=record", "")                  \
  X(tls.certificate_errors, kCounter, "posthaste_tls_errors_total", "kind=certificate", "")        \
  X(tls.limit_errors, kCounter, "posthaste_tls_errors_total", "kind=limit", "")                    \
  X(tls.internal_errors, kCounter, "posthaste_tls_errors_total", "kind=internal", "")              \
  X(tls.plaintext_bytes_encrypted, kCounter, "posthaste_tls_plaintext_bytes_total", "",            \
    "Plaintext bytes sealed by the userspace TLS engine (closed sessions).")                       \
  X(tls_path.kernel_tls_sessions, kCounter, "posthaste_tls_sessions_total", "path=ktls",           \
    "TLS sessions past the handshake by data path (kernel TLS or the userspace engine).")          \
  X(tls_path.userspace_sessions, kCounter, "posthaste_tls_sessions_total", "path=userspace", "")   \
  X(tls_path.kernel_tls_errors, kCounter, "posthaste_tls_ktls_errors_total", "",                   \
    "Sessions where kernel TLS was available but enabling it failed.")                             \
  X(session.commands, kCounter, "posthaste_pop3_command_lines_total", "",                          \
    "Command lines handled by ended sessions, any verdict (by verb: "                              \
    "posthaste_pop3_commands_total).")                                                             \
  X(session.command_line_too_long, kCounter, "posthaste_pop3_command_line_too_long_total", "",     \
    "Command lines over the line limit (ended sessions).")                                         \
  X(session.sasl_line_too_long, kCounter, "posthaste_pop3_sasl_line_too_long_total", "",           \
    "SASL responses over the SASL line limit (ended sessions).")                                   \
  X(session.bad_commands, kCounter, "posthaste_pop3_bad_commands_total", "",                       \
    "Commands refused as unknown, out of state or malformed (ended sessions).")                    \
  X(session.bare_line_feed_closes, kCounter, "posthaste_pop3_protocol_closes_total",               \
    "reason=bare_line_feed",                                                                       \
    "Sessions the server closed for breaking a protocol rule or limit, by reason.")                \
  X(session.bad_command_limit_closes, kCounter, "posthaste_pop3_protocol_closes_total",            \
    "reason=bad_commands_max", "")                                                                 \
  X(session.auth_failure_limit_closes, kCounter, "posthaste_pop3_protocol_closes_total",           \
    "reason=auth_failures_max", "")                                                                \
  X(session.output_blocked, kCounter, "posthaste_pop3_output_blocked_total", "",                   \
    "Times a session stopped reading commands while its output queue was full.")                   \
  X(session.input_over_limit, kCounter, "posthaste_pop3_input_over_limit_total", "",               \
    "Input that reached a session past its input buffer limit (ended sessions).")                  \
  X(session.stls_discarded_bytes, kCounter, "posthaste_pop3_stls_discarded_bytes_total", "",       \
    "Plaintext bytes discarded behind or during STLS (ended sessions).")                           \
  X(session.proxy_header_refusals, kCounter, "posthaste_proxy_header_refusals_total",              \
    "service=pop3,reason=untrusted",                                                               \
    "Connections closed over a PROXY header, by reason: not from --proxy_networks (untrusted), "   \
    "malformed or too long (invalid), not whole in time (timeout), peer gone first "               \
    "(peer_closed).")                                                                              \
  X(proxy.refused_invalid, kCounter, "posthaste_proxy_header_refusals_total",                      \
    "service=pop3,reason=invalid", "")                                                             \
  X(proxy.refused_timeout, kCounter, "posthaste_proxy_header_refusals_total",                      \
    "service=pop3,reason=timeout", "")                                                             \
  X(proxy.refused_peer_closed, kCounter, "posthaste_proxy_header_refusals_total",                  \
    "service=pop3,reason=peer_closed", "")                                                         \
  X(proxy.headers_accepted, kCounter, "posthaste_proxy_headers_total", "service=pop3,kind=client", \
    "PROXY headers read from trusted proxies: naming the client, or LOCAL/UNKNOWN (local).")       \
  X(proxy.headers_local, kCounter, "posthaste_proxy_headers_total", "service=pop3,kind=local", "") \
  X(limit_per_shard, kCounter, "posthaste_pop3_connections_refused_total", "reason=per_shard",     \
    "POP3 connections refused before the greeting, by reason.")                                    \
  X(limit_per_ip, kCounter, "posthaste_pop3_connections_refused_total", "reason=per_ip", "")       \
  X(limit_per_user_ip, kCounter, "posthaste_pop3_connections_refused_total", "reason=per_user_ip", \
    "")                                                                                            \
  X(session.login_delay_refusals, kCounter, "posthaste_pop3_logins_refused_total",                 \
    "reason=login_delay", "")                                                                      \
  X(session.expired_at_quit, kCounter, "posthaste_pop3_expired_at_quit_total", "",                 \
    "Messages deleted at QUIT because they were retrieved under the tenant's EXPIRE 0.")           \
  X(session.download_limit_refusals, kCounter, "posthaste_pop3_download_refusals_total", "",       \
    "RETR and TOP refused with -ERR [SYS/TEMP] over the tenant's daily download limit.")

// Nested counters without a row of their own: X(member, why).
#define PH_POP3_SHARD_NOT_EXPORTED(X)                                                        \
  X(proxy.refused_untrusted, "POP3 counts it in the session: session.proxy_header_refusals") \
  X(session.auth_failures, "the driver counts the same logins: auth_failures")               \
  X(tls.handshakes_completed, "counted at the handshake: posthaste_tls_handshakes_total")    \
  X(tls.handshakes_resumed, "counted at the handshake: posthaste_tls_handshakes_total")

// The table the exporter reads a ShardStats through (ValidateCounterTable holds for it).
const metrics::CounterTable& Pop3ShardCounterTable();

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_POP3_SERVICE_POP3_COUNTERS_H_
