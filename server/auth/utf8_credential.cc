#include "server/auth/utf8_credential.h"

#include <unicode/usprep.h>
#include <unicode/ustring.h>
#include <unicode/utypes.h>

#include <string>

#include "absl/status/status.h"
#include "base/utf8.h"

namespace posthaste::auth {
namespace {

bool IsPrintableAscii(std::string_view text) {
  for (char c : text) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

// ICU caches opened profiles; this one is opened once and kept for the process.
UStringPrepProfile* SaslPrepProfile() {
  static UStringPrepProfile* const profile = [] {
    UErrorCode status = U_ZERO_ERROR;
    UStringPrepProfile* opened = usprep_openByType(USPREP_RFC4013_SASLPREP, &status);
    return U_SUCCESS(status) ? opened : nullptr;
  }();
  return profile;
}

// The UTF-16 copies hold the password too: overwritten before their memory is freed.
void Wipe(std::u16string* s) {
  volatile char16_t* p = s->data();
  for (size_t i = 0; i < s->size(); ++i) p[i] = 0;
}

absl::Status Refusal(UErrorCode status) {
  switch (status) {
    case U_STRINGPREP_PROHIBITED_ERROR:
      return absl::InvalidArgumentError("a prohibited character (RFC 4013 section 2.3)");
    case U_STRINGPREP_UNASSIGNED_ERROR:
      return absl::InvalidArgumentError("an unassigned code point (RFC 4013 section 2.5)");
    case U_STRINGPREP_CHECK_BIDI_ERROR:
      return absl::InvalidArgumentError("mixed text directions (RFC 4013 section 2.4)");
    default:
      return absl::InvalidArgumentError(std::string("SASLprep failed: ") + u_errorName(status));
  }
}

}  // namespace

absl::StatusOr<std::string> NormalizeUtf8Credential(std::string_view text, Utf8CredentialUse use) {
  // SASLprep maps, normalises and refuses nothing in printable ASCII.
  if (IsPrintableAscii(text)) return std::string(text);
  if (!IsValidUtf8(text)) return absl::InvalidArgumentError("not valid UTF-8");
  if (text.size() > kUtf8CredentialBytesMax) {
    return absl::InvalidArgumentError("longer than kUtf8CredentialBytesMax");
  }
  UStringPrepProfile* const profile = SaslPrepProfile();
  if (profile == nullptr) return absl::InternalError("ICU has no SASLprep profile");

  UErrorCode status = U_ZERO_ERROR;
  std::u16string source(text.size(), u'\0');  // UTF-16 is never longer than UTF-8 in units
  int32_t source_units = 0;
  u_strFromUTF8(source.data(), static_cast<int32_t>(source.size()), &source_units, text.data(),
                static_cast<int32_t>(text.size()), &status);
  if (U_FAILURE(status)) {
    Wipe(&source);
    return absl::InvalidArgumentError("not valid UTF-8");
  }

  // NFKC can expand a string (U+FDFA becomes 18 code units): retry once with the size asked for.
  std::u16string prepared(static_cast<size_t>(source_units) * 4 + 16, u'\0');
  const int32_t options = use == Utf8CredentialUse::kQuery ? USPREP_ALLOW_UNASSIGNED : 0;
  UParseError parse_error;
  int32_t prepared_units =
      usprep_prepare(profile, source.data(), source_units, prepared.data(),
                     static_cast<int32_t>(prepared.size()), options, &parse_error, &status);
  if (status == U_BUFFER_OVERFLOW_ERROR) {
    status = U_ZERO_ERROR;
    Wipe(&prepared);
    prepared.assign(static_cast<size_t>(prepared_units), u'\0');
    prepared_units =
        usprep_prepare(profile, source.data(), source_units, prepared.data(),
                       static_cast<int32_t>(prepared.size()), options, &parse_error, &status);
  }
  Wipe(&source);
  if (U_FAILURE(status)) {
    Wipe(&prepared);
    return Refusal(status);
  }

  std::string out(static_cast<size_t>(prepared_units) * 3, '\0');
  int32_t out_bytes = 0;
  u_strToUTF8(out.data(), static_cast<int32_t>(out.size()), &out_bytes, prepared.data(),
              prepared_units, &status);
  Wipe(&prepared);
  if (U_FAILURE(status)) return Refusal(status);
  out.resize(static_cast<size_t>(out_bytes));
  return out;
}

}  // namespace posthaste::auth
