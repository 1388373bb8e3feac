#include "server/reactor/testing/loopback.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "server/reactor/timer.h"

namespace posthaste::reactor::testing {

int ConnectLoopback(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool WriteAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

std::string ReadExactly(int fd, size_t n) {
  std::string out(n, '\0');
  size_t off = 0;
  while (off < n) {
    const ssize_t r = read(fd, out.data() + off, n - off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    off += static_cast<size_t>(r);
  }
  out.resize(off);
  return out;
}

std::string ReadAll(int fd, size_t max, size_t chunk, int pause_us) {
  std::string out;
  std::string buf(chunk, '\0');
  while (out.size() < max) {
    const ssize_t r = read(fd, buf.data(), std::min(chunk, max - out.size()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    out.append(buf.data(), static_cast<size_t>(r));
    if (pause_us > 0) usleep(static_cast<useconds_t>(pause_us));
  }
  return out;
}

std::string PatternBytes(size_t n, uint32_t seed) {
  std::string out(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = static_cast<char>(x);
  }
  return out;
}

std::string WriteTempFile(const std::string& name, const std::string& data) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
  const int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) return "";
  const bool ok = WriteAll(fd, data);
  close(fd);
  return ok ? path : "";
}

namespace {
struct Ticker {
  Ring* ring;
  Timer timer;
  void Tick() { ring->timers().Start(&timer, 10'000'000); }
};
}  // namespace

bool RunUntil(Ring& ring, const std::function<bool()>& done, int limit_ms) {
  Ticker ticker{&ring, {}};
  ticker.timer.Bind<&Ticker::Tick>(&ticker);
  ticker.Tick();
  const uint64_t deadline = MonotonicNowNs() + static_cast<uint64_t>(limit_ms) * 1'000'000u;
  while (!done() && MonotonicNowNs() < deadline) ring.RunOnce(true);
  ring.timers().Cancel(&ticker.timer);
  return done();
}

}  // namespace posthaste::reactor::testing
