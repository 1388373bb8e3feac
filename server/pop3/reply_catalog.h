// The POP3 session's reply texts in the languages of the LANG command (RFC 6856 section 3):
// which languages there are, how a client's language range picks one, and the translation of
// each English text. Only the human-readable part of a reply is translated: never the status
// (+OK, -ERR), a response code ([AUTH], [SYS/TEMP]...), a number or name a client parses, nor
// the lines of a multi-line listing.
//
// Texts are keyed by their English wording, so a reply written in server/pop3/session.cc is
// the key itself; reply_catalog_test checks that every reply text in session.cc has an entry
// and that every entry has a translation in every language. A text may hold placeholders
// %1..%9, filled by FormatReplyText.
//
// Pure functions over constant tables; thread-safe.
#ifndef POSTHASTE_SERVER_POP3_REPLY_CATALOG_H_
#define POSTHASTE_SERVER_POP3_REPLY_CATALOG_H_

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace posthaste::pop3 {

// kDefault is "i-default" (RFC 2277): the language before any LANG command, English text.
enum class ReplyLanguage : uint8_t { kDefault, kEnglish, kGerman };
inline constexpr size_t kReplyLanguageCount = 3;

struct LanguageListing {
  ReplyLanguage language;
  std::string_view tag;          // RFC 5646 language tag
  std::string_view description;  // in the language itself, UTF-8
};
// In the order of the LANG listing.
std::span<const LanguageListing> SupportedLanguages();
std::string_view LanguageTag(ReplyLanguage language);

// RFC 4647 section 2.1 basic language range: 1*8ALPHA *("-" 1*8alphanum), or "*".
bool IsBasicLanguageRange(std::string_view range);
// The supported language a basic range picks: RFC 4647 section 3.4 lookup (any case; the
// range is cut one subtag at a time from the end until a tag matches: "de-AT" picks "de").
// nullopt for "*" (the caller's preferred language) and for a range nothing matches.
std::optional<ReplyLanguage> LookupLanguage(std::string_view range);

// The text for `english` in `language`; `english` itself when the language's text is English
// or when the catalog has no entry (reply_catalog_test keeps the latter from happening).
std::string_view LocalizeReplyText(ReplyLanguage language, std::string_view english);

// Appends the localized `english` template to `out` with %1..%9 replaced by args[0..8].
void FormatReplyText(ReplyLanguage language, std::string_view english,
                     std::initializer_list<std::string_view> args, std::string* out);

struct ReplyTranslation {
  std::string_view english;
  std::string_view german;
};
std::span<const ReplyTranslation> ReplyCatalogForTest();

}  // namespace posthaste::pop3

#endif  // POSTHASTE_SERVER_POP3_REPLY_CATALOG_H_
