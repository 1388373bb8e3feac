#include "server/lmtp_service/store_backend.h"

#include <string>
#include <utility>

#include "base/log.h"
#include "server/lmtp_service/store_verdicts.h"

namespace posthaste::server {

using lmtp::LmtpDeliveryResult;
using lmtp::LmtpRecipientVerdict;

// The client pointer in each reply is safe: an LmtpBackendClient lives until every accepted
// job has been answered (lmtp_backend.h).

bool StoreLmtpBackend::StartCheck(LmtpBackendClient& client, std::string_view address,
                                  std::optional<uint64_t> declared_size) {
  return shard_.OffloadIo([client = &client, store = &store_, address = std::string(address),
                           declared_size,
                           permanent = over_quota_permanent_]() -> reactor::OffloadPool::Reply {
    LmtpRecipientVerdict verdict =
        RecipientVerdict(store->GetUsage(address), declared_size, permanent);
    return [client, verdict = std::move(verdict)]() mutable {
      client->OnRecipientChecked(std::move(verdict));
    };
  });
}

bool StoreLmtpBackend::StartCopy(LmtpBackendClient& client, size_t index, std::string_view mailbox,
                                 std::string_view message) {
  return shard_.OffloadIo([client = &client, store = &store_, index, mailbox = std::string(mailbox),
                           message,
                           permanent = over_quota_permanent_]() -> reactor::OffloadPool::Reply {
    absl::Status status =
        store->Deliver(mailbox, message, {.input = storage::MessageInput::kWireForm}).status();
    if (!status.ok() && !IsQuotaError(status)) {
      LogEvent(LogLevel::kWarning, "lmtp delivery failed",
               {{"user", mailbox}, {"error", status.ToString()}});
    }
    LmtpDeliveryResult result = DeliveryOutcome(status, permanent);
    return [client, index, result = std::move(result)]() mutable {
      client->OnCopyStored(index, std::move(result));
    };
  });
}

}  // namespace posthaste::server
