#include "server/reactor/net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "base/log.h"
#include "base/strings.h"

namespace posthaste::reactor {
namespace {

absl::Status ErrnoStatus(int err, std::string_view what) {
  const std::string msg = absl::StrCat(AbslView(what), ": ", strerror(err));
  switch (err) {
    case EADDRINUSE:
    case EADDRNOTAVAIL:
      return absl::UnavailableError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case ENOBUFS:
      return absl::ResourceExhaustedError(msg);
    case EINVAL:
      return absl::InvalidArgumentError(msg);
    default:
      return absl::InternalError(msg);
  }
}

}  // namespace

absl::Status SocketError(int32_t res, std::string_view what) {
  const int err = -res;
  const std::string msg = absl::StrCat(AbslView(what), ": ", strerror(err));
  switch (err) {
    case ECANCELED:
      return absl::CancelledError(msg);
    case EPIPE:
    case ECONNRESET:
    case ENOTCONN:
    case ESHUTDOWN:
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case ENETUNREACH:
      return absl::UnavailableError(msg);
    default:
      return ErrnoStatus(err, what);
  }
}

absl::StatusOr<int> CreateListener(const ListenerOptions& options) {
  if (options.backlog < 1 || options.backlog > ListenerOptions::kBacklogMax) {
    return absl::InvalidArgumentError("backlog out of range");
  }
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  int family = AF_INET;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, options.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(options.port);
    addr_len = sizeof(*v4);
  } else if (inet_pton(AF_INET6, options.host.c_str(), &v6->sin6_addr) == 1) {
    family = AF_INET6;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(options.port);
    addr_len = sizeof(*v6);
  } else {
    return absl::InvalidArgumentError(absl::StrCat("not an IP address literal: ", options.host));
  }
  const int one = 1;
  if (options.reuse_port && !options.join_existing_group && options.port != 0) {
    // A socket without SO_REUSEPORT cannot bind where anyone listens: the port is free of
    // other processes' listeners (SO_REUSEADDR still lets TIME_WAIT leftovers pass).
    const int probe = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) return ErrnoStatus(errno, "socket");
    setsockopt(probe, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    const int rc = bind(probe, reinterpret_cast<sockaddr*>(&addr), addr_len);
    const int err = errno;
    close(probe);
    if (rc != 0) {
      return ErrnoStatus(err, absl::StrCat("bind ", options.host, ":", options.port));
    }
  }
  const int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoStatus(errno, "socket");
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
      (options.reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)) {
    const int err = errno;
    close(fd);
    return ErrnoStatus(err, "setsockopt");
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoStatus(err, absl::StrCat("bind ", options.host, ":", options.port));
  }
  if (listen(fd, options.backlog) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoStatus(err, "listen");
  }
  return fd;
}

void AbortSocket(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  close(fd);
}

absl::StatusOr<uint16_t> LocalPort(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return ErrnoStatus(errno, "getsockname");
  }
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  }
  return absl::InvalidArgumentError("not an IP socket");
}

// ---------------------------------------------------------------------------------------------

Acceptor::Acceptor(Ring& ring, int listen_fd, absl::AnyInvocable<void(int fd)> on_accept,
                   std::string refusal_line)
    : ring_(ring),
      listen_fd_(listen_fd),
      on_accept_(std::move(on_accept)),
      refusal_line_(std::move(refusal_line)) {
  accept_.Bind<&Acceptor::OnAcceptDone>(this);
  backoff_.Bind<&Acceptor::OnBackoff>(this);
  refusal_accepted_.Bind<&Acceptor::OnRefusalAccepted>(this);
  refusal_closed_.Bind<&Acceptor::OnRefusalClosed>(this);
  if (std::optional<uint32_t> slot = ring_.ClaimFileSlots(1)) {
    direct_refusals_ = true;
    refusal_slot_ = *slot;
  } else {
    TakeReserve();
  }
}

Acceptor::~Acceptor() {
  if (reserve_fd_ >= 0) close(reserve_fd_);
}

void Acceptor::TakeReserve() {
  // An eventfd needs no file system (a chroot may lack /dev/null); any descriptor holds a slot.
  if (reserve_fd_ < 0) reserve_fd_ = eventfd(0, EFD_CLOEXEC);
}

