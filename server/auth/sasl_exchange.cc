#include "server/auth/sasl_exchange.h"

#include <strings.h>

#include <array>

namespace posthaste::auth {
namespace {

constexpr std::array<std::string_view, kSaslMechanismCount> kMechanismNames = {
    "PLAIN",         "LOGIN",   "CRAM-MD5",    "SCRAM-SHA-1", "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "OAUTHBEARER", "XOAUTH2",     "EXTERNAL",
};

constexpr std::array<std::string_view, kSaslFailureCount> kFailureNames = {
    "malformed",     "cancelled",     "unknown_user",  "bad_credentials", "channel_binding",
    "authz_refused", "token_invalid", "token_expired", "not_allowed",     "temp_failure",
};

}  // namespace

std::string_view SaslMechanismName(SaslMechanism mechanism) {
  return kMechanismNames[static_cast<size_t>(mechanism)];
}

std::optional<SaslMechanism> ParseSaslMechanism(std::string_view name) {
  for (size_t i = 0; i < kMechanismNames.size(); ++i) {
    const std::string_view known = kMechanismNames[i];
    if (name.size() == known.size() && strncasecmp(name.data(), known.data(), name.size()) == 0) {
      return static_cast<SaslMechanism>(i);
    }
  }
  return std::nullopt;
}

std::string_view SaslFailureName(SaslFailure failure) {
  return kFailureNames[static_cast<size_t>(failure)];
}

bool IdentityFitsCertificateName(std::string_view identity, std::string_view certificate_name) {
  const size_t at = identity.rfind('@');
  if (at == std::string_view::npos || at + 1 == identity.size()) return false;
  const std::string_view domain = identity.substr(at + 1);
  if (certificate_name.size() < domain.size()) return false;
  const std::string_view tail = certificate_name.substr(certificate_name.size() - domain.size());
  for (size_t i = 0; i < domain.size(); ++i) {  // ASCII case-insensitive, NUL bytes included
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    if (lower(tail[i]) != lower(domain[i])) return false;
  }
  return certificate_name.size() == domain.size() ||
         certificate_name[certificate_name.size() - domain.size() - 1] == '.';
}

}  // namespace posthaste::auth
