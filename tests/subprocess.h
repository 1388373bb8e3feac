// Test helpers for running a built binary: locate it in the runfiles, run it with stdin data,
// and collect its exit status, stdout and stderr. Test-only.
//
// Threading: call from one thread at a time (fork/exec); no state is shared between calls.
#ifndef POSTHASTE_TESTS_SUBPROCESS_H_
#define POSTHASTE_TESTS_SUBPROCESS_H_

#include <string>
#include <string_view>
#include <vector>

namespace posthaste::testing {

struct ProcessResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;      // the signal that killed it, or 0
  std::string out;
  std::string err;
};

// The path of a data dependency (e.g. "server/posthaste") of the running Bazel test.
std::string RunfilePath(std::string_view workspace_relative);

// A fresh directory under $TEST_TMPDIR (or /tmp).
std::string MakeTempDir(std::string_view prefix);

// Runs `argv` (argv[0] is the executable path) with `input` on stdin and waits for it to exit.
// Kills it with SIGKILL after `timeout_seconds` (then signal is SIGKILL).
ProcessResult RunProcess(const std::vector<std::string>& argv, std::string_view input = "",
                         int timeout_seconds = 120);

}  // namespace posthaste::testing

#endif  // POSTHASTE_TESTS_SUBPROCESS_H_
