#include "server/auth/password_hash.h"

#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace posthaste::auth {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;

// Vectors generated once with Debian's mkpasswd (whois 5.5.17, libxcrypt) and argon2 CLI
// (libargon2 20171227), password "correct horse", plus published reference vectors.
constexpr char kPassword[] = "correct horse";
constexpr char kYescrypt[] =
    "$y$j9T$sHRBlxKGZZHitW5U3wwmI/$6qu3zas0Gtm6fcjHH8sZemFc8gZey/CTOPyC6.Yf7GD";
constexpr char kSha512[] =
    "$6$7LA0rz1CimIWkkVp$maYFAByQvVS.ryQAdDZujr7DriIhytkGsBsR6DymRFGG3DJ00gFSQvrpQZNaIgLq1WXPTROM4y"
    "P35I3ZFNRfX1";
constexpr char kSha512Rounds[] =
    "$6$rounds=10000$saltsaltsalt$XbL0wa.99vvsRYMr5bBKdITb.ZHLqGROubWVobCta9RxXByqp.P8f.uGgQGfR4VQv"
    "US2ybvGNqru9cEcwv0Yt1";
constexpr char kSha256[] = "$5$hkfp.XVMLZq1SZEr$l68eqCwlOwAHKTfblve5hs.8hh/xthKubxSNswEYPF7";
constexpr char kBcrypt2b[] = "$2b$05$HNFzA/xhVJnFnF8uwfKBR.c7BIf0oKScdWl77/OUJL95HyR9yMt0m";
constexpr char kBcrypt2y[] = "$2y$05$HNFzA/xhVJnFnF8uwfKBR.c7BIf0oKScdWl77/OUJL95HyR9yMt0m";
constexpr char kMd5[] = "$1$mS6u14Mh$mMrNHDB2Et35/Lu0FkEvV.";
constexpr char kArgon2id[] =
    "$argon2id$v=19$m=256,t=1,p=1$c29tZXNhbHRzYWx0$pLCyIK/+JaqHO97lbiSigL9npv4z3sV/j89xGPaWIo0";
constexpr char kArgon2i[] =
    "$argon2i$v=19$m=256,t=1,p=1$b3RoZXJzYWx0MTIz$6XYOiNQ+fBmQkTTmIxTcFmuojAWYj30l2PkRQIjHZ5Q";

// Ulrich Drepper's SHA-crypt specification, first SHA-512 example.
constexpr char kDrepperSha512[] =
    "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfa"
    "S35inz1";
// OpenBSD's bcrypt regression vector for "U*U".
constexpr char kOpenBsdBcrypt[] = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";

bool Verifies(std::string_view password, std::string_view stored) {
  absl::StatusOr<bool> result = VerifyPassword(password, stored);
  EXPECT_TRUE(result.ok()) << stored << ": " << result.status();
  return result.ok() && *result;
}

TEST(VerifyPassword, KnownVectorsMatch) {
  for (const char* stored : {kYescrypt, kSha512, kSha512Rounds, kSha256, kBcrypt2b, kBcrypt2y, kMd5,
                             kArgon2id, kArgon2i}) {
    EXPECT_TRUE(Verifies(kPassword, stored)) << stored;
  }
  EXPECT_TRUE(Verifies("Hello world!", kDrepperSha512));
  EXPECT_TRUE(Verifies("U*U", kOpenBsdBcrypt));
}

TEST(VerifyPassword, WrongPasswordsDoNotMatch) {
  for (const char* stored : {kYescrypt, kSha512, kSha512Rounds, kSha256, kBcrypt2b, kBcrypt2y, kMd5,
                             kArgon2id, kArgon2i, kDrepperSha512, kOpenBsdBcrypt}) {
    EXPECT_FALSE(Verifies("correct horsf", stored)) << stored;
    EXPECT_FALSE(Verifies("Correct horse", stored)) << stored;
    EXPECT_FALSE(Verifies("correct horse ", stored)) << stored;
  }
}

