#include "server/lmtp_service/lmtp_counters.h"

namespace posthaste::server {

metrics::LmtpResult LmtpResultLabelOf(lmtp::LmtpDeliveryResult::Code code) {
  using Code = lmtp::LmtpDeliveryResult::Code;
  switch (code) {
    case Code::kDelivered:
      return metrics::LmtpResult::kDelivered;
    case Code::kOverQuotaTemp:
    case Code::kOverQuotaPerm:
      return metrics::LmtpResult::kOverQuota;
    case Code::kTempFailure:
      return metrics::LmtpResult::kTempFailure;
    case Code::kPermFailure:
    case Code::kTooBig:
      return metrics::LmtpResult::kPermFailure;
  }
  return metrics::LmtpResult::kTempFailure;
}

}  // namespace posthaste::server
