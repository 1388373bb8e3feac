// The counters serve keeps around its services, declared once (docs/CONTRIBUTING.md,
// "Counters"): the reactor's per-shard ring statistics (reactor::RingStats, PH_RING_STATS), its
// inbox, offload, buffer-ring and acceptor counters, the offload pools' and the process-wide
// ProcessCounters, with how /metrics names them: one X-macro row per counter,
// X(member, kind, metric name, labels, help) (kinds and rules in metrics/counter_table.h).
// Each service declares its own block the same way beside its code: POP3's ShardStats in
// server/pop3_service/pop3_counters.h, LMTP's LmtpStats in server/lmtp_service/lmtp_counters.h,
// the HTTP listeners' rows in server/admin/admin_http.cc. Every member of a block has a row or
// is listed in a *_NOT_EXPORTED list with the reason (server/counters_test.cc checks it, so a
// counter added without a row fails).
//
// Threading: a shard's RingStats is written only by its shard's thread and copied on it at
// scrape time (ServiceShard::counter_blocks); ProcessCounters are atomics (the main thread
// writes, the scraper loads them).
#ifndef POSTHASTE_SERVER_COUNTERS_H_
#define POSTHASTE_SERVER_COUNTERS_H_

#include <atomic>
#include <cstdint>

#include "base/counter_fields.h"
#include "metrics/counter_table.h"
#include "server/reactor/buffer_ring.h"
#include "server/reactor/inbox.h"
#include "server/reactor/net.h"
#include "server/reactor/offload_pool.h"
#include "server/reactor/ring.h"
#include "server/reactor/shard.h"

