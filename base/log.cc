#include "base/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/strings.h"

namespace posthaste {
namespace {

std::atomic<LogFormat> log_format{LogFormat::kText};
std::atomic<LogLevel> min_level{LogLevel::kInfo};
std::atomic<int> log_fd{STDERR_FILENO};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "unknown";
}

void AppendJsonString(std::string* out, std::string_view s) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(out, "\\u%04x", c);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

// Text values are quoted when they contain spaces, quotes or control bytes.
void AppendTextValue(std::string* out, std::string_view s) {
  bool plain = !s.empty();
  for (unsigned char c : s) {
    if (c <= 0x20 || c == '"' || c == '=' || c >= 0x7f) plain = false;
  }
  if (plain) {
    out->append(s.data(), s.size());
  } else {
    AppendJsonString(out, s);
  }
}

std::string Timestamp() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm utc;
  gmtime_r(&ts.tv_sec, &utc);
  char buf[40];
  size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &utc);
  return absl::StrFormat("%s.%03dZ", absl::string_view(buf, n),
                         static_cast<int>(ts.tv_nsec / 1000000));
}

}  // namespace

void SetLogFormat(LogFormat format) { log_format.store(format); }
void SetMinLogLevel(LogLevel level) { min_level.store(level); }
void SetLogFdForTest(int fd) { log_fd.store(fd < 0 ? STDERR_FILENO : fd); }

std::string FormatLogLine(LogLevel level, std::string_view message,
                          std::span<const LogField> fields, LogFormat format) {
  std::string line;
  if (format == LogFormat::kJson) {
    line.append("{\"ts\":");
    AppendJsonString(&line, Timestamp());
    line.append(",\"level\":");
    AppendJsonString(&line, LevelName(level));
    line.append(",\"msg\":");
    AppendJsonString(&line, message);
    for (const LogField& field : fields) {
      line.push_back(',');
      AppendJsonString(&line, field.key);
      line.push_back(':');
      AppendJsonString(&line, field.value);
    }
    line.append("}\n");
  } else {
    absl::StrAppend(&line, Timestamp(), " ", LevelName(level), " ");
    AppendTextValue(&line, message);
    for (const LogField& field : fields) {
      absl::StrAppend(&line, " ", AbslView(field.key), "=");
      AppendTextValue(&line, field.value);
    }
    line.push_back('\n');
  }
  return line;
}

void LogEvent(LogLevel level, std::string_view message, std::span<const LogField> fields) {
  if (level < min_level.load(std::memory_order_relaxed)) return;
  std::string line = FormatLogLine(level, message, fields, log_format.load());
  // One write per line; a short write to a pipe/terminal is not retried (logging is best effort).
  ssize_t ignored = write(log_fd.load(std::memory_order_relaxed), line.data(), line.size());
  (void)ignored;
}

}  // namespace posthaste
