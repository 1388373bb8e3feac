#include "server/auth/password_hash.h"

#include <argon2.h>
#include <crypt.h>
#include <openssl/base64.h>
#include <openssl/evp.h>
#include <openssl/md5.h>
#include <openssl/mem.h>
#include <openssl/sha.h>
#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/strings.h"

#ifndef OPENSSL_IS_BORINGSSL
#error "server/auth must be built against BoringSSL (see tools/build/defs.bzl)"
#endif

namespace posthaste::auth {
namespace {

// Argon2id parameters for new hashes (RFC 9106's second recommended option, with one lane:
// verification runs on one offload thread).
constexpr uint32_t kArgon2TimeCost = 3;
constexpr uint32_t kArgon2MemoryKib = 64 * 1024;
constexpr uint32_t kArgon2Lanes = 1;
constexpr size_t kArgon2SaltBytes = 16;
constexpr size_t kArgon2HashBytes = 32;
constexpr unsigned long kBcryptCost = 10;

// The longest {SCHEME} name we look for.
constexpr size_t kSchemeNameBytesMax = 32;

absl::Status Malformed(std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("malformed password hash: ", AbslView(why)));
}

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

// The crypt(3) base-64 alphabet: "./0-9A-Za-z". Returns 64 for anything else.
uint32_t CryptBase64Value(char c) {
  if (c == '.') return 0;
  if (c == '/') return 1;
  if (c >= '0' && c <= '9') return 2 + (c - '0');
  if (c >= 'A' && c <= 'Z') return 12 + (c - 'A');
  if (c >= 'a' && c <= 'z') return 38 + (c - 'a');
  return 64;
}

bool IsCryptBase64(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return CryptBase64Value(c) < 64; });
}

// yescrypt writes each parameter as a variable-length number: the first character's value
// selects a range (values 0-47 stand alone; higher ones announce 1-5 more characters of 6 bits
// each), offset by `min`. Consumes from `*s`; false if the encoding is invalid.
bool DecodeYescryptNumber(std::string_view* s, uint32_t min, uint64_t* out) {
  if (s->empty()) return false;
  uint32_t c = CryptBase64Value((*s)[0]);
  if (c > 63) return false;
  s->remove_prefix(1);
  uint32_t start = 0, end = 47, extra_chars = 0, bits = 0;
  uint64_t value = min;
  while (c > end) {
    value += uint64_t{end + 1 - start} << bits;
    start = end + 1;
    end = start + (62 - end) / 2;
    ++extra_chars;
    bits += 6;
  }
  value += uint64_t{c - start} << bits;
  while (extra_chars-- > 0) {
    if (s->empty()) return false;
    uint32_t d = CryptBase64Value((*s)[0]);
    if (d > 63) return false;
    s->remove_prefix(1);
    bits -= 6;
    value += uint64_t{d} << bits;
  }
  *out = value;
  return true;
}

uint64_t SaturatingMul(uint64_t a, uint64_t b) {
  if (a != 0 && b > UINT64_MAX / a) return UINT64_MAX;
  return a * b;
}

// "$y$<params>$<salt>$<hash>".
absl::Status ParseYescrypt(std::string_view s, ParsedStoredHash* out) {
  s.remove_prefix(3);
  uint64_t flavor, n_log2, r, have = 0, p = 1, t = 0, g = 0, nrom_log2 = 0;
  if (!DecodeYescryptNumber(&s, 0, &flavor) || !DecodeYescryptNumber(&s, 1, &n_log2) ||
      !DecodeYescryptNumber(&s, 1, &r)) {
    return Malformed("bad yescrypt parameters");
  }
  if (!s.empty() && s[0] != '$') {
    if (!DecodeYescryptNumber(&s, 1, &have)) return Malformed("bad yescrypt parameters");
    if ((have & 1) && !DecodeYescryptNumber(&s, 2, &p)) return Malformed("bad yescrypt p");
    if ((have & 2) && !DecodeYescryptNumber(&s, 1, &t)) return Malformed("bad yescrypt t");
    if ((have & 4) && !DecodeYescryptNumber(&s, 1, &g)) return Malformed("bad yescrypt g");
    if ((have & 8) && !DecodeYescryptNumber(&s, 1, &nrom_log2)) {
      return Malformed("bad yescrypt NROM");
    }
  }
  if (n_log2 > 63 || r == 0 || p == 0) return Malformed("bad yescrypt parameters");
  if (g != 0 || nrom_log2 != 0 || (have & ~uint64_t{15}) != 0) {
    return absl::InvalidArgumentError("yescrypt hash upgrades and ROMs are not supported");
  }
  if (s.empty() || s[0] != '$') return Malformed("yescrypt parameters not followed by '$'");
  s.remove_prefix(1);
  size_t dollar = s.find('$');
  if (dollar == std::string_view::npos || dollar == 0) return Malformed("no yescrypt salt");
  std::string_view salt = s.substr(0, dollar);
  std::string_view hash = s.substr(dollar + 1);
  if (!IsCryptBase64(salt) || hash.empty() || !IsCryptBase64(hash)) {
    return Malformed("bad yescrypt salt or hash");
  }
  uint64_t n = uint64_t{1} << n_log2;
  out->scheme = HashScheme::kYescrypt;
  out->memory_bytes = SaturatingMul(SaturatingMul(n, r), 128);
  out->yescrypt_blocks = SaturatingMul(SaturatingMul(SaturatingMul(n, r), p), t + 1);
  return absl::OkStatus();
}