namespace posthaste::server {

// ---- The reactor's ring, per shard (reactor::RingStats) ----

#define PH_RING_ROWS(X)                                                                        \
  X(loop_iterations, kCounterPerShard, "posthaste_reactor_loop_iterations_total", "",          \
    "Reactor loop iterations.")                                                                \
  X(sqes_prepared, kCounterPerShard, "posthaste_reactor_sqes_prepared_total", "",              \
    "Submission queue entries prepared.")                                                      \
  X(submissions, kCounterPerShard, "posthaste_reactor_submissions_total", "",                  \
    "Submission queue entries the kernel accepted.")                                           \
  X(completions, kCounterPerShard, "posthaste_reactor_completions_total", "",                  \
    "Completion queue entries reaped.")                                                        \
  X(cq_overflows, kCounterPerShard, "posthaste_reactor_cq_overflows_total", "",                \
    "Completions that overflowed the ring's CQ.")                                              \
  X(sq_full_retries, kCounterPerShard, "posthaste_reactor_sq_full_retries_total", "",          \
    "Times the submission queue was full.")                                                    \
  X(busy_ns, kNanosAsSecondsPerShard, "posthaste_reactor_busy_seconds_total", "",              \
    "Time the shard spent outside its blocking wait; its rate is the busy ratio.")             \
  X(timers_fired, kCounterPerShard, "posthaste_reactor_timers_fired_total", "", "Timers run.") \
  X(deferred_run, kCounterPerShard, "posthaste_reactor_deferred_runs_total", "",               \
    "Closures deferred to the next loop iteration and run.")

// ---- The rest of the reactor, per shard ----
// Each registered by the shard's ServiceShard (server/shard/service_shard.h): its inbox (what
// other shards and the pools sent it), what it sent to the offload pools, and each buffer ring
// and listener of its services (told apart by the block's label: ring="pop3", listener="pop3s").

#define PH_INBOX_ROWS(X)                                                                       \
  X(posted, kCounterPerShard, "posthaste_reactor_inbox_messages_total", "result=queued",       \
    "Cross-shard messages (and offload replies) sent to this shard's inbox, by result.")       \
  X(rejected_full, kCounterPerShard, "posthaste_reactor_inbox_messages_total",                 \
    "result=refused_full", "")                                                                 \
  X(rejected_closed, kCounterPerShard, "posthaste_reactor_inbox_messages_total",               \
    "result=refused_closed", "")                                                               \
  X(wakeups, kCounterPerShard, "posthaste_reactor_inbox_wakeups_total", "",                    \
    "Times the shard woke to drain its inbox.")                                                \
  X(run, kCounterPerShard, "posthaste_reactor_inbox_messages_run_total", "",                   \
    "Inbox messages run on this shard.")                                                       \
  X(dropped_at_close, kCounterPerShard, "posthaste_reactor_inbox_messages_dropped_total", "",  \
    "Inbox messages destroyed unrun because the shard was stopping.")

#define PH_SHARD_OFFLOAD_ROWS(X)                                                              \
  X(cpu_submitted, kCounterPerShard, "posthaste_reactor_offload_jobs_total",                  \
    "pool=cpu,result=queued", "Jobs this shard sent to an offload pool, by pool and result.") \
  X(cpu_refused, kCounterPerShard, "posthaste_reactor_offload_jobs_total",                    \
    "pool=cpu,result=refused", "")                                                            \
  X(io_submitted, kCounterPerShard, "posthaste_reactor_offload_jobs_total",                   \
    "pool=io,result=queued", "")                                                              \
  X(io_refused, kCounterPerShard, "posthaste_reactor_offload_jobs_total",                     \
    "pool=io,result=refused", "")                                                             \
  X(replies_run, kCounterPerShard, "posthaste_reactor_offload_replies_run_total", "",         \
    "Offloaded jobs whose reply ran on this shard.")                                          \
  X(pending, kGaugePerShard, "posthaste_reactor_offload_pending_jobs", "",                    \
    "Jobs this shard offloaded whose reply has not run yet (queued or running).")

#define PH_BUFFER_RING_ROWS(X)                                                                  \
  X(buffers_taken, kCounterPerShard, "posthaste_reactor_buffers_taken_total", "",               \
    "Receive completions that carried a provided buffer, by buffer ring.")                      \
  X(buffers_released, kCounterPerShard, "posthaste_reactor_buffers_released_total", "",         \
    "Provided buffers given back to the kernel, by buffer ring.")                               \
  X(exhausted, kCounterPerShard, "posthaste_reactor_buffer_ring_exhausted_total", "",           \
    "Receives that found the buffer ring empty (ENOBUFS), by buffer ring.")                     \
  X(waiters_rearmed, kCounterPerShard, "posthaste_reactor_buffer_ring_rearms_total", "",        \
    "Receives re-armed after waiting for buffers (ENOBUFS), by buffer ring.")                   \
  X(in_use_max, kGaugePerShard, "posthaste_reactor_buffers_in_use_max", "",                     \
    "Most provided buffers held at once by connections since start, by buffer ring.")

#define PH_ACCEPTOR_ROWS(X)                                                                   \
  X(accepted, kCounterPerShard, "posthaste_reactor_accepts_total", "",                        \
    "Connections accepted by this shard's share of a listener.")                              \
  X(rearms, kCounterPerShard, "posthaste_reactor_accept_rearms_total", "",                    \
    "Multishot accepts the kernel ended and the shard re-armed.")                             \
  X(errors_emfile, kCounterPerShard, "posthaste_reactor_accept_errors_total", "errno=EMFILE",  \
    "Accept errors by errno (EMFILE, ENFILE, other), each followed by a back-off.")            \
  X(errors_enfile, kCounterPerShard, "posthaste_reactor_accept_errors_total", "errno=ENFILE",  \
    "")                                                                                       \
  X(errors_other, kCounterPerShard, "posthaste_reactor_accept_errors_total", "errno=other", "") \
  X(refused_descriptors, kCounterPerShard, "posthaste_reactor_accept_refused_total", "",      \
    "Connections refused at the descriptor limit: accepted on the reserve descriptor, sent "  \
    "the listener's refusal line (none for pop3s) and closed.")

// ---- The offload pools (shared by every shard; label pool="cpu" or "io" on the block) ----

#define PH_OFFLOAD_POOL_ROWS(X)                                                          \
  X(submitted, kCounter, "posthaste_offload_pool_jobs_total", "result=queued",           \
    "Jobs an offload pool queued, refused (queue full) and completed, by pool.")         \
  X(rejected_full, kCounter, "posthaste_offload_pool_jobs_total", "result=refused", "")  \
  X(completed, kCounter, "posthaste_offload_pool_jobs_total", "result=completed", "")    \
  X(reply_retries, kCounter, "posthaste_offload_pool_reply_retries_total", "",           \
    "Pauses of a pool worker before re-posting a reply to a full inbox.")                \
  X(replies_dropped, kCounter, "posthaste_offload_pool_replies_dropped_total", "",       \
    "Replies destroyed because their shard's inbox had closed (shutdown).")

// ---- Process-wide ----

#define PH_PROCESS_COUNTERS(X)                                            \
  X(tls_reloads_ok, kCounter, "posthaste_tls_reloads_total", "result=ok", \
    "Certificate reloads, by result.")                                    \
  X(tls_reloads_failed, kCounter, "posthaste_tls_reloads_total", "result=failed", "")

// Counted by the main thread, read by the scraper.
struct ProcessCounters {
  PH_PROCESS_COUNTERS(PH_ATOMIC_COUNTER_MEMBER)
};

// The tables the exporter walks (ValidateCounterTable holds for each).
const metrics::CounterTable& RingCounterTable();
const metrics::CounterTable& InboxCounterTable();          // reactor::InboxStats
const metrics::CounterTable& ShardOffloadCounterTable();   // reactor::ShardOffloadStats
const metrics::CounterTable& BufferRingCounterTable();     // reactor::BufferRingStats
const metrics::CounterTable& AcceptorCounterTable();       // reactor::AcceptorStats
const metrics::CounterTable& OffloadPoolCounterTable();    // reactor::OffloadStats
const metrics::CounterTable& ProcessCounterTable();

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_COUNTERS_H_
