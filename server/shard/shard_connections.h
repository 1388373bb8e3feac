// ShardConnections<Connection>: the connections one reactor shard owns, keyed by a per-shard
// id, shared by the POP3 (Pop3Shard) and LMTP (LmtpShard) listeners so both drivers count,
// find, abort and free their connections the same way. A template, not a base class: lookups
// stay direct calls on the POP3 hot path.
//
// Threading: every member runs on the owning shard's thread except PublishedOpen(), which the
// main thread loads while it waits for a drain.
#ifndef POSTHASTE_SERVER_SHARD_SHARD_CONNECTIONS_H_
#define POSTHASTE_SERVER_SHARD_SHARD_CONNECTIONS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace posthaste::server {

template <typename Connection>
class ShardConnections {
 public:
  uint64_t NextId() { return next_id_++; }

  // Takes ownership of `conn` under `id` and returns it.
  Connection* Add(uint64_t id, std::unique_ptr<Connection> conn) {
    Connection* raw = conn.get();
    by_id_.emplace(id, std::move(conn));
    Publish();
    return raw;
  }

  Connection* Find(uint64_t id) {
    auto it = by_id_.find(id);
    return it == by_id_.end() ? nullptr : it->second.get();
  }

  // Frees the connection; false when it was already gone.
  bool Erase(uint64_t id) {
    if (by_id_.erase(id) == 0) return false;
    Publish();
    return true;
  }

  // Ids of the open connections: a snapshot, because acting on one may close another.
  std::vector<uint64_t> Ids() const {
    std::vector<uint64_t> ids;
    ids.reserve(by_id_.size());
    for (const auto& [id, conn] : by_id_) ids.push_back(id);
    return ids;
  }

  void AbortAll() {
    for (auto& [id, conn] : by_id_) conn->Abort();
  }

  // Frees all connections (the shard's OnDrained hook).
  void Clear() {
    by_id_.clear();
    Publish();
  }

  uint64_t size() const { return by_id_.size(); }

  // Any thread.
  uint64_t PublishedOpen() const { return published_open_.load(std::memory_order_relaxed); }

 private:
  // Stored by this shard only, so the main thread's drain wait needs no message to the shard.
  void Publish() { published_open_.store(by_id_.size(), std::memory_order_relaxed); }

  absl::flat_hash_map<uint64_t, std::unique_ptr<Connection>> by_id_;
  uint64_t next_id_ = 1;
  std::atomic<uint64_t> published_open_{0};
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_SHARD_SHARD_CONNECTIONS_H_
