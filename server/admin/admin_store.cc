#include "server/admin/admin_store.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/strings.h"

namespace posthaste::server::admin {
namespace {

int64_t NowUnixMs() { return absl::ToUnixMillis(absl::Now()); }

std::string_view StateName(int state) {
  static constexpr std::string_view kNames[] = {"idle", "running", "done", "failed"};
  return kNames[state];
}

std::string_view JobName(StoreRoutes::JobKind kind) {
  return kind == StoreRoutes::JobKind::kCheck ? "check" : "compaction";
}

std::string CheckJson(const storage::CheckReport& report) {
  std::string out =
      absl::StrCat("{\"ok\":", report.ok() ? "true" : "false", ",\"accounts\":", report.accounts,
                   ",\"messages\":", report.messages, ",\"segments\":", report.segments,
                   ",\"problems_total\":", report.problems.size(), ",\"problems\":[");
  const size_t shown = std::min(report.problems.size(), StoreRoutes::kCheckProblemsShownMax);
  for (size_t i = 0; i < shown; ++i) {
    absl::StrAppend(&out, i == 0 ? "" : ",", JsonString(report.problems[i]));
  }
  out += "]}";
  return out;
}

std::string CompactionJson(const storage::CompactionResult& r) {
  return absl::StrCat(
      "{\"segments_rewritten\":", r.segments_rewritten, ",\"messages_moved\":", r.messages_moved,
      ",\"bytes_copied\":", r.bytes_copied, ",\"bytes_reclaimed\":", r.bytes_reclaimed, "}");
}

std::string ProgressJson(const storage::CompactionProgress& p) {
  return absl::StrCat("{\"segments_total\":", p.segments_total,
                      ",\"segments_done\":", p.segments_done, ",\"bytes_copied\":", p.bytes_copied,
                      ",\"bytes_reclaimed\":", p.bytes_reclaimed, "}");
}

}  // namespace

StoreRoutes::~StoreRoutes() {
  for (Job* job : {&check_, &compaction_}) {
    if (job->thread.joinable()) job->thread.join();
  }
}

bool StoreRoutes::Usage(AdminExchange* conn) {
  auto accounts = store_->ListAccounts();
  if (!accounts.ok()) return ReplyStatus(conn, accounts.status());
  auto tenants = store_->ListTenants();
  if (!tenants.ok()) return ReplyStatus(conn, tenants.status());
  auto stats = store_->Stats();
  if (!stats.ok()) return ReplyStatus(conn, stats.status());
  struct Totals {
    uint64_t accounts = 0;
    uint64_t messages = 0;
    uint64_t octets = 0;
  };
  std::map<std::string, Totals> by_domain;
  for (const storage::TenantInfo& tenant : *tenants) by_domain[tenant.domain];
  Totals all;
  for (const storage::AccountSummary& a : *accounts) {
    Totals& t = by_domain[a.address.substr(a.address.rfind('@') + 1)];
    ++t.accounts;
    t.messages += a.stats.messages;
    t.octets += a.stats.octets;
    ++all.accounts;
    all.messages += a.stats.messages;
    all.octets += a.stats.octets;
  }
  std::string body = "{\"tenants\":[";
  bool first = true;
  for (const auto& [domain, t] : by_domain) {
    absl::StrAppend(&body, first ? "" : ",", "{\"domain\":", JsonString(domain),
                    ",\"accounts\":", t.accounts, ",\"messages\":", t.messages,
                    ",\"octets\":", t.octets, "}");
    first = false;
  }
  absl::StrAppend(&body, "],\"accounts\":", all.accounts, ",\"messages\":", all.messages,
                  ",\"octets\":", all.octets, ",\"segments\":", stats->segments,
                  ",\"segment_file_bytes\":", stats->segment_file_bytes,
                  ",\"live_bytes\":", stats->live_bytes, ",\"dead_bytes\":", stats->dead_bytes,
                  "}\n");
  Reply(conn, 200, "OK", body);
  return true;
}

std::string StoreRoutes::JobJson(Job& job, std::string_view name) {
  std::string out =
      absl::StrCat("{\"job\":\"", AbslView(name), "\",\"state\":\"",
                   AbslView(StateName(static_cast<int>(job.state))), "\",\"runs\":", job.runs);
  if (job.state != Job::State::kIdle) {
    absl::StrAppend(&out, ",\"started_unix_ms\":", job.started_unix_ms);
  }
  if (job.state == Job::State::kDone || job.state == Job::State::kFailed) {
    absl::StrAppend(&out, ",\"finished_unix_ms\":", job.finished_unix_ms);
  }
  if (!job.progress_json.empty()) absl::StrAppend(&out, ",\"progress\":", job.progress_json);
  if (job.state == Job::State::kDone) absl::StrAppend(&out, ",\"result\":", job.result_json);
  if (job.state == Job::State::kFailed) absl::StrAppend(&out, ",\"error\":", JsonString(job.error));
  out += "}\n";
  return out;
}

bool StoreRoutes::ShowJob(AdminExchange* conn, JobKind kind) {
  Job& job = JobOf(kind);
  std::lock_guard<std::mutex> lock(job.mu);
  Reply(conn, 200, "OK", JobJson(job, JobName(kind)));
  return true;
}

bool StoreRoutes::StartJob(AdminExchange* conn, JobKind kind) {
  // The body is optional; when given it is an empty JSON object (the jobs take no options).
  if (!conn->request.body.empty() && !ReadJsonObject(conn, {}).has_value()) return true;
  Job& job = JobOf(kind);
  std::lock_guard<std::mutex> lock(job.mu);
  if (job.state == Job::State::kRunning) {
    return ReplyError(
        conn, 409, "Conflict",
        absl::StrCat("a ", AbslView(JobName(kind)), " is running since ", job.started_unix_ms,
                     " (unix ms): poll GET /api/v1/store/", AbslView(JobName(kind))));
  }
  if (job.thread.joinable()) job.thread.join();  // finished: its thread only returns
  job.state = Job::State::kRunning;
  ++job.runs;
  job.started_unix_ms = NowUnixMs();
  job.finished_unix_ms = 0;
  job.progress_json.clear();
  job.result_json.clear();
  job.error.clear();
  job.thread = std::thread([this, kind] { Run(kind); });
  Reply(conn, 202, "Accepted", JobJson(job, JobName(kind)),
        absl::StrCat("Location: /api/v1/store/", AbslView(JobName(kind)), "\r\n"));
  return true;
}

void StoreRoutes::Run(JobKind kind) {
  Job& job = JobOf(kind);
  std::string result;
  absl::Status status;
  if (kind == JobKind::kCheck) {
    absl::StatusOr<storage::CheckReport> report = store_->Check();
    status = report.status();
    if (report.ok()) result = CheckJson(*report);
  } else {
    absl::StatusOr<storage::CompactionResult> compacted =
        store_->Compact([&job](const storage::CompactionProgress& p) {
          std::lock_guard<std::mutex> lock(job.mu);
          job.progress_json = ProgressJson(p);
        });
    status = compacted.status();
    if (compacted.ok()) result = CompactionJson(*compacted);
  }
  std::lock_guard<std::mutex> lock(job.mu);
  job.finished_unix_ms = NowUnixMs();
  if (status.ok()) {
    job.state = Job::State::kDone;
    job.result_json = std::move(result);
  } else {
    job.state = Job::State::kFailed;
    job.error = std::string(status.message());
  }
}

}  // namespace posthaste::server::admin
