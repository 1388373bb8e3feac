// An etcd v3 client over etcd's HTTP/JSON gateway (the /v3/... endpoints every etcd 3.4 member
// serves on its client URL): ranges, puts, deletes, transactions, leases and watches. Keys and
// values are bytes (base64 on the wire); 64-bit numbers travel as JSON strings.
//
// Members: a list of client URLs. A call goes to the member that answered last; when it cannot
// be reached, times out, or answers that it has no leader or timed out (gRPC Unavailable or
// DeadlineExceeded), the call moves on to the next member, each try with its own
// `request_timeout`. A transaction is not retried once its request was sent (its outcome is
// unknown then: Unavailable says so), so a compare-and-swap never applies twice.
//
// Threading: every call is blocking and opens its own connection, so one client may be used by
// several threads (the member index is atomic). Never call it on a reactor thread. Cancel()
// ends every wait of every call at once (Cancelled) and for good: the owner's stop path.
#ifndef POSTHASTE_SERVER_PLACEMENT_ETCD_CLIENT_H_
#define POSTHASTE_SERVER_PLACEMENT_ETCD_CLIENT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/json.h"
#include "server/placement/http_client.h"

namespace posthaste::server::placement {

struct EtcdClientOptions {
  std::vector<HttpEndpoint> endpoints;
  absl::Duration request_timeout = absl::Seconds(2);  // per member tried
  size_t response_bytes_max = 64 * 1024 * 1024;       // a range of the whole directory
  size_t watch_message_bytes_max = 16 * 1024 * 1024;  // one watch response (a batch of events)
};

// Parses "--etcd_endpoints": comma-separated http:// URLs, at least one.
absl::StatusOr<std::vector<HttpEndpoint>> ParseEtcdEndpoints(std::string_view text);

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

struct EtcdRangeOptions {
  std::string range_end;      // empty: the key alone
  bool serializable = false;  // false: linearizable (needs a quorum)
  int64_t limit = 0;          // 0: no limit
  bool count_only = false;
  int64_t min_mod_revision = 0;  // 0: no bound
  bool keys_only = false;        // values left out
  // Sorted by mod_revision, newest first (with limit 1: the latest change in the range).
  bool newest_first = false;
};

struct EtcdRangeResult {
  int64_t revision = 0;  // the store's revision when the range was read
  std::vector<EtcdKeyValue> kvs;
  int64_t count = 0;
  bool more = false;
};

// The end of the range holding every key that starts with `prefix`.
std::string PrefixRangeEnd(std::string_view prefix);

// One comparison of a transaction's guard.
struct EtcdCompare {
  enum class Target : uint8_t { kModRevision, kValue };
  std::string key;
  Target target = Target::kModRevision;
  int64_t mod_revision = 0;  // kModRevision: 0 means "the key does not exist"
  std::string value;         // kValue

  static EtcdCompare ModRevisionIs(std::string key, int64_t revision) {
    return {.key = std::move(key), .target = Target::kModRevision, .mod_revision = revision};
  }
  static EtcdCompare ValueIs(std::string key, std::string value) {
    return {.key = std::move(key), .target = Target::kValue, .value = std::move(value)};
  }
};

// One operation of a transaction's branch.
struct EtcdOp {
  enum class Kind : uint8_t { kPut, kDelete };
  Kind kind = Kind::kPut;
  std::string key;
  std::string value;  // kPut
  int64_t lease = 0;  // kPut; 0: none

