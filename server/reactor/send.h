// Sending on a connected socket: user memory (plain or zero-copy) and file byte ranges.
//
// Sender sends one caller-owned span at a time, resubmitting the rest after a partial send,
// either as IORING_OP_SEND or IORING_OP_SEND_ZC. For SEND_ZC the memory stays pinned by the
// kernel until the notification CQE (IORING_CQE_F_NOTIF); on_done runs only after it, so the
// caller may reuse the memory as soon as on_done runs.
//
// FileStreamer streams a byte range {fd, offset, length} of a file to a socket by one of three
// paths, never holding more than one bounded chunk in user memory:
//   kSplice  file -> pipe -> socket with IORING_OP_SPLICE, sequenced; a full socket gives
//            -EAGAIN (sockets are non-blocking), answered with a POLLOUT poll, not a retry loop;
//   kSendZc  IORING_OP_SEND_ZC straight from an mmap of the range (page cache, no copy); the
//            next chunk goes out as soon as the previous send's result is in, while earlier
//            chunks still wait for their notifications (at most kZcSlots chunks pinned);
//   kCopy    IORING_OP_READ into a bounded buffer, then IORING_OP_SEND, repeated.
// One send is outstanding at a time (SEND_ZC may also have up to kZcSlots-1 notifications
// pending), so a slow reader stalls the stream and memory does not grow. Peer disconnects (EPIPE,
// ECONNRESET) end it with Unavailable.
//
// Threading: one ring thread. Ownership: the caller keeps the socket and file fds open and the
// Sender's span alive until on_done; a Sender/FileStreamer must be idle (!busy()) when
// destroyed. Cancel() ends an operation early with Cancelled (on_done still runs once).
#ifndef POSTHASTE_SERVER_REACTOR_SEND_H_
#define POSTHASTE_SERVER_REACTOR_SEND_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "base/counter_fields.h"
#include "server/reactor/completion.h"
#include "server/reactor/ring.h"

namespace posthaste::reactor {

enum class SendPath { kSplice, kSendZc, kCopy };
std::string_view SendPathName(SendPath path);

// Counted by the path submitted (on loopback the kernel copies every zero-copy send anyway;
// zc_notifs_copied says how often it reported that). X(member, what it counts); each service
// exports its block (server/pop3_service/pop3_counters.h, server/lmtp_service/lmtp_counters.h).
#define PH_SEND_STATS(X)                                                                \
  X(plain_bytes, "Sender, plain send")                                                  \
  X(zc_bytes, "Sender and streamer, SEND_ZC")                                           \
  X(splice_bytes, "streamer, spliced into the socket")                                  \
  X(copy_bytes, "streamer, read + send")                                                \
  X(partial_sends, "resubmissions after a short send or splice")                        \
  X(socket_full_waits, "-EAGAIN answered by a POLLOUT wait")                            \
  X(zc_notifs, "SEND_ZC notifications")                                                 \
  X(zc_notifs_copied, "notifications reporting the kernel copied after all")            \
  X(zc_fallbacks, "SEND_ZC refused (ENOMEM/ENOBUFS: pinned-page limits)")               \
  X(zc_fallback_bytes, "bytes of refused SEND_ZC chunks, sent by plain (copying) send") \
  X(streams_ok, "file streams finished")                                                \
  X(streams_failed, "file streams ended by an error")
struct SendStats {
  PH_SEND_STATS(PH_COUNTER_MEMBER)
};

// on_done(status, bytes): bytes is how many bytes the socket accepted.
using SendDoneFn = absl::AnyInvocable<void(absl::Status status, uint64_t bytes)>;

class Sender {
 public:
  Sender(Ring& ring, SendStats& stats, SendDoneFn on_done);
  ~Sender() = default;

  // Sends all of `data` on `fd`. REQUIRES: !busy(); data outlives on_done. `more`: the caller
  // sends more right after this (MSG_MORE: the bytes may wait to share a TCP segment with it,
  // e.g. a reply line with the body that follows). Ignored for zero-copy sends.
  void Send(int fd, std::span<const char> data, bool zero_copy, bool more = false);
  // Cancels the send in flight; on_done(Cancelled) follows (for zero-copy, after the
  // notification: abort the socket to get it from a stalled peer, as for FileStreamer).
  void Cancel();
  bool busy() const { return op_.in_flight() || active_; }

 private:
  void Submit();
  void OnSendDone(int32_t res, uint32_t flags);
  void Finish(absl::Status status);

