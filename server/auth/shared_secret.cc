#include "server/auth/shared_secret.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/md5.h>
#include <openssl/rand.h>

#include <cstdint>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/strings.h"

namespace posthaste::auth {
namespace {

constexpr size_t kDigestHexBytes = 2 * MD5_DIGEST_LENGTH;
constexpr size_t kUserBytesMax = 255;

std::string Hex(const uint8_t* bytes, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * size, '0');
  for (size_t i = 0; i < size; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 0xf];
  }
  return out;
}

// The lowercase form of 32 hex digits, or nullopt.
std::optional<std::string> LowerDigest(std::string_view digest) {
  if (digest.size() != kDigestHexBytes) return std::nullopt;
  std::string out(digest);
  for (char& c : out) {
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::nullopt;
  }
  return out;
}

bool SameDigest(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

std::string MakeServerChallenge(std::string_view hostname) {
  uint64_t random = 0;
  RAND_bytes(reinterpret_cast<uint8_t*>(&random), sizeof(random));
  return absl::StrCat("<", random, ".", absl::ToUnixMicros(absl::Now()), "@", AbslView(hostname),
                      ">");
}

std::string ApopDigestHex(std::string_view timestamp, std::string_view secret) {
  MD5_CTX context;
  MD5_Init(&context);
  MD5_Update(&context, timestamp.data(), timestamp.size());
  MD5_Update(&context, secret.data(), secret.size());
  uint8_t digest[MD5_DIGEST_LENGTH];
  MD5_Final(digest, &context);
  OPENSSL_cleanse(&context, sizeof(context));
  return Hex(digest, sizeof(digest));
}

bool ApopDigestMatches(std::string_view timestamp, std::string_view secret,
                       std::string_view digest_hex) {
  if (secret.empty()) return false;
  const std::optional<std::string> given = LowerDigest(digest_hex);
  if (!given.has_value()) return false;
  return SameDigest(ApopDigestHex(timestamp, secret), *given);
}

std::string CramMd5DigestHex(std::string_view challenge, std::string_view secret) {
  uint8_t mac[MD5_DIGEST_LENGTH];
  unsigned mac_len = 0;
  HMAC(EVP_md5(), secret.data(), secret.size(), reinterpret_cast<const uint8_t*>(challenge.data()),
       challenge.size(), mac, &mac_len);
  return Hex(mac, mac_len);
}

std::optional<CramMd5Response> ParseCramMd5Response(std::string_view response) {
  const size_t space = response.rfind(' ');
  if (space == std::string_view::npos || space == 0 || space > kUserBytesMax) return std::nullopt;
  std::optional<std::string> digest = LowerDigest(response.substr(space + 1));
  if (!digest.has_value()) return std::nullopt;
  const std::string_view user = response.substr(0, space);
  if (user.find('\0') != std::string_view::npos) return std::nullopt;
  return CramMd5Response{std::string(user), *std::move(digest)};
}

CramMd5ServerExchange::CramMd5ServerExchange(std::string challenge,
                                             std::function<bool(std::string_view)> allowed_for)
    : challenge_(std::move(challenge)), allowed_for_(std::move(allowed_for)) {}

SaslStep CramMd5ServerExchange::Start(std::optional<std::string_view> initial_response) {
  // Server-first (RFC 4422 section 3.3): a client that sends data first breaks the mechanism.
  if (initial_response.has_value()) return SaslStep::Failed(SaslFailure::kMalformed);
  SaslStep step;
  step.kind = SaslStep::Kind::kChallenge;
  step.challenge = challenge_;
  return step;
}

SaslStep CramMd5ServerExchange::Continue(std::string_view response) {
  std::optional<CramMd5Response> parsed = ParseCramMd5Response(response);
  if (!parsed.has_value()) return SaslStep::Failed(SaslFailure::kMalformed);
  if (allowed_for_ && !allowed_for_(parsed->user)) return SaslStep::Failed(SaslFailure::kNotAllowed);
  user_ = std::move(parsed->user);
  digest_ = std::move(parsed->digest_hex);
  SaslStep step;
  step.kind = SaslStep::Kind::kNeedAccount;
  step.authcid = user_;
  return step;
}

SaslStep CramMd5ServerExchange::AccountFound(const absl::StatusOr<SaslAccount>& account) {
  if (!account.ok()) {
    return SaslStep::Failed(absl::IsNotFound(account.status()) ? SaslFailure::kUnknownUser
                                                      : SaslFailure::kTempFailure);
  }
  if (account->shared_secret.empty()) return SaslStep::Failed(SaslFailure::kNotAllowed);
  std::string expected = CramMd5DigestHex(challenge_, account->shared_secret);
  const bool match = SameDigest(expected, digest_);
  OPENSSL_cleanse(expected.data(), expected.size());
  if (!match) return SaslStep::Failed(SaslFailure::kBadCredentials);
  SaslStep step;
  step.kind = SaslStep::Kind::kSuccess;
  step.authcid = account->address.empty() ? user_ : account->address;
  return step;
}

}  // namespace posthaste::auth
