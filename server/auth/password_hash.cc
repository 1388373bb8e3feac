#include "server/auth/password_hash.h"

#include <argon2.h>
#include <crypt.h>
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
    return absl::UnimplementedError("yescrypt hash upgrades and ROMs are not supported");
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
    return absl::UnimplementedError(
        absl::StrCat("unsupported crypt scheme \"", AbslView(id), "\""));
  }
  return absl::UnimplementedError("unsupported crypt scheme (DES crypt or unknown)");
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
    return absl::UnimplementedError("Argon2d is not supported for passwords");
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

enum class PrefixFamily { kCrypt, kArgon2, kPlain, kUnknown };

PrefixFamily LookupPrefix(std::string_view name) {
  std::string upper = absl::AsciiStrToUpper(AbslView(name));
  for (const char* crypt :
       {"CRYPT", "BLF-CRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "MD5-CRYPT", "MD5"}) {
    if (upper == crypt) return PrefixFamily::kCrypt;
  }
  if (upper == "ARGON2ID" || upper == "ARGON2I") return PrefixFamily::kArgon2;
  if (upper == "PLAIN" || upper == "CLEAR" || upper == "CLEARTEXT") return PrefixFamily::kPlain;
  return PrefixFamily::kUnknown;
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

absl::StatusOr<std::string> HashWithArgon2id(const std::string& password) {
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
  size_t encoded_len = argon2_encodedlen(kArgon2TimeCost, kArgon2MemoryKib, kArgon2Lanes,
                                         sizeof(salt), kArgon2HashBytes, Argon2_id);
  std::string encoded(encoded_len, '\0');
  int rc = argon2id_hash_encoded(kArgon2TimeCost, kArgon2MemoryKib, kArgon2Lanes, password.data(),
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
  }
  return "unknown";
}

absl::StatusOr<ParsedStoredHash> ParseStoredHash(std::string_view stored) {
  if (stored.empty()) return Malformed("empty");
  if (stored.size() > kStoredHashBytesMax) return Malformed("too long");
  if (stored.find('\0') != std::string_view::npos) return Malformed("contains a NUL byte");
  ParsedStoredHash out{};
  PrefixFamily family;
  std::string_view encoded = stored;
  if (stored[0] == '{') {
    size_t close = stored.find('}');
    if (close == std::string_view::npos || close > kSchemeNameBytesMax) {
      return Malformed("unterminated {SCHEME} prefix");
    }
    std::string_view name = stored.substr(1, close - 1);
    family = LookupPrefix(name);
    if (family == PrefixFamily::kUnknown) {
      return absl::UnimplementedError(
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
    case PrefixFamily::kUnknown:
      break;
  }
  return absl::UnimplementedError("unknown password scheme");
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
  return absl::OkStatus();
}

absl::StatusOr<std::string> HashPassword(std::string_view password, HashScheme scheme) {
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
      return HashWithCrypt(pw, "$y$", 0);
    case HashScheme::kSha512Crypt:
      return HashWithCrypt(pw, "$6$", 0);
    case HashScheme::kSha256Crypt:
      return HashWithCrypt(pw, "$5$", 0);
    case HashScheme::kBcrypt:
      return HashWithCrypt(pw, "$2b$", kBcryptCost);
    case HashScheme::kArgon2id:
      return HashWithArgon2id(pw);
    case HashScheme::kPlain:
      return absl::StrCat("{PLAIN}", AbslView(password));
    case HashScheme::kMd5Crypt:
    case HashScheme::kArgon2i:
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

}  // namespace posthaste::auth
