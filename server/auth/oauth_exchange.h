// The OAUTHBEARER (RFC 7628) and XOAUTH2 SASL mechanisms as SaslServerExchanges
// (server/auth/sasl_exchange.h), and their message parsers.
//
// Both carry a bearer token (a JWT, verified by server/auth/oauth_tenants.h against the
// tenant's JWKS) and optionally the user to log in as. On success the step is kSuccess with
// authcid = the address that logged in (the user named, else the token's mailbox claim) and no
// authzid. On a token failure the exchange sends the error JSON as a challenge (RFC 7628
// section 3.2.2; XOAUTH2 does the same with status "401") and fails with kTokenInvalid or
// kTokenExpired on the client's next response, whatever it is (RFC 7628 wants %x01). A message
// that breaks the syntax fails at once with kMalformed. The exchange never needs the store:
// kNeedAccount is never answered, and the driver's usual account checks (exists, enabled,
// tenant policy) follow kSuccess.
//
// Threading: an exchange belongs to one connection, as sasl_exchange.h says. The parsers are
// pure and thread-safe; fuzzed by //server/auth:oauth_message_fuzzer.
#ifndef POSTHASTE_SERVER_AUTH_OAUTH_EXCHANGE_H_
#define POSTHASTE_SERVER_AUTH_OAUTH_EXCHANGE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "server/auth/jwt.h"
#include "server/auth/oauth_tenants.h"
#include "server/auth/sasl_exchange.h"

namespace posthaste::auth {

// A client message is the token plus a few short pairs.
inline constexpr size_t kOAuthMessageBytesMax = kJwtBytesMax + 4096;
inline constexpr size_t kOAuthMessagePairsMax = 16;

// RFC 7628 section 3.1 client response: gs2-header ("n" or "y", no channel binding; optional
// "a=" authzid with =2C/=3D decoded), %x01, key=value pairs each ended by %x01 (keys ALPHA,
// values VCHAR/SP/HTAB/CR/LF, no repeated key), %x01. `auth` is required and must be
// "Bearer" (any case) 1*SP b64token; host and port are kept but not used.
struct OAuthBearerMessage {
  std::string authzid;  // empty when the gs2 header had none
  std::string token;
  std::string host;
  std::string port;
};
absl::StatusOr<OAuthBearerMessage> ParseOAuthBearerMessage(std::string_view message);

// XOAUTH2: "user=" user %x01 "auth=Bearer " token %x01 %x01, pairs in either order.
struct XOAuth2Message {
  std::string user;
  std::string token;
};
absl::StatusOr<XOAuth2Message> ParseXOAuth2Message(std::string_view message);

// The failure challenges. `scope` and `openid_configuration` are left out when empty.
std::string OAuthBearerErrorJson(std::string_view scope, std::string_view openid_configuration);
std::string XOAuth2ErrorJson(std::string_view scope);

// Seconds since the Unix epoch; injected so tests choose the time.
using UnixSecondsClock = std::function<int64_t()>;

// One login's exchange. `snapshot` (null: no tenant has OAuth, every token fails) is read at
// each step; the exchange keeps it alive.
class OAuthExchange : public SaslServerExchange {
 public:
  OAuthExchange(SaslMechanism mechanism, std::shared_ptr<const OAuthSnapshot> snapshot,
                UnixSecondsClock clock);

  SaslMechanism mechanism() const override { return mechanism_; }
  SaslStep Start(std::optional<std::string_view> initial_response) override;
  SaslStep Continue(std::string_view response) override;
  SaslStep AccountFound(const absl::StatusOr<SaslAccount>& account) override;

  // Why the last failure happened, for the session log (never sent to the client).
  std::string_view failure_detail() const override { return failure_detail_; }

 private:
  enum class State : uint8_t { kStart, kAwaitingMessage, kAwaitingErrorAck, kDone };

  SaslStep OnClientMessage(std::string_view message);
  SaslStep Fail(SaslFailure failure);

  const SaslMechanism mechanism_;  // kOAuthBearer or kXOAuth2
  const std::shared_ptr<const OAuthSnapshot> snapshot_;
  const UnixSecondsClock clock_;
  State state_ = State::kStart;
  SaslFailure pending_failure_ = SaslFailure::kTokenInvalid;
  std::string failure_detail_;
};

// The two mechanisms, for the mechanism -> exchange factory.
std::unique_ptr<SaslServerExchange> NewOAuthBearerExchange(
    std::shared_ptr<const OAuthSnapshot> snapshot, UnixSecondsClock clock);
std::unique_ptr<SaslServerExchange> NewXOAuth2Exchange(
    std::shared_ptr<const OAuthSnapshot> snapshot, UnixSecondsClock clock);

}  // namespace posthaste::auth

#endif  // POSTHASTE_SERVER_AUTH_OAUTH_EXCHANGE_H_