void Acceptor::Start() {
  stopping_ = false;
  if (accept_.in_flight() || backoff_.armed()) return;
  ring_.PrepMultishotAccept(&accept_, listen_fd_, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

void Acceptor::Stop() {
  stopping_ = true;
  ring_.timers().Cancel(&backoff_);
  ring_.Cancel(&accept_);
  ring_.Cancel(&refusal_accepted_);
}

void Acceptor::OnAcceptDone(int32_t res, uint32_t flags) {
  const bool more = (flags & IORING_CQE_F_MORE) != 0;
  if (res >= 0) {
    ++stats_.accepted;
    if (episode_errors_ != 0) {
      LogEvent(LogLevel::kInfo, "accepting again",
               {{"accept_errors", absl::StrCat(episode_errors_)},
                {"refused", absl::StrCat(episode_refused_)}});
      episode_errors_ = 0;
      episode_refused_ = 0;
    }
    if (stopping_) {
      close(res);  // raced with Stop(); nobody will own it
    } else {
      on_accept_(res);
    }
  } else if (res != -ECANCELED) {
    OnAcceptError(-res);
  }
  if (more || stopping_) return;
  // The kernel ended the multishot accept. Re-arm now, or after a pause if it ended on an
  // error such as EMFILE (re-arming at once would spin on the same error).
  ++stats_.rearms;
  if (res < 0 && res != -ECANCELED) {
    ring_.timers().Start(&backoff_, kErrorBackoffNs);
  } else {
    ring_.PrepMultishotAccept(&accept_, listen_fd_, SOCK_NONBLOCK | SOCK_CLOEXEC);
  }
}

void Acceptor::OnAcceptError(int err) {
  if (err == EMFILE) {
    ++stats_.errors_emfile;
  } else if (err == ENFILE) {
    ++stats_.errors_enfile;
  } else {
    ++stats_.errors_other;
  }
  // Once per episode: at the limit this error repeats every back-off.
  if (episode_errors_++ == 0) {
    LogEvent(LogLevel::kWarning, "accept failed",
             {{"error", strerror(err)}, {"retry_ms", absl::StrCat(kErrorBackoffNs / 1'000'000)}});
  }
  if ((err == EMFILE || err == ENFILE) && !stopping_) RefuseQueued();
}

void Acceptor::RefuseQueued() {
  if (!direct_refusals_) {
    RefuseQueuedThroughReserve();
    return;
  }
  refusals_this_round_ = 0;
  refusing_ = true;
  if (!refusal_closed_.in_flight()) RefuseNextDirectly();
}

void Acceptor::RefuseNextDirectly() {
  // Only during the back-off: once the accept is re-armed, queued clients are its to serve.
  if (!refusing_ || stopping_ || refusals_this_round_ >= kRefusalsPerBackoff) return;
  // Only for a connection already queued: an accept on an empty queue would wait, and could
  // take a client after descriptors are free again. This shard alone reads its listener.
  pollfd queued{.fd = listen_fd_, .events = POLLIN, .revents = 0};
  if (poll(&queued, 1, 0) != 1 || (queued.revents & POLLIN) == 0) return;
  ring_.PrepAcceptDirectAndRefuse(&refusal_accepted_, &refusal_closed_, listen_fd_, refusal_slot_,
                                  refusal_line_);
}

void Acceptor::OnRefusalAccepted(int32_t res, uint32_t /*flags*/) {
  if (res < 0) return;  // nothing accepted: the rest of the chain is cancelled
  ++refusals_this_round_;
  ++stats_.refused_descriptors;
  ++episode_refused_;
}

void Acceptor::OnRefusalClosed(int32_t res, uint32_t /*flags*/) {
  // The slot is free again; -ECANCELED: nothing had been accepted, the queue is empty.
  if (res == 0) RefuseNextDirectly();
}

void Acceptor::RefuseQueuedThroughReserve() {
  if (reserve_fd_ >= 0) {
    close(reserve_fd_);
    reserve_fd_ = -1;
  }
  for (int i = 0; i < kRefusalsPerBackoff; ++i) {
    // The listener is non-blocking: EAGAIN once the queue is empty, EMFILE if another thread
    // took the slot first.
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) break;
    if (!refusal_line_.empty()) {
      // A fresh socket's send buffer takes a line: one non-blocking send, no retry.
      (void)send(fd, refusal_line_.data(), refusal_line_.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    close(fd);
    ++stats_.refused_descriptors;
    ++episode_refused_;
  }
  TakeReserve();
}

void Acceptor::OnBackoff() {
  // A refusal still waiting, or one about to start when a chain's close completes, must not
  // take a client the re-armed accept could serve.
  refusing_ = false;
  ring_.Cancel(&refusal_accepted_);
  if (!stopping_) Start();
}

// ---------------------------------------------------------------------------------------------

Receiver::Receiver(Ring& ring, BufferRing& buffers, int fd,
                   absl::AnyInvocable<void(uint16_t, std::span<const char>)> on_data,
                   absl::AnyInvocable<void(absl::Status)> on_end)
    : ring_(ring),
      buffers_(buffers),
      fd_(fd),
      on_data_(std::move(on_data)),
      on_end_(std::move(on_end)) {
  recv_.Bind<&Receiver::OnRecvDone>(this);
}

Receiver::~Receiver() {
  if (waiting_for_buffers_) buffers_.RemoveWaiter(waiter_id_);
}

void Receiver::Start() {
  stopping_ = false;
  if (active()) return;
  Arm();
}

void Receiver::Arm() {
  waiting_for_buffers_ = false;
  ring_.PrepRecvMultishot(&recv_, fd_, buffers_.group_id());
}

void Receiver::Stop() {
  stopping_ = true;
  if (waiting_for_buffers_) {
    buffers_.RemoveWaiter(waiter_id_);
    waiting_for_buffers_ = false;
    End(absl::CancelledError("receive stopped"));
    return;
  }
  ring_.Cancel(&recv_);
}

void Receiver::End(absl::Status status) { on_end_(std::move(status)); }

void Receiver::OnRecvDone(int32_t res, uint32_t flags) {
  const bool more = (flags & IORING_CQE_F_MORE) != 0;
  if (res > 0) {
    PH_CHECK((flags & IORING_CQE_F_BUFFER) != 0);
    const auto id = static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
    std::span<const char> data = buffers_.Take(id, static_cast<uint32_t>(res));
    on_data_(id, data);
    if (more) return;
    // The kernel ended the multishot receive without an error (e.g. the CQ filled up).
    if (stopping_) {
      End(absl::CancelledError("receive stopped"));
    } else {
      Arm();
    }
    return;
  }
  PH_DCHECK(!more);
  if (res == 0) {
    End(absl::OkStatus());
  } else if (res == -ENOBUFS && !stopping_) {
    // Every buffer is held by consumers: wait for a Release instead of retrying now.
    ++enobufs_;
    waiting_for_buffers_ = true;
    waiter_id_ = buffers_.AddWaiter([this] { Arm(); });
  } else {
    End(SocketError(res, "recv"));
  }
}

}  // namespace posthaste::reactor
