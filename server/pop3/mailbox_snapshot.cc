#include "server/pop3/mailbox_snapshot.h"

#include <cstdint>
#include <cstring>
#include <utility>

namespace posthaste::pop3 {

bool MailboxSnapshot::IsValidUidl(std::string_view uidl) {
  if (uidl.empty() || uidl.size() > kUidlBytesMax) return false;
  // Eight bytes at a time (opening a big maildrop checks every UIDL): a byte below 0x21 or
  // above 0x7E sets its high bit in one of the two words (the "has less / has more than n"
  // tests of Bit Twiddling Hacks).
  constexpr uint64_t kOnes = 0x0101010101010101ULL;
  constexpr uint64_t kHighBits = 0x8080808080808080ULL;
  size_t i = 0;
  for (; i + 8 <= uidl.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, uidl.data() + i, 8);
    const uint64_t below = (w - kOnes * 0x21) & ~w & kHighBits;
    const uint64_t above = ((w + kOnes * (127 - 0x7e)) | w) & kHighBits;
    if ((below | above) != 0) return false;
  }
  for (; i < uidl.size(); ++i) {
    const char c = uidl[i];
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

void MailboxSnapshot::Builder::Reserve(uint32_t messages, size_t uidl_bytes) {
  sizes_.reserve(messages);
  refs_.reserve(messages);
  uidl_ends_.reserve(messages);
  uidls_.reserve(uidl_bytes);
}

absl::Status MailboxSnapshot::Builder::Add(uint64_t size_octets, std::string_view uidl,
                                           uint64_t ref) {
  if (!IsValidUidl(uidl)) {
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