TEST(VerifyPassword, PasswordsThatCannotHaveBeenHashedNeverMatch) {
  EXPECT_FALSE(Verifies("", kYescrypt));
  EXPECT_FALSE(Verifies(std::string("correct horse\0x", 15), kSha512));
  // A NUL would otherwise truncate the password seen by crypt(3).
  EXPECT_FALSE(Verifies(std::string("correct horse\0", 14), kSha512));
  EXPECT_FALSE(Verifies(std::string(kPasswordBytesMax + 1, 'a'),
                        "{PLAIN}" + std::string(kPasswordBytesMax + 1, 'a')));
  EXPECT_FALSE(Verifies("", "{PLAIN}"));
}

TEST(VerifyPassword, DovecotSchemePrefixes) {
  const std::pair<std::string, std::string> cases[] = {
      {"{CRYPT}", kSha512},
      {"{CRYPT}", kYescrypt},
      {"{BLF-CRYPT}", kBcrypt2y},
      {"{SHA512-CRYPT}", kSha512},
      {"{SHA256-CRYPT}", kSha256},
      {"{MD5-CRYPT}", kMd5},
      {"{MD5}", kMd5},
      {"{ARGON2ID}", kArgon2id},
      {"{ARGON2I}", kArgon2i},
      {"{sha512-crypt}", kSha512},
      {"{Blf-Crypt}", kBcrypt2b},
  };
  for (const auto& [prefix, hash] : cases) {
    EXPECT_TRUE(Verifies(kPassword, prefix + hash)) << prefix << hash;
    EXPECT_FALSE(Verifies("wrong", prefix + hash)) << prefix << hash;
  }
  for (const char* plain : {"{PLAIN}", "{CLEAR}", "{CLEARTEXT}", "{plain}"}) {
    EXPECT_TRUE(Verifies(kPassword, std::string(plain) + kPassword)) << plain;
    EXPECT_FALSE(Verifies("correct hors", std::string(plain) + kPassword)) << plain;
    EXPECT_FALSE(Verifies("correct horse!", std::string(plain) + kPassword)) << plain;
  }
  // A {PLAIN} password may contain '$', '{' and '}'.
  EXPECT_TRUE(Verifies("{x}$6$y", "{PLAIN}{x}$6$y"));
}

// Made by Dovecot 2.3.19.1's `doveadm pw -s SCHEME -p PASSWORD` (Debian dovecot-core; see
// server/auth/testdata/dovecot_vectors.sh, which prints fresh ones, and
// tests/password_import_test.py, which checks fresh ones against the running server).
constexpr char kDovecotSsha512[] =
    "{SSHA512}FOnfRIhTC0WR+r/VQjC2EHI6sw+JN/W9yL66+1TU8Wm6rLrFz3/4RqZ7mvyMHyKJ20CTfb2k+gXTurXePTXO"
    "yLid6t4=";
constexpr char kDovecotSsha256[] = "{SSHA256}NK+xPFRNMZUmtl+WMXk4saXv+7jNHAXlcePxtixj1HluApd0";
constexpr char kDovecotSsha[] = "{SSHA}VekveE8OfMyp6gE/bza7JQrwGHm0pmP5";
constexpr char kDovecotPbkdf2[] =
    "{PBKDF2}$1$oiiLkHRE.jNcCRYM$5000$29791a1e05096fb6056dbcc2deebe57d8d695b8c";
constexpr char kDovecotPbkdf2Rounds1000[] =
    "{PBKDF2}$1$l1xb.eRG0TWx7FtE$1000$1129d8944860ada5329dcdcf8d7dbef06337d63c";
constexpr char kDovecotCramMd5[] =
    "{CRAM-MD5}38b57fd1a0c4b46c814aa05f20318edd71c455380655f2c0ac35c5b359528d29";
