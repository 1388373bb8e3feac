// Password hashing and verification for posthaste accounts.
//
// Defines HashPassword (new hashes; yescrypt by default, through libxcrypt's crypt_rn) and
// VerifyPassword (stored hashes in crypt(3) form, Argon2 PHC form, or with a Dovecot-style
// "{SCHEME}" prefix, so hashes exported from Dovecot migrate unchanged: the salted SHA digests,
// PBKDF2 and CRAM-MD5 are verified too). HashSetting names the scheme and cost new hashes get
// (the server's --password_scheme), and SameSchemeAndCost tells whether a stored hash is at it.
//
// Threading: every function is thread-safe and reentrant (crypt_rn with a private
// crypt_data per call; libargon2 is reentrant). Hashing and verification are deliberately
// slow (yescrypt at libxcrypt's default cost takes about 22 ms of CPU and 16 MiB of memory;
// Argon2id as configured here about 64 MiB): call them only from the offload pool, never on a
// reactor thread.
//
// Nothing here keeps pointers to its arguments after returning.
#ifndef POSTHASTE_SERVER_AUTH_PASSWORD_HASH_H_
#define POSTHASTE_SERVER_AUTH_PASSWORD_HASH_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace posthaste::auth {

// The longest password accepted, in bytes (libxcrypt's CRYPT_MAX_PASSPHRASE_SIZE counts the
// terminating NUL). Longer passwords are refused by HashPassword and never match in
// VerifyPassword.
inline constexpr size_t kPasswordBytesMax = 511;
// The longest stored hash accepted, including any {SCHEME} prefix.
inline constexpr size_t kStoredHashBytesMax = 1024;

enum class HashScheme {
  kYescrypt,     // $y$      (default for new hashes)
  kSha512Crypt,  // $6$
  kSha256Crypt,  // $5$
  kBcrypt,       // $2b$ $2y$ $2a$
  kMd5Crypt,     // $1$      (verify only: legacy hashes from migrations)
  kArgon2id,     // $argon2id$
  kArgon2i,      // $argon2i$ (verify only)
  kPlain,        // {PLAIN}text: stored as is, so APOP can work for tenants that need it
  // Imported from Dovecot, verify only (see docs/ARCHITECTURE.md, "Password import"):
  kSsha512,  // {SSHA512}base64(SHA-512(password salt) salt)
  kSsha256,  // {SSHA256}base64(SHA-256(password salt) salt)
  kSsha,     // {SSHA}base64(SHA-1(password salt) salt)
  kPbkdf2,   // {PBKDF2}$1$salt$rounds$hex: PBKDF2-HMAC-SHA1, 20-byte key
  kCramMd5,  // {CRAM-MD5}hex of HMAC-MD5's two MD5 states after the key block (RFC 2195)
};

// A short lowercase name for logs and the CLI ("yescrypt", "sha512-crypt", ...).
std::string_view HashSchemeName(HashScheme scheme);

// Upper bounds on the work a stored hash may demand. A hash asking for more is refused with
// ResourceExhausted before any hashing starts: a hash string is data (imported from elsewhere)
// and must not be able to make one login take minutes or gigabytes.
struct HashCostLimits {
  uint64_t memory_bytes_max = uint64_t{1} << 30;     // yescrypt N*r*128, argon2 m KiB
  uint64_t yescrypt_blocks_max = uint64_t{1} << 24;  // N*r*p*(t+1); the default is 2^17
  uint32_t bcrypt_cost_max = 16;                     // log2 rounds; 10-12 is usual
  uint32_t sha_crypt_rounds_max = 5'000'000;         // default 5000; passlib uses 656000
  uint32_t argon2_time_max = 64;                     // t passes
  uint32_t argon2_lanes_max = 16;                    // p
  uint32_t pbkdf2_rounds_max = 1'000'000;            // Dovecot writes 5000; ~1 us each
};

// A stored hash taken apart without hashing anything.
struct ParsedStoredHash {
  HashScheme scheme;
  // The part after any {SCHEME} prefix: the crypt(3) or PHC string, or the plain password.
  // Points into the argument of ParseStoredHash.
  std::string_view encoded;
  // What verifying it costs (0 where not applicable).
  uint64_t memory_bytes = 0;
  uint64_t yescrypt_blocks = 0;
  uint32_t bcrypt_cost = 0;
  uint32_t sha_crypt_rounds = 0;
  uint32_t argon2_time = 0;
  uint32_t argon2_lanes = 0;
  uint32_t pbkdf2_rounds = 0;
};

