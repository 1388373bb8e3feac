// The process's own figures, as every Prometheus client library exports them (process_* names,
// same meanings): resident and virtual memory, CPU time, open and maximum descriptors, threads,
// start time. Read from procfs at scrape time, so a dashboard or an alert can set the server's
// memory beside its store's and its descriptors beside their limit.
#ifndef POSTHASTE_METRICS_PROCESS_METRICS_H_
#define POSTHASTE_METRICS_PROCESS_METRICS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace posthaste::metrics {

struct ProcessMetrics {
  double cpu_seconds = 0;  // user + system
  uint64_t resident_bytes = 0;
  uint64_t virtual_bytes = 0;
  uint64_t open_fds = 0;
  uint64_t max_fds = 0;  // the soft RLIMIT_NOFILE
  uint64_t threads = 0;
  double start_time_seconds = 0;  // since the Unix epoch
};

// Reads `proc_dir` (a /proc/<pid> directory; its `stat` and `fd/`) and `proc_stat` (/proc/stat,
// for the boot time). `max_fds` comes from getrlimit: the calling process's, so pass
// /proc/self for a true picture. `ticks_per_second` and `page_bytes` default to this machine's.
absl::StatusOr<ProcessMetrics> ReadProcessMetrics(const std::string& proc_dir = "/proc/self",
                                                  const std::string& proc_stat = "/proc/stat",
                                                  long ticks_per_second = 0, long page_bytes = 0);

}  // namespace posthaste::metrics

#endif  // POSTHASTE_METRICS_PROCESS_METRICS_H_
