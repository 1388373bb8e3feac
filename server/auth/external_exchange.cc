#include "server/auth/external_exchange.h"

#include "absl/strings/match.h"
#include "base/strings.h"

namespace posthaste::auth {
namespace {

constexpr size_t kAuthzidBytesMax = 255;

}  // namespace

ExternalServerExchange::ExternalServerExchange(const SaslConnectionFacts& facts)
    : identity_(facts.client_certificate_identity) {}

SaslStep ExternalServerExchange::Start(std::optional<std::string_view> initial_response) {
  if (identity_.empty()) return SaslStep::Failed(SaslFailure::kNotAllowed);
  if (initial_response.has_value()) return Decide(*initial_response);
  SaslStep step;
  step.kind = SaslStep::Kind::kChallenge;  // empty: "+ "
  return step;
}

SaslStep ExternalServerExchange::Continue(std::string_view response) { return Decide(response); }

SaslStep ExternalServerExchange::AccountFound(const absl::StatusOr<SaslAccount>&) {
  return SaslStep::Failed(SaslFailure::kMalformed);
}

SaslStep ExternalServerExchange::Decide(std::string_view authzid) const {
  if (authzid.size() > kAuthzidBytesMax || authzid.find('\0') != std::string_view::npos) {
    return SaslStep::Failed(SaslFailure::kMalformed);
  }
  SaslStep step;
  step.kind = SaslStep::Kind::kSuccess;
  step.authcid = identity_;
  if (!absl::EqualsIgnoreCase(AbslView(authzid), AbslView(identity_))) {
    step.authzid = std::string(authzid);
  }
  return step;
}

}  // namespace posthaste::auth
