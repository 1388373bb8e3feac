// MailboxSnapshot: the immutable view of one maildrop that a POP3 session works on, as a
// struct of arrays: per message its POP3 size in octets (the stored, CRLF, dot-stuffed form,
// without the terminating ".\r\n"), its UIDL string, and an opaque 64-bit reference that only
// the driver interprets (e.g. a key into its storage index). All UIDLs share one string.
//
// Ownership: built once by the driver or storage adapter, then shared read-only
// (std::shared_ptr<const MailboxSnapshot>) with the session, so handing over a 10,000-message
// snapshot is one pointer copy. Thread-safe for concurrent reads once built; the Builder is
// thread-compatible.
#ifndef POSTHASTE_SERVER_POP3_MAILBOX_SNAPSHOT_H_
#define POSTHASTE_SERVER_POP3_MAILBOX_SNAPSHOT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "base/uidl.h"  // IsValidUidl, which Builder::Add applies
#include "server/pop3/message_number.h"

namespace posthaste::pop3 {

class MailboxSnapshot {
 public:
  // A bound on messages per maildrop; Builder::Add refuses more.
  static constexpr uint32_t kMessagesMax = 10'000'000;

  class Builder {
   public:
    void Reserve(uint32_t messages, size_t uidl_bytes);
    // Appends message index `count()`. Fails with InvalidArgument for a UIDL that is empty,
    // longer than 70 octets or has an octet outside 0x21..0x7E (it would corrupt the UIDL
    // listing), and with ResourceExhausted past kMessagesMax. Nothing is added on failure.
    absl::Status Add(uint64_t size_octets, std::string_view uidl, uint64_t ref);
    std::shared_ptr<const MailboxSnapshot> Build() &&;

   private:
    std::vector<uint64_t> sizes_;
    std::vector<uint64_t> refs_;
    std::vector<uint32_t> uidl_ends_;
    std::string uidls_;
  };

  uint32_t count() const { return static_cast<uint32_t>(sizes_.size()); }
  uint64_t total_octets() const { return total_octets_; }
  // REQUIRES: index.value() < count() for the three accessors below.
  uint64_t size_octets(MessageIndex index) const { return sizes_[index.value()]; }
  uint64_t ref(MessageIndex index) const { return refs_[index.value()]; }
  std::string_view uidl(MessageIndex index) const {
    const uint32_t i = index.value();
    const uint32_t begin = i == 0 ? 0 : uidl_ends_[i - 1];
    return std::string_view(uidls_).substr(begin, uidl_ends_[i] - begin);
  }

 private:
  MailboxSnapshot() = default;

  std::vector<uint64_t> sizes_;
  std::vector<uint64_t> refs_;
  std::vector<uint32_t> uidl_ends_;  // uidl i is uidls_[uidl_ends_[i-1], uidl_ends_[i])
  std::string uidls_;
  uint64_t total_octets_ = 0;
};

}  // namespace posthaste::pop3

#endif  // POSTHASTE_SERVER_POP3_MAILBOX_SNAPSHOT_H_
