#include "storage/segment.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "base/strings.h"
#include "storage/store_error.h"

namespace posthaste::storage::internal {

absl::Status ErrnoStatus(int err, std::string_view what) {
  std::string message = absl::StrCat(AbslView(what), ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return WithStoreError(absl::NotFoundError(message), StoreError::kIo);
    case ENOSPC:
    case EDQUOT:
      return StoreErrorStatus(StoreError::kNoSpace, message);
    case EMFILE:
    case ENFILE:
    case ENOMEM:
      return StoreErrorStatus(StoreError::kTemporary, message);
    case EACCES:
    case EPERM:
      return WithStoreError(absl::PermissionDeniedError(message), StoreError::kIo);
    default:
      return StoreErrorStatus(StoreError::kIo, message);
  }
}

absl::Status SyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open ", dir));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus(err, absl::StrCat("fsync ", dir));
  return absl::OkStatus();
}

Segment::Segment(uint64_t id, int fd, std::string path,
                 std::shared_ptr<std::atomic<uint64_t>> sync_counter)
    : id_(id), fd_(fd), path_(std::move(path)), sync_counter_(std::move(sync_counter)) {}

Segment::~Segment() { ::close(fd_); }

absl::Status Segment::WriteAt(uint64_t offset, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::pwrite(fd_, bytes.data(), bytes.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, absl::StrCat("write ", path_));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  return absl::OkStatus();
}

bool Segment::failed() const {
  std::lock_guard<std::mutex> lock(sync_mu_);
  return failed_;
}

absl::Status Segment::SyncWritten() {
  std::unique_lock<std::mutex> lock(sync_mu_);
  const uint64_t my_ticket = ++write_tickets_;
  while (synced_tickets_ < my_ticket) {
    if (failed_)
      return StoreErrorStatus(StoreError::kIo,
                              absl::StrCat("earlier fdatasync of ", path_, " failed"));
    if (syncing_) {
      sync_cv_.wait(lock);
      continue;
    }
    // Leader: everything ticketed so far was written before this point.
    syncing_ = true;
    const uint64_t target = write_tickets_;
    lock.unlock();
    int rc = ::fdatasync(fd_);
    int err = errno;
    sync_counter_->fetch_add(1, std::memory_order_relaxed);
    lock.lock();
    syncing_ = false;
    if (rc != 0) {
      failed_ = true;
      sync_cv_.notify_all();
      return ErrnoStatus(err, absl::StrCat("fdatasync ", path_));
    }
    if (target > synced_tickets_) synced_tickets_ = target;
    sync_cv_.notify_all();
  }
  return absl::OkStatus();
}

SegmentSet::SegmentSet(std::string dir, uint64_t roll_bytes,
                       std::function<absl::StatusOr<uint64_t>()> allocate_id)
    : dir_(std::move(dir)),
      roll_bytes_(roll_bytes),
      allocate_id_(std::move(allocate_id)),
      sync_counter_(std::make_shared<std::atomic<uint64_t>>(0)) {}

std::string SegmentSet::FileName(uint64_t id) { return absl::StrFormat("%016x.seg", id); }

absl::StatusOr<std::vector<uint64_t>> SegmentSet::ListFileIds(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ErrnoStatus(errno, absl::StrCat("opendir ", dir));
  std::vector<uint64_t> ids;
  while (struct dirent* e = ::readdir(d)) {
    std::string_view name(e->d_name);
    if (name.size() != 20 || name.substr(16) != ".seg") continue;
    uint64_t id = 0;
    bool ok = true;
    for (char c : name.substr(0, 16)) {
      int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
      if (v < 0) {
        ok = false;
        break;
      }
      id = (id << 4) | static_cast<uint64_t>(v);
    }
    if (ok) ids.push_back(id);
  }
  ::closedir(d);
  return ids;
}