// Up to 10 decimal digits (ParseDecimalAtMost); false on none, too many, or past UINT32_MAX.
bool ParseDecimal(std::string_view digits, uint32_t* out) {
  if (digits.size() > 10) return false;
  const std::optional<uint64_t> value = ParseDecimalAtMost(digits, UINT32_MAX);
  if (!value.has_value()) return false;
  *out = static_cast<uint32_t>(*value);
  return true;
}

// "$6$[rounds=N$]<salt>$<hash>" and "$5$...".
absl::Status ParseShaCrypt(std::string_view s, HashScheme scheme, ParsedStoredHash* out) {
  s.remove_prefix(3);
  uint32_t rounds = 5000;
  if (StartsWith(s, "rounds=")) {
    s.remove_prefix(7);
    size_t dollar = s.find('$');
    if (dollar == std::string_view::npos || !ParseDecimal(s.substr(0, dollar), &rounds)) {
      return Malformed("bad sha-crypt rounds");
    }
    s.remove_prefix(dollar + 1);
  }
  size_t dollar = s.find('$');
  if (dollar == std::string_view::npos) return Malformed("no sha-crypt hash");
  std::string_view hash = s.substr(dollar + 1);
  size_t hash_chars = scheme == HashScheme::kSha512Crypt ? 86 : 43;
  if (dollar > 16 || hash.size() != hash_chars || !IsCryptBase64(hash)) {
    return Malformed("bad sha-crypt salt or hash");
  }
  out->scheme = scheme;
  out->sha_crypt_rounds = rounds;
  return absl::OkStatus();
}

// "$2b$NN$" + 22 salt + 31 hash characters (bcrypt's own base-64 alphabet, same characters).
absl::Status ParseBcrypt(std::string_view s, ParsedStoredHash* out) {
  if (s.size() != 60 || s[6] != '$') return Malformed("bcrypt hash must be 60 characters");
  uint32_t cost;
  if (!ParseDecimal(s.substr(4, 2), &cost) || cost < 4 || cost > 31) {
    return Malformed("bad bcrypt cost");
  }
  if (!IsCryptBase64(s.substr(7))) return Malformed("bad bcrypt salt or hash");
  out->scheme = HashScheme::kBcrypt;
  out->bcrypt_cost = cost;
  return absl::OkStatus();
}

// "$1$<salt up to 8>$<22 characters>".
absl::Status ParseMd5Crypt(std::string_view s, ParsedStoredHash* out) {
  s.remove_prefix(3);
  size_t dollar = s.find('$');
  if (dollar == std::string_view::npos || dollar > 8) return Malformed("bad md5-crypt salt");
  std::string_view hash = s.substr(dollar + 1);
  if (hash.size() != 22 || !IsCryptBase64(hash)) return Malformed("bad md5-crypt hash");
  out->scheme = HashScheme::kMd5Crypt;
  return absl::OkStatus();
}

