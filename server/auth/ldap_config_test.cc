#include "server/auth/ldap_config.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace posthaste::auth {
namespace {

using ::testing::HasSubstr;

// ---- Escaping ----

TEST(EscapeLdapFilterValue, Rfc4515Examples) {
  // RFC 4515 section 4's values.
  EXPECT_EQ(EscapeLdapFilterValue("Parens R Us (for all your parenthetical needs)"),
            "Parens R Us \\28for all your parenthetical needs\\29");
  EXPECT_EQ(EscapeLdapFilterValue("*"), "\\2a");
  EXPECT_EQ(EscapeLdapFilterValue("C:\\MyFile"), "C:\\5cMyFile");
  EXPECT_EQ(EscapeLdapFilterValue(std::string("\0\0\0\x04", 4)), "\\00\\00\\00\\04");
  EXPECT_EQ(EscapeLdapFilterValue("Lu\xc4\x8di\xc4\x87"), "Lu\\c4\\8di\\c4\\87");
  EXPECT_EQ(EscapeLdapFilterValue("alice@example.org"), "alice@example.org");
}

TEST(EscapeLdapDnValue, Rfc4514Specials) {
  EXPECT_EQ(EscapeLdapDnValue("Sue, Grabbit and Runn"), "Sue\\, Grabbit and Runn");
  EXPECT_EQ(EscapeLdapDnValue(" padded "), "\\ padded\\ ");
  EXPECT_EQ(EscapeLdapDnValue("#hash#"), "\\#hash#");
  EXPECT_EQ(EscapeLdapDnValue("a+b=c;d<e>f\"g\\h"), "a\\+b\\=c\\;d\\<e\\>f\\\"g\\\\h");
  EXPECT_EQ(EscapeLdapDnValue(std::string("nul\0", 4)), "nul\\00");
  EXPECT_EQ(EscapeLdapDnValue("alice"), "alice");
}

TEST(ExpandLdapTemplate, InjectionAttemptsStayValues) {
  auto filter = ExpandLdapTemplate("(&(objectClass=inetOrgPerson)(mail=%u))",
                                   "*)(uid=*))(|(uid=*@example.org", LdapTemplateKind::kFilter);
  ASSERT_TRUE(filter.ok());
  EXPECT_EQ(*filter,
            "(&(objectClass=inetOrgPerson)(mail=\\2a\\29\\28uid=\\2a\\29\\29\\28|\\28uid="
            "\\2a@example.org))");
  auto dn = ExpandLdapTemplate("uid=%n,ou=people,dc=example,dc=org", "bob,ou=admins@example.org",
                               LdapTemplateKind::kDn);
  ASSERT_TRUE(dn.ok());
  EXPECT_EQ(*dn, "uid=bob\\,ou\\=admins,ou=people,dc=example,dc=org");
}

TEST(ExpandLdapTemplate, Sequences) {
  auto out = ExpandLdapTemplate("%u|%n|%d|100%%", "a.b@c@Example.ORG", LdapTemplateKind::kFilter);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, "a.b@c@Example.ORG|a.b@c|Example.ORG|100%");
  EXPECT_FALSE(ExpandLdapTemplate("%x", "a@b", LdapTemplateKind::kDn).ok());
  EXPECT_FALSE(ExpandLdapTemplate("%", "a@b", LdapTemplateKind::kDn).ok());
  EXPECT_FALSE(ExpandLdapTemplate("%u", "nodomain", LdapTemplateKind::kDn).ok());
}

// ---- The file ----

constexpr char kDirect[] = R"({"tenants": [{"domain": "Example.ORG",
  "uris": ["ldap://127.0.0.1:3890", "ldap://[::1]:3890"],
  "user_dn": "uid=%n,ou=people,dc=example,dc=org", "mailbox_attribute": "mail",
  "bind_timeout_ms": 1500}]})";

std::string SearchTenant(std::string_view extra) {
  return std::string(R"json({"tenants": [{"domain": "example.net", "uris": ["ldap://h"],
    "bind": "search", "service_dn": "cn=svc,dc=example,dc=net",
    "service_password_file": "/nonexistent", "base_dn": "dc=example,dc=net",
    "filter": "(uid=%n)")json") +
         std::string(extra) + "}]}";
}

TEST(ParseLdapConfig, DirectTenantWithDefaults) {
  auto config = ParseLdapConfig(kDirect);
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->tenants.size(), 1u);
  const LdapTenantConfig& t = config->tenants[0];
  EXPECT_EQ(t.domain, "example.org");
  EXPECT_EQ(t.uris.size(), 2u);
  EXPECT_EQ(t.bind_mode, LdapBindMode::kDirect);
  EXPECT_EQ(t.tls, LdapTls::kNone);
  EXPECT_EQ(t.mailbox_attribute, "mail");
  EXPECT_EQ(t.bind_timeout_ms, 1500u);
  EXPECT_EQ(t.connections_max, 4u);
  EXPECT_TRUE(t.auto_create);
}

