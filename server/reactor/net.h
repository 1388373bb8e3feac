// Listener sockets, multishot accept and multishot receive on a shard's ring.
//
// CreateListener binds a non-blocking TCP listener, with SO_REUSEPORT so every shard can own
// one on the same port (the kernel spreads connections across them). Acceptor keeps one
// multishot accept armed and re-arms it when the kernel ends it; accepted sockets are
// non-blocking and close-on-exec. Receiver keeps one multishot receive armed on a connected
// socket, selecting buffers from a BufferRing; each chunk is handed to the consumer with its
// buffer id, which the consumer releases after parsing.
//
// Threading: Acceptor and Receiver belong to one ring thread. Ownership: they do not own the
// socket fd; the owner closes it after the Acceptor/Receiver is idle (!active()).
#ifndef POSTHASTE_SERVER_REACTOR_NET_H_
#define POSTHASTE_SERVER_REACTOR_NET_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/reactor/buffer_ring.h"
#include "server/reactor/completion.h"
#include "server/reactor/ring.h"
#include "server/reactor/timer.h"

namespace posthaste::reactor {

struct ListenerOptions {
  static constexpr int kBacklogMax = 65535;
  std::string host = "127.0.0.1";  // IPv4 or IPv6 literal
  uint16_t port = 0;               // 0: the kernel picks (tests)
  bool reuse_port = true;
  // SO_REUSEPORT lets any socket of the same user join the port, so a second server started by
  // mistake on the same address would silently take a share of the connections. The first
  // listener of a group therefore checks that nobody listens there yet; the shards' further
  // listeners set this to join the group the first one made.
  bool join_existing_group = false;
  int backlog = 1024;  // 1..kBacklogMax
};

// A bound, listening, non-blocking socket. InvalidArgument for a bad host; the errno mapped
// otherwise (e.g. AlreadyExists-like "address in use" as Unavailable).
absl::StatusOr<int> CreateListener(const ListenerOptions& options);
// The port a bound socket got (for port 0).
absl::StatusOr<uint16_t> LocalPort(int fd);

// Closes a connection abortively (SO_LINGER 0: RST, queued data dropped at once). Used to give
// up on a stalled peer; it also releases the pages a SEND_ZC still pins, so its notification
// arrives. close(2) with linger 0 never blocks.
void AbortSocket(int fd);

// Maps a negative CQE result on a socket to a Status (peer gone -> Unavailable, cancel ->
// Cancelled, ...). `what` names the operation.
absl::Status SocketError(int32_t res, std::string_view what);

// Declared once (base/counter_fields.h); server/counters.h names them for /metrics.
#define PH_ACCEPTOR_STATS(X)                                                      \
  X(accepted, "connections accepted")                                             \
  X(rearms, "multishot accepts re-armed")                                         \
  X(errors_emfile, "accepts that found the process out of descriptors (EMFILE)")  \
  X(errors_enfile, "accepts that found the system out of descriptors (ENFILE)")   \
  X(errors_other, "other accept errors (ENOMEM, ...)")                            \
  X(refused_descriptors, "connections answered with the refusal line and closed at the limit")
struct AcceptorStats {
  PH_ACCEPTOR_STATS(PH_COUNTER_MEMBER)
};

// At the descriptor limit (EMFILE, ENFILE) the kernel's multishot accept ends with the error and
// the connection stays in the listen queue, where its client would wait without a word. The
// Acceptor then backs off (kErrorBackoffNs, never a spin) and re-arms. On each such error it
// also accepts up to kRefusalsPerBackoff queued connections, sends each `refusal_line` (a
// protocol's "try again later", possibly empty: then only closed) and closes it:
//   - through a direct descriptor (a slot of the ring's file table, Ring::ClaimFileSlots), which
//     takes nothing from the process's descriptor table, so refusing works however full it is.
//     One connection at a time, and only while poll(2) says one is queued (an accept on an
//     empty queue would wait); one still waiting when the back-off ends is cancelled;
//   - where the ring has no slots (kernels before 5.19), with one spare descriptor kept in
//     reserve and given up for the refusals. Another shard may take the freed descriptor first;
//     then nothing is refused this round and the reserve is taken back on a later one.
// The first error of an episode is logged, and its end with the counts; each error and refusal
// is counted.
class Acceptor {
 public:
  // Back-off before re-arming after an accept error (EMFILE, ENFILE, ENOMEM).
  static constexpr uint64_t kErrorBackoffNs = 100'000'000;
  // Queued connections refused per error (bounds the work one error starts).
  static constexpr int kRefusalsPerBackoff = 64;

