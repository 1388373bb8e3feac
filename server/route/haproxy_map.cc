#include "server/route/haproxy_map.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "base/log.h"
#include "server/route/haproxy_runtime.h"

namespace posthaste::server::route {
namespace {

constexpr uint32_t kRuntimeTimeoutMs = 2'000;

}  // namespace

std::string HaproxyMapText(const placement::DirectorySnapshot& snapshot) {
  std::vector<std::string> lines;
  lines.reserve(snapshot.tenants.size());
  for (const auto& [domain, entry] : snapshot.tenants) {
    auto backend = snapshot.backends.find(entry.backend);
    if (backend == snapshot.backends.end() || backend->second.pop3s_port == 0) continue;
    // Domains come from the directory: anything that would break a map line is left out.
    if (domain.empty() || domain.find_first_of(" \t\r\n#") != std::string::npos) continue;
    const placement::BackendEndpoint& b = backend->second;
    const bool v6 = b.ip.find(':') != std::string::npos;
    lines.push_back(domain + " " + (v6 ? "[" + b.ip + "]" : b.ip) + ":" +
                    std::to_string(b.pop3s_port) + "\n");
  }
  std::sort(lines.begin(), lines.end());
  std::string text = "# written by posthaste route from directory revision " +
                     std::to_string(snapshot.revision) + "\n";
  for (const std::string& line : lines) text += line;
  return text;
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string temporary = path + ".tmp";
  const int fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::UnavailableError("cannot create " + temporary + ": " + std::strerror(errno));
  }
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = errno;
      close(fd);
      unlink(temporary.c_str());
      return absl::UnavailableError("cannot write " + temporary + ": " + std::strerror(error));
    }
    written += static_cast<size_t>(n);
  }
  const bool synced = fsync(fd) == 0;
  close(fd);
  if (!synced || rename(temporary.c_str(), path.c_str()) != 0) {
    const int error = errno;
    unlink(temporary.c_str());
    return absl::UnavailableError("cannot replace " + path + ": " + std::strerror(error));
  }
  return absl::OkStatus();
}

struct HaproxyMapWriter::Impl {
  std::string path;
  const placement::DirectorySource* source = nullptr;
  RouteCounters* counters = nullptr;
  uint32_t poll_interval_ms = 200;
  std::string runtime_socket;  // empty: no runtime API push
  int64_t written_revision = -1;
  int64_t pushed_revision = -1;
  std::mutex mu;
  std::condition_variable wake;
  bool stopping = false;  // guarded by mu
  std::thread thread;

  absl::Status WriteIfChanged() {
    std::shared_ptr<const placement::DirectorySnapshot> snapshot = source->Current();
    const bool push = !runtime_socket.empty() && snapshot->revision != pushed_revision;
    if (snapshot->revision == written_revision && !push) return absl::OkStatus();
    const std::string text = HaproxyMapText(*snapshot);
    if (snapshot->revision != written_revision) {
      absl::Status written = WriteFileAtomically(path, text);
      if (!written.ok()) {
        counters->haproxy_map_write_failures++;
        return written;
      }
      counters->haproxy_map_writes++;
      written_revision = snapshot->revision;
    }
    if (!push) return absl::OkStatus();
    absl::Status pushed = PushHaproxyMap(runtime_socket, path, text, kRuntimeTimeoutMs);
    if (!pushed.ok()) {
      counters->haproxy_runtime_push_failures++;
      return pushed;
    }
    counters->haproxy_runtime_pushes++;
    pushed_revision = snapshot->revision;
    return absl::OkStatus();
  }

  void Run() {
    std::unique_lock<std::mutex> lock(mu);
    while (!wake.wait_for(lock, std::chrono::milliseconds(poll_interval_ms),
                          [this] { return stopping; })) {
      lock.unlock();
      if (absl::Status s = WriteIfChanged(); !s.ok()) {
        // Retried at the next poll (the revision was not recorded).
        LogEvent(LogLevel::kWarning, "HAProxy map not written", {{"error", s.ToString()}});
      }
      lock.lock();
    }
  }

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(mu);
      stopping = true;
    }
    wake.notify_all();
    if (thread.joinable()) thread.join();
  }
};

HaproxyMapWriter::HaproxyMapWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HaproxyMapWriter::~HaproxyMapWriter() = default;

absl::StatusOr<std::unique_ptr<HaproxyMapWriter>> HaproxyMapWriter::Start(
    std::string path, const placement::DirectorySource* source, RouteCounters* counters,
    uint32_t poll_interval_ms, std::string runtime_socket) {
  if (path.empty() || source == nullptr || counters == nullptr || poll_interval_ms == 0) {
    return absl::InvalidArgumentError("haproxy map: a path, a source and counters are needed");
  }
  auto impl = std::make_unique<Impl>();
  impl->path = std::move(path);
  impl->source = source;
  impl->counters = counters;
  impl->poll_interval_ms = poll_interval_ms;
  impl->runtime_socket = std::move(runtime_socket);
  if (absl::Status first = impl->WriteIfChanged(); !first.ok()) {
    // A HAProxy that is not running yet reads the file when it starts; only the file must be
    // writable now.
    if (impl->written_revision < 0) return first;
    LogEvent(LogLevel::kWarning, "HAProxy map not pushed", {{"error", first.ToString()}});
  }
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->Run(); });
  return std::unique_ptr<HaproxyMapWriter>(new HaproxyMapWriter(std::move(impl)));
}

}  // namespace posthaste::server::route
