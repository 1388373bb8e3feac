#include "server/pop3/reply_catalog.h"

#include <algorithm>
#include <array>

#include "absl/container/flat_hash_map.h"

namespace posthaste::pop3 {
namespace {

constexpr LanguageListing kLanguages[] = {
    {ReplyLanguage::kDefault, "i-default", "Default language"},
    {ReplyLanguage::kEnglish, "en", "English"},
    {ReplyLanguage::kGerman, "de", "Deutsch"},
};
static_assert(std::size(kLanguages) == kReplyLanguageCount);

// Every human-readable text the session writes after a status and response code. Keep the
// English exactly as session.cc writes it (reply_catalog_test compares them).
constexpr ReplyTranslation kCatalog[] = {
    // Greeting-time and connection-level refusals.
    {"Server at capacity, try again later", "Server ausgelastet, später erneut versuchen"},
    {"Server busy, try again later", "Server beschäftigt, später erneut versuchen"},
    {"Too many connections from your address", "Zu viele Verbindungen von Ihrer Adresse"},
    {"Disconnected: no login in time",
     "Verbindung getrennt: keine Anmeldung in der vorgesehenen Zeit"},
    {"Disconnected for inactivity", "Verbindung wegen Inaktivität getrennt"},
    {"PROXY header not accepted from this address",
     "PROXY-Kopfzeile von dieser Adresse nicht angenommen"},
    // Grammar.
    {"Line too long", "Zeile zu lang"},
    {"Authentication line too long", "Anmeldezeile zu lang"},
    {"Lines must end with CRLF, closing connection",
     "Zeilen müssen mit CRLF enden, Verbindung wird geschlossen"},
    {"Too many bad commands, closing connection",
     "Zu viele fehlerhafte Befehle, Verbindung wird geschlossen"},
    {"Syntax error: control character in command", "Syntaxfehler: Steuerzeichen im Befehl"},
    {"Syntax error: arguments are separated by a single space",
     "Syntaxfehler: Argumente werden durch genau ein Leerzeichen getrennt"},
    {"Empty command", "Leerer Befehl"},
    {"Unknown command", "Unbekannter Befehl"},
    {"Command not valid in this state", "Befehl in diesem Zustand nicht gültig"},
    {"Syntax: USER name", "Syntax: USER Name"},
    {"Syntax: PASS password", "Syntax: PASS Passwort"},
    {"Syntax: APOP name digest", "Syntax: APOP Name Digest"},
    {"Syntax: AUTH mechanism [initial-response]", "Syntax: AUTH Verfahren [erste-Antwort]"},
    {"Syntax: STLS takes no arguments", "Syntax: STLS hat keine Argumente"},
    {"Syntax: STAT takes no arguments", "Syntax: STAT hat keine Argumente"},
    {"Syntax: LIST [msg]", "Syntax: LIST [Nachricht]"},
    {"Syntax: RETR msg", "Syntax: RETR Nachricht"},
    {"Syntax: DELE msg", "Syntax: DELE Nachricht"},
    {"Syntax: NOOP takes no arguments", "Syntax: NOOP hat keine Argumente"},
    {"Syntax: RSET takes no arguments", "Syntax: RSET hat keine Argumente"},
    {"Syntax: TOP msg lines", "Syntax: TOP Nachricht Zeilen"},
    {"Syntax: UIDL [msg]", "Syntax: UIDL [Nachricht]"},
    {"Syntax: CAPA takes no arguments", "Syntax: CAPA hat keine Argumente"},
    {"Syntax: UTF8 takes no arguments", "Syntax: UTF8 hat keine Argumente"},
    {"Syntax: LANG [language-range]", "Syntax: LANG [Sprachbereich]"},
    {"Syntax: QUIT takes no arguments", "Syntax: QUIT hat keine Argumente"},
    {"Syntax: XCLIENT KEY=VALUE ...", "Syntax: XCLIENT SCHLÜSSEL=WERT ..."},
    // AUTHORIZATION.
    {"Plaintext authentication disallowed on non-secure connections, use STLS",
     "Klartext-Anmeldung über unverschlüsselte Verbindungen nicht erlaubt, STLS verwenden"},
    {"Missing user name", "Benutzername fehlt"},
    {"No user name given, send USER first", "Kein Benutzername angegeben, zuerst USER senden"},
    {"APOP is not available", "APOP ist nicht verfügbar"},
    {"Unsupported authentication mechanism", "Anmeldeverfahren wird nicht unterstützt"},
    {"Authentication cancelled", "Anmeldung abgebrochen"},
    {"Invalid base64 data", "Ungültige Base64-Daten"},
    {"Invalid SASL PLAIN response", "Ungültige SASL-PLAIN-Antwort"},
    {"User name or password is not valid UTF-8",
     "Benutzername oder Passwort ist kein gültiges UTF-8"},
    {"User name or password has characters not allowed (RFC 4013)",
     "Benutzername oder Passwort enthält unzulässige Zeichen (RFC 4013)"},
    {"Authentication failed", "Anmeldung fehlgeschlagen"},
    {"Logged in too recently, try again later",
     "Letzte Anmeldung liegt zu kurz zurück, später erneut versuchen"},
    {"Temporary authentication failure, try again later",
     "Vorübergehender Anmeldefehler, später erneut versuchen"},
    {"Account unavailable", "Konto nicht verfügbar"},
    {"Daily download limit reached, try again tomorrow",
     "Tageslimit für Downloads erreicht, morgen erneut versuchen"},
    {"Message %1 is damaged in storage and was not sent",
     "Nachricht %1 ist im Speicher beschädigt und wurde nicht gesendet"},
    {"Message cannot be read now, try again later",
     "Nachricht kann gerade nicht gelesen werden, später erneut versuchen"},
    {"This login mechanism is not allowed for this domain",
     "Dieses Anmeldeverfahren ist für diese Domain nicht erlaubt"},
    {"maildrop already locked", "Postfach bereits gesperrt"},
    {"Maildrop temporarily unavailable, try again later",
     "Postfach vorübergehend nicht verfügbar, später erneut versuchen"},
    {"Maildrop unavailable", "Postfach nicht verfügbar"},
    {"%1's maildrop has %2 message (%3 octets)",
     "Postfach von %1 enthält %2 Nachricht (%3 Oktette)"},
    {"%1's maildrop has %2 messages (%3 octets)",
     "Postfach von %1 enthält %2 Nachrichten (%3 Oktette)"},
    {"Begin TLS negotiation", "TLS-Aushandlung beginnt"},
    {"Command not permitted when TLS active", "Befehl bei aktivem TLS nicht erlaubt"},
    {"STLS not available", "STLS nicht verfügbar"},
    {"XCLIENT must come before USER or AUTH", "XCLIENT muss vor USER oder AUTH kommen"},
    {"XCLIENT ADDR is not an IP address", "XCLIENT ADDR ist keine IP-Adresse"},
    {"XCLIENT PORT is not a port number", "XCLIENT PORT ist keine Portnummer"},
    {"XCLIENT accepted", "XCLIENT angenommen"},
    // Both states.
    {"Capability list follows", "Liste der Fähigkeiten folgt"},
    {"UTF8 enabled", "UTF8 eingeschaltet"},
    {"Language listing follows", "Liste der Sprachen folgt"},
    {"Language changed", "Sprache gewechselt"},
    {"Unsupported language %1", "Sprache %1 wird nicht unterstützt"},
    {"%1 POP3 server signing off", "%1 POP3-Server verabschiedet sich"},
    // TRANSACTION and UPDATE.
    {"Invalid message number", "Ungültige Nachrichtennummer"},
    {"Invalid number of lines", "Ungültige Zeilenzahl"},
    {"no such message", "Nachricht existiert nicht"},
    {"no such message, only %1 message in maildrop",
     "Nachricht existiert nicht, nur %1 Nachricht im Postfach"},
    {"no such message, only %1 messages in maildrop",
     "Nachricht existiert nicht, nur %1 Nachrichten im Postfach"},
    {"message %1 already deleted", "Nachricht %1 ist bereits gelöscht"},
    {"message %1 deleted", "Nachricht %1 gelöscht"},
    {"maildrop has %1 message (%2 octets)", "Postfach enthält %1 Nachricht (%2 Oktette)"},
    {"maildrop has %1 messages (%2 octets)", "Postfach enthält %1 Nachrichten (%2 Oktette)"},
    {"%1 POP3 server signing off (maildrop empty)",
     "%1 POP3-Server verabschiedet sich (Postfach leer)"},
    {"%1 POP3 server signing off (%2 message left)",
     "%1 POP3-Server verabschiedet sich (%2 Nachricht verbleibt)"},
    {"%1 POP3 server signing off (%2 messages left)",
     "%1 POP3-Server verabschiedet sich (%2 Nachrichten verbleiben)"},
    {"Could not remove deleted messages, none were removed",
     "Gelöschte Nachrichten konnten nicht entfernt werden, keine wurde entfernt"},
};

// English text -> row of kCatalog; built once.
const absl::flat_hash_map<std::string_view, size_t>& CatalogIndex() {
  static const auto* const index = [] {
    auto* map = new absl::flat_hash_map<std::string_view, size_t>();
    map->reserve(std::size(kCatalog));
    for (size_t i = 0; i < std::size(kCatalog); ++i) map->emplace(kCatalog[i].english, i);
    return map;
  }();
  return *index;
}

constexpr char ToLowerAscii(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ToLowerAscii(a[i]) != ToLowerAscii(b[i])) return false;
  }
  return true;
}

bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::span<const LanguageListing> SupportedLanguages() { return kLanguages; }

std::string_view LanguageTag(ReplyLanguage language) {
  for (const LanguageListing& listing : kLanguages) {
    if (listing.language == language) return listing.tag;
  }
  return "i-default";
}

bool IsBasicLanguageRange(std::string_view range) {
  if (range == "*") return true;
  size_t subtag_bytes = 0;
  bool first = true;
  for (size_t i = 0; i <= range.size(); ++i) {
    if (i == range.size() || range[i] == '-') {
      if (subtag_bytes == 0) return false;  // empty subtag: "", "-x", "x-", "x--y"
      subtag_bytes = 0;
      first = false;
      continue;
    }
    const char c = range[i];
    if (!(IsAlpha(c) || (!first && IsDigit(c)))) return false;
    if (++subtag_bytes > 8) return false;
  }
  return true;
}

std::optional<ReplyLanguage> LookupLanguage(std::string_view range) {
  if (range == "*" || !IsBasicLanguageRange(range)) return std::nullopt;
  while (!range.empty()) {
    for (const LanguageListing& listing : kLanguages) {
      if (EqualsIgnoreCase(listing.tag, range)) return listing.language;
    }
    const size_t dash = range.rfind('-');
    if (dash == std::string_view::npos) break;
    range = range.substr(0, dash);
    // RFC 4647 section 3.4: a single-letter subtag left at the end goes too ("x-", "i-").
    if (range.size() >= 2 && range[range.size() - 2] == '-') range.remove_suffix(2);
  }
  return std::nullopt;
}

std::string_view LocalizeReplyText(ReplyLanguage language, std::string_view english) {
  if (language != ReplyLanguage::kGerman) return english;
  const auto& index = CatalogIndex();
  const auto it = index.find(english);
  return it == index.end() ? english : kCatalog[it->second].german;
}

void FormatReplyText(ReplyLanguage language, std::string_view english,
                     std::initializer_list<std::string_view> args, std::string* out) {
  const std::string_view text = LocalizeReplyText(language, english);
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 1 < text.size() && text[i + 1] >= '1' && text[i + 1] <= '9') {
      const size_t arg = static_cast<size_t>(text[i + 1] - '1');
      if (arg < args.size()) out->append(*(args.begin() + arg));
      ++i;
      continue;
    }
    out->push_back(text[i]);
  }
}

std::span<const ReplyTranslation> ReplyCatalogForTest() { return kCatalog; }

}  // namespace posthaste::pop3
