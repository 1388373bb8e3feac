#include "metrics/process_metrics.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace posthaste::metrics {
namespace {

// A procfs file is generated on read and reports size 0: read until EOF.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::string text;
  char buffer[4096];
  while (text.size() < (1 << 20)) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  return text;
}

bool ParseUnsigned(std::string_view text, uint64_t* value) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return ec == std::errc() && end == text.data() + text.size();
}

// The words of `text`, split at spaces and newlines.
std::vector<std::string_view> Words(std::string_view text) {
  std::vector<std::string_view> words;
  size_t begin = 0;
  while (true) {
    begin = text.find_first_not_of(" \n", begin);
    if (begin == std::string_view::npos) return words;
    size_t end = text.find_first_of(" \n", begin);
    if (end == std::string_view::npos) end = text.size();
    words.push_back(text.substr(begin, end - begin));
    begin = end;
  }
}

}  // namespace

absl::StatusOr<ProcessMetrics> ReadProcessMetrics(const std::string& proc_dir,
                                                  const std::string& proc_stat,
                                                  long ticks_per_second, long page_bytes) {
  if (ticks_per_second <= 0) ticks_per_second = sysconf(_SC_CLK_TCK);
  if (page_bytes <= 0) page_bytes = sysconf(_SC_PAGESIZE);
  if (ticks_per_second <= 0 || page_bytes <= 0) return absl::InternalError("sysconf failed");

  absl::StatusOr<std::string> stat = ReadSmallFile(proc_dir + "/stat");
  if (!stat.ok()) return stat.status();
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so fields are counted
  // from the last ')'. After it, index 0 is field 3 (state) of proc(5).
  const size_t comm_end = stat->rfind(')');
  if (comm_end == std::string::npos) return absl::DataLossError("no ')' in " + proc_dir + "/stat");
  std::vector<std::string_view> fields = Words(std::string_view(*stat).substr(comm_end + 1));
  auto field = [&](size_t number, uint64_t* value) {  // proc(5)'s 1-based field numbers
    return number - 3 < fields.size() && ParseUnsigned(fields[number - 3], value);
  };
  uint64_t utime, stime, threads, start_ticks, vsize, rss_pages;
  if (!field(14, &utime) || !field(15, &stime) || !field(20, &threads) ||
      !field(22, &start_ticks) || !field(23, &vsize) || !field(24, &rss_pages)) {
    return absl::DataLossError("unexpected fields in " + proc_dir + "/stat");
  }
  ProcessMetrics m;
  const double ticks = static_cast<double>(ticks_per_second);
  m.cpu_seconds = static_cast<double>(utime + stime) / ticks;
  m.threads = threads;
  m.virtual_bytes = vsize;
  m.resident_bytes = rss_pages * static_cast<uint64_t>(page_bytes);

  absl::StatusOr<std::string> system_stat = ReadSmallFile(proc_stat);
  if (!system_stat.ok()) return system_stat.status();
  uint64_t boot_time = 0;
  for (size_t begin = 0; begin < system_stat->size();) {
    size_t end = system_stat->find('\n', begin);
    if (end == std::string::npos) end = system_stat->size();
    std::string_view line = std::string_view(*system_stat).substr(begin, end - begin);
    if (line.starts_with("btime ") && ParseUnsigned(line.substr(6), &boot_time)) break;
    begin = end + 1;
  }
  if (boot_time == 0) return absl::DataLossError("no btime in " + proc_stat);
  m.start_time_seconds = static_cast<double>(boot_time) + static_cast<double>(start_ticks) / ticks;

  DIR* dir = opendir((proc_dir + "/fd").c_str());
  if (dir == nullptr) return absl::NotFoundError("cannot list " + proc_dir + "/fd");
  while (const dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++m.open_fds;
  }
  closedir(dir);
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) m.max_fds = limit.rlim_cur;
  return m;
}

}  // namespace posthaste::metrics