absl::Status ParseCrypt(std::string_view s, ParsedStoredHash* out) {
  if (StartsWith(s, "$y$")) return ParseYescrypt(s, out);
  if (StartsWith(s, "$6$")) return ParseShaCrypt(s, HashScheme::kSha512Crypt, out);
  if (StartsWith(s, "$5$")) return ParseShaCrypt(s, HashScheme::kSha256Crypt, out);
  if (StartsWith(s, "$2b$") || StartsWith(s, "$2y$") || StartsWith(s, "$2a$")) {
    return ParseBcrypt(s, out);
  }
  if (StartsWith(s, "$1$")) return ParseMd5Crypt(s, out);
  if (StartsWith(s, "$argon2")) return Malformed("Argon2 hash behind a crypt prefix");
  if (StartsWith(s, "$")) {
    size_t end = s.find('$', 1);
    std::string_view id =
        s.substr(0, std::min<size_t>(end == std::string_view::npos ? 8 : end + 1, 8));
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported crypt scheme \"", AbslView(id), "\""));
  }
  return absl::InvalidArgumentError("unsupported crypt scheme (DES crypt or unknown)");
}

// "$argon2id$[v=19$]m=M,t=T,p=P$<salt>$<hash>".
absl::Status ParseArgon2(std::string_view s, ParsedStoredHash* out) {
  if (StartsWith(s, "$argon2id$")) {
    out->scheme = HashScheme::kArgon2id;
    s.remove_prefix(10);
  } else if (StartsWith(s, "$argon2i$")) {
    out->scheme = HashScheme::kArgon2i;
    s.remove_prefix(9);
  } else if (StartsWith(s, "$argon2d$")) {
    return absl::InvalidArgumentError("Argon2d is not supported for passwords");
  } else {
    return Malformed("not an Argon2 hash");
  }
  if (StartsWith(s, "v=")) {
    size_t dollar = s.find('$');
    uint32_t version;
    if (dollar == std::string_view::npos || !ParseDecimal(s.substr(2, dollar - 2), &version)) {
      return Malformed("bad Argon2 version");
    }
    s.remove_prefix(dollar + 1);
  }
  uint32_t m, t, p;
  auto take = [&s](std::string_view key, char end, uint32_t* value) {
    if (!StartsWith(s, key)) return false;
    s.remove_prefix(key.size());
    size_t stop = s.find(end);
    if (stop == std::string_view::npos || !ParseDecimal(s.substr(0, stop), value)) return false;
    s.remove_prefix(stop + 1);
    return true;
  };
  if (!take("m=", ',', &m) || !take("t=", ',', &t) || !take("p=", '$', &p)) {
    return Malformed("bad Argon2 parameters");
  }
  if (t == 0 || p == 0) return Malformed("bad Argon2 parameters");
  size_t dollar = s.find('$');
  if (dollar == std::string_view::npos || dollar == 0 || dollar + 1 == s.size()) {
    return Malformed("no Argon2 salt or hash");
  }
  out->memory_bytes = SaturatingMul(m, 1024);
  out->argon2_time = t;
  out->argon2_lanes = p;
  return absl::OkStatus();
}

enum class PrefixFamily { kCrypt, kArgon2, kPlain, kSaltedSha, kPbkdf2, kCramMd5, kUnknown };

