// FuzzInput: a libFuzzer input read front to back by a fuzz target's harness (configuration
// bytes, step controls, operands). Reads past the end give 0 and empty views, so a harness
// never needs to check the length before each read.
//
// Threading: none. The input bytes must outlive the FuzzInput.
#ifndef POSTHASTE_TOOLS_BUILD_FUZZ_INPUT_H_
#define POSTHASTE_TOOLS_BUILD_FUZZ_INPUT_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace posthaste::testing {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  // The next byte, or 0 past the end.
  uint8_t Byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  // The next `n` bytes, or fewer at the end.
  std::string_view Bytes(size_t n) {
    n = std::min(n, size_ - pos_);
    std::string_view out(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return out;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace posthaste::testing

#endif  // POSTHASTE_TOOLS_BUILD_FUZZ_INPUT_H_
