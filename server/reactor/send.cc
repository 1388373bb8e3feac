#include "server/reactor/send.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"
#include "server/reactor/net.h"

namespace posthaste::reactor {

std::string_view SendPathName(SendPath path) {
  switch (path) {
    case SendPath::kSplice:
      return "splice";
    case SendPath::kSendZc:
      return "send_zc";
    case SendPath::kCopy:
      return "copy";
  }
  return "unknown";
}

SendPath ChooseSendPath(uint64_t length, const SendPathPolicy& policy) {
  if (policy.use_send_zc && length >= policy.send_zc_min_bytes) return SendPath::kSendZc;
  if (length >= policy.splice_min_bytes) return SendPath::kSplice;
  return SendPath::kCopy;
}

// ---------------------------------------------------------------------------------------------

Sender::Sender(Ring& ring, SendStats& stats, SendDoneFn on_done)
    : ring_(ring), stats_(stats), on_done_(std::move(on_done)) {
  op_.Bind<&Sender::OnSendDone>(this);
}

void Sender::Send(int fd, std::span<const char> data, bool zero_copy, bool more) {
  PH_CHECK(!busy());
  fd_ = fd;
  data_ = data;
  sent_ = 0;
  zero_copy_ = zero_copy;
  more_ = more;
  active_ = true;
  cancelled_ = false;
  poll_first_ = false;
  if (data.empty()) {
    Finish(absl::OkStatus());
    return;
  }
  Submit();
}

void Sender::Submit() {
  const char* p = data_.data() + sent_;
  const size_t len = data_.size() - sent_;
  if (zero_copy_) {
    ring_.PrepSendZc(&op_, fd_, p, len);
  } else {
    ring_.PrepSend(&op_, fd_, p, len, poll_first_, more_);
  }
}

void Sender::Cancel() {
  if (!active_) return;
  cancelled_ = true;
  ring_.Cancel(&op_);
}

void Sender::OnSendDone(int32_t res, uint32_t flags) {
  if (zero_copy_) {
    if (flags & IORING_CQE_F_NOTIF) {
      // The kernel no longer references the memory.
      ++stats_.zc_notifs;
      if (static_cast<uint32_t>(res) & IORING_NOTIF_USAGE_ZC_COPIED) ++stats_.zc_notifs_copied;
      res = zc_result_;
    } else {
      zc_result_ = res;
      if (flags & IORING_CQE_F_MORE) return;  // memory pinned until the notification
    }
  }
  if (zero_copy_ && (res == -ENOMEM || res == -ENOBUFS) && !cancelled_) {
    // The kernel refused to pin more pages (limits shared by the whole user): finish this
    // send by copying instead of failing it.
    ++stats_.zc_fallbacks;
    zero_copy_ = false;
    Submit();
    return;
  }
  if (res > 0) {
    sent_ += static_cast<uint64_t>(res);
    (zero_copy_ ? stats_.zc_bytes : stats_.plain_bytes) += static_cast<uint64_t>(res);
  }
  if (cancelled_) {
    Finish(absl::CancelledError("send cancelled"));
    return;
  }
  if (res == -EAGAIN) {
    // Should not happen (io_uring polls), but if it does, wait for POLLOUT in the kernel.
    ++stats_.socket_full_waits;
    poll_first_ = true;
    Submit();
    return;
  }
  if (res < 0) {
    Finish(SocketError(res, "send"));
    return;
  }
  if (res == 0) {
    Finish(absl::UnavailableError("send made no progress"));
    return;
  }
  if (sent_ < data_.size()) {
    ++stats_.partial_sends;
    poll_first_ = false;
    Submit();
    return;
  }
  Finish(absl::OkStatus());
}

void Sender::Finish(absl::Status status) {
  active_ = false;
  on_done_(std::move(status), sent_);
}

// ---------------------------------------------------------------------------------------------

FileStreamer::FileStreamer(Ring& ring, SendStats& stats, const Options& options, SendDoneFn on_done)
    : ring_(ring), stats_(stats), options_(options), on_done_(std::move(on_done)) {
  op_.Bind<&FileStreamer::OnOpDone>(this);
  for (ZcSlot& slot : zc_slots_) {
    slot.owner = this;
    slot.op.Bind<&ZcSlot::OnDone>(&slot);
  }
}

bool FileStreamer::ZcBusy() const {
  for (const ZcSlot& slot : zc_slots_) {
    if (slot.op.in_flight()) return true;
  }
  return false;
}

bool FileStreamer::busy() const { return active_ || op_.in_flight() || ZcBusy(); }

FileStreamer::~FileStreamer() {
  PH_CHECK(!busy());
  ClosePipe();
}

absl::Status FileStreamer::EnsurePipe() {
  if (pipe_read_ >= 0) return absl::OkStatus();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::ResourceExhaustedError(absl::StrCat("pipe2: ", strerror(errno)));
  }
  pipe_read_ = fds[0];
  pipe_write_ = fds[1];
  // A bigger pipe means fewer splice round trips; the system cap may refuse it.
  fcntl(pipe_write_, F_SETPIPE_SZ, static_cast<int>(options_.pipe_bytes));
  const int capacity = fcntl(pipe_write_, F_GETPIPE_SZ);
  pipe_capacity_ = capacity > 0 ? static_cast<uint32_t>(capacity) : 65536;
  return absl::OkStatus();
}

