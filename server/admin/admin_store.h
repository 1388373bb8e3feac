// The store routes of the HTTP admin API (server/admin/admin_api.h lists them): usage totals
// per tenant, and the two long jobs, the consistency check (MailStore::Check, the logic of
// `posthaste check`) and compaction (MailStore::Compact, `posthaste compact`).
//
// A job never runs on the request's worker: POST starts it on a thread of its own and answers
// 202 with its state and a Location to poll; GET shows it (idle, running with progress, done
// with its result, failed with the error). One run of each job at a time (POST while it runs:
// 409 with its state). The store serialises compactions itself; a check reads one RocksDB
// snapshot, so it runs while mail is delivered.
//
// Threading: routes on the admin listener's workers, concurrently; each job's state under its
// own mutex. Ownership: the destructor waits for a running job to finish (neither job can be
// interrupted), so the store must outlive this object.
#ifndef POSTHASTE_SERVER_ADMIN_ADMIN_STORE_H_
#define POSTHASTE_SERVER_ADMIN_ADMIN_STORE_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "server/admin/admin_reply.h"
#include "storage/mail_store.h"

namespace posthaste::server::admin {

class StoreRoutes {
 public:
  enum class JobKind : uint8_t { kCheck, kCompaction };
  // At most this many of a check's problems are shown (their total is given beside them).
  static constexpr size_t kCheckProblemsShownMax = 100;

  explicit StoreRoutes(storage::MailStore* store) : store_(store) {}
  ~StoreRoutes();
  StoreRoutes(const StoreRoutes&) = delete;
  StoreRoutes& operator=(const StoreRoutes&) = delete;

  // Each replies (and returns true).
  bool Usage(AdminExchange* conn);
  bool StartJob(AdminExchange* conn, JobKind kind);
  bool ShowJob(AdminExchange* conn, JobKind kind);

 private:
  struct Job {
    enum class State : uint8_t { kIdle, kRunning, kDone, kFailed };
    std::mutex mu;
    State state = State::kIdle;    // by mu
    uint64_t runs = 0;             // by mu: started so far
    int64_t started_unix_ms = 0;   // by mu
    int64_t finished_unix_ms = 0;  // by mu
    std::string progress_json;     // by mu: the last progress (compaction)
    std::string result_json;       // by mu: kDone
    std::string error;             // by mu: kFailed
    std::thread thread;            // joined before the next run and at destruction
  };
  Job& JobOf(JobKind kind) { return kind == JobKind::kCheck ? check_ : compaction_; }
  static std::string JobJson(Job& job, std::string_view name);  // REQUIRES: job.mu held
  void Run(JobKind kind);

  storage::MailStore* const store_;
  Job check_;
  Job compaction_;
};

}  // namespace posthaste::server::admin

#endif  // POSTHASTE_SERVER_ADMIN_ADMIN_STORE_H_
