// Which SASL mechanisms beyond PLAIN and LOGIN the server offers on a connection, and the one
// factory that makes their exchanges (server/auth/sasl_exchange.h). A new mechanism is added
// here: a case in NewSaslExchange, a line in OfferedSaslMechanisms, and what it needs from the
// server in SaslServerConfig.
//
// Threading: the functions are pure; the config is immutable once serving starts and shared
// by every shard.
#ifndef POSTHASTE_SERVER_AUTH_SASL_MECHANISMS_H_
#define POSTHASTE_SERVER_AUTH_SASL_MECHANISMS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "server/auth/oauth_tenants.h"
#include "server/auth/sasl_exchange.h"

namespace posthaste::auth {

// What mechanisms need from the server.
struct SaslServerConfig {
  // SCRAM: the secret fake salts of unknown users are derived from (32 random bytes kept in
  // the data directory, so they stay the same across restarts; see serve).
  std::string scram_secret;
  // CRAM-MD5: the host name in its challenges ("<random.clock@hostname>", RFC 2195).
  std::string hostname;
  // OAUTHBEARER and XOAUTH2: the tenants' issuers and keys; null when no tenant has OAuth.
  // Outlives every exchange.
  const OAuthRegistry* oauth = nullptr;
};

// The secret kept in `path` (32 random bytes, made with mode 0600 when the file is missing):
// SaslServerConfig::scram_secret. Blocking; for start-up. An error names the file.
absl::StatusOr<std::string> LoadOrCreateSaslSecret(const std::string& path);

// The mechanisms offered on a connection in `facts`' state, most preferred first: EXTERNAL
// with a verified client certificate; SCRAM over any connection (the password never crosses
// it), the -PLUS forms only with a tls-exporter binding (TLS 1.3); OAUTHBEARER and XOAUTH2
// over TLS when tenants have OAuth (a bearer token is as good as a password to whoever sees
// it); CRAM-MD5 where a tenant allows the shared-secret mechanisms.
std::vector<SaslMechanism> OfferedSaslMechanisms(const SaslServerConfig& config,
                                                 const SaslConnectionFacts& facts);

// A new exchange for `mechanism`, or null when it is not offered in `facts`' state (PLAIN and
// LOGIN are the session's own, never made here). `config` must outlive the exchange.
std::unique_ptr<SaslServerExchange> NewSaslExchange(SaslMechanism mechanism,
                                                    const SaslConnectionFacts& facts,
                                                    const SaslServerConfig& config);

}  // namespace posthaste::auth

#endif  // POSTHASTE_SERVER_AUTH_SASL_MECHANISMS_H_
