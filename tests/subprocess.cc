#include "tests/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace posthaste::testing {

std::string RunfilePath(std::string_view workspace_relative) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  std::string base = srcdir != nullptr ? srcdir : ".";
  base += "/";
  base += workspace != nullptr ? workspace : "posthaste";
  base += "/";
  base += workspace_relative;
  return base;
}

std::string MakeTempDir(std::string_view prefix) {
  static std::atomic<int> counter{0};
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = std::string(tmp != nullptr ? tmp : "/tmp") + "/" + std::string(prefix) + "-" +
                    std::to_string(getpid()) + "-" + std::to_string(counter++);
  mkdir(dir.c_str(), 0755);
  return dir;
}

ProcessResult RunProcess(const std::vector<std::string>& argv, std::string_view input,
                         int timeout_seconds) {
  ProcessResult result;
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0 || pipe2(out_pipe, O_CLOEXEC) != 0 ||
      pipe2(err_pipe, O_CLOEXEC) != 0) {
    result.err = std::string("pipe: ") + std::strerror(errno);
    return result;
  }
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(in_pipe[0], 0);
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  signal(SIGPIPE, SIG_IGN);
  fcntl(in_pipe[1], F_SETFL, O_NONBLOCK);
  size_t written = 0;
  int in_fd = in_pipe[1];
  if (input.empty()) {
    close(in_fd);
    in_fd = -1;
  }
  bool out_open = true, err_open = true;
  timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  bool killed = false;
  while (out_open || err_open) {
    pollfd fds[3];
    int n = 0;
    int out_index = -1, err_index = -1, in_index = -1;
    if (out_open) {
      fds[n] = {out_pipe[0], POLLIN, 0};
      out_index = n++;
    }
    if (err_open) {
      fds[n] = {err_pipe[0], POLLIN, 0};
      err_index = n++;
    }
    if (in_fd >= 0) {
      fds[n] = {in_fd, POLLOUT, 0};
      in_index = n++;
    }
    int ready = poll(fds, n, 200);
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (!killed && now.tv_sec - start.tv_sec > timeout_seconds) {
      kill(pid, SIGKILL);
      killed = true;
    }
    if (ready <= 0) continue;
    char buffer[65536];
    auto drain = [&](int index, int fd, std::string* sink, bool* open) {
      if (index < 0 || fds[index].revents == 0) return;
      ssize_t got = read(fd, buffer, sizeof(buffer));
      if (got > 0) {
        sink->append(buffer, static_cast<size_t>(got));
      } else if (got == 0 || errno != EINTR) {
        *open = false;
      }
    };
    drain(out_index, out_pipe[0], &result.out, &out_open);
    drain(err_index, err_pipe[0], &result.err, &err_open);
    if (in_index >= 0 && fds[in_index].revents != 0) {
      ssize_t put = write(in_fd, input.data() + written, input.size() - written);
      if (put > 0) written += static_cast<size_t>(put);
      if (put < 0 && errno != EAGAIN && errno != EINTR) written = input.size();  // EPIPE
      if (written == input.size()) {
        close(in_fd);
        in_fd = -1;
      }
    }
  }
  if (in_fd >= 0) close(in_fd);
  close(out_pipe[0]);
  close(err_pipe[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  return result;
}

}  // namespace posthaste::testing
