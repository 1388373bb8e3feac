// A real etcd cluster for tests: `members` etcd processes (Debian's etcd-server, found on PATH
// or /usr/bin) on 127.0.0.1 with their own client and peer ports and data directories under
// $TEST_TMPDIR. Each member dies with the test process (PR_SET_PDEATHSIG) and is killed by the
// destructor. Short heartbeat and election timeouts so a lost leader is replaced in about a
// second. Test-only.
//
// Threading: one thread (the test's) drives it.
#ifndef POSTHASTE_SERVER_PLACEMENT_TESTING_ETCD_CLUSTER_H_
#define POSTHASTE_SERVER_PLACEMENT_TESTING_ETCD_CLUSTER_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/placement/http_client.h"

namespace posthaste::server::placement::testing {

class EtcdCluster {
 public:
  // Starts the members and waits (up to `start_timeout`) until a linearizable read succeeds.
  // FailedPrecondition when no etcd binary is installed (tools/lib/deps.sh installs it).
  static absl::StatusOr<std::unique_ptr<EtcdCluster>> Start(
      int members = 3, absl::Duration start_timeout = absl::Seconds(30));
  ~EtcdCluster();

  const std::vector<HttpEndpoint>& endpoints() const { return endpoints_; }
  // "http://127.0.0.1:P1,http://127.0.0.1:P2,..." (the --etcd_endpoints form).
  std::string EndpointsFlag() const;

  // SIGKILLs member `i` and reaps it.
  void Kill(int i);
  // Restarts a killed member on its data directory and ports.
  absl::Status Restart(int i);
  // Waits until a linearizable read through any member succeeds.
  absl::Status WaitHealthy(absl::Duration timeout);

 private:
  struct Member {
    std::string name;
    uint16_t client_port = 0;
    uint16_t peer_port = 0;
    std::string data_dir;
    pid_t pid = -1;
  };
  EtcdCluster() = default;
  absl::Status Spawn(Member& m);

  std::string binary_;
  std::string initial_cluster_;
  std::vector<Member> members_;
  std::vector<HttpEndpoint> endpoints_;
};

}  // namespace posthaste::server::placement::testing

#endif  // POSTHASTE_SERVER_PLACEMENT_TESTING_ETCD_CLUSTER_H_