// Passwords of 70 'x' (longer than HMAC-MD5's 64-byte block: the key is its MD5) and 64 'y'.
constexpr char kDovecotCramMd5Long[] =
    "{CRAM-MD5}8103bb3a2a4b96a9ca9cce4efecc8d22ebe7163dff7401afb5aa16d4edcf9f1f";
constexpr char kDovecotCramMd5Block[] =
    "{CRAM-MD5}94254a98b700c70e5e4b39694074f3b760b437b03ab8ef74bf7a4de1fd7c593e";

TEST(VerifyPassword, DovecotOnlySchemes) {
  for (const char* stored : {kDovecotSsha512, kDovecotSsha256, kDovecotSsha, kDovecotPbkdf2,
                             kDovecotPbkdf2Rounds1000, kDovecotCramMd5}) {
    EXPECT_TRUE(Verifies(kPassword, stored)) << stored;
    EXPECT_FALSE(Verifies("correct horsf", stored)) << stored;
    EXPECT_FALSE(Verifies("correct horse ", stored)) << stored;
    EXPECT_FALSE(Verifies("correct hors", stored)) << stored;
  }
  EXPECT_TRUE(Verifies(std::string(70, 'x'), kDovecotCramMd5Long));
  EXPECT_FALSE(Verifies(std::string(71, 'x'), kDovecotCramMd5Long));
  EXPECT_TRUE(Verifies(std::string(64, 'y'), kDovecotCramMd5Block));
  EXPECT_FALSE(Verifies(std::string(63, 'y'), kDovecotCramMd5Block));
  // Prefixes are case-insensitive and hex digits may be upper case, as Dovecot reads them.
  EXPECT_TRUE(Verifies(
      kPassword, "{cram-md5}38B57FD1A0C4B46C814AA05F20318EDD71C455380655F2C0AC35C5B359528D29"));
  EXPECT_TRUE(Verifies(kPassword, "{ssha}VekveE8OfMyp6gE/bza7JQrwGHm0pmP5"));
}

