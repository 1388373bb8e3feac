// Structured logging: one line per event, as text (`ts level message key=value ...`) or as one
// JSON object per line (`--log_format=json`: {"ts","level","msg", then each field as a
// string}). Each event is written with a single write(2) to stderr so
// lines from different threads never interleave. Thread-safe.
//
// Never pass a password, a token or a message body as a field.
#ifndef POSTHASTE_BASE_LOG_H_
#define POSTHASTE_BASE_LOG_H_

#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

namespace posthaste {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
enum class LogFormat { kText, kJson };

struct LogField {
  std::string_view key;
  std::string value;
};

// Process-wide settings; call before starting threads.
void SetLogFormat(LogFormat format);
void SetMinLogLevel(LogLevel level);
// Redirects output (tests); -1 restores stderr.
void SetLogFdForTest(int fd);

// Formats an event without writing it (also used by tests).
std::string FormatLogLine(LogLevel level, std::string_view message,
                          std::span<const LogField> fields, LogFormat format);
inline std::string FormatLogLine(LogLevel level, std::string_view message,
                                 std::initializer_list<LogField> fields, LogFormat format) {
  return FormatLogLine(level, message, std::span<const LogField>(fields.begin(), fields.size()),
                       format);
}

void LogEvent(LogLevel level, std::string_view message, std::span<const LogField> fields);
inline void LogEvent(LogLevel level, std::string_view message,
                     std::initializer_list<LogField> fields = {}) {
  LogEvent(level, message, std::span<const LogField>(fields.begin(), fields.size()));
}

}  // namespace posthaste

#endif  // POSTHASTE_BASE_LOG_H_