  // on_accept receives each new connection's fd; it owns it from then on.
  Acceptor(Ring& ring, int listen_fd, absl::AnyInvocable<void(int fd)> on_accept,
           std::string refusal_line = {});
  ~Acceptor();
  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

  void Start();
  // Cancels the multishot accept; active() turns false once its last CQE arrived.
  void Stop();
  bool active() const {
    return accept_.in_flight() || backoff_.armed() || refusal_accepted_.in_flight() ||
           refusal_closed_.in_flight();
  }
  // Refuses through direct descriptors (else through the reserve descriptor).
  bool refuses_directly() const { return direct_refusals_; }
  // Waiting out the back-off after an accept error (nothing armed on the ring).
  bool backing_off() const { return backoff_.armed(); }
  AcceptorStats& stats() { return stats_; }

 private:
  void OnAcceptDone(int32_t res, uint32_t flags);
  void OnBackoff();
  void OnAcceptError(int err);
  // Refuses queued connections (see the class comment).
  void RefuseQueued();
  void RefuseNextDirectly();
  void OnRefusalAccepted(int32_t res, uint32_t flags);
  void OnRefusalClosed(int32_t res, uint32_t flags);
  void RefuseQueuedThroughReserve();
  void TakeReserve();

  Ring& ring_;
  int listen_fd_;
  absl::AnyInvocable<void(int)> on_accept_;
  std::string refusal_line_;
  int reserve_fd_ = -1;
  bool direct_refusals_ = false;
  uint32_t refusal_slot_ = 0;
  Completion refusal_accepted_;
  Completion refusal_closed_;
  int refusals_this_round_ = 0;
  // From an accept error until its back-off ends: refusal chains may start.
  bool refusing_ = false;
  Completion accept_;
  Timer backoff_;
  bool stopping_ = false;
  // Errors since the last accepted connection; nonzero while an episode lasts.
  uint64_t episode_errors_ = 0;
  uint64_t episode_refused_ = 0;
  AcceptorStats stats_;
};

class Receiver {
 public:
  // on_data: `data` lives in buffer `buffer_id` until the consumer calls
  //   buffers.Release(buffer_id); the consumer must release every buffer it is given.
  // on_end: the stream ended - OK for an orderly EOF, Cancelled after Stop(), or the error.
  //   Called once, after which the Receiver is idle (it may be destroyed or restarted).
  Receiver(Ring& ring, BufferRing& buffers, int fd,
           absl::AnyInvocable<void(uint16_t buffer_id, std::span<const char> data)> on_data,
           absl::AnyInvocable<void(absl::Status)> on_end);
  ~Receiver();

  void Start();
  void Stop();
  // A receive is armed, or it waits for buffers.
  bool active() const { return recv_.in_flight() || waiting_for_buffers_; }
  uint64_t enobufs() const { return enobufs_; }

 private:
  void Arm();
  void OnRecvDone(int32_t res, uint32_t flags);
  void End(absl::Status status);

  Ring& ring_;
  BufferRing& buffers_;
  int fd_;
  absl::AnyInvocable<void(uint16_t, std::span<const char>)> on_data_;
  absl::AnyInvocable<void(absl::Status)> on_end_;
  Completion recv_;
  bool waiting_for_buffers_ = false;
  BufferRing::WaiterId waiter_id_ = 0;
  bool stopping_ = false;
  uint64_t enobufs_ = 0;
};

}  // namespace posthaste::reactor

#endif  // POSTHASTE_SERVER_REACTOR_NET_H_