TEST(ParseStoredHash, DovecotOnlySchemesAndTheirCosts) {
  EXPECT_EQ(ParseStoredHash(kDovecotSsha512)->scheme, HashScheme::kSsha512);
  EXPECT_EQ(ParseStoredHash(kDovecotSsha256)->scheme, HashScheme::kSsha256);
  EXPECT_EQ(ParseStoredHash(kDovecotSsha)->scheme, HashScheme::kSsha);
  EXPECT_EQ(ParseStoredHash(kDovecotCramMd5)->scheme, HashScheme::kCramMd5);
  auto pbkdf2 = ParseStoredHash(kDovecotPbkdf2Rounds1000);
  ASSERT_TRUE(pbkdf2.ok()) << pbkdf2.status();
  EXPECT_EQ(pbkdf2->scheme, HashScheme::kPbkdf2);
  EXPECT_EQ(pbkdf2->pbkdf2_rounds, 1000u);
  for (const std::string& bad : std::vector<std::string>{
           "{SSHA}", "{SSHA}!!!!", "{SSHA}VekveE8OfMyp6gE/bza7JQrwGHm0pmP",
           // 20 bytes: a SHA-1 digest and no salt.
           "{SSHA}AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "{SSHA512}VekveE8OfMyp6gE/bza7JQrw", "{PBKDF2}",
           "{PBKDF2}$1$$5000$29791a1e05096fb6056dbcc2deebe57d8d695b8c",
           "{PBKDF2}$2$salt$5000$29791a1e05096fb6056dbcc2deebe57d8d695b8c",
           "{PBKDF2}$1$salt$0$29791a1e05096fb6056dbcc2deebe57d8d695b8c",
           "{PBKDF2}$1$salt$x$29791a1e05096fb6056dbcc2deebe57d8d695b8c",
           "{PBKDF2}$1$salt$5000$29791a1e05096fb6056dbcc2deebe57d8d695b8",
           "{PBKDF2}$1$salt$5000$29791a1e05096fb6056dbcc2deebe57d8d695b8g", "{CRAM-MD5}38b57fd1",
           "{CRAM-MD5}" + std::string(64, 'z')}) {
    auto parsed = ParseStoredHash(bad);
    EXPECT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(VerifyPassword, BoundsPbkdf2Rounds) {
  const char stored[] =
      "{PBKDF2}$1$oiiLkHRE.jNcCRYM$4000000000$29791a1e05096fb6056dbcc2deebe57d8d695b8c";
  EXPECT_EQ(VerifyPassword(kPassword, stored).status().code(),
            absl::StatusCode::kResourceExhausted);
  HashCostLimits strict;
  strict.pbkdf2_rounds_max = 4999;
  EXPECT_EQ(VerifyPassword(kPassword, kDovecotPbkdf2, strict).status().code(),
            absl::StatusCode::kResourceExhausted);
  strict.pbkdf2_rounds_max = 5000;
  EXPECT_TRUE(VerifyPassword(kPassword, kDovecotPbkdf2, strict).value());
}

TEST(ParseStoredHash, IdentifiesSchemesAndCosts) {
  auto yes = ParseStoredHash(kYescrypt);
  ASSERT_TRUE(yes.ok()) << yes.status();
  EXPECT_EQ(yes->scheme, HashScheme::kYescrypt);
  EXPECT_EQ(yes->memory_bytes, 16u << 20);  // N=4096, r=32: 4096 * 32 * 128 bytes
  EXPECT_EQ(yes->yescrypt_blocks, 4096u * 32);

  const std::string prefixed = std::string("{SHA512-CRYPT}") + kSha512Rounds;
  auto sha = ParseStoredHash(prefixed);
  ASSERT_TRUE(sha.ok()) << sha.status();
  EXPECT_EQ(sha->scheme, HashScheme::kSha512Crypt);
  EXPECT_EQ(sha->sha_crypt_rounds, 10000u);
  EXPECT_EQ(sha->encoded, kSha512Rounds);
  EXPECT_EQ(ParseStoredHash(kSha512)->sha_crypt_rounds, 5000u);

  auto bcrypt = ParseStoredHash(kBcrypt2y);
  ASSERT_TRUE(bcrypt.ok());
  EXPECT_EQ(bcrypt->scheme, HashScheme::kBcrypt);
  EXPECT_EQ(bcrypt->bcrypt_cost, 5u);

  auto argon = ParseStoredHash(kArgon2id);
  ASSERT_TRUE(argon.ok());
  EXPECT_EQ(argon->scheme, HashScheme::kArgon2id);
  EXPECT_EQ(argon->memory_bytes, 256u * 1024);
  EXPECT_EQ(argon->argon2_time, 1u);
  EXPECT_EQ(argon->argon2_lanes, 1u);

  EXPECT_EQ(ParseStoredHash(kSha256)->scheme, HashScheme::kSha256Crypt);
  EXPECT_EQ(ParseStoredHash(kMd5)->scheme, HashScheme::kMd5Crypt);
  EXPECT_EQ(ParseStoredHash(kArgon2i)->scheme, HashScheme::kArgon2i);
  auto plain = ParseStoredHash("{PLAIN}secret");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->scheme, HashScheme::kPlain);
  EXPECT_EQ(plain->encoded, "secret");
}

TEST(VerifyPassword, UnknownSchemesAreClearErrors) {
  auto smd5 = VerifyPassword(kPassword, "{SMD5}c2VjcmV0c2FsdA==");
  ASSERT_FALSE(smd5.ok());
  EXPECT_EQ(smd5.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(smd5.status().message()), HasSubstr("{SMD5}"));

  for (const char* stored :
       {"abJnggxhB/yWI",                                                             // DES crypt
        "$7$C6..../....SodiumChloride$kBGj9fHznVYFQMEn/qDCfrDevf9YDtcDdKvEqHJLV8D",  // scrypt
        "$argon2d$v=19$m=256,t=1,p=1$b3RoZXJzYWx0MTIz$NZLGnxbI+W/NOeGe2KwvywQztXcMA7qTkd8YJ41PnEw",
        "$sha1$40000$jtNX3nZ2$hBNaIXkt4wBI2o5rsi8KejSjNqIq", "{X-UNKNOWN}abc"}) {
    auto result = VerifyPassword(kPassword, stored);
    ASSERT_FALSE(result.ok()) << stored;
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << stored;
    EXPECT_THAT(std::string(result.status().message()),
                AnyOf(HasSubstr("unsupported"), HasSubstr("not supported"),
                      HasSubstr("unknown password scheme")))
        << stored;
  }
}

TEST(VerifyPassword, MalformedHashesAreErrorsOrMismatches) {
  const std::string long_hash(kStoredHashBytesMax + 1, 'a');
  const std::string with_nul = std::string(kSha512).insert(10, 1, '\0');
  for (std::string stored :
       std::vector<std::string>{"",
                                "{",
                                "{PLAIN",
                                "{}",
                                "{CRYPT}",
                                "$",
                                "$6$",
                                "$6$salt",
                                "$6$rounds=$salt$hash",
                                "$6$rounds=99999999999999999999$salt$hash",
                                "$6$saltsaltsaltsaltsalt$x",
                                "$5$salt$tooshort",
                                "$y$",
                                "$y$j9T",
                                "$y$j9T$",
                                "$y$j9T$salt",
                                "$y$j9T$$hash",
                                "$y$~9T$salt$hash",
                                "$y$j9T$sa!t$hash",
                                "$2b$05$short",
                                "$2b$99$" + std::string(53, 'a'),
                                "$2b$xx$" + std::string(53, 'a'),
                                "$2b$05$" + std::string(53, '!'),
                                "$1$toolongsalt$x",
                                "$argon2id$",
                                "$argon2id$v=19$m=x,t=1,p=1$c2FsdA$aGFzaA",
                                "$argon2id$v=19$m=256,t=0,p=1$c2FsdA$aGFzaA",
                                "$argon2id$v=19$m=256,t=1,p=1$c2FsdA",
                                "$argon2id$v=19$m=256,t=1,p=1$c2FsdA$",
                                "$argon2id$v=19$m=256,t=1,p=1$!!!$@@@",
                                "$argon2id$m=256,t=1$c2FsdA$aGFzaA",
                                "{CRYPT}$argon2id$v=19$m=256,t=1,p=1$c2FsdA$aGFzaA",
                                long_hash,
                                with_nul}) {
    absl::StatusOr<bool> result = VerifyPassword(kPassword, stored);
    EXPECT_TRUE(!result.ok() || !*result) << stored;
    if (!result.ok()) {
      EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument)
          << stored << ": " << result.status();
    }
  }
  // Truncated and altered versions of good hashes never match.
  for (const char* good : {kYescrypt, kSha512, kBcrypt2b, kMd5, kArgon2id}) {
    std::string s(good);
    for (size_t cut : {size_t{1}, size_t{5}, s.size() / 2}) {
      absl::StatusOr<bool> result = VerifyPassword(kPassword, s.substr(0, s.size() - cut));
      EXPECT_TRUE(!result.ok() || !*result) << s.substr(0, s.size() - cut);
    }
    std::string altered = s;
    altered.back() = altered.back() == 'A' ? 'B' : 'A';
    absl::StatusOr<bool> result = VerifyPassword(kPassword, altered);
    EXPECT_TRUE(!result.ok() || !*result) << altered;
  }
}