absl::StatusOr<std::shared_ptr<Segment>> SegmentSet::CreateLocked() {
  auto id = allocate_id_();
  if (!id.ok()) return id.status();
  std::string path = absl::StrCat(dir_, "/", FileName(*id));
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("create ", path));
  auto segment = std::make_shared<Segment>(*id, fd, std::move(path), sync_counter_);
  // The directory entry must be durable before any index entry can name the file.
  absl::Status synced = SyncDirectory(dir_);
  if (!synced.ok()) {
    ::unlink(segment->path().c_str());
    return synced;
  }
  open_[*id] = segment;
  return segment;
}

absl::StatusOr<AppendResult> SegmentSet::AppendDurable(std::string_view bytes) {
  PH_ASSIGN_OR_RETURN(std::vector<AppendResult> results,
                      AppendDurable(std::vector<std::string_view>{bytes}));
  return std::move(results[0]);
}

absl::StatusOr<std::vector<AppendResult>> SegmentSet::AppendDurable(
    const std::vector<std::string_view>& items) {
  std::vector<AppendResult> results;
  results.reserve(items.size());
  auto fail = [&](const absl::Status& status) {
    for (const AppendResult& r : results) r.segment->pending_appends.fetch_sub(1);
    return status;
  };
  for (std::string_view bytes : items) {
    AppendResult result;
    {
      std::lock_guard<std::mutex> lock(mu_);
      const bool full =
          active_ != nullptr && active_size_ > 0 && active_size_ + bytes.size() > roll_bytes_;
      if (active_ == nullptr || full || active_->failed()) {
        auto created = CreateLocked();
        if (!created.ok()) return fail(created.status());
        active_ = *std::move(created);
        active_size_ = 0;
      }
      result.segment = active_;
      result.offset = active_size_;
      active_size_ += bytes.size();
      result.segment->pending_appends.fetch_add(1);
    }
    results.push_back(result);
    absl::Status written = result.segment->WriteAt(result.offset, bytes);
    if (!written.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      // Start afresh: the failed range stays unreferenced garbage that compaction reclaims.
      if (active_ == result.segment) active_ = nullptr;
      return fail(written);
    }
  }
  for (size_t i = 0; i < results.size(); ++i) {
    if (i > 0 && results[i].segment == results[i - 1].segment) continue;
    absl::Status synced = results[i].segment->SyncWritten();
    if (!synced.ok()) return fail(synced);
  }
  return results;
}

absl::StatusOr<std::shared_ptr<Segment>> SegmentSet::CreateSegment() {
  std::lock_guard<std::mutex> lock(mu_);
  return CreateLocked();
}

absl::StatusOr<std::shared_ptr<Segment>> SegmentSet::Get(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = open_.find(id);
  if (it != open_.end()) return it->second;
  if (retired_.count(id) != 0) {
    return WithStoreError(
        absl::NotFoundError(absl::StrCat("segment ", FileName(id), " was retired")),
        StoreError::kTemporary);
  }
  std::string path = absl::StrCat(dir_, "/", FileName(id));
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open segment ", path));
  auto segment = std::make_shared<Segment>(id, fd, std::move(path), sync_counter_);
  open_[id] = segment;
  return segment;
}

bool SegmentSet::Retired(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  return retired_.count(id) != 0;
}

bool SegmentSet::Busy(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (active_ != nullptr && active_->id() == id) return true;
  auto it = open_.find(id);
  return it != open_.end() && it->second->pending_appends.load() > 0;
}

absl::Status SegmentSet::Retire(uint64_t id) {
  std::string path = absl::StrCat(dir_, "/", FileName(id));
  {
    std::lock_guard<std::mutex> lock(mu_);
    open_.erase(id);
    retired_.insert(id);
    if (active_ != nullptr && active_->id() == id) active_ = nullptr;
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(errno, absl::StrCat("unlink ", path));
  }
  return SyncDirectory(dir_);
}

}  // namespace posthaste::storage::internal
