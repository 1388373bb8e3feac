// Pop3Session and RFC 6856: the LANG command (listing, choosing by tag, range and "*", refusals,
// what is translated and what never is) and UTF8 (CAPA's "UTF8 USER", UTF-8 user names and
// passwords prepared with SASLprep, text that is not UTF-8 refused in UTF8 mode). Each scripted
// exchange runs at every input fragment size.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/auth/utf8_credential.h"
#include "server/pop3/session.h"
#include "server/pop3/testing/fake_mailbox.h"

namespace posthaste::pop3 {
namespace {

using ::testing::ElementsAre;
using testing::FakeDriver;
using testing::FakeMailbox;
using ::testing::HasSubstr;

constexpr size_t kFragmentSizes[] = {0, 1000, 100, 10, 5, 2, 1};

absl::StatusOr<std::string> Prepare(std::string_view text) {
  return auth::NormalizeUtf8Credential(text);
}

Pop3SessionOptions PlainOptions() {
  Pop3SessionOptions options;
  options.hostname = "pop.example";
  options.policy.plaintext_requires_tls = false;
  options.credential_preparer = &Prepare;
  return options;
}

struct Fixture {
  FakeMailbox mailbox;
  FakeDriver driver;
  explicit Fixture(Pop3SessionOptions options = PlainOptions()) : driver(std::move(options)) {
    mailbox.AddOfSize(100, "u1");
    mailbox.AddOfSize(200, "u2");
    mailbox.AddOfSize(300, "u3");
    driver.accounts()["mrose"] = {.password = "secret", .mailbox = &mailbox};
    // Stored as `user add` stores it: the prepared (NFKC, precomposed) form.
    driver.accounts()["j\xC3\xBCrgen"] = {.password = "p\xC3\xA4ssw\xC3\xB6rd",
                                          .mailbox = &mailbox};
    driver.accounts()["legacy"] = {.password = "caf\xE9", .mailbox = &mailbox};
    driver.TakeOutput();  // greeting
  }
};

struct Exchange {
  std::string name;
  std::string input;
  std::string output;
};

void RunAtEveryFragmentSize(const Exchange& exchange, Pop3SessionOptions options = PlainOptions()) {
  for (size_t fragment : kFragmentSizes) {
    SCOPED_TRACE(exchange.name + ", fragment size " + std::to_string(fragment));
    Fixture f(options);
    f.driver.Feed(exchange.input, fragment);
    EXPECT_EQ(f.driver.TakeOutput(), exchange.output);
  }
}

constexpr char kListing[] =
    "+OK Language listing follows\r\ni-default Default language\r\nen English\r\n"
    "de Deutsch\r\n.\r\n";

TEST(LangTest, Exchanges) {
  const std::vector<Exchange> exchanges = {
      {"listing before login", "LANG\r\n", kListing},
      {"listing after login", "USER mrose\r\nPASS secret\r\nLANG\r\n",
       "+OK\r\n+OK mrose's maildrop has 3 messages (600 octets)\r\n" + std::string(kListing)},
      {"the listing header is translated, its lines are not", "LANG de\r\nLANG\r\n",
       "+OK de Sprache gewechselt\r\n+OK Liste der Sprachen folgt\r\ni-default Default "
       "language\r\nen English\r\nde Deutsch\r\n.\r\n"},
      {"German from its own reply on", "LANG de\r\nXTND\r\n",
       "+OK de Sprache gewechselt\r\n-ERR Unbekannter Befehl\r\n"},
      {"a range picks by lookup, any case", "LANG DE-at\r\n", "+OK de Sprache gewechselt\r\n"},
      {"a private-use tail is cut", "LANG de-CH-x-zurich\r\n", "+OK de Sprache gewechselt\r\n"},
      {"back to English", "LANG de\r\nLANG en\r\nXTND\r\n",
       "+OK de Sprache gewechselt\r\n+OK en Language changed\r\n-ERR Unknown command\r\n"},
      {"i-default by name", "LANG de\r\nLANG i-default\r\n",
       "+OK de Sprache gewechselt\r\n+OK i-default Language changed\r\n"},
      {"star without a preference is i-default", "LANG *\r\n",
       "+OK i-default Language changed\r\n"},
      {"an unknown language is refused, in the current language",
       "LANG mul\r\nLANG de\r\nLANG mul\r\nXTND\r\n",
       "-ERR Unsupported language mul\r\n+OK de Sprache gewechselt\r\n"
       "-ERR Sprache mul wird nicht unterstützt\r\n-ERR Unbekannter Befehl\r\n"},
      {"a range with a bad character", "LANG d_e\r\n", "-ERR Syntax: LANG [language-range]\r\n"},
      {"a subtag longer than 8", "LANG deutschland\r\n", "-ERR Syntax: LANG [language-range]\r\n"},
      {"a digit in the first subtag", "LANG 1de\r\n", "-ERR Syntax: LANG [language-range]\r\n"},
      {"an empty subtag", "LANG de--at\r\n", "-ERR Syntax: LANG [language-range]\r\n"},
      {"two ranges", "LANG de en\r\n", "-ERR Syntax: LANG [language-range]\r\n"},
      {"syntax errors in German", "LANG de\r\nLANG d_e\r\n",
       "+OK de Sprache gewechselt\r\n-ERR Syntax: LANG [Sprachbereich]\r\n"},
      {"response codes stay, the text is translated", "LANG de\r\nUSER mrose\r\nPASS wrong\r\n",
       "+OK de Sprache gewechselt\r\n+OK\r\n-ERR [AUTH] Anmeldung fehlgeschlagen\r\n"},
      {"the login reply", "LANG de\r\nUSER mrose\r\nPASS secret\r\n",
       "+OK de Sprache gewechselt\r\n+OK\r\n"
       "+OK Postfach von mrose enthält 3 Nachrichten (600 Oktette)\r\n"},
      {"signing off in AUTHORIZATION", "LANG de\r\nQUIT\r\n",
       "+OK de Sprache gewechselt\r\n+OK pop.example POP3-Server verabschiedet sich\r\n"},
      {"CAPA's capability lines are never translated", "LANG de\r\nCAPA\r\n",
       "+OK de Sprache gewechselt\r\n+OK Liste der Fähigkeiten folgt\r\nTOP\r\nUSER\r\n"
       "SASL PLAIN LOGIN\r\nRESP-CODES\r\nPIPELINING\r\nUIDL\r\nIMPLEMENTATION posthaste\r\n"
       "AUTH-RESP-CODE\r\nUTF8 USER\r\nLANG\r\n.\r\n"},
  };
  for (const Exchange& exchange : exchanges) RunAtEveryFragmentSize(exchange);
}

// What a client parses (STAT, LIST, UIDL, RETR's octet count, the listings) is the same in
// every language; the human texts of DELE, RSET, a missing message and QUIT are German.
TEST(LangTest, TransactionInGermanKeepsMachineParts) {
  RunAtEveryFragmentSize(
      {"transaction",
       "USER mrose\r\nPASS secret\r\nLANG de\r\nSTAT\r\nLIST\r\nLIST 2\r\nUIDL 3\r\n"
       "DELE 1\r\nRETR 1\r\nLIST 9\r\nRSET\r\nDELE 3\r\nQUIT\r\n",
       "+OK\r\n+OK mrose's maildrop has 3 messages (600 octets)\r\n"
       "+OK de Sprache gewechselt\r\n"
       "+OK 3 600\r\n"
       "+OK 3 messages (600 octets)\r\n1 100\r\n2 200\r\n3 300\r\n.\r\n"
       "+OK 2 200\r\n"
       "+OK 3 u3\r\n"
       "+OK Nachricht 1 gelöscht\r\n"
       "-ERR Nachricht 1 ist bereits gelöscht\r\n"
       "-ERR Nachricht existiert nicht, nur 3 Nachrichten im Postfach\r\n"
       "+OK Postfach enthält 3 Nachrichten (600 Oktette)\r\n"
       "+OK Nachricht 3 gelöscht\r\n"
       "+OK pop.example POP3-Server verabschiedet sich (2 Nachrichten verbleiben)\r\n"});
  Fixture f;
  f.driver.Feed("USER mrose\r\nPASS secret\r\nLANG de\r\nRETR 1\r\nDELE 1\r\nDELE 2\r\nQUIT\r\n");
  EXPECT_THAT(f.driver.TakeOutput(),
              ::testing::AllOf(HasSubstr("\r\n+OK 100 octets\r\n"),
                               HasSubstr("\r\n+OK pop.example POP3-Server verabschiedet sich "
                                         "(1 Nachricht verbleibt)\r\n")));
}

TEST(LangTest, StarPicksThePreferredLanguage) {
  Pop3SessionOptions options = PlainOptions();
  options.preferred_language = "de";
  RunAtEveryFragmentSize({"server-wide preference", "XTND\r\nLANG *\r\n",
                          "-ERR Unknown command\r\n+OK de Sprache gewechselt\r\n"},
                         options);

  // The driver learns the tenant's language after login: "LANG *" follows it from then on,
  // and replies stay i-default until the client asks (RFC 6856 section 3).
  Fixture f;
  f.driver.Feed("USER mrose\r\nPASS secret\r\n");
  f.driver.TakeOutput();
  EXPECT_TRUE(f.driver.session().SetPreferredLanguage("DE"));
  EXPECT_FALSE(f.driver.session().SetPreferredLanguage("fr"));
  f.driver.Feed("NOOP\r\nDELE 9\r\nLANG *\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), "+OK\r\n-ERR no such message\r\n+OK de Sprache gewechselt\r\n");
  EXPECT_EQ(f.driver.session().language(), ReplyLanguage::kGerman);

  // The tenant's language (`tenant policy --lang=de`) arrives with the maildrop.
  Fixture tenant;
  tenant.driver.accounts()["mrose"].user_policy.language = "de";
  tenant.driver.Feed("USER mrose\r\nPASS secret\r\nNOOP\r\nLANG *\r\n");
  EXPECT_THAT(tenant.driver.TakeOutput(), ::testing::EndsWith("+OK\r\n+OK de Sprache gewechselt\r\n"));
}

TEST(LangTest, TlsHandshakeForgetsTheLanguage) {
  Pop3SessionOptions options = PlainOptions();
  options.tls_available = true;
  Fixture f(options);
  f.driver.Feed("LANG de\r\nSTLS\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), "+OK de Sprache gewechselt\r\n+OK TLS-Aushandlung beginnt\r\n");
  EXPECT_EQ(f.driver.session().language(), ReplyLanguage::kDefault);
  f.driver.Feed("XTND\r\n");
  EXPECT_EQ(f.driver.TakeOutput(), "-ERR Unknown command\r\n");
}

TEST(LangTest, RefusalsAndTimeoutsAreTranslated) {
  Fixture f;
  f.driver.Feed("LANG de\r\n");
  f.driver.TakeOutput();
  f.driver.session().OnTimeout(Pop3Timeout::kLogin);
  f.driver.Pump();
  EXPECT_EQ(f.driver.TakeOutput(),
            "-ERR Verbindung getrennt: keine Anmeldung in der vorgesehenen Zeit\r\n");
}

// ---- UTF8 ----

TEST(Utf8Test, CapaAnnouncesUserOnlyWithAPreparer) {
  Fixture with;
  with.driver.Feed("CAPA\r\n");
  EXPECT_THAT(with.driver.TakeOutput(), HasSubstr("\r\nUTF8 USER\r\nLANG\r\n.\r\n"));
  Pop3SessionOptions options = PlainOptions();
  options.credential_preparer = nullptr;
  Fixture without(options);
  without.driver.Feed("CAPA\r\n");
  EXPECT_THAT(without.driver.TakeOutput(), HasSubstr("\r\nUTF8\r\nLANG\r\n.\r\n"));
}

TEST(Utf8Test, Exchanges) {
  const std::string login_ok =
      "+OK\r\n+OK j\xC3\xBCrgen's maildrop has 3 messages (600 octets)\r\n";
  const std::vector<Exchange> exchanges = {
      // "pässwörd" typed with combining marks: NFKC makes it the stored, precomposed form.
      {"decomposed password after UTF8",
       "UTF8\r\nUSER j\xC3\xBCrgen\r\nPASS pa\xCC\x88sswo\xCC\x88rd\r\n",
       "+OK UTF8 enabled\r\n" + login_ok},
      {"decomposed password without UTF8 (clients that send UTF-8 anyway)",
       "USER j\xC3\xBCrgen\r\nPASS pa\xCC\x88sswo\xCC\x88rd\r\n", login_ok},
      {"decomposed user name", "UTF8\r\nUSER ju\xCC\x88rgen\r\nPASS p\xC3\xA4ssw\xC3\xB6rd\r\n",
       "+OK UTF8 enabled\r\n" + login_ok},
      {"a soft hyphen is mapped to nothing",
       "USER j\xC3\xBCrgen\r\nPASS p\xC3\xA4ss\xC2\xADw\xC3\xB6rd\r\n", login_ok},
      {"not UTF-8 in UTF8 mode", "UTF8\r\nUSER legacy\r\nPASS caf\xE9\r\n",
       "+OK UTF8 enabled\r\n+OK\r\n-ERR User name or password is not valid UTF-8\r\n"},
      {"a user name that is not UTF-8 in UTF8 mode", "UTF8\r\nUSER caf\xE9\r\nPASS x\r\n",
       "+OK UTF8 enabled\r\n+OK\r\n-ERR User name or password is not valid UTF-8\r\n"},
      {"legacy 8-bit before UTF8 goes through as sent", "USER legacy\r\nPASS caf\xE9\r\n",
       "+OK\r\n+OK legacy's maildrop has 3 messages (600 octets)\r\n"},
      {"a prohibited character in UTF8 mode",
       "UTF8\r\nUSER j\xC3\xBCrgen\r\nPASS a\xE2\x80\xA8z\r\n",
       "+OK UTF8 enabled\r\n+OK\r\n"
       "-ERR User name or password has characters not allowed (RFC 4013)\r\n"},
      {"the refusal in German", "LANG de\r\nUTF8\r\nUSER legacy\r\nPASS caf\xE9\r\n",
       "+OK de Sprache gewechselt\r\n+OK UTF8 eingeschaltet\r\n+OK\r\n"
       "-ERR Benutzername oder Passwort ist kein gültiges UTF-8\r\n"},
      // SASL PLAIN: "\0jürgen\0pa¨sswo¨rd" (decomposed), and "\0legacy\0caf\xE9".
      {"AUTH PLAIN prepared", "AUTH PLAIN AGrDvHJnZW4AcGHMiHNzd2/MiHJk\r\n", login_ok.substr(5)},
      {"AUTH PLAIN not UTF-8 in UTF8 mode", "UTF8\r\nAUTH PLAIN AGxlZ2FjeQBjYWbp\r\n",
       "+OK UTF8 enabled\r\n-ERR User name or password is not valid UTF-8\r\n"},
      // AUTH LOGIN: "jürgen", then "pa¨sswo¨rd" (decomposed).
      {"AUTH LOGIN prepared", "AUTH LOGIN\r\nasO8cmdlbg==\r\ncGHMiHNzd2/MiHJk\r\n",
       "+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n+OK j\xC3\xBCrgen's maildrop has 3 messages (600 "
       "octets)\r\n"},
  };
  for (const Exchange& exchange : exchanges) RunAtEveryFragmentSize(exchange);
}

TEST(Utf8Test, WhatTheDriverIsGiven) {
  Fixture f;
  f.driver.Feed(
      "UTF8\r\nUSER \xE2\x85\xA8\r\nPASS \xEF\xBC\xA1\xC2\xA0"
      "b\r\n");
  EXPECT_EQ(f.driver.last_credentials().user, "IX");  // ROMAN NUMERAL NINE
  EXPECT_EQ(f.driver.last_secret(), "A b");           // FULLWIDTH A, NO-BREAK SPACE
}

TEST(Utf8Test, WithoutAPreparerTextIsOnlyChecked) {
  Pop3SessionOptions options = PlainOptions();
  options.credential_preparer = nullptr;
  Fixture f(options);
  f.driver.Feed("UTF8\r\nUSER j\xC3\xBCrgen\r\nPASS pa\xCC\x88sswo\xCC\x88rd\r\n");
  EXPECT_EQ(f.driver.last_secret(), "pa\xCC\x88sswo\xCC\x88rd");  // as sent
  f.driver.TakeOutput();
  Fixture g(options);
  g.driver.Feed("UTF8\r\nUSER legacy\r\nPASS caf\xE9\r\n");
  EXPECT_THAT(g.driver.TakeOutput(), HasSubstr("-ERR User name or password is not valid UTF-8"));
  EXPECT_THAT(g.driver.events(), ElementsAre());
}

TEST(Utf8Test, ApopPreparesTheNameNotTheDigest) {
  Pop3SessionOptions options = PlainOptions();
  options.policy.apop_allowed = true;
  options.apop_timestamp = "<1.2@pop.example>";
  Fixture f(options);
  f.driver.Feed("UTF8\r\nAPOP ju\xCC\x88rgen C4C9334BAC560ECC979E58001B3E22FB\r\n");
  EXPECT_EQ(f.driver.last_credentials().user, "j\xC3\xBCrgen");
  EXPECT_EQ(f.driver.last_secret(), "c4c9334bac560ecc979e58001b3e22fb");
}

TEST(Utf8Test, RefusalsCountAsBadCommands) {
  Fixture f;
  f.driver.Feed("UTF8\r\nUSER legacy\r\nPASS caf\xE9\r\n");
  EXPECT_EQ(f.driver.session().counters().bad_commands, 1u);
  EXPECT_EQ(f.driver.session().state(), Pop3State::kAuthorization);
}

}  // namespace
}  // namespace posthaste::pop3