PrefixFamily LookupPrefix(std::string_view name, HashScheme* salted_sha) {
  std::string upper = absl::AsciiStrToUpper(AbslView(name));
  for (const char* crypt :
       {"CRYPT", "BLF-CRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "MD5"}) {
    if (upper == crypt) return PrefixFamily::kCrypt;
  }
  if (upper == "ARGON2ID" || upper == "ARGON2I") return PrefixFamily::kArgon2;
  if (upper == "PLAIN" || upper == "CLEAR" || upper == "CLEARTEXT") return PrefixFamily::kPlain;
  if (upper == "SSHA512") *salted_sha = HashScheme::kSsha512;
  if (upper == "SSHA256") *salted_sha = HashScheme::kSsha256;
  if (upper == "SSHA") *salted_sha = HashScheme::kSsha;
  if (upper == "SSHA512" || upper == "SSHA256" || upper == "SSHA") return PrefixFamily::kSaltedSha;
  if (upper == "PBKDF2") return PrefixFamily::kPbkdf2;
  if (upper == "CRAM-MD5") return PrefixFamily::kCramMd5;
  return PrefixFamily::kUnknown;
}

size_t SaltedShaDigestBytes(HashScheme scheme) {
  switch (scheme) {
    case HashScheme::kSsha512:
      return SHA512_DIGEST_LENGTH;
    case HashScheme::kSsha256:
      return SHA256_DIGEST_LENGTH;
    default:
      return SHA_DIGEST_LENGTH;
  }
}

// Standard base-64 with padding; nullopt when malformed.
std::optional<std::string> DecodeBase64(std::string_view text) {
  size_t max_bytes = 0;
  if (!EVP_DecodedLength(&max_bytes, text.size())) return std::nullopt;
  std::string out(max_bytes, '\0');
  size_t out_bytes = 0;
  if (!EVP_DecodeBase64(reinterpret_cast<uint8_t*>(out.data()), &out_bytes, out.size(),
                        reinterpret_cast<const uint8_t*>(text.data()), text.size())) {
    return std::nullopt;
  }
  out.resize(out_bytes);
  return out;
}

// Hex digits in either case; nullopt when malformed.
std::optional<std::string> DecodeHex(std::string_view text) {
  if (text.size() % 2 != 0) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return 10 + (c - 'a');
    if (c >= 'A' && c <= 'F') return 10 + (c - 'A');
    return -1;
  };
  std::string out;
  out.reserve(text.size() / 2);
  for (size_t i = 0; i < text.size(); i += 2) {
    int high = nibble(text[i]), low = nibble(text[i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    out.push_back(static_cast<char>(high * 16 + low));
  }
  return out;
}

// {SSHA512} and kin: base64 of the digest followed by a salt of at least one byte.
absl::Status ParseSaltedSha(std::string_view s, HashScheme scheme, ParsedStoredHash* out) {
  std::optional<std::string> raw = DecodeBase64(s);
  if (!raw.has_value()) return Malformed("salted SHA hash is not base-64");
  if (raw->size() <= SaltedShaDigestBytes(scheme)) return Malformed("salted SHA hash too short");
  out->scheme = scheme;
  return absl::OkStatus();
}

// Dovecot's {PBKDF2}: "$1$<salt>$<rounds>$<40 hex digits>" (PBKDF2-HMAC-SHA1, the salt's
// characters used as they are).
struct Pbkdf2Fields {
  std::string_view salt;
  uint32_t rounds = 0;
  std::string_view hex;
};

std::optional<Pbkdf2Fields> SplitPbkdf2(std::string_view s) {
  if (!StartsWith(s, "$1$")) return std::nullopt;
  s.remove_prefix(3);
  size_t salt_end = s.find('$');
  if (salt_end == std::string_view::npos || salt_end == 0) return std::nullopt;
  Pbkdf2Fields fields;
  fields.salt = s.substr(0, salt_end);
  s.remove_prefix(salt_end + 1);
  size_t rounds_end = s.find('$');
  if (rounds_end == std::string_view::npos ||
      !ParseDecimal(s.substr(0, rounds_end), &fields.rounds) || fields.rounds == 0) {
    return std::nullopt;
  }
  fields.hex = s.substr(rounds_end + 1);
  if (fields.hex.size() != 2 * SHA_DIGEST_LENGTH || !DecodeHex(fields.hex).has_value()) {
    return std::nullopt;
  }
  return fields;
}

absl::Status ParsePbkdf2(std::string_view s, ParsedStoredHash* out) {
  std::optional<Pbkdf2Fields> fields = SplitPbkdf2(s);
  if (!fields.has_value()) return Malformed("PBKDF2 hash is not $1$salt$rounds$hex");
  out->scheme = HashScheme::kPbkdf2;
  out->pbkdf2_rounds = fields->rounds;
  return absl::OkStatus();
}

constexpr size_t kCramMd5ContextBytes = 2 * MD5_DIGEST_LENGTH;

absl::Status ParseCramMd5(std::string_view s, ParsedStoredHash* out) {
  if (s.size() != 2 * kCramMd5ContextBytes || !DecodeHex(s).has_value()) {
    return Malformed("CRAM-MD5 hash is not 64 hex digits");
  }
  out->scheme = HashScheme::kCramMd5;
  return absl::OkStatus();
}

// The CRAM-MD5 "context" Dovecot stores: HMAC-MD5 (RFC 2104) with the password as key, stopped
// after each of its two MD5s has absorbed its padded-key block. Written as the outer state's
// four words, then the inner state's, each little-endian (the order was checked against
// `doveadm pw -s CRAM-MD5`, see server/auth/testdata/dovecot_vectors.sh). Anyone holding these
// 32 bytes can answer CRAM-MD5 challenges: it is a password equivalent, unsalted and fast.
std::string CramMd5Context(std::string_view password) {
  uint8_t key[MD5_CBLOCK] = {};
  if (password.size() > MD5_CBLOCK) {
    MD5(reinterpret_cast<const uint8_t*>(password.data()), password.size(), key);
  } else {
    std::memcpy(key, password.data(), password.size());
  }
  uint8_t inner_pad[MD5_CBLOCK], outer_pad[MD5_CBLOCK];
  for (size_t i = 0; i < MD5_CBLOCK; ++i) {
    inner_pad[i] = key[i] ^ 0x36;
    outer_pad[i] = key[i] ^ 0x5c;
  }
  MD5_CTX inner, outer;
  MD5_Init(&inner);
  MD5_Update(&inner, inner_pad, sizeof(inner_pad));
  MD5_Init(&outer);
  MD5_Update(&outer, outer_pad, sizeof(outer_pad));
  std::string context;
  context.reserve(kCramMd5ContextBytes);
  for (const MD5_CTX* ctx : {&outer, &inner}) {
    for (uint32_t word : ctx->h) {
      for (int shift = 0; shift < 32; shift += 8)
        context.push_back(static_cast<char>(word >> shift));
    }
  }
  OPENSSL_cleanse(key, sizeof(key));
  OPENSSL_cleanse(inner_pad, sizeof(inner_pad));
  OPENSSL_cleanse(outer_pad, sizeof(outer_pad));
  OPENSSL_cleanse(&inner, sizeof(inner));
  OPENSSL_cleanse(&outer, sizeof(outer));
  return context;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // Lengths are public here: they follow from the scheme.
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool VerifySaltedSha(std::string_view password, const ParsedStoredHash& parsed) {
  std::optional<std::string> raw = DecodeBase64(parsed.encoded);
  if (!raw.has_value()) return false;
  const size_t digest_bytes = SaltedShaDigestBytes(parsed.scheme);
  std::string message(password);
  message.append(*raw, digest_bytes);
  uint8_t digest[SHA512_DIGEST_LENGTH];
  const auto* bytes = reinterpret_cast<const uint8_t*>(message.data());
  switch (parsed.scheme) {
    case HashScheme::kSsha512:
      SHA512(bytes, message.size(), digest);
      break;
    case HashScheme::kSsha256:
      SHA256(bytes, message.size(), digest);
      break;
    default:
      SHA1(bytes, message.size(), digest);
      break;
  }
  OPENSSL_cleanse(message.data(), message.size());
  return ConstantTimeEquals(std::string_view(reinterpret_cast<const char*>(digest), digest_bytes),
                            std::string_view(*raw).substr(0, digest_bytes));
}

absl::StatusOr<bool> VerifyPbkdf2(std::string_view password, const ParsedStoredHash& parsed) {
  std::optional<Pbkdf2Fields> fields = SplitPbkdf2(parsed.encoded);
  if (!fields.has_value()) return Malformed("PBKDF2 hash is not $1$salt$rounds$hex");
  std::optional<std::string> expected = DecodeHex(fields->hex);
  uint8_t key[SHA_DIGEST_LENGTH];
  if (!expected.has_value() ||
      !PKCS5_PBKDF2_HMAC_SHA1(password.data(), password.size(),
                              reinterpret_cast<const uint8_t*>(fields->salt.data()),
                              fields->salt.size(), fields->rounds, sizeof(key), key)) {
    return absl::InternalError("PBKDF2 failed");
  }
  return ConstantTimeEquals(std::string_view(reinterpret_cast<const char*>(key), sizeof(key)),
                            *expected);
}

// SHA-256 of both sides compared in constant time: neither the bytes nor the length of a
// stored plaintext password leak through timing.
bool PlainEquals(std::string_view a, std::string_view b) {
  uint8_t da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(a.data()), a.size(), da);
  SHA256(reinterpret_cast<const uint8_t*>(b.data()), b.size(), db);
  return CRYPTO_memcmp(da, db, sizeof(da)) == 0;
}

bool UsablePassword(std::string_view password) {
  return !password.empty() && password.size() <= kPasswordBytesMax &&
         password.find('\0') == std::string_view::npos;
}

// crypt_data is about 32 KiB: too big for a stack that might be small, and it must start
// zeroed. Cleared again on destruction, since it held the password.
struct CryptScratch {
  CryptScratch() : data(std::make_unique<crypt_data>()) {
    std::memset(data.get(), 0, sizeof(*data));
  }
  ~CryptScratch() { OPENSSL_cleanse(data.get(), sizeof(*data)); }
  std::unique_ptr<crypt_data> data;
};

// Runs crypt_rn; nullopt-like empty string when libxcrypt refuses the setting.
std::string RunCrypt(const std::string& password, const std::string& setting) {
  CryptScratch scratch;
  const char* result =
      crypt_rn(password.c_str(), setting.c_str(), scratch.data.get(), sizeof(crypt_data));
  if (result == nullptr || result[0] == '*') return std::string();
  return std::string(result);
}

absl::StatusOr<std::string> HashWithCrypt(const std::string& password, const char* prefix,
                                          unsigned long count) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  // rbytes == NULL: libxcrypt draws the salt from the OS RNG.
  if (crypt_gensalt_rn(prefix, count, nullptr, 0, setting, sizeof(setting)) == nullptr) {
    return absl::InternalError(
        absl::StrCat("crypt_gensalt_rn(", prefix, ") failed: ", std::strerror(errno)));
  }
  std::string hashed = RunCrypt(password, setting);
  if (hashed.empty()) return absl::InternalError(absl::StrCat("crypt_rn(", prefix, ") failed"));
  return hashed;
}

absl::StatusOr<std::string> HashWithArgon2id(const std::string& password, uint32_t memory_kib) {
  uint8_t salt[kArgon2SaltBytes];
  size_t filled = 0;
  while (filled < sizeof(salt)) {
    ssize_t n = getrandom(salt + filled, sizeof(salt) - filled, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("getrandom failed: ", std::strerror(errno)));
    }
    filled += static_cast<size_t>(n);
  }
  size_t encoded_len = argon2_encodedlen(kArgon2TimeCost, memory_kib, kArgon2Lanes, sizeof(salt),
                                         kArgon2HashBytes, Argon2_id);
  std::string encoded(encoded_len, '\0');
  int rc = argon2id_hash_encoded(kArgon2TimeCost, memory_kib, kArgon2Lanes, password.data(),
                                 password.size(), salt, sizeof(salt), kArgon2HashBytes,
                                 encoded.data(), encoded.size());
  if (rc != ARGON2_OK) {
    return absl::InternalError(absl::StrCat("argon2id: ", argon2_error_message(rc)));
  }
  encoded.resize(std::strlen(encoded.c_str()));
  return encoded;
}

}  // namespace

