#include "server/auth/sasl_mechanisms.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "server/auth/external_exchange.h"
#include "server/auth/oauth_exchange.h"
#include "server/auth/scram.h"
#include "server/auth/shared_secret.h"

namespace posthaste::auth {
namespace {

int64_t UnixSecondsNow() { return absl::ToUnixSeconds(absl::Now()); }

}  // namespace

absl::StatusOr<std::string> LoadOrCreateSaslSecret(const std::string& path) {
  constexpr size_t kSecretBytes = 32;
  std::string secret(kSecretBytes, '\0');
  const auto error = [&](const char* what) {
    return absl::InternalError(std::string(what) + " " + path + ": " + std::strerror(errno));
  };
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    const ssize_t n = read(fd, secret.data(), secret.size());
    close(fd);
    if (n != static_cast<ssize_t>(kSecretBytes)) {
      return absl::DataLossError("SASL secret " + path + " is not 32 bytes");
    }
    return secret;
  }
  if (errno != ENOENT) return error("reading");
  if (!RAND_bytes(reinterpret_cast<uint8_t*>(secret.data()), secret.size())) {
    return absl::InternalError("no random bytes for the SASL secret");
  }
  const std::string temporary = path + ".new";
  fd = open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return error("creating");
  const bool written =
      write(fd, secret.data(), secret.size()) == static_cast<ssize_t>(kSecretBytes) &&
      fsync(fd) == 0;
  close(fd);
  if (!written || rename(temporary.c_str(), path.c_str()) != 0) return error("writing");
  return secret;
}

std::vector<SaslMechanism> OfferedSaslMechanisms(const SaslServerConfig& config,
                                                 const SaslConnectionFacts& facts) {
  std::vector<SaslMechanism> offered;
  if (facts.tls && !facts.client_certificate_identity.empty()) {
    offered.push_back(SaslMechanism::kExternal);
  }
  if (!facts.tls_exporter.empty()) {
    offered.push_back(SaslMechanism::kScramSha256Plus);
    offered.push_back(SaslMechanism::kScramSha1Plus);
  }
  offered.push_back(SaslMechanism::kScramSha256);
  offered.push_back(SaslMechanism::kScramSha1);
  if (facts.tls && config.oauth != nullptr) {
    offered.push_back(SaslMechanism::kOAuthBearer);
    offered.push_back(SaslMechanism::kXOAuth2);
  }
  if (facts.shared_secret_allowed) offered.push_back(SaslMechanism::kCramMd5);
  return offered;
}

std::unique_ptr<SaslServerExchange> NewSaslExchange(SaslMechanism mechanism,
                                                    const SaslConnectionFacts& facts,
                                                    const SaslServerConfig& config) {
  const std::vector<SaslMechanism> offered = OfferedSaslMechanisms(config, facts);
  if (std::find(offered.begin(), offered.end(), mechanism) == offered.end()) return nullptr;
  switch (mechanism) {
    case SaslMechanism::kScramSha1:
    case SaslMechanism::kScramSha1Plus:
    case SaslMechanism::kScramSha256:
    case SaslMechanism::kScramSha256Plus:
      return std::make_unique<ScramServerExchange>(mechanism, facts, config.scram_secret);
    case SaslMechanism::kCramMd5:
      return std::make_unique<CramMd5ServerExchange>(MakeServerChallenge(config.hostname),
                                                     facts.shared_secret_allowed_for);
    case SaslMechanism::kExternal:
      return std::make_unique<ExternalServerExchange>(facts);
    case SaslMechanism::kOAuthBearer:
      return NewOAuthBearerExchange(config.oauth->Current(), UnixSecondsNow);
    case SaslMechanism::kXOAuth2:
      return NewXOAuth2Exchange(config.oauth->Current(), UnixSecondsNow);
    case SaslMechanism::kPlain:
    case SaslMechanism::kLogin:
      break;
  }
  return nullptr;
}

}  // namespace posthaste::auth
