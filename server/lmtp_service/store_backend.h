// StoreLmtpBackend: the server's LmtpBackend. A recipient check is MailStore::GetUsage and a
// copy is MailStore::Deliver, each run on the shard's I/O offload pool (they wait on the disk);
// the result comes back to the shard as a message and goes to the adapter that asked. Copies
// of one delivery run concurrently, so their fdatasyncs are shared by the store's group commit.
//
// Threading: Start* on the shard's thread; the jobs on pool threads; results on the shard's
// thread. Ownership: the LMTP shard owns it; the store and the shard outlive it.
#ifndef POSTHASTE_SERVER_LMTP_SERVICE_STORE_BACKEND_H_
#define POSTHASTE_SERVER_LMTP_SERVICE_STORE_BACKEND_H_

#include "server/lmtp_service/lmtp_backend.h"
#include "server/reactor/shard.h"
#include "storage/mail_store.h"

namespace posthaste::server {

class StoreLmtpBackend final : public LmtpBackend {
 public:
  // `over_quota_permanent`: --lmtp_over_quota=permanent (552 5.2.2 rather than 452 4.2.2).
  StoreLmtpBackend(reactor::Shard& shard, storage::MailStore& store, bool over_quota_permanent)
      : shard_(shard), store_(store), over_quota_permanent_(over_quota_permanent) {}

  bool StartCheck(LmtpBackendClient& client, std::string_view address,
                  std::optional<uint64_t> declared_size) override;
  bool StartCopy(LmtpBackendClient& client, size_t index, std::string_view mailbox,
                 std::string_view message) override;

 private:
  reactor::Shard& shard_;
  storage::MailStore& store_;
  const bool over_quota_permanent_;
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_LMTP_SERVICE_STORE_BACKEND_H_