std::string_view HashSchemeName(HashScheme scheme) {
  switch (scheme) {
    case HashScheme::kYescrypt:
      return "yescrypt";
    case HashScheme::kSha512Crypt:
      return "sha512-crypt";
    case HashScheme::kSha256Crypt:
      return "sha256-crypt";
    case HashScheme::kBcrypt:
      return "bcrypt";
    case HashScheme::kMd5Crypt:
      return "md5-crypt";
    case HashScheme::kArgon2id:
      return "argon2id";
    case HashScheme::kArgon2i:
      return "argon2i";
    case HashScheme::kPlain:
      return "plain";
    case HashScheme::kSsha512:
      return "ssha512";
    case HashScheme::kSsha256:
      return "ssha256";
    case HashScheme::kSsha:
      return "ssha";
    case HashScheme::kPbkdf2:
      return "pbkdf2";
    case HashScheme::kCramMd5:
      return "cram-md5";
  }
  return "unknown";
}

absl::StatusOr<ParsedStoredHash> ParseStoredHash(std::string_view stored) {
  if (stored.empty()) return Malformed("empty");
  if (stored.size() > kStoredHashBytesMax) return Malformed("too long");
  if (stored.find('\0') != std::string_view::npos) return Malformed("contains a NUL byte");
  ParsedStoredHash out{};
  PrefixFamily family;
  HashScheme salted_sha = HashScheme::kSsha;
  std::string_view encoded = stored;
  if (stored[0] == '{') {
    size_t close = stored.find('}');
    if (close == std::string_view::npos || close > kSchemeNameBytesMax) {
      return Malformed("unterminated {SCHEME} prefix");
    }
    std::string_view name = stored.substr(1, close - 1);
    family = LookupPrefix(name, &salted_sha);
    if (family == PrefixFamily::kUnknown) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown password scheme {", AbslView(name), "}"));
    }
    encoded = stored.substr(close + 1);
  } else if (StartsWith(stored, "$argon2")) {
    family = PrefixFamily::kArgon2;
  } else {
    family = PrefixFamily::kCrypt;
  }
  out.encoded = encoded;
  switch (family) {
    case PrefixFamily::kPlain:
      out.scheme = HashScheme::kPlain;
      return out;
    case PrefixFamily::kArgon2:
      PH_RETURN_IF_ERROR(ParseArgon2(encoded, &out));
      return out;
    case PrefixFamily::kCrypt:
      PH_RETURN_IF_ERROR(ParseCrypt(encoded, &out));
      return out;
    case PrefixFamily::kSaltedSha:
      PH_RETURN_IF_ERROR(ParseSaltedSha(encoded, salted_sha, &out));
      return out;
    case PrefixFamily::kPbkdf2:
      PH_RETURN_IF_ERROR(ParsePbkdf2(encoded, &out));
      return out;
    case PrefixFamily::kCramMd5:
      PH_RETURN_IF_ERROR(ParseCramMd5(encoded, &out));
      return out;
    case PrefixFamily::kUnknown:
      break;
  }
  return absl::InvalidArgumentError("unknown password scheme");
}

