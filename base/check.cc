#include "base/check.h"

#include <atomic>
#include <cstdlib>
#include <string>

#include "base/log.h"

namespace posthaste {
namespace {
std::atomic<uint64_t> bug_count{0};
}  // namespace

void CheckFailed(const char* condition, const char* file, int line) {
  LogEvent(LogLevel::kError, "check failed",
           {{"condition", condition}, {"file", file}, {"line", std::to_string(line)}});
  std::abort();
}

void ReportBug(const char* condition, const char* what, const char* file, int line) {
  bug_count.fetch_add(1, std::memory_order_relaxed);
  LogEvent(LogLevel::kError, "bug",
           {{"what", what}, {"condition", condition}, {"file", file},
            {"line", std::to_string(line)}});
}

uint64_t BugCount() { return bug_count.load(std::memory_order_relaxed); }

}  // namespace posthaste
