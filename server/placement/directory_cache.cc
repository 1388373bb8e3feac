#include "server/placement/directory_cache.h"

#include <utility>

#include "base/log.h"
#include "base/strings.h"

namespace posthaste::server::placement {

DirectoryCache::DirectoryCache(EtcdClientOptions client_options, DirectoryCacheOptions options)
    : options_(std::move(options)),
      range_end_(PrefixRangeEnd(options_.prefix)),
      client_(std::move(client_options)),
      working_(std::make_shared<const DirectorySnapshot>()),
      current_(working_) {
  thread_ = std::thread([this] { Run(); });
}

DirectoryCache::~DirectoryCache() {
  stopping_.Notify();
  client_.Cancel();
  thread_.join();
}

std::shared_ptr<const DirectorySnapshot> DirectoryCache::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

DirectoryCacheStats DirectoryCache::stats() const {
  absl::MutexLock lock(&mu_);
  DirectoryCacheStats copy = stats_;
  copy.stale = stale();
  return copy;
}

bool DirectoryCache::WaitLoaded(absl::Duration timeout) const {
  return loaded_.WaitForNotificationWithTimeout(timeout);
}

void DirectoryCache::Publish(std::shared_ptr<const DirectorySnapshot> snapshot) {
  working_ = snapshot;
  absl::MutexLock lock(&mu_);
  current_ = std::move(snapshot);
  stats_.revision = current_->revision;
}

void DirectoryCache::SetStale(bool stale) {
  if (stale_.exchange(stale) != stale) {
    LogEvent(stale ? LogLevel::kWarning : LogLevel::kInfo,
             stale ? "placement directory stale: etcd has no quorum or cannot be reached; "
                     "answering from the last snapshot"
                   : (loaded_.HasBeenNotified() ? "placement directory current again"
                                                : "placement directory loaded"),
             {{"revision", std::to_string(revision_)}});
  }
}

bool DirectoryCache::Load() {
  auto range = client_.Range(options_.prefix, {.range_end = range_end_});
  if (!range.ok()) {
    if (!absl::IsCancelled(range.status())) {
      absl::MutexLock lock(&mu_);
      ++stats_.errors;
    }
    return false;
  }
  auto snapshot = std::make_shared<DirectorySnapshot>();
  uint64_t bad = 0;
  for (const EtcdKeyValue& kv : range->kvs) {
    if (!ApplyDirectoryKey(options_.prefix, kv.key, kv.value, false, snapshot.get()).ok()) ++bad;
  }
  snapshot->revision = range->revision;
  revision_ = range->revision;
  lag_target_ = 0;
  {
    absl::MutexLock lock(&mu_);
    ++stats_.reloads;
    stats_.bad_values += bad;
  }
  Publish(std::move(snapshot));
  SetStale(false);
  next_probe_ = absl::Now() + options_.probe_interval;
  if (!loaded_.HasBeenNotified()) loaded_.Notify();
  return true;
}

bool DirectoryCache::Probe() {
  next_probe_ = absl::Now() + options_.probe_interval;
  auto newest =
      client_.Range(options_.prefix,
                    {.range_end = range_end_, .limit = 1, .keys_only = true, .newest_first = true});
  if (!newest.ok()) {
    if (absl::IsCancelled(newest.status())) return true;
    {
      absl::MutexLock lock(&mu_);
      ++stats_.errors;
    }
    SetStale(true);
    return true;
  }
  SetStale(false);
  const int64_t newest_change = newest->kvs.empty() ? 0 : newest->kvs[0].mod_revision;
  if (newest_change <= revision_) {
    lag_target_ = 0;
    return true;
  }
  // A change the watch has not delivered: fine once (it may be on its way), not twice.
  if (lag_target_ != 0 && revision_ < lag_target_) return false;
  lag_target_ = newest_change;
  return true;
}

void DirectoryCache::Follow(EtcdWatch& watch) {
  while (!stopping_.HasBeenNotified()) {
    if (absl::Now() >= next_probe_ && !Probe()) {
      LogEvent(LogLevel::kWarning, "placement directory watch is behind etcd; reloading",
               {{"member", watch.endpoint().ToString()}, {"revision", std::to_string(revision_)}});
      return;
    }
    auto response = watch.Next(std::min(next_probe_, absl::Now() + absl::Seconds(1)));
    if (absl::IsDeadlineExceeded(response.status())) continue;
    if (!response.ok()) {
      if (!absl::IsCancelled(response.status())) {
        absl::MutexLock lock(&mu_);
        ++stats_.errors;
      }
      return;
    }
    if (response->canceled) {
      // Compacted past our revision: only a full load catches up.
      if (response->compact_revision > 0) revision_ = 0;
      return;
    }
    if (response->events.empty()) {
      // A progress notification: everything up to its revision has been sent.
      if (!response->created) revision_ = std::max(revision_, response->revision);
      continue;
    }
    auto next = std::make_shared<DirectorySnapshot>(*working_);
    uint64_t bad = 0;
    for (const EtcdWatchEvent& e : response->events) {
      if (!ApplyDirectoryKey(options_.prefix, e.kv.key, e.kv.value, e.is_delete, next.get()).ok()) {
        ++bad;
      }
      revision_ = std::max(revision_, e.kv.mod_revision);
    }
    next->revision = revision_;
    {
      absl::MutexLock lock(&mu_);
      stats_.watch_events += response->events.size();
      stats_.bad_values += bad;
    }
    Publish(std::move(next));
  }
}

void DirectoryCache::Run() {
  bool need_load = true;
  while (!stopping_.HasBeenNotified()) {
    if (need_load) {
      if (!Load()) {
        SetStale(true);
        stopping_.WaitForNotificationWithTimeout(options_.retry_delay);
        continue;
      }
      need_load = false;
    }
    auto watch = client_.Watch(options_.prefix, range_end_, revision_ + 1);
    if (!watch.ok()) {
      if (absl::IsCancelled(watch.status())) return;
      {
        absl::MutexLock lock(&mu_);
        ++stats_.errors;
      }
      // No member takes a watch: no member is reachable. The probe says whether that matters.
      if (absl::Now() >= next_probe_) Probe();
      stopping_.WaitForNotificationWithTimeout(options_.retry_delay);
      continue;
    }
    const int64_t before = revision_;
    Follow(**watch);
    if (stopping_.HasBeenNotified()) return;
    {
      absl::MutexLock lock(&mu_);
      ++stats_.watch_restarts;
    }
    // A compacted or lagging watch reloads; a broken one reopens on the next member.
    if (revision_ == 0 || (lag_target_ != 0 && revision_ < lag_target_)) {
      need_load = true;
      revision_ = std::max<int64_t>(revision_, before);
    }
    client_.RotateEndpoint();
    stopping_.WaitForNotificationWithTimeout(options_.retry_delay);
  }
}

}  // namespace posthaste::server::placement
