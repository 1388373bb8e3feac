#include "server/transport/transport.h"

namespace posthaste::server::transport {

std::string_view CloseReasonName(CloseReason reason) {
  switch (reason) {
    case CloseReason::kClosed:
      return "closed";
    case CloseReason::kAborted:
      return "aborted";
    case CloseReason::kPeerReset:
      return "peer_reset";
    case CloseReason::kSendStalled:
      return "send_stalled";
    case CloseReason::kTlsFailed:
      return "tls_failed";
    case CloseReason::kResourceFailed:
      return "resource_failed";
  }
  return "unknown";
}

}  // namespace posthaste::server::transport
