#include "tools/bench/proc_stats.h"

#include <dirent.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace posthaste::bench {
namespace {

// The most processes a tree may hold; a bound on every loop below.
constexpr size_t kTreeProcessesMax = 1'000'000;

std::optional<uint64_t> ToUint(std::string_view s) {
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty()) return std::nullopt;
  return value;
}

std::optional<std::string> ReadSmallFile(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "re");
  if (f == nullptr) return std::nullopt;
  std::string text;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0 && text.size() < (1u << 20)) {
    text.append(buffer, n);
  }
  std::fclose(f);
  return text;
}

std::vector<ProcStat> ReadAllProcesses() {
  std::vector<ProcStat> all;
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return all;
  while (dirent* entry = readdir(dir)) {
    if (all.size() >= kTreeProcessesMax) break;
    std::optional<uint64_t> pid = ToUint(entry->d_name);
    if (!pid.has_value()) continue;
    std::optional<std::string> text = ReadSmallFile(absl::StrCat("/proc/", *pid, "/stat"));
    if (!text.has_value()) continue;  // exited meanwhile
    std::optional<ProcStat> stat = ParseProcStat(*text);
    if (stat.has_value()) all.push_back(*stat);
  }
  closedir(dir);
  return all;
}

}  // namespace

std::optional<ProcStat> ParseProcStat(std::string_view line) {
  // "pid (comm) state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime
  //  stime cutime cstime ...": comm may hold anything, so split at the last ')'.
  const size_t open = line.find('(');
  const size_t close = line.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
    return std::nullopt;
  }
  std::optional<uint64_t> pid = ToUint(line.substr(0, open > 0 ? open - 1 : 0));
  if (!pid.has_value()) return std::nullopt;
  std::vector<std::string_view> fields;
  std::string_view rest = line.substr(close + 1);
  while (!rest.empty() && fields.size() < 20) {
    const size_t start = rest.find_first_not_of(" \n");
    if (start == std::string_view::npos) break;
    rest.remove_prefix(start);
    const size_t end = rest.find_first_of(" \n");
    fields.push_back(rest.substr(0, end));
    rest.remove_prefix(end == std::string_view::npos ? rest.size() : end);
  }
  // fields[0] is field 3 (state); utime is field 14, so fields[11].
  if (fields.size() < 15 || fields[0].size() != 1) return std::nullopt;
  ProcStat stat;
  stat.pid = static_cast<pid_t>(*pid);
  stat.state = fields[0][0];
  std::optional<uint64_t> ppid = ToUint(fields[1]);
  std::optional<uint64_t> utime = ToUint(fields[11]);
  std::optional<uint64_t> stime = ToUint(fields[12]);
  // cutime/cstime are signed in the kernel's format; they are never negative in practice.
  std::optional<uint64_t> cutime = ToUint(fields[13]);
  std::optional<uint64_t> cstime = ToUint(fields[14]);
  if (!ppid || !utime || !stime || !cutime || !cstime) return std::nullopt;
  stat.ppid = static_cast<pid_t>(*ppid);
  stat.utime = *utime;
  stat.stime = *stime;
  stat.cutime = *cutime;
  stat.cstime = *cstime;
  return stat;
}

std::optional<uint64_t> ParsePssBytes(std::string_view text) {
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(at, end - at);
    at = end + 1;
    if (line.substr(0, 4) != "Pss:") continue;
    line.remove_prefix(4);
    const size_t start = line.find_first_not_of(' ');
    if (start == std::string_view::npos) return std::nullopt;
    line.remove_prefix(start);
    const size_t unit = line.find(' ');
    if (unit == std::string_view::npos || line.substr(unit + 1) != "kB") return std::nullopt;
    std::optional<uint64_t> kib = ToUint(line.substr(0, unit));
    if (!kib.has_value()) return std::nullopt;
    return *kib * 1024;
  }
  return std::nullopt;
}

absl::StatusOr<std::vector<ProcStat>> ReadProcessTree(const std::vector<pid_t>& roots) {
  std::vector<ProcStat> all = ReadAllProcesses();
  std::map<pid_t, std::vector<size_t>> children;
  std::map<pid_t, size_t> by_pid;
  for (size_t i = 0; i < all.size(); ++i) {
    children[all[i].ppid].push_back(i);
    by_pid[all[i].pid] = i;
  }
  std::vector<ProcStat> tree;
  std::set<pid_t> seen;
  std::vector<pid_t> pending;
  for (pid_t root : roots) {
    if (by_pid.count(root) != 0) pending.push_back(root);
  }
  if (pending.empty()) {
    return absl::NotFoundError("none of the server processes exists");
  }
  while (!pending.empty() && tree.size() < kTreeProcessesMax) {
    const pid_t pid = pending.back();
    pending.pop_back();
    if (!seen.insert(pid).second) continue;
    tree.push_back(all[by_pid[pid]]);
    auto it = children.find(pid);
    if (it == children.end()) continue;
    for (size_t child : it->second) pending.push_back(all[child].pid);
  }
  return tree;
}

absl::StatusOr<TreeUsage> ReadTreeUsage(const std::vector<pid_t>& roots, bool with_pss) {
  absl::StatusOr<std::vector<ProcStat>> tree = ReadProcessTree(roots);
  if (!tree.ok()) return tree.status();
  static const long ticks_per_second = sysconf(_SC_CLK_TCK);
  TreeUsage usage;
  uint64_t ticks = 0;
  for (const ProcStat& stat : *tree) {
    ++usage.processes;
    ticks += stat.utime + stat.stime + stat.cutime + stat.cstime;
    if (!with_pss || stat.state == 'Z') continue;
    std::optional<std::string> rollup =
        ReadSmallFile(absl::StrCat("/proc/", stat.pid, "/smaps_rollup"));
    if (!rollup.has_value()) continue;  // exited meanwhile
    std::optional<uint64_t> pss = ParsePssBytes(*rollup);
    if (pss.has_value()) usage.pss_bytes += *pss;
  }
  usage.cpu_seconds = static_cast<double>(ticks) / static_cast<double>(ticks_per_second);
  return usage;
}

}  // namespace posthaste::bench
