#include "server/retention/retention_job.h"

#include <algorithm>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace posthaste::server::retention {
namespace {

// The cursor is written (a synced put) once per this many accounts, not after each one: a pass
// cut short redoes at most these, and redoing an account deletes nothing twice.
constexpr uint64_t kCursorEveryAccounts = 64;
constexpr absl::Duration kThrottleSlice = absl::Milliseconds(100);

#define PH_RETENTION_ROW(...) PH_COUNTER_ROW(RetentionStats, __VA_ARGS__)
constexpr metrics::CounterRow kRetentionRows[] = {PH_RETENTION_COUNTERS(PH_RETENTION_ROW)};
#undef PH_RETENTION_ROW

// (domain, local part) of a canonical address: the order ListAccounts walks in.
std::pair<std::string_view, std::string_view> Ordered(std::string_view address) {
  const size_t at = address.rfind('@');
  if (at == std::string_view::npos) return {address, {}};
  return {address.substr(at + 1), address.substr(0, at)};
}

std::string_view DomainOf(std::string_view address) { return Ordered(address).first; }

bool Stopped(const std::atomic<bool>* stop) {
  return stop != nullptr && stop->load(std::memory_order_relaxed);
}

}  // namespace

const metrics::CounterTable& RetentionCounterTable() {
  static const metrics::CounterTable table = PH_COUNTER_TABLE(RetentionStats, kRetentionRows);
  return table;
}

RetentionJob::RetentionJob(storage::MailStore& store, MailboxGuard* guard, RetentionOptions options,
                           RetentionStats* stats)
    : store_(store), guard_(guard), options_(std::move(options)), stats_(stats) {}

