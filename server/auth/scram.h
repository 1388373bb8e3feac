// SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), with and without -PLUS channel binding
// (tls-exporter, RFC 9266): the stored keys kept beside a password hash (RFC 5803 form), and the
// server side of the exchange as a SaslServerExchange (server/auth/sasl_exchange.h).
//
// Stored keys: DeriveScramKeys runs PBKDF2 (kScramIterationsDefault rounds, a random 16-byte
// salt) when a password is set; the server never needs the password again, and what it stores
// (StoredKey = H(HMAC(SaltedPassword, "Client Key")), ServerKey) does not let a thief log in
// without an offline attack of the same cost. The password is taken as its bytes: SASLprep
// (RFC 4013) leaves printable ASCII unchanged; a non-ASCII password works with clients that
// send it in the normalised form it was set in.
//
// Unknown users: the exchange answers with a salt derived from the server secret and the user
// name (stable across logins and restarts while the secret is) and the default iteration count,
// then fails at the proof, so the first challenge does not tell who exists.
//
// Threading: the free functions are thread-safe; an exchange is used by one thread at a time.
#ifndef POSTHASTE_SERVER_AUTH_SCRAM_H_
#define POSTHASTE_SERVER_AUTH_SCRAM_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/auth/sasl_exchange.h"

namespace posthaste::auth {

enum class ScramHash : uint8_t { kSha1, kSha256 };

// RFC 7677 section 4's minimum for SHA-256, also used for SHA-1 (as Dovecot does). Each login
// costs the client this many HMACs, the server none (it keeps the derived keys).
inline constexpr uint32_t kScramIterationsDefault = 4096;
// Stored keys with more rounds are refused when parsed (a client would spend seconds).
inline constexpr uint32_t kScramIterationsMax = 1'000'000;
// Bytes of a server nonce (before base64) and of a salt made here.
inline constexpr size_t kScramNonceBytes = 18;
inline constexpr size_t kScramSaltBytes = 16;
// The longest client message the parsers take (the session's SASL line limit is larger).
inline constexpr size_t kScramMessageBytesMax = 4096;

// One password's keys for one hash (RFC 5802 section 3). Byte strings, not base64.
struct ScramKeys {
  ScramHash hash = ScramHash::kSha256;
  uint32_t iterations = 0;
  std::string salt;
  std::string stored_key;
  std::string server_key;
};

// With a random salt. Fails only when the system's random source does.
absl::StatusOr<ScramKeys> DeriveScramKeys(ScramHash hash, std::string_view password,
                                          uint32_t iterations = kScramIterationsDefault);
ScramKeys DeriveScramKeysWithSalt(ScramHash hash, std::string_view password, std::string_view salt,
                                  uint32_t iterations);
// Both verifiers of a new password in RFC 5803 form, with fresh salts and the default
// iteration count: what `user add`, `user passwd` and the admin API store beside the hash.
struct ScramVerifierPair {
  std::string sha1;
  std::string sha256;
};
absl::StatusOr<ScramVerifierPair> MakeScramVerifiers(std::string_view password);

// RFC 5803: "SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>".
std::string FormatScramKeys(const ScramKeys& keys);
// InvalidArgument for anything else (wrong key lengths, iterations 0 or above the maximum).
absl::StatusOr<ScramKeys> ParseScramKeys(std::string_view text);

// The client's first message (RFC 5802 section 7), parsed. Names are decoded ("=2C" -> ',').
struct ScramClientFirst {
  char channel_binding_flag = 'n';   // 'n', 'y' or 'p'
  std::string channel_binding_name;  // 'p' only: "tls-exporter", ...
  std::string authzid;               // empty when none
  std::string username;
  std::string client_nonce;
  std::string gs2_header;  // "n,," / "p=tls-exporter,a=x," as sent
  std::string bare;        // client-first-message-bare as sent
};
std::optional<ScramClientFirst> ParseScramClientFirst(std::string_view message);

// The client's final message.
struct ScramClientFinal {
  std::string channel_binding;  // c=, decoded
  std::string nonce;            // r=
  std::string proof;            // p=, decoded
  std::string without_proof;    // client-final-message-without-proof as sent
};
std::optional<ScramClientFinal> ParseScramClientFinal(std::string_view message);

// SCRAM-SHA-1[-PLUS] and SCRAM-SHA-256[-PLUS]. `secret`: the server secret fake salts are
// derived from (at least 16 bytes). A -PLUS mechanism needs facts.tls_exporter; a plain one
// refuses a client that says "y" (it could bind, believes we cannot) when facts.tls_exporter
// is set, since the server then offers -PLUS (RFC 5802 section 6, downgrade).
class ScramServerExchange final : public SaslServerExchange {
 public:
  ScramServerExchange(SaslMechanism mechanism, const SaslConnectionFacts& facts,
                      std::string_view secret);
  ~ScramServerExchange() override;

  SaslMechanism mechanism() const override { return mechanism_; }
  SaslStep Start(std::optional<std::string_view> initial_response) override;
  SaslStep Continue(std::string_view response) override;
  SaslStep AccountFound(const absl::StatusOr<SaslAccount>& account) override;

  // The server's nonce part (instead of random bytes), for the RFCs' examples.
  void SetServerNonceForTest(std::string nonce) { server_nonce_ = std::move(nonce); }

 private:
  enum class Stage : uint8_t { kClientFirst, kAccount, kClientFinal, kFinalAck, kDone };
  SaslStep OnClientFirst(std::string_view message);
  SaslStep OnClientFinal(std::string_view message);
  SaslStep Fail(SaslFailure failure);

  const SaslMechanism mechanism_;
  const ScramHash hash_;
  const bool plus_;
  const std::string tls_exporter_;
  const std::string secret_;
  Stage stage_ = Stage::kClientFirst;
  std::string server_nonce_;
  ScramClientFirst first_;
  ScramKeys keys_;
  // Why the proof must fail even if it matched the fake keys (unknown or disabled account).
  std::optional<SaslFailure> doomed_;
  std::string server_first_;
  std::string server_signature_;
};

}  // namespace posthaste::auth

#endif  // POSTHASTE_SERVER_AUTH_SCRAM_H_
