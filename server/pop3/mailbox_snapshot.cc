#include "server/pop3/mailbox_snapshot.h"

#include <cstdint>
#include <cstring>
#include <utility>

#include "base/uidl.h"

namespace posthaste::pop3 {

void MailboxSnapshot::Builder::Reserve(uint32_t messages, size_t uidl_bytes) {
  sizes_.reserve(messages);
  refs_.reserve(messages);
  uidl_ends_.reserve(messages);
  uidls_.reserve(uidl_bytes);
}

absl::Status MailboxSnapshot::Builder::Add(uint64_t size_octets, std::string_view uidl,
                                           uint64_t ref) {
  if (!IsValidUidl(uidl)) {  // base/uidl.h
    return absl::InvalidArgumentError("UIDL must be 1-70 octets in 0x21..0x7E");
  }
  if (sizes_.size() >= kMessagesMax) {
    return absl::ResourceExhaustedError("too many messages in one snapshot");
  }
  sizes_.push_back(size_octets);
  refs_.push_back(ref);
  uidls_.append(uidl);
  uidl_ends_.push_back(static_cast<uint32_t>(uidls_.size()));
  return absl::OkStatus();
}

std::shared_ptr<const MailboxSnapshot> MailboxSnapshot::Builder::Build() && {
  std::shared_ptr<MailboxSnapshot> snapshot(new MailboxSnapshot());
  snapshot->total_octets_ = 0;
  for (uint64_t size : sizes_) snapshot->total_octets_ += size;
  snapshot->sizes_ = std::move(sizes_);
  snapshot->refs_ = std::move(refs_);
  snapshot->uidl_ends_ = std::move(uidl_ends_);
  snapshot->uidls_ = std::move(uidls_);
  return snapshot;
}

}  // namespace posthaste::pop3
