#include "server/pop3_service/redownload_watch.h"

namespace posthaste::server {

void RedownloadWatch::MaildropOpened(uint32_t messages, uint64_t octets) {
  messages_ = messages;
  mailbox_octets_ = octets;
  if (Watching()) seen_.assign(messages, false);
}

bool RedownloadWatch::Retrieved(uint32_t index, uint64_t octets) {
  if (!Watching() || index >= seen_.size() || seen_[index]) return false;
  seen_[index] = true;
  ++retrieved_;
  retrieved_octets_ += octets;
  if (alarmed_) return false;
  // retrieved / messages > percent / 100, in integers (no rounding at the boundary).
  if (uint64_t{retrieved_} * 100 <= uint64_t{messages_} * options_.percent) return false;
  alarmed_ = true;
  return true;
}

}  // namespace posthaste::server
