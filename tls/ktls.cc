#include "tls/ktls.h"

#include <arpa/inet.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/mem.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/strings.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

namespace posthaste {
namespace {

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void reset(int fd) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

std::string ErrnoText(int error) {
  const char* name = strerrorname_np(error);
  return absl::StrCat(name != nullptr ? name : "errno", " (", std::strerror(error), ")");
}

KtlsCapability Unavailable(std::string_view step, int error) {
  KtlsCapability capability;
  capability.error_number = error;
  capability.reason = absl::StrCat("unavailable: ", ErrnoText(error), " at ", AbslView(step));
  if (error == ENOENT) capability.reason += "; the kernel has no tls module";
  return capability;
}

template <typename Info>
absl::Status SetDirection(int fd, int direction, uint16_t version, uint16_t cipher,
                          const KernelTlsDirection& keys) {
  Info info;
  std::memset(&info, 0, sizeof(info));
  info.info.version = version;
  info.info.cipher_type = cipher;
  std::memcpy(info.key, keys.key.data(), sizeof(info.key));
  std::memcpy(info.salt, keys.salt.data(), sizeof(info.salt));
  std::memcpy(info.iv, keys.iv.data(), sizeof(info.iv));
  std::memcpy(info.rec_seq, keys.rec_seq.data(), sizeof(info.rec_seq));
  int rc = setsockopt(fd, SOL_TLS, direction, &info, sizeof(info));
  int error = errno;
  OPENSSL_cleanse(&info, sizeof(info));
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat("setsockopt(SOL_TLS, ",
                                               direction == TLS_TX ? "TLS_TX" : "TLS_RX",
                                               "): ", ErrnoText(error)));
  }
  return absl::OkStatus();
}

}  // namespace

KtlsCapability ProbeKernelTls() {
  Fd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (listener.get() < 0) return Unavailable("socket", errno);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener.get(), 1) != 0 ||
      getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return Unavailable("loopback listen", errno);
  }
  Fd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (client.get() < 0) return Unavailable("socket", errno);
  // Loopback connect completes against the backlog without accept().
  if (connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Unavailable("loopback connect", errno);
  }
  Fd server(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (server.get() < 0) return Unavailable("accept", errno);
  if (setsockopt(client.get(), SOL_TCP, TCP_ULP, "tls", sizeof("tls") - 1) != 0) {
    return Unavailable("setsockopt(TCP_ULP, \"tls\")", errno);
  }
  KtlsCapability capability;
  capability.available = true;
  capability.reason = "available";
  return capability;
}

absl::Status EnableKernelTls(int fd, const TlsEngine& engine) {
  PH_ASSIGN_OR_RETURN(KernelTlsKeys keys, engine.ExportKernelTlsKeys());
  auto wipe = [&keys] {
    OPENSSL_cleanse(keys.tx.key.data(), keys.tx.key.size());
    OPENSSL_cleanse(keys.rx.key.data(), keys.rx.key.size());
  };
  if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof("tls") - 1) != 0) {
    int error = errno;
    wipe();
    return absl::UnavailableError(absl::StrCat("setsockopt(TCP_ULP, \"tls\"): ", ErrnoText(error)));
  }
  absl::Status status;
  for (int direction : {TLS_TX, TLS_RX}) {
    const KernelTlsDirection& dir = direction == TLS_TX ? keys.tx : keys.rx;
    status = keys.cipher == TLS_CIPHER_AES_GCM_128
                 ? SetDirection<tls12_crypto_info_aes_gcm_128>(fd, direction, keys.version,
                                                               keys.cipher, dir)
                 : SetDirection<tls12_crypto_info_aes_gcm_256>(fd, direction, keys.version,
                                                               keys.cipher, dir);
    if (!status.ok()) break;
  }
  wipe();
  return status;
}

TlsDataPath ChooseTlsDataPath(int fd, const TlsEngine& engine, const KtlsCapability& capability,
                              TlsPathCounters* counters, std::string* why) {
  if (!capability.available) {
    ++counters->userspace_sessions;
    if (why != nullptr) *why = absl::StrCat("kernel tls ", capability.reason);
    return TlsDataPath::kUserspace;
  }
  absl::Status status = EnableKernelTls(fd, engine);
  if (status.ok()) {
    ++counters->kernel_tls_sessions;
    if (why != nullptr) why->clear();
    return TlsDataPath::kKernelTls;
  }
  if (status.code() == absl::StatusCode::kUnavailable) ++counters->kernel_tls_errors;
  ++counters->userspace_sessions;
  if (why != nullptr) *why = std::string(status.message());
  return TlsDataPath::kUserspace;
}

std::string_view TlsDataPathName(TlsDataPath path) {
  return path == TlsDataPath::kKernelTls ? "kernel" : "userspace";
}

}  // namespace posthaste