  static EtcdOp Put(std::string key, std::string value, int64_t lease = 0) {
    return {.kind = Kind::kPut, .key = std::move(key), .value = std::move(value), .lease = lease};
  }
  static EtcdOp Delete(std::string key) { return {.kind = Kind::kDelete, .key = std::move(key)}; }
};

struct EtcdTxnResult {
  bool succeeded = false;  // every compare held: the success branch ran
  int64_t revision = 0;
};

struct EtcdWatchEvent {
  bool is_delete = false;
  EtcdKeyValue kv;  // for a delete: the key and its mod_revision
};

struct EtcdWatchResponse {
  int64_t revision = 0;  // the store's revision as of this response
  bool created = false;
  bool canceled = false;
  int64_t compact_revision = 0;  // canceled because the start revision was compacted away
  std::string cancel_reason;
  std::vector<EtcdWatchEvent> events;
};

// One watch stream on one member. Thread-compatible.
class EtcdWatch {
 public:
  // The next response. DeadlineExceeded when none arrived by `deadline` (the stream stays
  // usable); any other error ends the stream (open a new one, from the next revision).
  absl::StatusOr<EtcdWatchResponse> Next(absl::Time deadline);
  const HttpEndpoint& endpoint() const { return endpoint_; }

 private:
  friend class EtcdClient;
  EtcdWatch(std::unique_ptr<HttpConnection> conn, HttpEndpoint endpoint, size_t message_bytes_max)
      : conn_(std::move(conn)),
        endpoint_(std::move(endpoint)),
        decoder_(HttpResponseLimits{.body_bytes_max = 0}),
        message_bytes_max_(message_bytes_max) {}

  std::unique_ptr<HttpConnection> conn_;
  HttpEndpoint endpoint_;
  HttpResponseDecoder decoder_;
  std::string buffer_;  // body bytes not yet parsed into a whole message
  size_t scanned_ = 0;  // buffer_ bytes already searched for a message's end
  size_t message_bytes_max_;
};

class EtcdClient {
 public:
  explicit EtcdClient(EtcdClientOptions options);
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  absl::StatusOr<EtcdRangeResult> Range(std::string_view key, const EtcdRangeOptions& options = {});
  // Returns the revision the put created.
  absl::StatusOr<int64_t> Put(std::string_view key, std::string_view value, int64_t lease = 0);
  // Deletes `key` (or [key, range_end)); returns how many keys went.
  absl::StatusOr<int64_t> Delete(std::string_view key, std::string_view range_end = {});
  absl::StatusOr<EtcdTxnResult> Txn(const std::vector<EtcdCompare>& compares,
                                    const std::vector<EtcdOp>& success,
                                    const std::vector<EtcdOp>& failure = {});
  // Compare-and-swap: `op` runs only if `key`'s mod_revision is still `expected_mod_revision`
  // (0: the key must not exist). Returns whether it ran; the store's revision in *revision.
  absl::StatusOr<bool> CompareAndSwap(std::string_view key, int64_t expected_mod_revision,
                                      const EtcdOp& op, int64_t* revision = nullptr);

  // A lease of `ttl_s` seconds; returns its id.
  absl::StatusOr<int64_t> LeaseGrant(int64_t ttl_s);
  // Renews the lease; returns its new TTL in seconds. NotFound once it has expired.
  absl::StatusOr<int64_t> LeaseKeepAlive(int64_t lease);
  // Revokes the lease (its keys go at once). NotFound if it had expired already.
  absl::Status LeaseRevoke(int64_t lease);

  // Watches [key, range_end) from `start_revision` (0: from now) on the first member that
  // accepts the stream, starting with the current one.
  absl::StatusOr<std::unique_ptr<EtcdWatch>> Watch(std::string_view key, std::string_view range_end,
                                                   int64_t start_revision);

  // The member calls go to first.
  const HttpEndpoint& current_endpoint() const;
  // Makes the next call start with the member after the current one (the watch's owner uses it
  // when a stream on the current member went quiet).
  void RotateEndpoint();
  void Cancel();

 private:
  // POSTs `json_body` to `path`, moving on to the next member on an unreachable or leaderless
  // one; `retry_after_send` false stops after the first member that received the request.
  absl::StatusOr<JsonValue> Call(std::string_view path, const std::string& json_body,
                                 bool retry_after_send);

  const EtcdClientOptions options_;
  std::atomic<size_t> current_{0};
  int cancel_fd_ = -1;  // an eventfd: readable once Cancel() ran
};

}  // namespace posthaste::server::placement

#endif  // POSTHASTE_SERVER_PLACEMENT_ETCD_CLIENT_H_