void FileStreamer::ClosePipe() {
  // close(2) on a pipe never blocks.
  if (pipe_read_ >= 0) close(pipe_read_);
  if (pipe_write_ >= 0) close(pipe_write_);
  pipe_read_ = pipe_write_ = -1;
  in_pipe_ = 0;
}

absl::Status FileStreamer::Start(int socket_fd, const FileRange& range, SendPath path,
                                 bool more_follows) {
  PH_CHECK(!busy());
  if (options_.pipe_bytes == 0 || options_.pipe_bytes > kChunkBytesMax ||
      options_.copy_buffer_bytes == 0 || options_.copy_buffer_bytes > kChunkBytesMax ||
      options_.zc_chunk_bytes == 0 || options_.zc_chunk_bytes > kChunkBytesMax) {
    return absl::InvalidArgumentError("streamer chunk sizes must be in [1, kChunkBytesMax]");
  }
  struct stat st;
  if (fstat(range.fd, &st) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("fstat: ", strerror(errno)));
  }
  if (range.offset > static_cast<uint64_t>(st.st_size) ||
      range.length > static_cast<uint64_t>(st.st_size) - range.offset) {
    return absl::OutOfRangeError("byte range beyond the end of the file");
  }
  switch (path) {
    case SendPath::kSplice: {
      absl::Status s = EnsurePipe();
      if (!s.ok()) return s;
      break;
    }
    case SendPath::kSendZc: {
      if (range.length == 0) break;
      const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
      const uint64_t aligned = range.offset & ~(page - 1);
      map_len_ = static_cast<size_t>(range.length + (range.offset - aligned));
      map_ = mmap(nullptr, map_len_, PROT_READ, MAP_SHARED, range.fd, static_cast<off_t>(aligned));
      if (map_ == MAP_FAILED) {
        map_ = nullptr;
        return absl::ResourceExhaustedError(absl::StrCat("mmap: ", strerror(errno)));
      }
      map_data_ = static_cast<const char*>(map_) + (range.offset - aligned);
      break;
    }
    case SendPath::kCopy:
      if (buffer_ == nullptr) buffer_.reset(new char[options_.copy_buffer_bytes]);
      break;
  }
  socket_fd_ = socket_fd;
  more_follows_ = more_follows;
  range_ = range;
  path_ = path;
  done_ = 0;
  read_done_ = 0;
  in_pipe_ = 0;
  buffer_len_ = buffer_sent_ = 0;
  zc_sending_ = false;
  zc_fallback_next_ = false;
  zc_error_ = absl::OkStatus();
  cancelled_ = false;
  active_ = true;
  Next();
  return absl::OkStatus();
}