TEST(VerifyPassword, RefusesHashesDemandingTooMuchWork) {
  const std::string cases[] = {
      "$2b$31$HNFzA/xhVJnFnF8uwfKBR.c7BIf0oKScdWl77/OUJL95HyR9yMt0m",
      "$6$rounds=999999999$saltsaltsalt$XbL0wa.99vvsRYMr5bBKdITb.ZHLqGROubWVobCta9RxXByqp.P8f."
      "uGgQGfR4VQvUS2ybvGNqru9cEcwv0Yt1",
      // N = 2^30, r = 32: 4 TiB.
      "$y$jST$sHRBlxKGZZHitW5U3wwmI/$6qu3zas0Gtm6fcjHH8sZemFc8gZey/CTOPyC6.Yf7GD",
      "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHRzYWx0$pLCyIK/+JaqHO97lbiSigL9npv4z3sV/"
      "j89xGPaWIo0",
      "$argon2id$v=19$m=256,t=1000,p=1$c29tZXNhbHRzYWx0$pLCyIK/+JaqHO97lbiSigL9npv4z3sV/"
      "j89xGPaWIo0",
      "$argon2id$v=19$m=256,t=1,p=255$c29tZXNhbHRzYWx0$pLCyIK/+JaqHO97lbiSigL9npv4z3sV/j89xGPaWIo0",
  };
  for (const std::string& stored : cases) {
    absl::StatusOr<bool> result = VerifyPassword(kPassword, stored);
    ASSERT_FALSE(result.ok()) << stored;
    EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted) << stored;
  }
  // The same limits can be tightened by the caller.
  HashCostLimits strict;
  strict.bcrypt_cost_max = 4;
  EXPECT_EQ(VerifyPassword(kPassword, kBcrypt2b, strict).status().code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(HashPassword, RoundTripsEveryHashableScheme) {
  const std::pair<HashScheme, std::string> cases[] = {
      {HashScheme::kYescrypt, "$y$"},
      {HashScheme::kSha512Crypt, "$6$"},
      {HashScheme::kSha256Crypt, "$5$"},
      {HashScheme::kBcrypt, "$2b$10$"},
      {HashScheme::kArgon2id, "$argon2id$v=19$m=65536,t=3,p=1$"},
      {HashScheme::kPlain, "{PLAIN}"},
  };
  for (const auto& [scheme, prefix] : cases) {
    absl::StatusOr<std::string> first = HashPassword("s3cret pass", scheme);
    ASSERT_TRUE(first.ok()) << HashSchemeName(scheme) << ": " << first.status();
    EXPECT_EQ(first->substr(0, prefix.size()), prefix) << *first;
    EXPECT_EQ(ParseStoredHash(*first)->scheme, scheme);
    EXPECT_TRUE(Verifies("s3cret pass", *first)) << *first;
    EXPECT_FALSE(Verifies("s3cret pasS", *first)) << *first;
    if (scheme != HashScheme::kPlain) {
      // A fresh random salt every time.
      absl::StatusOr<std::string> second = HashPassword("s3cret pass", scheme);
      ASSERT_TRUE(second.ok());
      EXPECT_NE(*first, *second);
    }
  }
}

TEST(HashPassword, DefaultIsYescrypt) {
  absl::StatusOr<std::string> hashed = HashPassword("demo");
  ASSERT_TRUE(hashed.ok()) << hashed.status();
  EXPECT_EQ(hashed->substr(0, 7), "$y$j9T$");
  EXPECT_TRUE(Verifies("demo", *hashed));
}

TEST(HashSetting, ParsesSchemesAndCosts) {
  struct Case {
    const char* text;
    HashScheme scheme;
    uint32_t cost;
  };
  for (const Case& c :
       {Case{"yescrypt", HashScheme::kYescrypt, 0}, Case{"yescrypt:3", HashScheme::kYescrypt, 3},
        Case{"SHA512-CRYPT:5000", HashScheme::kSha512Crypt, 5000},
        Case{"sha256-crypt", HashScheme::kSha256Crypt, 0},
        Case{"bcrypt:12", HashScheme::kBcrypt, 12},
        Case{"argon2id:16", HashScheme::kArgon2id, 16}}) {
    absl::StatusOr<HashSetting> setting = ParseHashSetting(c.text);
    ASSERT_TRUE(setting.ok()) << c.text << ": " << setting.status();
    EXPECT_EQ(setting->scheme, c.scheme) << c.text;
    EXPECT_EQ(setting->cost, c.cost) << c.text;
    EXPECT_EQ(ParseHashSetting(HashSettingText(*setting))->cost, c.cost) << c.text;
  }
  for (const char* bad : {"", "md5-crypt", "plain", "ssha512", "yescrypt:", "yescrypt:0",
                          "yescrypt:12", "bcrypt:3", "sha512-crypt:999", "argon2id:x"}) {
    EXPECT_EQ(ParseHashSetting(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(HashSetting, CostReachesTheHashAndSameSchemeAndCostSeesIt) {
  const std::pair<HashSetting, std::string> cases[] = {
      {{HashScheme::kYescrypt, 3}, "$y$j7T$"},  // 4 MiB
      {{HashScheme::kYescrypt, 1}, "$y$j75$"},  // 1 MiB
      {{HashScheme::kSha512Crypt, 20000}, "$6$rounds=20000$"},
      {{HashScheme::kBcrypt, 5}, "$2b$05$"},
      {{HashScheme::kArgon2id, 2}, "$argon2id$v=19$m=2048,t=3,p=1$"},
  };
  for (const auto& [setting, prefix] : cases) {
    absl::StatusOr<std::string> hashed = HashPassword("pw", setting);
    ASSERT_TRUE(hashed.ok()) << HashSettingText(setting) << ": " << hashed.status();
    EXPECT_EQ(hashed->substr(0, prefix.size()), prefix) << *hashed;
    EXPECT_TRUE(Verifies("pw", *hashed));
    absl::StatusOr<std::string> again = HashPassword("other", setting);
    ASSERT_TRUE(again.ok());
    EXPECT_TRUE(SameSchemeAndCost(*ParseStoredHash(*hashed), *ParseStoredHash(*again)));
    absl::StatusOr<std::string> default_cost = HashPassword("pw", setting.scheme);
    ASSERT_TRUE(default_cost.ok());
    EXPECT_FALSE(SameSchemeAndCost(*ParseStoredHash(*hashed), *ParseStoredHash(*default_cost)))
        << *hashed << " vs " << *default_cost;
  }
  EXPECT_FALSE(SameSchemeAndCost(*ParseStoredHash(kSha512), *ParseStoredHash(kSha256)));
  EXPECT_TRUE(SameSchemeAndCost(*ParseStoredHash(kSha512), *ParseStoredHash(kDrepperSha512)));
}

TEST(HashPassword, RefusesBadPasswordsAndVerifyOnlySchemes) {
  EXPECT_EQ(HashPassword("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HashPassword(std::string("a\0b", 3)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HashPassword(std::string(kPasswordBytesMax + 1, 'x')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(HashPassword(std::string(kPasswordBytesMax, 'x'), HashScheme::kSha256Crypt).ok());
  EXPECT_EQ(HashPassword("pw", HashScheme::kMd5Crypt).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(HashPassword("pw", HashScheme::kArgon2i).status().code(),
            absl::StatusCode::kInvalidArgument);
  for (HashScheme scheme : {HashScheme::kSsha512, HashScheme::kSsha256, HashScheme::kSsha,
                            HashScheme::kPbkdf2, HashScheme::kCramMd5}) {
    EXPECT_EQ(HashPassword("pw", scheme).status().code(), absl::StatusCode::kInvalidArgument)
        << HashSchemeName(scheme);
  }
}

// crypt_rn with a private crypt_data per call: concurrent verifications do not interfere.
TEST(VerifyPassword, ConcurrentVerificationsAgree) {
  std::vector<std::thread> threads;
  std::vector<int> matches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &matches] {
      for (int i = 0; i < 4; ++i) {
        auto good = VerifyPassword(kPassword, (t % 2) ? kSha512 : kSha256);
        auto bad = VerifyPassword("nope", (t % 2) ? kSha256 : kSha512);
        if (good.ok() && *good && bad.ok() && !*bad) ++matches[t];
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(matches[t], 4) << t;
}

}  // namespace
}  // namespace posthaste::auth
