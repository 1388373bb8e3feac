// Distinct types for the two numbering schemes a POP3 session uses (docs/CONTRIBUTING.md,
// "Naming"):
//   MessageNumber  1-based, as it appears on the wire ("RETR 3").
//   MessageIndex   0-based, an index into a MailboxSnapshot.
// Converting between them is explicit. Both are trivially copyable values; thread-compatible.
#ifndef POSTHASTE_SERVER_POP3_MESSAGE_NUMBER_H_
#define POSTHASTE_SERVER_POP3_MESSAGE_NUMBER_H_

#include <compare>
#include <cstdint>

namespace posthaste::pop3 {

class MessageIndex {
 public:
  constexpr MessageIndex() = default;
  constexpr explicit MessageIndex(uint32_t value) : value_(value) {}
  constexpr uint32_t value() const { return value_; }
  constexpr auto operator<=>(const MessageIndex&) const = default;

 private:
  uint32_t value_ = 0;
};

class MessageNumber {
 public:
  // REQUIRES: value >= 1.
  constexpr explicit MessageNumber(uint32_t value) : value_(value) {}
  static constexpr MessageNumber FromIndex(MessageIndex index) {
    return MessageNumber(index.value() + 1);
  }
  constexpr uint32_t value() const { return value_; }
  constexpr MessageIndex ToIndex() const { return MessageIndex(value_ - 1); }
  constexpr auto operator<=>(const MessageNumber&) const = default;

 private:
  uint32_t value_;
};

}  // namespace posthaste::pop3

#endif  // POSTHASTE_SERVER_POP3_MESSAGE_NUMBER_H_
