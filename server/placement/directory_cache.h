// DirectoryCache: the DirectorySource backed by etcd (directory.h). One thread loads the
// prefix with one linearizable range, then follows etcd's watch from the next revision, and
// after each batch of changes publishes a new immutable snapshot. Readers only copy a
// shared_ptr under a mutex held for that copy.
//
// Staleness: every `probe_interval` the thread makes a linearizable read (which needs a
// quorum) of the newest change under the prefix. While that fails on every member, stale() is
// true and readers keep the last snapshot. When the probe sees a change newer than the watch
// delivered, twice in a row, the watch is behind (its member lost touch with the others): the
// cache reloads and watches again, from another member. A broken watch stream is reopened on
// the next member from the last revision seen; a compacted revision means a full reload.
//
// Threading: Current(), stale() and stats() from any thread. The constructor starts the
// thread; the destructor stops it (ends any blocking etcd call at once) and joins it.
#ifndef POSTHASTE_SERVER_PLACEMENT_DIRECTORY_CACHE_H_
#define POSTHASTE_SERVER_PLACEMENT_DIRECTORY_CACHE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/placement/directory.h"
#include "server/placement/directory_codec.h"
#include "server/placement/etcd_client.h"

namespace posthaste::server::placement {

struct DirectoryCacheOptions {
  std::string prefix = std::string(kDefaultDirectoryPrefix);
  absl::Duration probe_interval = absl::Seconds(1);
  absl::Duration retry_delay = absl::Milliseconds(200);  // after a failed load or watch
};

// What the cache has done, for metrics (posthaste_directory_*).
struct DirectoryCacheStats {
  int64_t revision = 0;  // of the published snapshot
  bool stale = true;
  uint64_t reloads = 0;         // full loads, the first included
  uint64_t watch_events = 0;    // key changes applied from the watch
  uint64_t watch_restarts = 0;  // streams reopened (broken, canceled, or behind)
  uint64_t errors = 0;          // failed loads, watches and probes
  uint64_t bad_values = 0;      // values that did not decode (entries left out)
};

class DirectoryCache : public DirectorySource {
 public:
  DirectoryCache(EtcdClientOptions client_options, DirectoryCacheOptions options);
  ~DirectoryCache() override;
  DirectoryCache(const DirectoryCache&) = delete;
  DirectoryCache& operator=(const DirectoryCache&) = delete;

  std::shared_ptr<const DirectorySnapshot> Current() const override;
  bool stale() const override { return stale_.load(std::memory_order_relaxed); }
  DirectoryCacheStats stats() const;

  // Waits up to `timeout` for the first load; false if it has not happened.
  bool WaitLoaded(absl::Duration timeout) const;

 private:
  void Run();
  bool Load();
  // Reads watch responses until the stream breaks, lags or the cache stops.
  void Follow(EtcdWatch& watch);
  // The quorum probe; returns false when the watch is behind and must be restarted.
  bool Probe();
  void Publish(std::shared_ptr<const DirectorySnapshot> snapshot);
  void SetStale(bool stale);

  const DirectoryCacheOptions options_;
  const std::string range_end_;
  EtcdClient client_;

  // Thread-owned.
  std::shared_ptr<const DirectorySnapshot> working_;  // the last published snapshot
  int64_t revision_ = 0;                              // everything up to it has been applied
  int64_t lag_target_ = 0;  // a change the probe saw that the watch has not delivered yet
  absl::Time next_probe_ = absl::InfinitePast();

  mutable absl::Mutex mu_;
  std::shared_ptr<const DirectorySnapshot> current_ ABSL_GUARDED_BY(mu_);
  DirectoryCacheStats stats_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> stale_{true};
  absl::Notification loaded_;
  absl::Notification stopping_;
  std::thread thread_;
};

}  // namespace posthaste::server::placement

#endif  // POSTHASTE_SERVER_PLACEMENT_DIRECTORY_CACHE_H_
