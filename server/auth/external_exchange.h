// EXTERNAL (RFC 4422 appendix A), server side: the client is who its verified TLS client
// certificate says (SaslConnectionFacts::client_certificate_identity, set by the transport
// from tls/'s per-tenant client-CA verification: the certificate's first subjectAltName email,
// else its subject CN). The client's only message is an authorisation identity, possibly empty.
//
// Start(): without a verified certificate: kFailure kNotAllowed. With an initial response:
// decided at once; without one: an empty challenge, then Continue() decides.
// Success: authcid = the certificate's identity; authzid = the client's authorisation id
// when it names someone else (empty when it is empty or the same name in another case);
// the driver checks the account and, for a different authzid, the master-user rule.
// A response with a NUL or longer than 255 bytes: kMalformed. It never asks for an account.
//
// Threading: one connection's, as every exchange (sasl_exchange.h).
#ifndef POSTHASTE_SERVER_AUTH_EXTERNAL_EXCHANGE_H_
#define POSTHASTE_SERVER_AUTH_EXTERNAL_EXCHANGE_H_

#include <optional>
#include <string>
#include <string_view>

#include "server/auth/sasl_exchange.h"

namespace posthaste::auth {

class ExternalServerExchange final : public SaslServerExchange {
 public:
  explicit ExternalServerExchange(const SaslConnectionFacts& facts);

  SaslMechanism mechanism() const override { return SaslMechanism::kExternal; }
  SaslStep Start(std::optional<std::string_view> initial_response) override;
  SaslStep Continue(std::string_view response) override;
  // Never asked for (the exchange answers no kNeedAccount); fails closed if called.
  SaslStep AccountFound(const absl::StatusOr<SaslAccount>& account) override;

 private:
  SaslStep Decide(std::string_view authzid) const;
  const std::string identity_;
};

}  // namespace posthaste::auth

#endif  // POSTHASTE_SERVER_AUTH_EXTERNAL_EXCHANGE_H_
