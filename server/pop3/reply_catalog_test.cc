// The reply catalog: every English text has a German translation with the same placeholders;
// every reply text server/pop3/session.cc writes has an entry (a new reply without one fails
// here, naming it); language ranges are read and matched as RFC 4647 says.
#include "server/pop3/reply_catalog.h"

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "base/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace posthaste::pop3 {
namespace {

std::multiset<char> Placeholders(std::string_view text) {
  std::multiset<char> found;
  for (size_t i = 0; i + 1 < text.size(); ++i) {
    if (text[i] == '%') found.insert(text[i + 1]);
  }
  return found;
}

TEST(ReplyCatalogTest, EveryTextHasAGermanTranslation) {
  std::set<std::string_view> seen;
  for (const ReplyTranslation& row : ReplyCatalogForTest()) {
    SCOPED_TRACE(std::string(row.english));
    EXPECT_TRUE(seen.insert(row.english).second) << "listed twice";
    EXPECT_FALSE(row.english.empty());
    EXPECT_FALSE(row.german.empty());
    EXPECT_NE(row.german, row.english);
    EXPECT_EQ(Placeholders(row.german), Placeholders(row.english));
    for (std::string_view text : {row.english, row.german}) {
      EXPECT_TRUE(IsValidUtf8(text));
      EXPECT_EQ(text.find_first_of("\r\n"), std::string_view::npos);
      EXPECT_FALSE(text.starts_with(" ") || text.ends_with(" "));
    }
    EXPECT_TRUE(IsAscii(row.english)) << "i-default text is ASCII";
  }
}

TEST(ReplyCatalogTest, LanguagesAreListedWithTags) {
  ASSERT_EQ(SupportedLanguages().size(), kReplyLanguageCount);
  EXPECT_EQ(SupportedLanguages()[0].tag, "i-default");  // RFC 6856 section 3 requires it
  for (const LanguageListing& listing : SupportedLanguages()) {
    EXPECT_EQ(LanguageTag(listing.language), listing.tag);
    EXPECT_TRUE(IsBasicLanguageRange(listing.tag));
    EXPECT_TRUE(IsValidUtf8(listing.description));
  }
}

// Reads every "+OK ..."/"-ERR ..." literal and every AppendLocalized text of session.cc.
std::set<std::string> SessionReplyTexts() {
  std::ifstream file("server/pop3/session.cc");
  std::stringstream content;
  content << file.rdbuf();
  const std::string source = content.str();
  EXPECT_GT(source.size(), 10000u) << "session.cc not found in the runfiles";
  std::set<std::string> texts;
  // A status literal: the text after the status and any response code.
  const std::regex status_literal(R"re("(\+OK|-ERR) (\[[^\]"]*\] )?([^"]*)")re");
  for (auto it = std::sregex_iterator(source.begin(), source.end(), status_literal);
       it != std::sregex_iterator(); ++it) {
    const std::string text = (*it)[3].str();
    // A bare code is an AppendLocalized prefix ("-ERR [SYS/PERM]"), not a text.
    const bool bare_code = text.starts_with("[") && text.ends_with("]");
    if (!text.empty() && !bare_code) texts.insert(text);
  }
  // AppendLocalized(prefix, "text" or cond ? "text" : "text", ...): every literal in the call
  // after the prefix.
  const std::regex localized_call(R"re(AppendLocalized\(([^;]*)\);)re");
  const std::regex literal(R"re("((?:[^"\\]|\\.)*)")re");
  for (auto it = std::sregex_iterator(source.begin(), source.end(), localized_call);
       it != std::sregex_iterator(); ++it) {
    const std::string call = (*it)[1].str();
    for (auto lit = std::sregex_iterator(call.begin(), call.end(), literal);
         lit != std::sregex_iterator(); ++lit) {
      const std::string text = (*lit)[1].str();
      // The prefix: a status, perhaps with its response code ("-ERR [SYS/PERM]").
      if (!text.starts_with("+OK") && !text.starts_with("-ERR")) texts.insert(text);
    }
  }
  return texts;
}

TEST(ReplyCatalogTest, EverySessionReplyTextIsInTheCatalog) {
  std::set<std::string_view> catalog;
  for (const ReplyTranslation& row : ReplyCatalogForTest()) catalog.insert(row.english);
  const std::set<std::string> texts = SessionReplyTexts();
  EXPECT_GT(texts.size(), 50u);
  std::vector<std::string> missing;
  for (const std::string& text : texts) {
    if (catalog.count(text) == 0) missing.push_back(text);
  }
  EXPECT_THAT(missing, ::testing::IsEmpty())
      << "reply texts of server/pop3/session.cc without an entry in reply_catalog.cc";
}

TEST(ReplyCatalogTest, LocalizeAndFormat) {
  EXPECT_EQ(LocalizeReplyText(ReplyLanguage::kGerman, "Unknown command"), "Unbekannter Befehl");
  EXPECT_EQ(LocalizeReplyText(ReplyLanguage::kEnglish, "Unknown command"), "Unknown command");
  EXPECT_EQ(LocalizeReplyText(ReplyLanguage::kDefault, "Unknown command"), "Unknown command");
  EXPECT_EQ(LocalizeReplyText(ReplyLanguage::kGerman, "not in the catalog"), "not in the catalog");
  std::string out;
  FormatReplyText(ReplyLanguage::kGerman, "maildrop has %1 messages (%2 octets)", {"3", "600"},
                  &out);
  EXPECT_EQ(out, "Postfach enthält 3 Nachrichten (600 Oktette)");
  out.clear();
  FormatReplyText(ReplyLanguage::kDefault, "message %1 deleted", {"7"}, &out);
  EXPECT_EQ(out, "message 7 deleted");
  out.clear();
  FormatReplyText(ReplyLanguage::kDefault, "message %1 deleted", {}, &out);  // no argument
  EXPECT_EQ(out, "message  deleted");
}

TEST(LanguageRangeTest, Syntax) {
  for (std::string_view good : {"*", "de", "DE", "de-AT", "i-default", "zh-Hant-CN", "x-a1"}) {
    EXPECT_TRUE(IsBasicLanguageRange(good)) << good;
  }
  for (std::string_view bad : {"", "-", "de-", "-de", "de--at", "d_e", "1de", "abcdefghi",
                               "de-abcdefghi", "de at", "*-de", "de-*", "d\xC3\xA9"}) {
    EXPECT_FALSE(IsBasicLanguageRange(bad)) << bad;
  }
}

TEST(LanguageRangeTest, LookupCutsSubtagsFromTheEnd) {
  EXPECT_EQ(LookupLanguage("de"), ReplyLanguage::kGerman);
  EXPECT_EQ(LookupLanguage("De-aT"), ReplyLanguage::kGerman);
  EXPECT_EQ(LookupLanguage("de-CH-1996"), ReplyLanguage::kGerman);
  EXPECT_EQ(LookupLanguage("de-x-private"), ReplyLanguage::kGerman);
  EXPECT_EQ(LookupLanguage("en-GB"), ReplyLanguage::kEnglish);
  EXPECT_EQ(LookupLanguage("I-DEFAULT"), ReplyLanguage::kDefault);
  EXPECT_EQ(LookupLanguage("fr"), std::nullopt);
  EXPECT_EQ(LookupLanguage("deu"), std::nullopt);  // no prefix matching inside a subtag
  EXPECT_EQ(LookupLanguage("*"), std::nullopt);    // the caller's preferred language
  EXPECT_EQ(LookupLanguage("d_e"), std::nullopt);
}

}  // namespace
}  // namespace posthaste::pop3
