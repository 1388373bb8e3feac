#include "base/testing/descriptor_table.h"

#include <unistd.h>

#include <cerrno>

namespace posthaste::testing {

DescriptorTableFull::DescriptorTableFull(int headroom) {
  if (getrlimit(RLIMIT_NOFILE, &saved_) != 0) return;
  const int lowest_free = dup(0);
  if (lowest_free < 0) return;
  close(lowest_free);
  rlimit lowered = saved_;
  lowered.rlim_cur = static_cast<rlim_t>(lowest_free + headroom);
  if (setrlimit(RLIMIT_NOFILE, &lowered) != 0) return;
  lowered_ = true;
  // Bounded: the lowered limit stops it long before this.
  for (int i = 0; i < headroom + 4096; ++i) {
    const int fd = dup(0);
    if (fd < 0) {
      full_ = errno == EMFILE;
      break;
    }
    fillers_.push_back(fd);
  }
}

void DescriptorTableFull::Release() {
  for (int fd : fillers_) close(fd);
  fillers_.clear();
  if (lowered_) setrlimit(RLIMIT_NOFILE, &saved_);
  lowered_ = false;
}

}  // namespace posthaste::testing
