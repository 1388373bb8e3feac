#include "server/protocol/line_framer.h"

#include <cstring>

namespace posthaste::protocol {

LineFramer::Status LineFramer::Next(size_t line_bytes_max, std::string_view* line,
                                    size_t* raw_bytes) {
  while (true) {
    const char* base = in_.data();
    const size_t end = in_.size();
    const void* lf =
        scan_pos_ < end ? std::memchr(base + scan_pos_, '\n', end - scan_pos_) : nullptr;
    if (discarding_line_) {
      if (lf == nullptr) {
        // Keep a final CR: it may be the first half of the CRLF that ends the discarded line.
        in_pos_ = (end > in_pos_ && base[end - 1] == '\r') ? end - 1 : end;
        scan_pos_ = end;
        return Status::kNeedMore;
      }
      const size_t lf_pos = static_cast<size_t>(static_cast<const char*>(lf) - base);
      scan_pos_ = lf_pos + 1;
      if (lf_pos > in_pos_ && base[lf_pos - 1] == '\r') {
        in_pos_ = scan_pos_;
        discarding_line_ = false;
      } else {
        in_pos_ = scan_pos_;  // a bare LF inside the discarded line: not a line end
      }
      continue;
    }
    if (lf == nullptr) {
      if (end - in_pos_ >= line_bytes_max) {
        discarding_line_ = true;
        in_pos_ = (base[end - 1] == '\r') ? end - 1 : end;
        scan_pos_ = end;
        return Status::kOverflow;
      }
      scan_pos_ = end;
      return Status::kNeedMore;
    }
    const size_t lf_pos = static_cast<size_t>(static_cast<const char*>(lf) - base);
    const size_t begin = in_pos_;
    const bool crlf = lf_pos > begin && base[lf_pos - 1] == '\r';
    *raw_bytes = lf_pos + 1 - begin;
    in_pos_ = scan_pos_ = lf_pos + 1;
    if (*raw_bytes > line_bytes_max) {
      // The line goes on past a bare LF: discard up to its CRLF.
      if (!crlf) discarding_line_ = true;
      return Status::kOverflow;
    }
    *line = std::string_view(base + begin, (crlf ? lf_pos - 1 : lf_pos) - begin);
    return crlf ? Status::kLine : Status::kBareLineFeed;
  }
}

size_t LineFramer::DiscardUnparsed() {
  const size_t discarded = in_.size() - in_pos_;
  in_pos_ = scan_pos_ = in_.size();
  return discarded;
}

void LineFramer::Compact() {
  if (in_pos_ == in_.size()) {
    in_.clear();
    in_pos_ = scan_pos_ = 0;
  } else if (in_pos_ >= 4096 && in_pos_ * 2 >= in_.size()) {
    in_.erase(0, in_pos_);
    scan_pos_ -= in_pos_;
    in_pos_ = 0;
  }
}

void LineFramer::ReleaseIfEmpty() {
  if (in_pos_ == in_.size() && !discarding_line_) {
    std::string().swap(in_);
    in_pos_ = scan_pos_ = 0;
  }
}

void LineFramer::Clear() {
  in_.clear();
  in_pos_ = scan_pos_ = 0;
  discarding_line_ = false;
}

}  // namespace posthaste::protocol
