// Fuzzes the stored-form conversion (bytes from MTAs and imported files), the wire-form check
// (CheckWireForm accepts exactly the stored forms) and the address and UIDL validators, checking
// the invariants RETR, TOP, LIST and Check() rely on.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "storage/message_format.h"

namespace {

void Require(bool condition) {
  if (!condition) std::abort();
}

// Removes the dot-stuffing: the CRLF form whose length is the POP3 size.
std::string Unstuff(std::string_view stored) {
  std::string out;
  bool line_start = true;
  for (size_t i = 0; i < stored.size(); ++i) {
    if (line_start && stored[i] == '.') {
      Require(i + 1 < stored.size() && stored[i + 1] == '.');
      ++i;
    }
    out.push_back(stored[i]);
    line_start = stored[i] == '\n';
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace posthaste::storage;
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  const NormalizedMessage m = NormalizeForStorage(input);
  const std::string& s = m.stored;
  Require(s.size() >= 2 && s.compare(s.size() - 2, 2, "\r\n") == 0);
  Require(("\r\n" + s).find("\r\n.\r\n") == std::string::npos);  // never the terminator
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\r') Require(i + 1 < s.size() && s[i + 1] == '\n');
    if (s[i] == '\n') Require(i > 0 && s[i - 1] == '\r');
  }
  Require(m.header_length <= s.size());
  const std::string unstuffed = Unstuff(s);
  Require(unstuffed.size() == m.pop3_size);
  Require(m.pop3_size >= size);
  // Normalising the CRLF form again changes nothing.
  Require(NormalizeForStorage(unstuffed).stored == s);
  // The stored form is wire form, with the same sizes (what LMTP's wire-form delivery stores).
  const auto stored_info = CheckWireForm(s);
  Require(stored_info.ok() && stored_info->pop3_size == m.pop3_size &&
          stored_info->header_length == m.header_length);
  // Wire form is accepted only where it is the stored form of its own unstuffed text.
  if (const auto info = CheckWireForm(input); info.ok()) {
    const NormalizedMessage again = NormalizeForStorage(Unstuff(input));
    Require(again.stored == input && again.pop3_size == info->pop3_size &&
            again.header_length == info->header_length);
  }

  auto address = ParseAddress(input);
  if (address.ok()) {
    // Both forms are valid addresses with the same canonical form; canonicalising is
    // idempotent and changes nothing but the case of letters.
    for (const std::string& form : {address->display, address->canonical}) {
      auto again = ParseAddress(form);
      Require(again.ok() && again->canonical == address->canonical);
    }
    Require(ParseAddress(address->display)->display == address->display);
    Require(address->canonical.size() == address->display.size());
    Require(address->display.size() <= kMaxAddressLength);
    for (size_t i = 0; i < address->display.size(); ++i) {
      const char d = address->display[i];
      const char c = address->canonical[i];
      Require(c == d || (d >= 'A' && d <= 'Z' && c == d - 'A' + 'a'));
      Require(!(c >= 'A' && c <= 'Z'));
    }
  }
  const bool uidl_ok = ValidateUidl(input).ok();
  Require(!uidl_ok || (size >= 1 && size <= posthaste::kUidlBytesMax));
  return 0;
}
