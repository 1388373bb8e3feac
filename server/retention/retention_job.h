// RetentionJob: keeps RFC 2449 "EXPIRE n" (n > 0) for the tenants that set it
// (storage::TenantServiceSettings::expire_days): deletes the messages first retrieved more than
// n days before `now` (storage::MailStore::RetrievedAtOrBefore), through the same commit as a
// POP3 QUIT (storage::MailStore::CommitDeletions), one bounded batch at a time, each under the
// account's maildrop lock (MailboxGuard) so that no POP3 session has the mailbox open while it
// shrinks. A mailbox a session holds is skipped and counted, and retried on the next pass.
// Tenants whose setting is unset, NEVER or 0 are not walked (0 is kept at QUIT by the POP3
// session).
//
// A pass walks tenants, then their accounts, in address order. With a cursor name it records the
// last account done (storage::MailStore::SetJobCursor), so a pass cut short (stop, restart,
// crash) resumes after it; the cursor is cleared when a pass completes. A pass is idempotent:
// running it again deletes nothing more until time moves on.
//
// Threading: RunPass blocks (store I/O, throttle sleeps): run it on a thread of its own, never a
// reactor. One pass at a time per RetentionJob (a second caller waits). RetentionStats is
// atomics, read by the metrics scraper from any thread.
#ifndef POSTHASTE_SERVER_RETENTION_RETENTION_JOB_H_
#define POSTHASTE_SERVER_RETENTION_RETENTION_JOB_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/counter_fields.h"
#include "metrics/counter_table.h"
#include "storage/mail_store.h"

namespace posthaste::server::retention {

// The maildrop lock as the job takes it. Blocking; called on the job's thread.
class MailboxGuard {
 public:
  virtual ~MailboxGuard() = default;
  // Locks `account`'s maildrop (its canonical address) so that no POP3 session can open it until
  // Release. False when a session holds it (or the lock could not be asked for).
  virtual bool TryHold(const std::string& account) = 0;
  virtual void Release(const std::string& account) = 0;
};

// X(member, kind, metric name, labels, help), as in metrics/counter_table.h.
#define PH_RETENTION_COUNTERS(X)                                                                \
  X(passes, kCounter, "posthaste_retention_passes_total", "",                                   \
    "Retention passes (EXPIRE n) completed")                                                    \
  X(messages_deleted, kCounter, "posthaste_retention_messages_deleted_total", "",               \
    "Messages deleted by the retention job because their EXPIRE n days after retrieval passed") \
  X(octets_deleted, kCounter, "posthaste_retention_deleted_bytes_total", "",                    \
    "POP3 octets of the messages the retention job deleted")                                    \
  X(accounts_in_use, kCounter, "posthaste_retention_accounts_skipped_total", "reason=in_use",   \
    "Accounts the retention job skipped, to retry on its next pass, by reason")                 \
  X(account_errors, kCounter, "posthaste_retention_accounts_skipped_total", "reason=error", "") \
  X(last_pass_end_unix_seconds, kGauge, "posthaste_retention_last_pass_end_unix_seconds", "",   \
    "When the last complete retention pass ended (0: none yet)")

struct RetentionStats {
  PH_RETENTION_COUNTERS(PH_ATOMIC_COUNTER_MEMBER)
};
const metrics::CounterTable& RetentionCounterTable();

struct RetentionOptions {
  // Deletions per second at most (the job sleeps between batches); 0: no throttle.
  uint32_t messages_per_second = 1000;
  // Messages deleted by one commit (one synced index batch) at most, under one hold of the lock.
  uint32_t batch_messages_max = 256;
  // Where the pass records its progress (storage::MailStore job cursors); empty: none (the pass
  // starts from the first tenant every time).
  std::string cursor_name;
};

struct PassResult {
  uint64_t tenants = 0;   // tenants with EXPIRE n > 0 walked
  uint64_t accounts = 0;  // accounts looked at
  uint64_t messages_deleted = 0;
  uint64_t octets_deleted = 0;
  uint64_t accounts_in_use = 0;  // skipped: a session holds the maildrop
  uint64_t account_errors = 0;   // skipped: the store failed (logged)
  bool complete = false;         // false: stopped before the end (the cursor says where)
};

class RetentionJob {
 public:
  // `store`, `guard` (null: nothing else can hold a mailbox, as offline) and `stats` (may be
  // null) outlive the job.
  RetentionJob(storage::MailStore& store, MailboxGuard* guard, RetentionOptions options,
               RetentionStats* stats);

  // One pass at time `now`. Stops early, leaving its cursor, once `stop` (may be null) turns
  // true. `progress` (may be null) is called with a line after each tenant. With `use_cursor`
  // false the pass walks everything and neither reads nor moves the cursor (an operator's pass
  // leaves the background pass's place alone). Fails only when the tenants cannot be listed or
  // the cursor cannot be read; an account's failure is logged, counted and skipped.
  absl::StatusOr<PassResult> RunPass(
      absl::Time now, const std::atomic<bool>* stop = nullptr,
      const std::function<void(const std::string&)>& progress = nullptr, bool use_cursor = true);

 private:
  // Deletes `account`'s expired messages in batches. OK also when skipped (in use).
  absl::Status ExpireAccount(const std::string& account, absl::Time cutoff,
                             const std::atomic<bool>* stop, PassResult* result);
  void Throttle(uint64_t deleted, const std::atomic<bool>* stop);

  storage::MailStore& store_;
  MailboxGuard* const guard_;
  const RetentionOptions options_;
  RetentionStats* const stats_;
  std::mutex pass_mu_;  // one pass at a time
};

// Runs a RetentionJob every `period` on a thread of its own, from Start() until Stop().
class RetentionThread {
 public:
  RetentionThread(RetentionJob& job, absl::Duration period) : job_(job), period_(period) {}
  ~RetentionThread() { Stop(); }
  RetentionThread(const RetentionThread&) = delete;
  RetentionThread& operator=(const RetentionThread&) = delete;

  // The first pass starts at once (resuming a pass a restart cut short).
  void Start();
  // Ends a pass in progress at its next batch and joins the thread. Idempotent.
  void Stop();

 private:
  void Loop();

  RetentionJob& job_;
  const absl::Duration period_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace posthaste::server::retention

#endif  // POSTHASTE_SERVER_RETENTION_RETENTION_JOB_H_