void FileStreamer::Cancel() {
  if (!active_) return;
  cancelled_ = true;
  ring_.Cancel(&op_);
  for (ZcSlot& slot : zc_slots_) ring_.Cancel(&slot.op);
}

void FileStreamer::Next() {
  if (cancelled_ || done_ == range_.length || !zc_error_.ok()) {
    if (ZcBusy()) return;  // the last notification calls Next() again
    Finish(cancelled_        ? absl::CancelledError("stream cancelled")
           : !zc_error_.ok() ? zc_error_
                             : absl::OkStatus());
    return;
  }
  switch (path_) {
    case SendPath::kSplice:
      if (in_pipe_ > 0) {
        SpliceOut();
      } else {
        SpliceIn();
      }
      return;
    case SendPath::kCopy:
      if (buffer_sent_ < buffer_len_) {
        step_ = Step::kSend;
        ring_.PrepSend(&op_, socket_fd_, buffer_.get() + buffer_sent_, buffer_len_ - buffer_sent_,
                       false, more_follows_ || read_done_ < range_.length);
      } else {
        step_ = Step::kRead;
        const uint64_t len =
            std::min<uint64_t>(options_.copy_buffer_bytes, range_.length - read_done_);
        ring_.PrepRead(&op_, range_.fd, buffer_.get(), len, range_.offset + read_done_);
      }
      return;
    case SendPath::kSendZc: {
      step_ = Step::kSendZc;
      if (zc_sending_) return;  // its result CQE calls Next()
      for (ZcSlot& slot : zc_slots_) {
        if (slot.op.in_flight()) continue;
        slot.len = static_cast<uint32_t>(
            std::min<uint64_t>(options_.zc_chunk_bytes, range_.length - done_));
        slot.zero_copy = !zc_fallback_next_;
        zc_fallback_next_ = false;
        if (slot.zero_copy) {
          ring_.PrepSendZc(&slot.op, socket_fd_, map_data_ + done_, slot.len);
        } else {
          ring_.PrepSend(&slot.op, socket_fd_, map_data_ + done_, slot.len, false);
        }
        zc_sending_ = true;
        return;
      }
      return;  // every slot waits for its notification; the first to arrive calls Next()
    }
  }
}

void FileStreamer::SpliceIn() {
  step_ = Step::kSpliceIn;
  const uint64_t len = std::min<uint64_t>(pipe_capacity_, range_.length - read_done_);
  ring_.PrepSplice(&op_, range_.fd, static_cast<int64_t>(range_.offset + read_done_), pipe_write_,
                   -1, static_cast<uint32_t>(len), SPLICE_F_MOVE);
}

void FileStreamer::SpliceOut() {
  step_ = Step::kSpliceOut;
  // SPLICE_F_MORE tells TCP more of the body follows (fewer small segments).
  const uint32_t flags =
      SPLICE_F_MOVE | (more_follows_ || read_done_ < range_.length ? SPLICE_F_MORE : 0);
  ring_.PrepSplice(&op_, pipe_read_, -1, socket_fd_, -1, in_pipe_, flags);
}

void FileStreamer::OnZcDone(ZcSlot& slot, int32_t res, uint32_t flags) {
  if (flags & IORING_CQE_F_NOTIF) {
    // The kernel dropped its references to this chunk's pages.
    ++stats_.zc_notifs;
    if (static_cast<uint32_t>(res) & IORING_NOTIF_USAGE_ZC_COPIED) ++stats_.zc_notifs_copied;
    Next();
    return;
  }
  // The send's result; its notification (if F_MORE) follows on the same slot.
  zc_sending_ = false;
  if (slot.zero_copy && (res == -ENOMEM || res == -ENOBUFS)) {
    // Pinning refused (locked-memory or optmem limits, shared by the whole user): send this
    // chunk by copying rather than failing the stream; later chunks try zero-copy again.
    ++stats_.zc_fallbacks;
    zc_fallback_next_ = true;
    Next();
    return;
  }
  if (res > 0) {
    done_ += static_cast<uint64_t>(res);
    (slot.zero_copy ? stats_.zc_bytes : stats_.zc_fallback_bytes) += static_cast<uint64_t>(res);
    if (static_cast<uint32_t>(res) < slot.len) ++stats_.partial_sends;
  } else if (zc_error_.ok() && !cancelled_) {
    zc_error_ =
        res == 0 ? absl::UnavailableError("send made no progress") : SocketError(res, "send_zc");
  }
  Next();
}

