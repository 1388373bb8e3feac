// The stored form of a message and the validation of addresses and UIDLs: pure functions with
// no I/O, shared by MailStore and by anything that needs the same rules (CLI, LMTP).
// Thread-safe.
#ifndef POSTHASTE_STORAGE_MESSAGE_FORMAT_H_
#define POSTHASTE_STORAGE_MESSAGE_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/uidl.h"  // kUidlBytesMax, IsValidUidl: the one UIDL rule

namespace posthaste::storage {

inline constexpr size_t kMaxAddressLength = 254;  // RFC 5321 path limit

struct NormalizedMessage {
  std::string stored;          // CRLF endings, dot-stuffed, ends in CRLF, no terminator
  uint64_t pop3_size = 0;      // octets with CRLF endings before dot-stuffing
  uint64_t header_length = 0;  // stored bytes through the blank line ending the headers
};

// Bare LF and bare CR become CRLF; a final CRLF is added if missing (an empty message becomes
// one empty line); lines starting with '.' get a second '.'. NUL, 8-bit bytes and long lines
// pass through unchanged. header_length covers the stored bytes through the first empty line,
// or all of them when there is none.
NormalizedMessage NormalizeForStorage(std::string_view raw);

// What CheckWireForm learns about a message already in the stored form.
struct WireFormInfo {
  uint64_t pop3_size = 0;      // as NormalizedMessage::pop3_size
  uint64_t header_length = 0;  // as NormalizedMessage::header_length
};

// Checks that `wire` is already in the stored form NormalizeForStorage produces: not empty,
// CRLF line ends only (no bare CR, no bare LF), ending in CRLF, and every line that begins
// with '.' stuffed (begins with ".."). Such bytes are exactly the fixed points of normalising:
// NormalizeForStorage(wire with one leading dot removed from each such line).stored == wire,
// with the POP3 size and header length returned here. Anything else is kNotWireForm
// (storage/store_error.h) naming the first offending line. Reads `wire` once, copies nothing.
absl::StatusOr<WireFormInfo> CheckWireForm(std::string_view wire);

// A valid address in its two forms. Addresses are compared case-insensitively (ASCII folding
// of both parts; a valid local part is printable ASCII, so there is nothing else to fold):
//   canonical  local@domain, both parts lowercased. Two addresses name the same account exactly
//              when their canonical forms are equal; the store keys accounts by it.
//   display    local@domain as given, with only the domain lowercased: the case the user chose,
//              kept for output (user list, the admin API).
struct ParsedAddress {
  std::string canonical;
  std::string display;
};

// Validates `address` and returns both forms. Rejects, with InvalidArgument: no or several
// '@', an empty part, characters outside printable ASCII or among ` "(),:;<>[\]`, a misplaced
// '.', a domain that is not dot-separated LDH labels, over 254 octets (local part over 64).
absl::StatusOr<ParsedAddress> ParseAddress(std::string_view address);
// ParseAddress(address)->canonical: the one canonicalisation rule for addresses.
absl::StatusOr<std::string> CanonicalAddress(std::string_view address);
// The domain lowercased; InvalidArgument unless dot-separated LDH labels of at most 63 octets,
// 253 in all.
absl::StatusOr<std::string> NormalizeDomain(std::string_view domain);

// OK when 1-70 characters, each in 0x21-0x7E; InvalidArgument otherwise.
absl::Status ValidateUidl(std::string_view uidl);

}  // namespace posthaste::storage

#endif  // POSTHASTE_STORAGE_MESSAGE_FORMAT_H_
