// The mechanisms that need a recoverable per-account secret (RFC 1939 section 7 APOP and
// RFC 2195 CRAM-MD5), and the challenges both send: pure functions and one SaslServerExchange.
//
// The secret is what `posthaste user apop-secret` stored (storage's AccountInfo::shared_secret):
// a plaintext-equivalent, which is why both mechanisms are off unless a tenant allows them and
// an account opted in. Digests are compared in constant time (CRYPTO_memcmp).
//
// Threading: the functions are thread-safe; an exchange belongs to one connection (see
// sasl_exchange.h).
#ifndef POSTHASTE_SERVER_AUTH_SHARED_SECRET_H_
#define POSTHASTE_SERVER_AUTH_SHARED_SECRET_H_

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/auth/sasl_exchange.h"

namespace posthaste::auth {

// A fresh "<random.clock@hostname>" (RFC 1939's timestamp form, RFC 2195's challenge form):
// 64 random bits in decimal, the Unix time in microseconds, and `hostname`. Unique per call
// with overwhelming probability, so a digest over it cannot be replayed on another connection.
std::string MakeServerChallenge(std::string_view hostname);

// MD5(timestamp || secret) in lowercase hex: the APOP digest (RFC 1939 section 7).
std::string ApopDigestHex(std::string_view timestamp, std::string_view secret);
// Whether `digest_hex` (32 hex digits, any case) is the APOP digest of `timestamp` under
// `secret`. False for an empty secret. Constant time in the digest's content.
bool ApopDigestMatches(std::string_view timestamp, std::string_view secret,
                       std::string_view digest_hex);

// HMAC-MD5(key = secret, text = challenge) in lowercase hex (RFC 2195).
std::string CramMd5DigestHex(std::string_view challenge, std::string_view secret);

// CRAM-MD5 (RFC 2195), server side. Server-first: Start() answers the challenge given at
// construction; the client's one response is "user SP digest" (the name may itself contain
// spaces: the digest follows the last one); then the account is asked for (kNeedAccount),
// and AccountFound() checks HMAC-MD5 under the account's shared secret.
// Failures: an initial response, a malformed response or a name longer than 255 bytes:
// kMalformed; the tenant does not allow it (`allowed_for` says no for the name): kNotAllowed
// (no account lookup); unknown account: kUnknownUser; no secret: kNotAllowed; wrong digest:
// kBadCredentials; store error: kTempFailure. Disabled accounts are left to the driver.
class CramMd5ServerExchange final : public SaslServerExchange {
 public:
  // `challenge`: MakeServerChallenge's form. `allowed_for(user)`: whether the tenant of the
  // name the client gave allows the mechanism (called on the exchange's thread; may be empty:
  // always allowed).
  CramMd5ServerExchange(std::string challenge,
                        std::function<bool(std::string_view user)> allowed_for);

  SaslMechanism mechanism() const override { return SaslMechanism::kCramMd5; }
  SaslStep Start(std::optional<std::string_view> initial_response) override;
  SaslStep Continue(std::string_view response) override;
  SaslStep AccountFound(const absl::StatusOr<SaslAccount>& account) override;

 private:
  const std::string challenge_;
  const std::function<bool(std::string_view)> allowed_for_;
  std::string user_;
  std::string digest_;  // lowercase hex from the client
};

// Splits a CRAM-MD5 response into the name and the lowercased digest. nullopt when the
// response is not "name SP 32-hex-digits" with a non-empty name of at most 255 bytes.
struct CramMd5Response {
  std::string user;
  std::string digest_hex;
};
std::optional<CramMd5Response> ParseCramMd5Response(std::string_view response);

}  // namespace posthaste::auth

#endif  // POSTHASTE_SERVER_AUTH_SHARED_SECRET_H_