void FileStreamer::OnOpDone(int32_t res, uint32_t flags) {
  if (cancelled_) {
    Finish(absl::CancelledError("stream cancelled"));
    return;
  }
  switch (step_) {
    case Step::kIdle:
      PH_BUG(true, "streamer completion while idle");
      return;
    case Step::kSpliceIn:
      if (res < 0) {
        Finish(absl::InternalError(absl::StrCat("splice from file: ", strerror(-res))));
      } else if (res == 0) {
        Finish(absl::DataLossError("file ended inside the byte range"));
      } else {
        in_pipe_ = static_cast<uint32_t>(res);
        read_done_ += static_cast<uint64_t>(res);
        SpliceOut();
      }
      return;
    case Step::kSpliceOut:
      if (res == -EAGAIN) {
        // The socket is full: wait in the kernel until it drains (no retry loop).
        ++stats_.socket_full_waits;
        step_ = Step::kWaitWritable;
        ring_.PrepPollAdd(&op_, socket_fd_, POLLOUT);
      } else if (res <= 0) {
        Finish(res == 0 ? absl::UnavailableError("splice to socket made no progress")
                        : SocketError(res, "splice to socket"));
      } else {
        in_pipe_ -= static_cast<uint32_t>(res);
        done_ += static_cast<uint64_t>(res);
        stats_.splice_bytes += static_cast<uint64_t>(res);
        if (in_pipe_ > 0) ++stats_.partial_sends;
        Next();
      }
      return;
    case Step::kWaitWritable:
      if (res < 0) {
        Finish(SocketError(res, "poll"));
      } else {
        SpliceOut();  // on POLLERR/POLLHUP the splice reports the error
      }
      return;
    case Step::kRead:
      if (res < 0) {
        Finish(absl::InternalError(absl::StrCat("read from file: ", strerror(-res))));
      } else if (res == 0) {
        Finish(absl::DataLossError("file ended inside the byte range"));
      } else {
        buffer_len_ = static_cast<uint32_t>(res);
        buffer_sent_ = 0;
        read_done_ += static_cast<uint64_t>(res);
        Next();
      }
      return;
    case Step::kSendZc:
      PH_BUG(true, "SEND_ZC completions go to their slots");
      return;
    case Step::kSend:
      if (res <= 0) {
        Finish(res == 0 ? absl::UnavailableError("send made no progress")
                        : SocketError(res, "send"));
        return;
      }
      done_ += static_cast<uint64_t>(res);
      buffer_sent_ += static_cast<uint32_t>(res);
      stats_.copy_bytes += static_cast<uint64_t>(res);
      if (buffer_sent_ < buffer_len_) ++stats_.partial_sends;
      Next();
      return;
  }
}

void FileStreamer::Finish(absl::Status status) {
  step_ = Step::kIdle;
  active_ = false;
  if (map_ != nullptr) {
    munmap(map_, map_len_);  // no SEND_ZC references it: every notification has arrived
    map_ = nullptr;
    map_data_ = nullptr;
  }
  // A failed splice may leave bytes in the pipe; a fresh pipe is simpler than draining it.
  if (in_pipe_ > 0) ClosePipe();
  (status.ok() ? stats_.streams_ok : stats_.streams_failed) += 1;
  on_done_(std::move(status), done_);
}

}  // namespace posthaste::reactor
