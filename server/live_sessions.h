// LiveSessions: the admin API's SessionDirectory (server/admin/session_directory.h) over the
// POP3 service's shards. Each question goes to every shard (or to the one named) as a closure
// posted to its inbox; the shard answers from its own connection table on its own thread, so
// nothing on the session path takes a lock or shares an object. The caller waits up to a
// deadline; a shard that does not answer in time is left out and counted
// (LiveSessionList::shards_unanswered), and a request that a stopping shard destroys unrun ends
// the wait for it at once (as in server/metrics_gather.h).
//
// Threading: List and End from any thread but a shard's (the admin listener's workers),
// concurrently. Ownership: the Pop3Service and the Reactor must outlive this object; List and
// End are called only while the reactor runs.
#ifndef POSTHASTE_SERVER_LIVE_SESSIONS_H_
#define POSTHASTE_SERVER_LIVE_SESSIONS_H_

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "server/admin/session_directory.h"
#include "server/pop3_service/pop3_shard.h"
#include "server/reactor/shard.h"

namespace posthaste::server {

class LiveSessions final : public admin::SessionDirectory {
 public:
  static constexpr std::chrono::milliseconds kWait{1000};
  // The most sessions one List returns (a filter narrows it); more sets `truncated`.
  static constexpr size_t kListedSessionsMax = 10000;

  LiveSessions(Pop3Service* service, reactor::Reactor* reactor,
               std::chrono::milliseconds wait = kWait)
      : service_(service), reactor_(reactor), wait_(wait) {}

  absl::StatusOr<admin::LiveSessionList> List(const admin::LiveSessionFilter& filter) override;
  absl::Status End(uint32_t shard, uint64_t connection) override;

 private:
  Pop3Service* const service_;
  reactor::Reactor* const reactor_;
  const std::chrono::milliseconds wait_;
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_LIVE_SESSIONS_H_
