// The counters serve keeps around its services, declared once (docs/CONTRIBUTING.md,
// "Counters"): the reactor's per-shard ring statistics (reactor::RingStats, PH_RING_STATS) and
// the process-wide ProcessCounters, with how /metrics names them: one X-macro row per counter,
// X(member, kind, metric name, labels, help) (kinds and rules in metrics/counter_table.h).
// Each service declares its own block the same way beside its code: POP3's ShardStats in
// server/pop3_service/pop3_counters.h, LMTP's LmtpStats in server/lmtp_service/lmtp_counters.h,
// the HTTP listeners' rows in server/admin/admin_http.cc. Every member of a block has a row or
// is listed in a *_NOT_EXPORTED list with the reason (server/counters_test.cc checks it, so a
// counter added without a row fails).
//
// Threading: a shard's RingStats is written only by its shard's thread and copied on it at
// scrape time (ShardContext::counter_blocks); ProcessCounters are atomics (the main thread
// writes, the scraper loads them).
#ifndef POSTHASTE_SERVER_COUNTERS_H_
#define POSTHASTE_SERVER_COUNTERS_H_

#include <atomic>
#include <cstdint>

#include "base/counter_fields.h"
#include "metrics/counter_table.h"
#include "server/reactor/ring.h"

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
const metrics::CounterTable& ProcessCounterTable();

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_COUNTERS_H_
