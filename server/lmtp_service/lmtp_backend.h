// LmtpBackend: where the LMTP adapter (lmtp_adapter.h) sends the slow work its session asks
// for (kCheckRecipient, kDeliver), and LmtpBackendClient: how the results come back. The
// server's backend is StoreLmtpBackend (store_backend.h: the MailStore on the I/O offload pool);
// adapter tests use FakeLmtpBackend (testing/fake_backend.h).
//
// Contract:
//  - Results come back later on the shard's thread, never from inside a Start* call.
//  - Every Start* that returned true is answered exactly once, also after the connection has
//    closed: the client is not destroyed before (its session holds the message the copies read).
//  - StartCopy's `mailbox` and `message` are views into the session: `message` is the one
//    message buffer every copy of a delivery reads (never copied per recipient). Both stay
//    valid until that copy has been answered.
//  - Copies of one delivery may run concurrently and come back in any order; `index` (the
//    recipient's position in the delivery) keys each result.
//
// Threading: the shard's thread. Ownership: the shard owns the backend; it outlives its clients.
#ifndef POSTHASTE_SERVER_LMTP_SERVICE_LMTP_BACKEND_H_
#define POSTHASTE_SERVER_LMTP_SERVICE_LMTP_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "server/lmtp/session.h"

namespace posthaste::server {

class LmtpBackendClient {
 public:
  virtual ~LmtpBackendClient() = default;
  virtual void OnRecipientChecked(lmtp::LmtpRecipientVerdict verdict) = 0;
  virtual void OnCopyStored(size_t index, lmtp::LmtpDeliveryResult result) = 0;
};

class LmtpBackend {
 public:
  virtual ~LmtpBackend() = default;
  // Checks RCPT `address` (with MAIL FROM's SIZE=, if declared). False: the work could not
  // start (the offload queue is full); no result follows.
  virtual bool StartCheck(LmtpBackendClient& client, std::string_view address,
                          std::optional<uint64_t> declared_size) = 0;
  // Stores one copy of `message` in `mailbox`. False: as StartCheck.
  virtual bool StartCopy(LmtpBackendClient& client, size_t index, std::string_view mailbox,
                         std::string_view message) = 0;
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_LMTP_SERVICE_LMTP_BACKEND_H_