TEST(ParseLdapConfig, SearchTenant) {
  auto config = ParseLdapConfig(SearchTenant(R"(, "auto_create": false, "tls": "starttls")"));
  ASSERT_TRUE(config.ok()) << config.status();
  const LdapTenantConfig& t = config->tenants[0];
  EXPECT_EQ(t.bind_mode, LdapBindMode::kSearch);
  EXPECT_EQ(t.tls, LdapTls::kStartTls);
  EXPECT_EQ(t.filter, "(uid=%n)");
  EXPECT_FALSE(t.auto_create);
}

TEST(ParseLdapConfig, RefusesWhatItDoesNotKnowOrTrust) {
  struct Case {
    std::string text;
    std::string error;
  };
  const Case cases[] = {
      {"[]", "not an object"},
      {R"({"tenant": []})", "unknown member"},
      {R"({"tenants": [{"domain": "a.test", "uris": ["ldap://h"]}]})", "user_dn is required"},
      {R"({"tenants": [{"domain": "a.test", "uris": ["ldap://h"], "user_dn": "uid=%x"}]})",
       "unknown %-sequence"},
      {R"({"tenants": [{"domain": "a.test", "uris": ["ldap://h/dc=x??sub"], "user_dn": "u"}]})",
       "ldap://HOST[:PORT]"},
      {R"({"tenants": [{"domain": "a.test", "uris": ["http://h"], "user_dn": "u"}]})",
       "ldap://HOST[:PORT]"},
      // Shorter than a scheme (found by ldap_config_fuzzer: once read past the end).
      {R"({"tenants": [{"domain": "a.test", "uris": ["ld89"], "user_dn": "u"}]})",
       "ldap://HOST[:PORT]"},
      {R"({"tenants": [{"domain": "a.test", "uris": [], "user_dn": "u"}]})", "uris must be"},
      {R"({"tenants": [{"domain": "a.test", "uris": ["ldaps://h"], "user_dn": "u"}]})",
       "exactly when tls"},
      {R"({"tenants": [{"domain": "a.test", "uris": ["ldap://h"], "user_dn": "u",
          "bind_timeout_ms": 0}]})",
       "bind_timeout_ms must be"},
      {R"({"tenants": [{"domain": "a.test", "uris": ["ldap://h"], "user_dn": "u",
          "connections_max": 1.5}]})",
       "connections_max must be"},
      {R"({"tenants": [{"domain": "a.test", "uris": ["ldap://h"], "user_dn": "u",
          "bind_timout_ms": 10}]})",
       "unknown member \"bind_timout_ms\""},
      {R"({"tenants": [{"domain": "a.test", "uris": ["ldap://h"], "user_dn": "u"},
                       {"domain": "A.TEST", "uris": ["ldap://h"], "user_dn": "u"}]})",
       "repeated"},
      {R"({"tenants": [{"domain": "a test", "uris": ["ldap://h"], "user_dn": "u"}]})", "DNS name"},
      {SearchTenant(R"(, "filter": "uid=%n")"), "duplicate member"},
      {SearchTenant(R"json(, "mailbox_attribute": "mail)(x")json"), "attribute name"},
      {R"({"tenants": [{"domain": "a.test", "uris": ["ldap://h"], "bind": "anonymous"}]})",
       "bind must be"},
  };
  for (const Case& c : cases) {
    auto config = ParseLdapConfig(c.text);
    ASSERT_FALSE(config.ok()) << c.text;
    EXPECT_THAT(std::string(config.status().message()), HasSubstr(c.error)) << c.text;
  }
  auto no_filter = ParseLdapConfig(
      R"({"tenants": [{"domain": "a.test", "uris": ["ldap://h"], "bind": "search",
          "service_dn": "cn=s", "service_password_file": "/f", "base_dn": "dc=a"}]})");
  ASSERT_FALSE(no_filter.ok());
  EXPECT_THAT(std::string(no_filter.status().message()), HasSubstr("filter is required"));
}

TEST(LoadLdapConfigFile, ReadsTheServicePasswordsFirstLine) {
  const std::string dir = getenv("TEST_TMPDIR") != nullptr ? getenv("TEST_TMPDIR") : "/tmp";
  const std::string secret = dir + "/ldap_config_test.secret";
  const std::string file = dir + "/ldap_config_test.json";
  std::ofstream(secret) << "s3cret\nignored\n";
  std::string text = SearchTenant("");
  text.replace(text.find("/nonexistent"), 12, secret);
  std::ofstream(file) << text;
  auto config = LoadLdapConfigFile(file);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->tenants[0].service_password, "s3cret");

  std::ofstream(file) << SearchTenant("");  // the password file does not exist
  EXPECT_FALSE(LoadLdapConfigFile(file).ok());
  EXPECT_FALSE(LoadLdapConfigFile(dir + "/absent.json").ok());
}

}  // namespace
}  // namespace posthaste::auth