  Ring& ring_;
  SendStats& stats_;
  SendDoneFn on_done_;
  Completion op_;
  int fd_ = -1;
  std::span<const char> data_;
  uint64_t sent_ = 0;
  bool zero_copy_ = false;
  bool more_ = false;
  bool active_ = false;
  bool cancelled_ = false;
  bool poll_first_ = false;
  int32_t zc_result_ = 0;  // the SEND_ZC result held until its notification arrives
};

struct FileRange {
  int fd = -1;
  uint64_t offset = 0;
  uint64_t length = 0;
};

// Which path to stream a body of `length` bytes by. Defaults come from send_path_benchmark on
// loopback (docs/ARCHITECTURE.md, "Reactor"): a copying send wins below 64 KiB; from 64 KiB
// splice matches or beats it and takes several times less reactor-thread CPU per MiB. SEND_ZC
// is off by default: on loopback the kernel copies it anyway and it measured slowest; enable
// it for large bodies after measuring on a real NIC.
struct SendPathPolicy {
  uint64_t splice_min_bytes = 64u << 10;
  bool use_send_zc = false;
  uint64_t send_zc_min_bytes = 1u << 20;
};
SendPath ChooseSendPath(uint64_t length, const SendPathPolicy& policy = {});

class FileStreamer {
 public:
  static constexpr uint32_t kChunkBytesMax = 16u << 20;
  // SEND_ZC submissions whose notification may be outstanding at once.
  static constexpr int kZcSlots = 4;

  struct Options {
    uint32_t pipe_bytes = 1u << 20;           // F_SETPIPE_SZ request (best effort)
    uint32_t copy_buffer_bytes = 256u << 10;  // kCopy's bounded buffer
    uint32_t zc_chunk_bytes = 4u << 20;       // largest single SEND_ZC submission
  };

  FileStreamer(Ring& ring, SendStats& stats, const Options& options, SendDoneFn on_done);
  ~FileStreamer();

  // Starts streaming `range` to `socket_fd`. On an immediate failure (bad options, mmap or
  // pipe creation failed) returns the error and on_done is not called; otherwise on_done runs
  // exactly once. REQUIRES: !busy().
  // more_follows: the caller sends more right after the range (the last bytes go with
  // MSG_MORE / SPLICE_F_MORE, so they can share a segment with what follows).
  absl::Status Start(int socket_fd, const FileRange& range, SendPath path,
                     bool more_follows = false);
  // Stops submitting and cancels the operation in flight; on_done(Cancelled) follows. For
  // kSendZc it follows only once the kernel drops its page references, i.e. when the peer
  // reads or the socket is closed: a caller giving up on a stalled peer aborts the socket
  // (AbortSocket) after Cancel(), and frees the streamer after on_done.
  void Cancel();
  bool busy() const;

 private:
  enum class Step { kIdle, kSpliceIn, kSpliceOut, kWaitWritable, kRead, kSend, kSendZc };

  // One SEND_ZC submission: in flight from submit until its notification.
  struct ZcSlot {
    FileStreamer* owner = nullptr;
    Completion op;
    uint32_t len = 0;
    bool zero_copy = true;
    void OnDone(int32_t res, uint32_t flags) { owner->OnZcDone(*this, res, flags); }
  };
  void OnZcDone(ZcSlot& slot, int32_t res, uint32_t flags);
  bool ZcBusy() const;

  absl::Status EnsurePipe();
  void ClosePipe();
  void Next();
  void SpliceIn();
  void SpliceOut();
  void OnOpDone(int32_t res, uint32_t flags);
  void Finish(absl::Status status);

  Ring& ring_;
  SendStats& stats_;
  Options options_;
  SendDoneFn on_done_;
  Completion op_;
  Step step_ = Step::kIdle;
  SendPath path_ = SendPath::kSplice;
  bool active_ = false;
  bool cancelled_ = false;
  bool more_follows_ = false;
  int socket_fd_ = -1;
  FileRange range_;
  uint64_t done_ = 0;       // bytes the socket accepted
  uint64_t read_done_ = 0;  // bytes taken from the file (splice in / read)
  // kSplice
  int pipe_read_ = -1;
  int pipe_write_ = -1;
  uint32_t pipe_capacity_ = 0;
  uint32_t in_pipe_ = 0;
  // kCopy
  std::unique_ptr<char[]> buffer_;
  uint32_t buffer_len_ = 0;
  uint32_t buffer_sent_ = 0;
  // kSendZc
  void* map_ = nullptr;
  size_t map_len_ = 0;
  const char* map_data_ = nullptr;
  ZcSlot zc_slots_[kZcSlots];
  bool zc_sending_ = false;        // a submission's result CQE is outstanding
  bool zc_fallback_next_ = false;  // the kernel refused to pin: copy the next chunk
  absl::Status zc_error_;
};

}  // namespace posthaste::reactor

#endif  // POSTHASTE_SERVER_REACTOR_SEND_H_