absl::StatusOr<PassResult> RetentionJob::RunPass(
    absl::Time now, const std::atomic<bool>* stop,
    const std::function<void(const std::string&)>& progress, bool use_cursor) {
  std::lock_guard<std::mutex> pass(pass_mu_);
  PassResult result;
  const std::string cursor_name = use_cursor ? options_.cursor_name : std::string();
  std::string cursor;
  if (!cursor_name.empty()) {
    PH_ASSIGN_OR_RETURN(cursor, store_.GetJobCursor(cursor_name));
    if (!cursor.empty()) {
      LogEvent(LogLevel::kInfo, "retention pass resumes", {{"after", cursor}});
    }
  }
  PH_ASSIGN_OR_RETURN(std::vector<storage::TenantInfo> tenants, store_.ListTenants());
  std::string last_done;
  uint64_t since_cursor = 0;
  auto save_cursor = [&](bool force) {
    if (cursor_name.empty() || last_done.empty()) return;
    if (!force && since_cursor < kCursorEveryAccounts) return;
    absl::Status saved = store_.SetJobCursor(cursor_name, last_done);
    if (!saved.ok()) {
      LogEvent(LogLevel::kWarning, "retention cursor not saved", {{"error", saved.ToString()}});
    }
    since_cursor = 0;
  };
  for (const storage::TenantInfo& tenant : tenants) {
    const std::optional<uint32_t> days = tenant.policy.service.expire_days;
    if (!days.has_value() || *days == 0 || *days == storage::TenantServiceSettings::kExpireNever) {
      continue;
    }
    if (!cursor.empty() && tenant.domain < DomainOf(cursor)) continue;
    ++result.tenants;
    const absl::Time cutoff = now - absl::Hours(24) * static_cast<int64_t>(*days);
    absl::StatusOr<std::vector<storage::AccountSummary>> accounts =
        store_.ListAccounts(tenant.domain);
    if (!accounts.ok()) {
      LogEvent(LogLevel::kWarning, "retention: accounts not listed",
               {{"tenant", tenant.domain}, {"error", accounts.status().ToString()}});
      ++result.account_errors;
      if (stats_ != nullptr) stats_->account_errors.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    const uint64_t deleted_before = result.messages_deleted;
    for (const storage::AccountSummary& account : *accounts) {
      if (Stopped(stop)) {
        save_cursor(/*force=*/true);
        return result;
      }
      if (!cursor.empty() && Ordered(account.address) <= Ordered(cursor)) continue;
      ++result.accounts;
      absl::Status expired = ExpireAccount(account.address, cutoff, stop, &result);
      if (!expired.ok()) {
        LogEvent(LogLevel::kWarning, "retention: account skipped",
                 {{"user", account.address}, {"error", expired.ToString()}});
        ++result.account_errors;
        if (stats_ != nullptr) stats_->account_errors.fetch_add(1, std::memory_order_relaxed);
      }
      last_done = account.address;
      ++since_cursor;
      save_cursor(/*force=*/false);
    }
    const std::string line = absl::StrCat(
        "retention: tenant ", tenant.domain, " (EXPIRE ", *days, "): ", accounts->size(),
        " accounts, ", result.messages_deleted - deleted_before, " messages deleted");
    LogEvent(LogLevel::kInfo, "retention tenant done",
             {{"tenant", tenant.domain},
              {"expire_days", std::to_string(*days)},
              {"accounts", std::to_string(accounts->size())},
              {"deleted", std::to_string(result.messages_deleted - deleted_before)}});
    if (progress) progress(line);
  }
  if (Stopped(stop)) {
    save_cursor(/*force=*/true);
    return result;
  }
  if (!cursor_name.empty()) {
    PH_RETURN_IF_ERROR(store_.SetJobCursor(cursor_name, ""));
  }
  result.complete = true;
  if (stats_ != nullptr) {
    stats_->passes.fetch_add(1, std::memory_order_relaxed);
    stats_->last_pass_end_unix_seconds.store(
        static_cast<uint64_t>(absl::ToUnixSeconds(absl::Now())), std::memory_order_relaxed);
  }
  LogEvent(LogLevel::kInfo, "retention pass done",
           {{"tenants", std::to_string(result.tenants)},
            {"accounts", std::to_string(result.accounts)},
            {"deleted", std::to_string(result.messages_deleted)},
            {"deleted_octets", std::to_string(result.octets_deleted)},
            {"in_use", std::to_string(result.accounts_in_use)},
            {"errors", std::to_string(result.account_errors)}});
  return result;
}

absl::Status RetentionJob::ExpireAccount(const std::string& account, absl::Time cutoff,
                                         const std::atomic<bool>* stop, PassResult* result) {
  const size_t batch_max = std::max<uint32_t>(1, options_.batch_messages_max);
  while (!Stopped(stop)) {
    // The lock is held for one batch only, so a user's login waits at most one commit.
    if (guard_ != nullptr && !guard_->TryHold(account)) {
      ++result->accounts_in_use;
      if (stats_ != nullptr) stats_->accounts_in_use.fetch_add(1, std::memory_order_relaxed);
      LogEvent(LogLevel::kInfo, "retention: mailbox in use, skipped", {{"user", account}});
      return absl::OkStatus();
    }
    uint64_t deleted = 0;
    uint64_t octets = 0;
    size_t expired_count = 0;
    absl::Status status = [&]() -> absl::Status {
      absl::StatusOr<std::shared_ptr<const storage::MailboxSnapshot>> snapshot =
          store_.OpenMailbox(account);
      if (storage::ErrorOf(snapshot.status()) == storage::StoreError::kUnknownAccount) {
        return absl::OkStatus();  // deleted since the listing
      }
      PH_RETURN_IF_ERROR(snapshot.status());
      if ((*snapshot)->held()) return absl::OkStatus();  // moving: its new home expires it
      PH_ASSIGN_OR_RETURN(std::vector<size_t> expired,
                          store_.RetrievedAtOrBefore(**snapshot, cutoff));
      expired_count = expired.size();
      if (expired.empty()) return absl::OkStatus();
      if (expired.size() > batch_max) expired.resize(batch_max);
      PH_ASSIGN_OR_RETURN(storage::DeletionResult done,
                          store_.CommitDeletions(**snapshot, expired));
      deleted = done.deleted;
      for (size_t index : expired) octets += (*snapshot)->pop3_size(index);
      return absl::OkStatus();
    }();
    if (guard_ != nullptr) guard_->Release(account);
    PH_RETURN_IF_ERROR(status);
    result->messages_deleted += deleted;
    result->octets_deleted += octets;
    if (stats_ != nullptr) {
      stats_->messages_deleted.fetch_add(deleted, std::memory_order_relaxed);
      stats_->octets_deleted.fetch_add(octets, std::memory_order_relaxed);
    }
    if (deleted > 0) {
      LogEvent(LogLevel::kInfo, "retention: messages deleted",
               {{"user", account}, {"deleted", std::to_string(deleted)}});
    }
    Throttle(deleted, stop);
    if (expired_count <= batch_max || deleted == 0) return absl::OkStatus();
  }
  return absl::OkStatus();
}

void RetentionJob::Throttle(uint64_t deleted, const std::atomic<bool>* stop) {
  if (options_.messages_per_second == 0 || deleted == 0) return;
  absl::Duration left = absl::Seconds(static_cast<double>(deleted) / options_.messages_per_second);
  while (left > absl::ZeroDuration() && !Stopped(stop)) {
    const absl::Duration slice = std::min(left, kThrottleSlice);
    absl::SleepFor(slice);
    left -= slice;
  }
}

void RetentionThread::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void RetentionThread::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void RetentionThread::Loop() {
  while (!stop_.load()) {
    absl::StatusOr<PassResult> pass = job_.RunPass(absl::Now(), &stop_);
    if (!pass.ok()) {
      LogEvent(LogLevel::kWarning, "retention pass failed", {{"error", pass.status().ToString()}});
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, absl::ToChronoMilliseconds(period_), [this] { return stop_.load(); });
  }
}

}  // namespace posthaste::server::retention
