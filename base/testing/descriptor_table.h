// DescriptorTableFull: a test fixture that fills this process's descriptor table, so the next
// accept(2), socket(2) or open(2) fails with EMFILE, and gives everything back when destroyed.
// It lowers the soft RLIMIT_NOFILE to the lowest free descriptor plus `headroom` and dup()s
// until EMFILE. Create what the test needs (listeners, client sockets) first. testonly; not
// thread-safe (the limit is process-wide).
#ifndef POSTHASTE_BASE_TESTING_DESCRIPTOR_TABLE_H_
#define POSTHASTE_BASE_TESTING_DESCRIPTOR_TABLE_H_

#include <sys/resource.h>

#include <vector>

namespace posthaste::testing {

class DescriptorTableFull {
 public:
  explicit DescriptorTableFull(int headroom = 32);
  ~DescriptorTableFull() { Release(); }
  DescriptorTableFull(const DescriptorTableFull&) = delete;
  DescriptorTableFull& operator=(const DescriptorTableFull&) = delete;

  // Whether the table was filled (the last dup failed with EMFILE).
  bool full() const { return full_; }
  // Closes the fillers and restores the limit (idempotent).
  void Release();

 private:
  rlimit saved_{};
  bool lowered_ = false;
  bool full_ = false;
  std::vector<int> fillers_;
};

}  // namespace posthaste::testing

#endif  // POSTHASTE_BASE_TESTING_DESCRIPTOR_TABLE_H_