absl::Status CheckHashCost(const ParsedStoredHash& parsed, const HashCostLimits& limits) {
  auto exceeded = [](std::string_view what, uint64_t value, uint64_t max) {
    return absl::ResourceExhaustedError(
        absl::StrCat("password hash ", AbslView(what), " ", value, " exceeds the limit ", max));
  };
  if (parsed.memory_bytes > limits.memory_bytes_max) {
    return exceeded("memory", parsed.memory_bytes, limits.memory_bytes_max);
  }
  if (parsed.yescrypt_blocks > limits.yescrypt_blocks_max) {
    return exceeded("yescrypt work", parsed.yescrypt_blocks, limits.yescrypt_blocks_max);
  }
  if (parsed.bcrypt_cost > limits.bcrypt_cost_max) {
    return exceeded("bcrypt cost", parsed.bcrypt_cost, limits.bcrypt_cost_max);
  }
  if (parsed.sha_crypt_rounds > limits.sha_crypt_rounds_max) {
    return exceeded("sha-crypt rounds", parsed.sha_crypt_rounds, limits.sha_crypt_rounds_max);
  }
  if (parsed.argon2_time > limits.argon2_time_max) {
    return exceeded("argon2 time cost", parsed.argon2_time, limits.argon2_time_max);
  }
  if (parsed.argon2_lanes > limits.argon2_lanes_max) {
    return exceeded("argon2 lanes", parsed.argon2_lanes, limits.argon2_lanes_max);
  }
  if (parsed.pbkdf2_rounds > limits.pbkdf2_rounds_max) {
    return exceeded("PBKDF2 rounds", parsed.pbkdf2_rounds, limits.pbkdf2_rounds_max);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> HashPassword(std::string_view password, HashScheme scheme) {
  return HashPassword(password, HashSetting{scheme, 0});
}

absl::StatusOr<std::string> HashPassword(std::string_view password, const HashSetting& setting) {
  const HashScheme scheme = setting.scheme;
  const uint32_t cost = setting.cost;
  if (password.empty()) return absl::InvalidArgumentError("empty password");
  if (password.size() > kPasswordBytesMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("password longer than ", kPasswordBytesMax, " bytes"));
  }
  if (password.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError("password contains a NUL byte");
  }
  std::string pw(password);
  switch (scheme) {
    case HashScheme::kYescrypt:
      return HashWithCrypt(pw, "$y$", cost);
    case HashScheme::kSha512Crypt:
      return HashWithCrypt(pw, "$6$", cost);
    case HashScheme::kSha256Crypt:
      return HashWithCrypt(pw, "$5$", cost);
    case HashScheme::kBcrypt:
      return HashWithCrypt(pw, "$2b$", cost == 0 ? kBcryptCost : cost);
    case HashScheme::kArgon2id:
      return HashWithArgon2id(pw, cost == 0 ? kArgon2MemoryKib : cost * 1024);
    case HashScheme::kPlain:
      return absl::StrCat("{PLAIN}", AbslView(password));
    case HashScheme::kMd5Crypt:
    case HashScheme::kArgon2i:
    case HashScheme::kSsha512:
    case HashScheme::kSsha256:
    case HashScheme::kSsha:
    case HashScheme::kPbkdf2:
    case HashScheme::kCramMd5:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat("scheme ", AbslView(HashSchemeName(scheme)),
                                                 " is accepted for verification only"));
}

absl::StatusOr<bool> VerifyPassword(std::string_view password, std::string_view stored_hash,
                                    const HashCostLimits& limits) {
  PH_ASSIGN_OR_RETURN(ParsedStoredHash parsed, ParseStoredHash(stored_hash));
  PH_RETURN_IF_ERROR(CheckHashCost(parsed, limits));
  if (!UsablePassword(password)) return false;
  switch (parsed.scheme) {
    case HashScheme::kPlain:
      return PlainEquals(password, parsed.encoded);
    case HashScheme::kSsha512:
    case HashScheme::kSsha256:
    case HashScheme::kSsha:
      return VerifySaltedSha(password, parsed);
    case HashScheme::kPbkdf2:
      return VerifyPbkdf2(password, parsed);
    case HashScheme::kCramMd5:
      return ConstantTimeEquals(CramMd5Context(password), *DecodeHex(parsed.encoded));
    case HashScheme::kArgon2id:
    case HashScheme::kArgon2i: {
      std::string encoded(parsed.encoded);
      int rc = argon2_verify(encoded.c_str(), password.data(), password.size(),
                             parsed.scheme == HashScheme::kArgon2id ? Argon2_id : Argon2_i);
      if (rc == ARGON2_OK) return true;
      if (rc == ARGON2_VERIFY_MISMATCH) return false;
      return absl::InvalidArgumentError(
          absl::StrCat("malformed password hash: argon2: ", argon2_error_message(rc)));
    }
    case HashScheme::kYescrypt:
    case HashScheme::kSha512Crypt:
    case HashScheme::kSha256Crypt:
    case HashScheme::kBcrypt:
    case HashScheme::kMd5Crypt: {
      std::string setting(parsed.encoded);
      std::string computed = RunCrypt(std::string(password), setting);
      if (computed.empty()) {
        return absl::InvalidArgumentError("malformed password hash: rejected by libxcrypt");
      }
      // The length of a well-formed hash is public (it follows from the scheme).
      if (computed.size() != setting.size()) return false;
      return CRYPTO_memcmp(computed.data(), setting.data(), setting.size()) == 0;
    }
  }
  return absl::InternalError("unhandled password scheme");
}

absl::StatusOr<HashSetting> ParseHashSetting(std::string_view text) {
  std::string_view name = text, cost_text;
  if (size_t colon = text.find(':'); colon != std::string_view::npos) {
    name = text.substr(0, colon);
    cost_text = text.substr(colon + 1);
  }
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("password scheme \"", AbslView(text), "\": ", AbslView(why)));
  };
  HashSetting setting;
  uint32_t cost_min = 0, cost_max = 0;
  const std::string lower = absl::AsciiStrToLower(AbslView(name));
  if (lower == "yescrypt") {
    setting.scheme = HashScheme::kYescrypt;
    cost_min = 1, cost_max = 11;
  } else if (lower == "sha512-crypt" || lower == "sha256-crypt") {
    setting.scheme = lower == "sha512-crypt" ? HashScheme::kSha512Crypt : HashScheme::kSha256Crypt;
    cost_min = 1000, cost_max = 999'999'999;
  } else if (lower == "bcrypt") {
    setting.scheme = HashScheme::kBcrypt;
    cost_min = 4, cost_max = 31;
  } else if (lower == "argon2id") {
    setting.scheme = HashScheme::kArgon2id;
    cost_min = 1, cost_max = 4096;
  } else {
    return bad("expected yescrypt, sha512-crypt, sha256-crypt, bcrypt or argon2id[:COST]");
  }
  if (!cost_text.empty() || text.find(':') != std::string_view::npos) {
    if (!ParseDecimal(cost_text, &setting.cost) || setting.cost < cost_min ||
        setting.cost > cost_max) {
      return bad(absl::StrCat("cost must be ", cost_min, "-", cost_max));
    }
  }
  return setting;
}

HashSetting TenantHashSetting(std::string_view tenant_scheme, const HashSetting& fallback) {
  if (tenant_scheme.empty()) return fallback;
  absl::StatusOr<HashSetting> setting = ParseHashSetting(tenant_scheme);
  return setting.ok() ? *setting : fallback;
}

std::string HashSettingText(const HashSetting& setting) {
  std::string text(HashSchemeName(setting.scheme));
  if (setting.cost != 0) absl::StrAppend(&text, ":", setting.cost);
  return text;
}

bool SameSchemeAndCost(const ParsedStoredHash& a, const ParsedStoredHash& b) {
  return a.scheme == b.scheme && a.memory_bytes == b.memory_bytes &&
         a.yescrypt_blocks == b.yescrypt_blocks && a.bcrypt_cost == b.bcrypt_cost &&
         a.sha_crypt_rounds == b.sha_crypt_rounds && a.argon2_time == b.argon2_time &&
         a.argon2_lanes == b.argon2_lanes && a.pbkdf2_rounds == b.pbkdf2_rounds;
}

}  // namespace posthaste::auth