// Identifies the scheme of `stored` and reads its cost parameters. Recognised forms: a bare
// crypt(3) string ($y$, $6$, $5$, $2b$/$2y$/$2a$, $1$), a bare $argon2id$/$argon2i$ PHC string,
// or either behind a Dovecot prefix (case-insensitive): {CRYPT}, {BLF-CRYPT}, {SHA512-CRYPT},
// {SHA256-CRYPT}, {MD5-CRYPT}, {ARGON2ID}, {ARGON2I}, {PLAIN}/{CLEAR}/{CLEARTEXT}, and the
// Dovecot-only forms {SSHA512}, {SSHA256}, {SSHA}, {PBKDF2} and {CRAM-MD5}.
// The crypt-family prefixes are interchangeable, as in Dovecot: the inner "$id$" decides.
// Errors: InvalidArgument, for a malformed string and for a scheme posthaste does not verify (an
// unknown {SCHEME} or crypt id, e.g. DES crypt: the message names it). Never crashes on any
// input.
absl::StatusOr<ParsedStoredHash> ParseStoredHash(std::string_view stored);

// Fails with ResourceExhausted when `parsed` demands more than `limits` allow.
absl::Status CheckHashCost(const ParsedStoredHash& parsed, const HashCostLimits& limits);

// Hashes `password` with a fresh random salt (from the OS RNG) at the scheme's default cost:
// yescrypt and the sha-crypts at libxcrypt's defaults, bcrypt cost 10 ($2b$), Argon2id t=3
// m=64 MiB p=1. kPlain returns "{PLAIN}" + password. Returns the string to store.
// Errors: InvalidArgument for an empty password, one with a NUL byte, one longer than
// kPasswordBytesMax, or a verify-only scheme; Internal if the library fails.
absl::StatusOr<std::string> HashPassword(std::string_view password,
                                         HashScheme scheme = HashScheme::kYescrypt);

// The scheme and cost of new hashes. `cost` 0 means the scheme's default; otherwise it is
// libxcrypt's count for yescrypt (1-11, default 5; the memory is 2^(count-1) MiB: 16 MiB at 5),
// the rounds for the sha-crypts (1000-999999999), log2 rounds for bcrypt (4-31) and the
// memory in MiB for Argon2id (1-4096, default 64).
struct HashSetting {
  HashScheme scheme = HashScheme::kYescrypt;
  uint32_t cost = 0;
};

// What posthaste hashes new passwords with unless told otherwise (`serve --password_scheme`,
// `user add --password_scheme`): yescrypt at libxcrypt's count 3, i.e. 4 MiB and about a fifth
// of the CPU of libxcrypt's default count 5 (16 MiB). docs/BENCHMARKS.md, "Cold logins", has
// the measurements and the reasons.
inline constexpr HashSetting kDefaultHashSetting{HashScheme::kYescrypt, 3};

// Parses "SCHEME" or "SCHEME:COST" (SCHEME as HashSchemeName prints it: yescrypt,
// sha512-crypt, sha256-crypt, bcrypt, argon2id). InvalidArgument for anything else, including
// verify-only schemes and costs out of the ranges above.
absl::StatusOr<HashSetting> ParseHashSetting(std::string_view text);
// "yescrypt:5"-style text that ParseHashSetting reads back (no ":COST" when cost is 0).
std::string HashSettingText(const HashSetting& setting);

// The setting of a tenant's new hashes: its own (`tenant_scheme`, ParseHashSetting's text, as
// `tenant policy --password_scheme` stores it) when set and valid, else `fallback`.
HashSetting TenantHashSetting(std::string_view tenant_scheme, const HashSetting& fallback);

// As HashPassword(password, scheme), at `setting`'s cost.
absl::StatusOr<std::string> HashPassword(std::string_view password, const HashSetting& setting);

// True when two parsed hashes have the same scheme and the same cost parameters (salts and
// digests aside): a stored hash that is not at the server's setting gets rehashed at login
// when that is enabled.
bool SameSchemeAndCost(const ParsedStoredHash& a, const ParsedStoredHash& b);

// Checks `password` against `stored_hash`. Returns true on a match, false on a mismatch
// (including passwords that could never have been hashed: empty, with NUL, too long).
// The final comparison takes the same time whatever the bytes are.
// Errors: as ParseStoredHash and CheckHashCost, or InvalidArgument when the hashing library
// rejects the stored string. Never crashes on any input.
absl::StatusOr<bool> VerifyPassword(std::string_view password, std::string_view stored_hash,
                                    const HashCostLimits& limits = HashCostLimits{});

}  // namespace posthaste::auth

#endif  // POSTHASTE_SERVER_AUTH_PASSWORD_HASH_H_
