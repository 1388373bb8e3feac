// Append-only segment files that hold message bodies, with group-committed fdatasync.
// Internal to //storage.
//
// Threading: Segment and SegmentSet are thread-safe. A Segment is shared (std::shared_ptr) by
// the SegmentSet registry, writers and mailbox snapshots; its fd closes when the last reference
// goes, so a snapshot keeps reading a segment that compaction has already unlinked.
#ifndef POSTHASTE_STORAGE_SEGMENT_H_
#define POSTHASTE_STORAGE_SEGMENT_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace posthaste::storage::internal {

class Segment {
 public:
  // Takes ownership of `fd`.
  Segment(uint64_t id, int fd, std::string path,
          std::shared_ptr<std::atomic<uint64_t>> sync_counter);
  ~Segment();
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;

  uint64_t id() const { return id_; }
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }

  // Writes all of `bytes` at `offset` (pwrite loop).
  absl::Status WriteAt(uint64_t offset, std::string_view bytes);
  // Returns once every byte this thread wrote before the call is on stable storage. Concurrent
  // callers share one fdatasync: the first waiter syncs for all who finished writing before it
  // started (group commit). After a failed fdatasync the segment is marked failed for good
  // (the page cache state is unknown) and every later call fails.
  absl::Status SyncWritten();
  bool failed() const;

  // Appends reserved in this segment whose index entries are not written yet. Compaction never
  // rewrites a segment with pending appends.
  std::atomic<int64_t> pending_appends{0};

 private:
  const uint64_t id_;
  const int fd_;
  const std::string path_;
  std::shared_ptr<std::atomic<uint64_t>> sync_counter_;

  mutable std::mutex sync_mu_;
  std::condition_variable sync_cv_;
  uint64_t write_tickets_ = 0;   // guarded by sync_mu_
  uint64_t synced_tickets_ = 0;  // guarded by sync_mu_
  bool syncing_ = false;         // guarded by sync_mu_
  bool failed_ = false;          // guarded by sync_mu_
};

struct AppendResult {
  std::shared_ptr<Segment> segment;  // pending_appends was incremented for this append
  uint64_t offset = 0;
};

// The segment directory: a registry of open segments and the active delivery segment.
class SegmentSet {
 public:
  // `allocate_id` durably reserves a new segment id (never reused).
  SegmentSet(std::string dir, uint64_t roll_bytes,
             std::function<absl::StatusOr<uint64_t>()> allocate_id);

  static std::string FileName(uint64_t id);
  // Ids of the *.seg files in `dir`.
  static absl::StatusOr<std::vector<uint64_t>> ListFileIds(const std::string& dir);

  // Appends `bytes` to the active delivery segment (starting a new one when it would grow past
  // the roll size) and returns once they are durable. On success the caller owns one
  // pending_appends count on the segment and must decrement it once the index entry is written
  // (or has failed).
  absl::StatusOr<AppendResult> AppendDurable(std::string_view bytes);
  // The same for several byte strings (one result each, in order), syncing each segment they
  // landed in once. All or nothing: on error no pending count is left behind.
  absl::StatusOr<std::vector<AppendResult>> AppendDurable(
      const std::vector<std::string_view>& items);

  // A new empty segment, registered but never used for deliveries (compaction output). Its
  // directory entry is durable on return.
  absl::StatusOr<std::shared_ptr<Segment>> CreateSegment();

  // The segment with `id`, opened on first use. NotFound when the file does not exist.
  absl::StatusOr<std::shared_ptr<Segment>> Get(uint64_t id);

  // True once Retire(id) has begun; Get(id) is then NotFound.
  bool Retired(uint64_t id);

  // True while `id` is the active delivery segment or has pending appends.
  bool Busy(uint64_t id);

  // Forgets `id`, unlinks its file and syncs the directory. Open Segment objects stay readable.
  absl::Status Retire(uint64_t id);

  uint64_t sync_count() const { return sync_counter_->load(std::memory_order_relaxed); }
  const std::string& dir() const { return dir_; }

 private:
  absl::StatusOr<std::shared_ptr<Segment>> CreateLocked();

  const std::string dir_;
  const uint64_t roll_bytes_;
  std::function<absl::StatusOr<uint64_t>()> allocate_id_;
  std::shared_ptr<std::atomic<uint64_t>> sync_counter_;

  std::mutex mu_;
  std::map<uint64_t, std::shared_ptr<Segment>> open_;  // guarded by mu_
  std::shared_ptr<Segment> active_;                    // guarded by mu_
  uint64_t active_size_ = 0;                           // guarded by mu_
  std::set<uint64_t> retired_;                         // guarded by mu_
};

// "what: strerror": kNoSpace for exhausted space, kTemporary for exhausted descriptors or
// memory, kIo otherwise
// (storage/store_error.h), with the errno's canonical code.
absl::Status ErrnoStatus(int err, std::string_view what);
absl::Status SyncDirectory(const std::string& dir);

}  // namespace posthaste::storage::internal

#endif  // POSTHASTE_STORAGE_SEGMENT_H_
