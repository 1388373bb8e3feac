// Reads a server's resource use from /proc: the CPU time and the proportional set size (PSS)
// of a process tree. A tree is given by its root PIDs and includes every descendant alive at
// the moment of reading, so a server made of many processes (Dovecot's master, auth, login and
// one pop3 process per session) is measured as a whole.
//
// CPU time of a tree = for every process in it (zombies included), utime + stime + cutime +
// cstime: a child that exited and was reaped by its parent moves its time into the parent's
// cutime/cstime, so the sum does not drop when short-lived session processes come and go.
//
// Threading: stateless functions; safe from any thread. They read /proc (blocking I/O) and are
// meant for the measuring thread, before and after an interval, never on a hot path.
#ifndef POSTHASTE_TOOLS_BENCH_PROC_STATS_H_
#define POSTHASTE_TOOLS_BENCH_PROC_STATS_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace posthaste::bench {

// The fields of /proc/PID/stat the benchmark uses (times in clock ticks).
struct ProcStat {
  pid_t pid = 0;
  char state = '?';
  pid_t ppid = 0;
  uint64_t utime = 0;
  uint64_t stime = 0;
  uint64_t cutime = 0;
  uint64_t cstime = 0;
};

// Parses one /proc/PID/stat line. The command name may contain spaces and ')' characters.
std::optional<ProcStat> ParseProcStat(std::string_view line);

// Reads the "Pss:" line of a /proc/PID/smaps_rollup text, in bytes.
std::optional<uint64_t> ParsePssBytes(std::string_view smaps_rollup);

// The processes under `roots` (the roots themselves and all descendants) alive now.
// NotFound when none of the roots exists.
absl::StatusOr<std::vector<ProcStat>> ReadProcessTree(const std::vector<pid_t>& roots);

struct TreeUsage {
  size_t processes = 0;
  double cpu_seconds = 0;  // see the file comment
  uint64_t pss_bytes = 0;  // summed over the tree; only when asked for (it is slower)
};

// Reads the tree's CPU time and, with `with_pss`, its summed PSS. Processes that exit while
// being read are skipped.
absl::StatusOr<TreeUsage> ReadTreeUsage(const std::vector<pid_t>& roots, bool with_pss);

}  // namespace posthaste::bench

#endif  // POSTHASTE_TOOLS_BENCH_PROC_STATS_H_
