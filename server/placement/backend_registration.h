// BackendRegistration: a backend's own entry in the directory, backends/<name> (directory.h),
// held under an etcd lease. Start() writes it and keeps the lease alive from its own thread
// (every ttl/3); if the lease is lost (etcd unreachable longer than the TTL) the thread grants
// a new one and writes the entry again once etcd answers. Withdraw() (the drain) stops the
// thread and revokes the lease, so the entry goes at once; a killed process's entry goes when
// its lease expires, `ttl_s` seconds later.
//
// Threading: Start and Withdraw from one thread (serve's main thread); the destructor
// withdraws.
#ifndef POSTHASTE_SERVER_PLACEMENT_BACKEND_REGISTRATION_H_
#define POSTHASTE_SERVER_PLACEMENT_BACKEND_REGISTRATION_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/placement/directory.h"
#include "server/placement/directory_codec.h"
#include "server/placement/etcd_client.h"

namespace posthaste::server::placement {

struct BackendRegistrationOptions {
  std::string prefix = std::string(kDefaultDirectoryPrefix);
  BackendEndpoint backend;  // name and ip required
  int64_t ttl_s = 5;
};

class BackendRegistration {
 public:
  BackendRegistration(EtcdClientOptions client_options, BackendRegistrationOptions options);
  ~BackendRegistration();
  BackendRegistration(const BackendRegistration&) = delete;
  BackendRegistration& operator=(const BackendRegistration&) = delete;

  // Starts the keep-alive thread, which registers as soon as etcd answers (a backend starts
  // serving even while etcd is down). Call once.
  void Start();
  // Stops renewing and revokes the lease (within one request timeout per member). Idempotent.
  absl::Status Withdraw();

  bool registered() const { return lease_.load() != 0; }
  int64_t lease_for_test() const { return lease_.load(); }

 private:
  void Run();
  absl::Status Register();

  const EtcdClientOptions client_options_;
  const BackendRegistrationOptions options_;
  const std::string key_;
  const std::string value_;
  EtcdClient client_;
  std::atomic<int64_t> lease_{0};  // 0: not registered
  absl::Notification stopping_;
  std::thread thread_;
  bool withdrawn_ = false;
};

}  // namespace posthaste::server::placement

#endif  // POSTHASTE_SERVER_PLACEMENT_BACKEND_REGISTRATION_H_
