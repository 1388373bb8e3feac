// The server side of SASL exchanges (RFC 4422) beyond PLAIN and LOGIN: the contract every
// mechanism implements (SCRAM, CRAM-MD5, OAUTHBEARER, XOAUTH2, EXTERNAL), so the POP3 session
// and its driver run any of them the same way.
//
// An exchange is sans-I/O and synchronous: it is fed the client's decoded responses and answers
// with the next step. It never reads the store: when it needs an account's secrets it answers
// kNeedAccount, and the driver looks the account up (a blocking store read, so on the offload
// pool) and hands the answer to AccountFound(). Every step is cheap (HMACs, one signature
// verification), except what a mechanism documents otherwise.
//
// Driver contract (the POP3 session's, RFC 5034):
//   - AUTH MECH [initial-response] calls Start(); each client line after a "+ challenge" is
//     base64-decoded and given to Continue(); a line "*" cancels (the driver ends the exchange
//     with "-ERR" and does not call it again).
//   - kChallenge: send "+ " + base64(challenge) (an empty challenge is "+ ").
//   - kSuccess: the exchange is over; `authcid`/`authzid` name who logged in and as whom. The
//     driver still checks that the account may log in (exists, enabled, tenant policy) and,
//     when authzid differs from authcid, that authcid may act for authzid (master users).
//   - kFailure: the exchange is over; "-ERR [AUTH]" (or [SYS/TEMP] for kTempFailure) after the
//     failure delay. A mechanism with an error payload for the client (RFC 7628's JSON) sends
//     it first as a kChallenge and fails on the client's next response.
//   - After kSuccess or kFailure no method is called again.
//
// Threading: an exchange belongs to one connection and is used from one thread at a time.
#ifndef POSTHASTE_SERVER_AUTH_SASL_EXCHANGE_H_
#define POSTHASTE_SERVER_AUTH_SASL_EXCHANGE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace posthaste::auth {

enum class SaslMechanism : uint8_t {
  kPlain,
  kLogin,
  kCramMd5,
  kScramSha1,
  kScramSha1Plus,
  kScramSha256,
  kScramSha256Plus,
  kOAuthBearer,
  kXOAuth2,
  kExternal,
};
inline constexpr int kSaslMechanismCount = 10;

// The IANA name ("SCRAM-SHA-256-PLUS", "XOAUTH2", ...).
std::string_view SaslMechanismName(SaslMechanism mechanism);
// Case-insensitive; nullopt for a name not in the enum.
std::optional<SaslMechanism> ParseSaslMechanism(std::string_view name);

// Why an exchange failed: the `reason` label of the auth failure counters.
enum class SaslFailure : uint8_t {
  kMalformed,               // the client's message breaks the mechanism's syntax
  kCancelled,               // the client sent "*"
  kUnknownUser,             // no such account (answered like kBadCredentials)
  kBadCredentials,          // wrong proof, digest or password
  kChannelBindingMismatch,  // -PLUS: the client's binding differs from this connection's
  kAuthzidRefused,          // authcid may not act for the authzid
  kTokenInvalid,            // signature, issuer, audience or syntax of a token
  kTokenExpired,            // expiry (or not-before) outside the allowed clock skew
  kNotAllowed,              // the mechanism is not allowed here (TLS state, tenant policy)
  kTempFailure,             // the store or a directory could not answer: [SYS/TEMP]
};
inline constexpr int kSaslFailureCount = 10;
std::string_view SaslFailureName(SaslFailure failure);  // "bad_credentials", ...

// What the driver knows about the connection when the exchange starts.
struct SaslConnectionFacts {
  bool tls = false;
  // RFC 9266 tls-exporter channel binding (32 bytes of keying material, label
  // "EXPORTER-Channel-Binding", no context); empty unless TLS 1.3 is active.
  std::string tls_exporter;
  // The verified TLS client certificate's identity for EXTERNAL (empty when none was verified).
  std::string client_certificate_identity;
  // APOP and CRAM-MD5: whether some tenant allows them (the user is unknown when mechanisms
  // are offered), and, once the client names a user, whether that user's tenant does (unset:
  // every tenant). Called on the connection's thread during the exchange.
  bool shared_secret_allowed = false;
  std::function<bool(std::string_view user)> shared_secret_allowed_for;
};

// Whether a client certificate's identity may be used on a connection whose server certificate
// is `certificate_name` (whose client CA verified it): a CA speaks for its own tenant only, so
// the identity must be an address whose domain is that name or a parent of it ("bob@example.org"
// fits "example.org" and "pop.example.org", not "example.net" or "badexample.org"). Case-
// insensitive.
bool IdentityFitsCertificateName(std::string_view identity, std::string_view certificate_name);

// An account as the store keeps it, for mechanisms that need its secrets.
struct SaslAccount {
  std::string address;        // canonical local@domain
  bool disabled = false;
  std::string password_hash;  // as stored (server/auth/password_hash.h forms)
  // Stored SCRAM keys in RFC 5803 form ("SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey
  // b64>:<ServerKey b64>"); empty when the account has none for that hash.
  std::string scram_sha1;
  std::string scram_sha256;
  // The recoverable secret for APOP and CRAM-MD5, kept only for accounts that opted in.
  std::string shared_secret;
};

struct SaslStep {
  enum class Kind : uint8_t { kChallenge, kNeedAccount, kSuccess, kFailure };
  Kind kind = Kind::kFailure;
  std::string challenge;  // kChallenge: raw bytes; the driver base64-encodes them
  std::string authcid;    // kNeedAccount: the account to look up; kSuccess: who authenticated
  std::string authzid;    // kSuccess: as whom; empty means authcid
  SaslFailure failure = SaslFailure::kMalformed;  // kFailure

  static SaslStep Failed(SaslFailure why) {
    SaslStep step;
    step.kind = Kind::kFailure;
    step.failure = why;
    return step;
  }
};

class SaslServerExchange {
 public:
  virtual ~SaslServerExchange() = default;
  virtual SaslMechanism mechanism() const = 0;
  // AUTH: `initial_response` is nullopt when the command carried none, else its decoded bytes
  // (RFC 5034's "=" decodes to empty).
  virtual SaslStep Start(std::optional<std::string_view> initial_response) = 0;
  // The client's next response, decoded. REQUIRES: the last step was kChallenge.
  virtual SaslStep Continue(std::string_view response) = 0;
  // The store's answer for the authcid of the last kNeedAccount: the account, NotFound for an
  // unknown one, any other error when the store failed. REQUIRES: the last step was
  // kNeedAccount.
  virtual SaslStep AccountFound(const absl::StatusOr<SaslAccount>& account) = 0;
  // Why the last kFailure happened, in words for the operator's log (never sent to the
  // client: it may say which check a guessed token failed); empty when the reason says it all.
  virtual std::string_view failure_detail() const { return {}; }
};

}  // namespace posthaste::auth

#endif  // POSTHASTE_SERVER_AUTH_SASL_EXCHANGE_H_
