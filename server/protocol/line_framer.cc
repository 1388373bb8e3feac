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
        in_pos_ = scan_pos_ = end;
        return Status::kNeedMore;
      }
      in_pos_ = scan_pos_ = static_cast<size_t>(static_cast<const char*>(lf) - base) + 1;
      discarding_line_ = false;
      continue;
    }
    if (lf == nullptr) {
      if (end - in_pos_ >= line_bytes_max) {
        discarding_line_ = true;
        in_pos_ = scan_pos_ = end;
        return Status::kOverflow;
      }
      scan_pos_ = end;
      return Status::kNeedMore;
    }
    const size_t lf_pos = static_cast<size_t>(static_cast<const char*>(lf) - base);
    const size_t begin = in_pos_;
    *raw_bytes = lf_pos + 1 - begin;
    in_pos_ = scan_pos_ = lf_pos + 1;
    if (*raw_bytes > line_bytes_max) return Status::kOverflow;
    size_t content_end = lf_pos;
    if (content_end > begin && base[content_end - 1] == '\r') --content_end;
    *line = std::string_view(base + begin, content_end - begin);
    return Status::kLine;
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

void LineFramer::Clear() {
  in_.clear();
  in_pos_ = scan_pos_ = 0;
  discarding_line_ = false;
}

}  // namespace posthaste::protocol
