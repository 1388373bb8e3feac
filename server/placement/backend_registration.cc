#include "server/placement/backend_registration.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/log.h"

namespace posthaste::server::placement {

BackendRegistration::BackendRegistration(EtcdClientOptions client_options,
                                         BackendRegistrationOptions options)
    : client_options_(client_options),
      options_(std::move(options)),
      key_(BackendKey(options_.prefix, options_.backend.name)),
      value_(EncodeBackend(options_.backend)),
      client_(std::move(client_options)) {}

BackendRegistration::~BackendRegistration() { Withdraw().IgnoreError(); }

void BackendRegistration::Start() {
  thread_ = std::thread([this] { Run(); });
}

absl::Status BackendRegistration::Register() {
  auto lease = client_.LeaseGrant(options_.ttl_s);
  if (!lease.ok()) return lease.status();
  auto put = client_.Put(key_, value_, *lease);
  if (!put.ok()) {
    client_.LeaseRevoke(*lease).IgnoreError();
    return put.status();
  }
  lease_.store(*lease);
  LogEvent(LogLevel::kInfo, "registered in the placement directory",
           {{"key", key_},
            {"lease", std::to_string(*lease)},
            {"ttl_s", std::to_string(options_.ttl_s)}});
  return absl::OkStatus();
}

void BackendRegistration::Run() {
  const absl::Duration renew_every =
      std::max(absl::Milliseconds(200), absl::Seconds(options_.ttl_s) / 3);
  absl::Status last_error;
  while (!stopping_.HasBeenNotified()) {
    absl::Status s;
    const int64_t lease = lease_.load();
    if (lease == 0) {
      s = Register();
    } else {
      auto ttl = client_.LeaseKeepAlive(lease);
      s = ttl.status();
      if (absl::IsNotFound(s)) {
        // Expired while etcd could not be reached: the entry is gone; register again.
        lease_.store(0);
        LogEvent(LogLevel::kWarning, "placement directory lease expired; registering again",
                 {{"key", key_}});
        continue;
      }
    }
    if (absl::IsCancelled(s)) return;
    if (!s.ok() && s.message() != last_error.message()) {
      LogEvent(LogLevel::kWarning, "placement directory registration: etcd call failed",
               {{"key", key_}, {"error", std::string(s.message())}});
    }
    last_error = s;
    stopping_.WaitForNotificationWithTimeout(s.ok() ? renew_every : absl::Milliseconds(500));
  }
}

absl::Status BackendRegistration::Withdraw() {
  if (withdrawn_) return absl::OkStatus();
  withdrawn_ = true;
  stopping_.Notify();
  if (thread_.joinable()) {
    client_.Cancel();
    thread_.join();
  }
  const int64_t lease = lease_.exchange(0);
  if (lease == 0) return absl::OkStatus();
  // The thread's calls were cancelled; the revoke needs a client of its own.
  EtcdClient revoker(client_options_);
  absl::Status revoked = revoker.LeaseRevoke(lease);
  if (absl::IsNotFound(revoked)) revoked = absl::OkStatus();  // it had expired: gone already
  LogEvent(
      revoked.ok() ? LogLevel::kInfo : LogLevel::kWarning, "withdrawn from the placement directory",
      {{"key", key_}, {"error", revoked.ok() ? std::string() : std::string(revoked.message())}});
  return revoked;
}

}  // namespace posthaste::server::placement
