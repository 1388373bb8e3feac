#include "server/pop3_service/pop3_shard_backend.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/check.h"
#include "base/log.h"
#include "server/auth/sasl_mechanisms.h"
#include "server/pop3_service/pop3_adapter.h"
#include "server/pop3_service/pop3_shard.h"
#include "server/reactor/timer.h"
#include "server/tenant/settings_fields.h"
#include "storage/message_format.h"
#include "storage/store_error.h"

namespace posthaste::server::pop3_service {
namespace {

constexpr uint64_t kNsPerSecond = 1'000'000'000;
constexpr int64_t kSecondsPerDay = 86'400;

// Days since 1970-01-01, UTC: the day a download counts towards.
uint32_t UtcDayNow() {
  return static_cast<uint32_t>(absl::ToUnixSeconds(absl::Now()) / kSecondsPerDay);
}

std::string_view DomainOf(std::string_view address) {
  return address.substr(address.rfind('@') + 1);
}

// Whether a SASL authorization identity names the authenticating user: the same address in
// any case (storage::CanonicalAddress), or the same bytes when it is no address.
bool SameAccountName(std::string_view authzid, std::string_view user) {
  if (authzid == user) return true;
  absl::StatusOr<std::string> a = storage::CanonicalAddress(authzid);
  absl::StatusOr<std::string> b = storage::CanonicalAddress(user);
  return a.ok() && b.ok() && *a == *b;
}

// An open maildrop of the store: the stored snapshot (which keeps the segment files open) and
// the session's view of it; a message's ref in the view is its index in the stored snapshot.
class StoreMaildrop final : public Pop3Maildrop {
 public:
  StoreMaildrop(storage::MailStore* store, server::OpenMaildrop opened)
      : store_(store), opened_(std::move(opened)) {}

  std::shared_ptr<const pop3::MailboxSnapshot> view() const override { return opened_.view; }
  transport::FileRange Locate(pop3::MessageIndex message) const override {
    const storage::MessageRef ref = opened_.stored->Ref(opened_.view->ref(message));
    return {.fd = ref.fd, .offset = ref.offset, .length = ref.length};
  }
  absl::StatusOr<uint64_t> TopLength(pop3::MessageIndex message,
                                     uint64_t body_lines) const override {
    return opened_.stored->TopLength(opened_.view->ref(message), body_lines);
  }
  absl::Status VerifyStored(pop3::MessageIndex message) const override {
    return opened_.stored->VerifyStoredBytes(opened_.view->ref(message));
  }
  absl::Status CommitDeletions(std::span<const pop3::MessageIndex> deletions) const override {
    if (deletions.empty()) return absl::OkStatus();
    std::vector<size_t> indexes;
    indexes.reserve(deletions.size());
    for (pop3::MessageIndex i : deletions) {
      indexes.push_back(static_cast<size_t>(opened_.view->ref(i)));
    }
    return store_->CommitDeletions(*opened_.stored, indexes).status();
  }
  absl::Status RecordRetrievals(std::span<const pop3::MessageIndex> retrieved) const override {
    if (retrieved.empty()) return absl::OkStatus();
    std::vector<size_t> indexes;
    indexes.reserve(retrieved.size());
    for (pop3::MessageIndex i : retrieved) {
      indexes.push_back(static_cast<size_t>(opened_.view->ref(i)));
    }
    return store_->RecordRetrievals(*opened_.stored, indexes, absl::Now());
  }

 private:
  storage::MailStore* const store_;
  const server::OpenMaildrop opened_;
};

// "SCRAM-SHA-256 SCRAM-SHA-1": the offer in the session's form.
std::string OfferText(const auth::SaslServerConfig& config,
                      const auth::SaslConnectionFacts& facts) {
  std::string text;
  for (auth::SaslMechanism mechanism : auth::OfferedSaslMechanisms(config, facts)) {
    if (!text.empty()) text += ' ';
    text += auth::SaslMechanismName(mechanism);
  }
  return text;
}

}  // namespace

Pop3ShardBackend::Pop3ShardBackend(Pop3Shard& shard,
                                   absl::AnyInvocable<Pop3Adapter*(uint64_t)> find_adapter)
    : shard_(shard), find_adapter_(std::move(find_adapter)) {
  const auth::SaslServerConfig& config = shard_.server->sasl;
  for (const bool tls : {false, true}) {
    for (const bool binding : {false, true}) {
      for (const bool certificate : {false, true}) {
        for (const bool shared_secret : {false, true}) {
          sasl_offers_[SaslOfferIndex(tls, binding, certificate, shared_secret)] = OfferText(
              config, {.tls = tls,
                       .tls_exporter = tls && binding ? std::string(32, '\0') : std::string(),
                       .client_certificate_identity = tls && certificate ? "x" : "",
                       .shared_secret_allowed = shared_secret});
        }
      }
    }
  }
}

size_t Pop3ShardBackend::SaslOfferIndex(bool tls, bool channel_binding, bool client_certificate,
                                        bool shared_secret) {
  return (tls ? 1 : 0) | (channel_binding ? 2 : 0) | (client_certificate ? 4 : 0) |
         (shared_secret ? 8 : 0);
}

bool Pop3ShardBackend::SharedSecretAllowed() const {
  const ShardTenantPolicies* policies = shard_.tenant_policies.get();
  return policies != nullptr && policies->AnyApopAllowed();
}

auth::SaslConnectionFacts Pop3ShardBackend::ExchangeFacts(
    const auth::SaslConnectionFacts& connection) {
  auth::SaslConnectionFacts facts = connection;
  facts.shared_secret_allowed = SharedSecretAllowed();
  // Looked up when asked: the shard's policies may be replaced during the exchange.
  facts.shared_secret_allowed_for = [this](std::string_view user) {
    const ShardTenantPolicies* policies = shard_.tenant_policies.get();
    return policies != nullptr && policies->ApopAllowedFor(user);
  };
  return facts;
}

Pop3Adapter* Pop3ShardBackend::Live(uint64_t id) {
  auto it = connections_.find(id);
  if (it == connections_.end() || it->second.ended) return nullptr;
  return find_adapter_(id);
}

void Pop3ShardBackend::AnswerLater(uint64_t id, absl::AnyInvocable<void(Pop3Adapter&)> answer) {
  Pop3ShardBackend* self = this;  // lives as long as its shard
  shard_.RunOn(shard_.index, [self, id, answer = std::move(answer)]() mutable {
    if (Pop3Adapter* adapter = self->Live(id)) answer(*adapter);
  });
}

// ---- Admission: the per-IP count lives on the IP's owner shard ----

bool Pop3ShardBackend::Admit(uint64_t id, const transport::PeerInfo& peer) {
  Connection& connection = connections_[id];
  connection.ip = peer.ip;
  connection.admitted_ip = peer.ip;
  connection.trusted = peer.trusted;
  const uint32_t limit = shard_.server->options.max_connections_per_ip;
  if (peer.trusted || limit == 0) return true;
  const uint32_t owner = OwnerShard(peer.ip, static_cast<uint32_t>(shard_.server->shards.size()));
  Pop3Shard* home = &shard_;
  Pop3ShardBackend* self = this;
  const bool posted = shard_.RunOn(owner, [home, self, owner, id, ip = peer.ip, limit] {
    Pop3Shard& o = home->Peer(owner);
    uint32_t& count = o.ip_counts[ip];
    const bool ok = count < limit;
    if (ok) {
      ++count;
    } else if (count == 0) {
      o.ip_counts.erase(ip);
    }
    o.RunOn(home->index, [self, id, ip, ok] { self->OnAdmission(id, ip, ok); });
  });
  if (!posted) {
    shard_.metrics.CountRefused(metrics::RefuseReason::kBusy);
    AnswerLater(id, [](Pop3Adapter& a) { a.OnAdmitted(pop3::Pop3Refusal::kServerBusy); });
  }
  return false;
}

void Pop3ShardBackend::OnAdmission(uint64_t id, const std::string& ip, bool ok) {
  auto it = connections_.find(id);
  if (it == connections_.end() || it->second.ended) {
    if (ok) GiveBackIpSlot(ip);  // gone meanwhile
    return;
  }
  if (ok) {
    it->second.ip_counted = true;
  } else {
    ++shard_.stats.limit_per_ip;
  }
  if (Pop3Adapter* adapter = find_adapter_(id)) {
    adapter->OnAdmitted(ok ? std::nullopt : std::optional(pop3::Pop3Refusal::kTooManyFromAddress));
  }
}

void Pop3ShardBackend::GiveBackIpSlot(const std::string& ip) {
  const uint32_t owner = OwnerShard(ip, static_cast<uint32_t>(shard_.server->shards.size()));
  Pop3Shard* home = &shard_;
  shard_.RunOn(owner, [home, owner, ip] {
    Pop3Shard& o = home->Peer(owner);
    auto it = o.ip_counts.find(ip);
    if (it != o.ip_counts.end() && --it->second == 0) o.ip_counts.erase(it);
  });
}

void Pop3ShardBackend::ClientNamed(uint64_t id, std::string_view ip) {
  auto it = connections_.find(id);
  if (it == connections_.end() || it->second.ended) return;
  // The text form the socket and the PROXY header give (inet_ntop; IPv4 for a mapped
  // address), so one client counts as one IP however the proxy spelt it.
  uint8_t addr16[16] = {};
  char text[INET6_ADDRSTRLEN] = {};
  const std::string address(ip);
  if (inet_pton(AF_INET, address.c_str(), addr16 + 12) == 1) {
    addr16[10] = addr16[11] = 0xff;
    inet_ntop(AF_INET, addr16 + 12, text, sizeof(text));
  } else if (inet_pton(AF_INET6, address.c_str(), addr16) == 1) {
    const bool v4_mapped = std::all_of(addr16, addr16 + 10, [](uint8_t b) { return b == 0; }) &&
                           addr16[10] == 0xff && addr16[11] == 0xff;
    inet_ntop(v4_mapped ? AF_INET : AF_INET6, v4_mapped ? addr16 + 12 : addr16, text, sizeof(text));
  } else {
    return;  // the session accepts only IP addresses
  }
  Connection& connection = it->second;
  connection.ip = text;
  connection.trusted = std::any_of(shard_.server->options.trusted_networks.begin(),
                                   shard_.server->options.trusted_networks.end(),
                                   [&](const Cidr& cidr) { return CidrContains(cidr, addr16); });
}

// ---- Authentication: hashing on the CPU offload pool ----

void Pop3ShardBackend::Authenticate(uint64_t id, const pop3::Pop3Credentials& credentials) {
  PenalisedLogin login = PenalisedLoginOf(id, credentials);
  if (credentials.mechanism == pop3::AuthMechanism::kApop) {
    AuthenticateApop(id, credentials, std::move(login));
    return;
  }
  if (!credentials.authzid.empty() && !SameAccountName(credentials.authzid, credentials.user)) {
    AuthenticateAs(id, credentials, std::move(login));
    return;
  }
  AuthService* auth = shard_.server->auth;
  VerifyOffReactor(id, std::move(login), auth->VerifiesInDirectory(credentials.user),
                   [auth, user = std::string(credentials.user),
                    secret = std::string(credentials.secret)]() mutable {
                     AuthVerdict verdict = auth->Verify(user, secret);
                     OPENSSL_cleanse(secret.data(), secret.size());
                     return verdict;
                   });
}

void Pop3ShardBackend::AuthenticateApop(uint64_t id, const pop3::Pop3Credentials& credentials,
                                        PenalisedLogin login) {
  const ShardTenantPolicies* policies = shard_.tenant_policies.get();
  if (policies == nullptr || !policies->ApopAllowedFor(credentials.user)) {
    RefuseLogin(id, login);  // the greeting offers APOP when any tenant allows it: not this one
    return;
  }
  AuthService* auth = shard_.server->auth;
  VerifyOffReactor(id, std::move(login), /*directory=*/false,
                   [auth, user = std::string(credentials.user),
                    timestamp = std::string(credentials.apop_timestamp),
                    digest = std::string(credentials.secret)] {
                     return auth->VerifyApop(user, timestamp, digest);
                   });
}

bool Pop3ShardBackend::MayActFor(uint64_t id, std::string_view authcid, std::string_view authzid,
                                 std::string* master, std::string* target) {
  const ShardTenantPolicies* policies = shard_.tenant_policies.get();
  absl::StatusOr<std::string> master_address = storage::CanonicalAddress(authcid);
  absl::StatusOr<std::string> target_address = storage::CanonicalAddress(authzid);
  // A master user acts only within its own tenant: same domain, and listed by that tenant
  // (ShardTenantPolicies keeps each tenant's masters in the tenant's own domain).
  const bool may = policies != nullptr && master_address.ok() && target_address.ok() &&
                   DomainOf(*master_address) == DomainOf(*target_address) &&
                   policies->IsMasterUser(*master_address);
  if (!may) {
    ++shard_.stats.master_refusals;
    if (Pop3Adapter* adapter = Live(id)) {
      adapter->LogForBackend(
          LogLevel::kWarning, "authorisation id refused",
          {{"authcid", std::string(authcid)}, {"authzid", std::string(authzid)}});
    }
    return false;
  }
  *master = *std::move(master_address);
  *target = *std::move(target_address);
  return true;
}

void Pop3ShardBackend::AuthenticateAs(uint64_t id, const pop3::Pop3Credentials& credentials,
                                      PenalisedLogin login) {
  std::string master;
  std::string target;
  if (credentials.mechanism != pop3::AuthMechanism::kSaslPlain ||
      !MayActFor(id, credentials.user, credentials.authzid, &master, &target)) {
    RefuseLogin(id, login);
    return;
  }
  AuthService* auth = shard_.server->auth;
  const bool directory = auth->VerifiesInDirectory(master);
  VerifyOffReactor(id, std::move(login), directory,
                   [auth, master = std::move(master), target = std::move(target),
                    secret = std::string(credentials.secret)]() mutable {
                     AuthVerdict verdict = auth->VerifyAs(master, secret, target);
                     OPENSSL_cleanse(secret.data(), secret.size());
                     return verdict;
                   });
}

void Pop3ShardBackend::RefuseLogin(uint64_t id, const PenalisedLogin& login) {
  ++shard_.stats.auth_failures;
  const uint32_t delay_ms = shard_.auth_penalties->Failed(login);
  AnswerLater(id, [delay_ms](Pop3Adapter& a) {
    a.OnAuthenticated(
        {.code = pop3::Pop3AuthResult::Code::kBadCredentials, .failure_delay_ms = delay_ms});
  });
}

void Pop3ShardBackend::VerifyOffReactor(uint64_t id, PenalisedLogin login, bool directory,
                                        absl::AnyInvocable<AuthVerdict()> verify) {
  Pop3ShardBackend* self = this;
  auto check = [self, id, login = std::move(login),
                verify = std::move(verify)]() mutable -> reactor::OffloadPool::Reply {
    AuthVerdict verdict = verify();
    return [self, id, verdict = std::move(verdict), login = std::move(login)] {
      self->OnAuthVerdict(id, verdict, login);
    };
  };
  // A check still queued when its connection's login time is up is skipped: under a flood of
  // guesses that hang up, the queue would otherwise hold every later login (an honest one
  // included) behind hashes nobody waits for. The session answers [SYS/TEMP] and times out.
  auto expired = [self, id]() -> reactor::OffloadPool::Reply {
    return [self, id] {
      ++self->shard_.stats.auth_checks_expired;
      if (Pop3Adapter* adapter = self->Live(id)) {
        adapter->OnAuthenticated({pop3::Pop3AuthResult::Code::kTempFailure, {}});
      }
    };
  };
  const Pop3Adapter* adapter = Live(id);
  const uint64_t deadline_ns =
      adapter != nullptr ? adapter->LoginDeadlineNs() : reactor::MonotonicNowNs();
  reactor::OffloadPool::Work job =
      reactor::UnlessExpired(deadline_ns, std::move(check), std::move(expired));
  // A directory login mostly waits on the network (up to its timeouts): on the I/O pool it
  // cannot keep the CPU pool's hashing of other tenants' logins waiting.
  const bool accepted =
      directory ? shard_.shard->OffloadIo(std::move(job)) : shard_.shard->Offload(std::move(job));
  if (!accepted) {
    ++shard_.stats.offload_rejected;
    AnswerLater(id, [](Pop3Adapter& a) {
      a.OnAuthenticated({pop3::Pop3AuthResult::Code::kTempFailure, {}});
    });
  }
}

PenalisedLogin Pop3ShardBackend::PenalisedLoginOf(uint64_t id,
                                                  const pop3::Pop3Credentials& credentials) {
  PenalisedLogin login{
      .user = std::string(credentials.user.substr(0, auth::kPenaltyAccountBytesMax)),
      .mechanism = pop3::AuthMechanismName(credentials.mechanism)};
  auto it = connections_.find(id);
  if (it != connections_.end()) {
    login.ip = it->second.ip;
    login.trusted = it->second.trusted;
  }
  return login;
}

PenalisedLogin Pop3ShardBackend::PenalisedSaslLogin(uint64_t id, auth::SaslMechanism mechanism) {
  PenalisedLogin login{.mechanism = auth::SaslMechanismName(mechanism)};
  auto it = connections_.find(id);
  if (it != connections_.end()) {
    login.ip = it->second.ip;
    login.trusted = it->second.trusted;
    login.user = it->second.sasl_user;
  }
  return login;
}

void Pop3ShardBackend::OnAuthVerdict(uint64_t id, const AuthVerdict& verdict,
                                     const PenalisedLogin& login) {
  // The penalty counts a verdict even when its client has hung up meanwhile: a guesser that
  // does not wait for its answers is slowed (and logged) all the same.
  uint32_t failure_delay_ms = 0;
  if (verdict.code == AuthVerdict::Code::kBadCredentials) {
    failure_delay_ms = shard_.auth_penalties->Failed(login);
  } else if (verdict.code == AuthVerdict::Code::kOk) {
    shard_.auth_penalties->Succeeded(login);
  }
  Pop3Adapter* adapter = Live(id);
  if (adapter == nullptr) return;
  pop3::Pop3AuthResult result;
  switch (verdict.code) {
    case AuthVerdict::Code::kOk:
      ++shard_.stats.sessions_authenticated;
      if (verdict.cache_hit) ++shard_.stats.auth_cache_hits;
      if (verdict.rehashed) ++shard_.stats.auth_rehashes;
      if (!verdict.master.empty()) {  // the audit trail of a master user's login
        ++shard_.stats.master_logins;
        adapter->LogForBackend(LogLevel::kInfo, "master user login",
                               {{"master", verdict.master}, {"user", verdict.address}});
      }
      result.code = MechanismAllowed(verdict.address, login.mechanism)
                        ? pop3::Pop3AuthResult::Code::kOk
                        : pop3::Pop3AuthResult::Code::kMechanismRefused;
      result.user = verdict.address;
      break;
    case AuthVerdict::Code::kBadCredentials:
      ++shard_.stats.auth_failures;
      result.code = pop3::Pop3AuthResult::Code::kBadCredentials;
      result.failure_delay_ms = failure_delay_ms;
      break;
    case AuthVerdict::Code::kTempFailure:
      result.code = pop3::Pop3AuthResult::Code::kTempFailure;
      break;
  }
  adapter->OnAuthenticated(result);
}

// ---- SASL exchanges beyond PLAIN and LOGIN (server/auth/sasl_exchange.h) ----

std::string_view Pop3ShardBackend::SaslMechanismsOffered(bool tls, bool channel_binding,
                                                         bool client_certificate) const {
  return sasl_offers_[SaslOfferIndex(tls, tls && channel_binding, tls && client_certificate,
                                     SharedSecretAllowed())];
}

void Pop3ShardBackend::StepSasl(uint64_t id, const pop3::Pop3Credentials& credentials,
                                const auth::SaslConnectionFacts& connection) {
  auto it = connections_.find(id);
  if (it == connections_.end() || it->second.ended) return;
  Connection& c = it->second;
  const std::optional<auth::SaslMechanism> mechanism =
      auth::ParseSaslMechanism(credentials.sasl_mechanism);
  if (credentials.sasl_start) {
    c.sasl = mechanism.has_value()
                 ? auth::NewSaslExchange(*mechanism, ExchangeFacts(connection), shard_.server->sasl)
                 : nullptr;
    if (c.sasl == nullptr) {  // the session accepts only what SaslMechanismsOffered listed
      if (mechanism.has_value()) EndSasl(id, *mechanism, auth::SaslFailure::kNotAllowed);
      AnswerLater(id, [](Pop3Adapter& a) {
        a.OnAuthenticated({pop3::Pop3AuthResult::Code::kBadCredentials, {}, {}});
      });
      return;
    }
    OnSaslStep(id, c.sasl->Start(credentials.sasl_has_response
                                     ? std::optional<std::string_view>(credentials.secret)
                                     : std::nullopt));
    return;
  }
  if (c.sasl == nullptr) {
    AnswerLater(id, [](Pop3Adapter& a) {
      a.OnAuthenticated({pop3::Pop3AuthResult::Code::kBadCredentials, {}, {}});
    });
    return;
  }
  OnSaslStep(id, c.sasl->Continue(credentials.secret));
}

void Pop3ShardBackend::AbandonSasl(uint64_t id, bool cancelled) {
  auto it = connections_.find(id);
  if (it == connections_.end() || it->second.sasl == nullptr) return;
  EndSasl(id, it->second.sasl->mechanism(),
          cancelled ? auth::SaslFailure::kCancelled : auth::SaslFailure::kMalformed);
}

void Pop3ShardBackend::EndSasl(uint64_t id, auth::SaslMechanism mechanism,
                               auth::SaslFailure failure) {
  shard_.stats.sasl.CountFailure(mechanism, failure);
  auto it = connections_.find(id);
  if (it != connections_.end()) it->second.sasl.reset();
}

void Pop3ShardBackend::OnSaslStep(uint64_t id, auth::SaslStep step) {
  auto it = connections_.find(id);
  if (it == connections_.end() || it->second.ended || it->second.sasl == nullptr) return;
  const auth::SaslMechanism mechanism = it->second.sasl->mechanism();
  switch (step.kind) {
    case auth::SaslStep::Kind::kChallenge:
      AnswerLater(id, [challenge = std::move(step.challenge)](Pop3Adapter& a) mutable {
        a.OnAuthenticated({pop3::Pop3AuthResult::Code::kContinue, {}, std::move(challenge)});
      });
      return;
    case auth::SaslStep::Kind::kNeedAccount: {
      it->second.sasl_user = step.authcid.substr(0, auth::kPenaltyAccountBytesMax);
      Pop3ShardBackend* self = this;
      storage::MailStore* store = shard_.server->store;
      const bool accepted = shard_.shard->OffloadIo(
          [self, store, id, name = std::move(step.authcid)]() -> reactor::OffloadPool::Reply {
            absl::StatusOr<storage::AccountInfo> info = store->GetAccount(name);
            absl::StatusOr<auth::SaslAccount> account = absl::NotFoundError("no such account");
            if (info.ok()) {
              auth::SaslAccount found;
              found.address = info->address;
              found.disabled = info->disabled;
              found.password_hash = std::move(info->password_hash);
              found.scram_sha1 = std::move(info->scram.sha1);
              found.scram_sha256 = std::move(info->scram.sha256);
              found.shared_secret = std::move(info->shared_secret);
              account = std::move(found);
            } else if (const storage::StoreError error = storage::ErrorOf(info.status());
                       error != storage::StoreError::kUnknownAccount &&
                       error != storage::StoreError::kInvalidAddress) {
              account = info.status();
            }
            return [self, id, account = std::move(account)]() mutable {
              self->OnSaslAccount(id, std::move(account));
            };
          });
      if (!accepted) {
        ++shard_.stats.offload_rejected;
        OnSaslAccount(id, absl::UnavailableError("offload queue full"));
      }
      return;
    }
    case auth::SaslStep::Kind::kSuccess: {
      it->second.sasl.reset();
      it->second.sasl_user = step.authcid.substr(0, auth::kPenaltyAccountBytesMax);
      // Acting for another account: only a master user of that account's tenant may.
      std::string master;
      std::string name = std::move(step.authcid);
      if (!step.authzid.empty() && !SameAccountName(step.authzid, name)) {
        std::string target;
        if (!MayActFor(id, name, step.authzid, &master, &target)) {
          shard_.stats.sasl.CountFailure(mechanism, auth::SaslFailure::kAuthzidRefused);
          ++shard_.stats.auth_failures;
          const uint32_t delay_ms =
              shard_.auth_penalties->Failed(PenalisedSaslLogin(id, mechanism));
          AnswerLater(id, [delay_ms](Pop3Adapter& a) {
            a.OnAuthenticated({.code = pop3::Pop3AuthResult::Code::kBadCredentials,
                               .failure_delay_ms = delay_ms});
          });
          return;
        }
        name = std::move(target);
      }
      // As for PLAIN: the account must exist and be enabled now.
      Pop3ShardBackend* self = this;
      storage::MailStore* store = shard_.server->store;
      const bool accepted =
          shard_.shard->OffloadIo([self, store, id, mechanism, master,
                                   name = std::move(name)]() -> reactor::OffloadPool::Reply {
            absl::StatusOr<storage::AccountInfo> info = store->GetAccount(name);
            return [self, id, mechanism, master, info = std::move(info)]() mutable {
              self->OnSaslLoginChecked(id, mechanism, master, std::move(info));
            };
          });
      if (!accepted) {
        ++shard_.stats.offload_rejected;
        OnSaslLoginChecked(id, mechanism, master, absl::UnavailableError("offload queue full"));
      }
      return;
    }
    case auth::SaslStep::Kind::kFailure: {
      if (const std::string_view detail = it->second.sasl->failure_detail(); !detail.empty()) {
        if (Pop3Adapter* adapter = Live(id)) {
          adapter->LogForBackend(
              LogLevel::kInfo, "sasl failed",
              {{"mechanism", std::string(auth::SaslMechanismName(mechanism))},
               {"reason", std::string(auth::SaslFailureName(step.failure))},
               {"detail", std::string(detail.substr(0, 256))}});
        }
      }
      const bool temporary = step.failure == auth::SaslFailure::kTempFailure;
      uint32_t delay_ms = 0;
      if (!temporary) {
        ++shard_.stats.auth_failures;
        delay_ms = shard_.auth_penalties->Failed(PenalisedSaslLogin(id, mechanism));
      }
      EndSasl(id, mechanism, step.failure);
      AnswerLater(id, [temporary, delay_ms](Pop3Adapter& a) {
        if (temporary) {
          a.OnAuthenticated({.code = pop3::Pop3AuthResult::Code::kTempFailure});
        } else {
          a.OnAuthenticated(
              {.code = pop3::Pop3AuthResult::Code::kBadCredentials, .failure_delay_ms = delay_ms});
        }
      });
      return;
    }
  }
}

void Pop3ShardBackend::OnSaslAccount(uint64_t id, absl::StatusOr<auth::SaslAccount> account) {
  auto it = connections_.find(id);
  if (it == connections_.end() || it->second.ended || it->second.sasl == nullptr) return;
  OnSaslStep(id, it->second.sasl->AccountFound(account));
}

void Pop3ShardBackend::OnSaslLoginChecked(uint64_t id, auth::SaslMechanism mechanism,
                                          const std::string& master,
                                          absl::StatusOr<storage::AccountInfo> account) {
  const PenalisedLogin login = PenalisedSaslLogin(id, mechanism);
  const bool rejected =
      account.ok() ? account->disabled
                   : storage::ErrorOf(account.status()) == storage::StoreError::kUnknownAccount;
  uint32_t failure_delay_ms = 0;
  if (rejected) {
    failure_delay_ms = shard_.auth_penalties->Failed(login);
  } else if (account.ok()) {
    shard_.auth_penalties->Succeeded(login);
  }
  Pop3Adapter* adapter = Live(id);
  if (adapter == nullptr) return;
  pop3::Pop3AuthResult result;
  if (account.ok() && !account->disabled) {
    shard_.stats.sasl.CountSuccess(mechanism);
    ++shard_.stats.sessions_authenticated;
    if (!master.empty()) {  // the audit trail of a master user's login
      ++shard_.stats.master_logins;
      adapter->LogForBackend(LogLevel::kInfo, "master user login",
                             {{"master", master},
                              {"user", account->address},
                              {"mechanism", std::string(auth::SaslMechanismName(mechanism))}});
    }
    result.code = MechanismAllowed(account->address, auth::SaslMechanismName(mechanism))
                      ? pop3::Pop3AuthResult::Code::kOk
                      : pop3::Pop3AuthResult::Code::kMechanismRefused;
    result.user = account->address;
  } else if (account.ok() ||
             storage::ErrorOf(account.status()) == storage::StoreError::kUnknownAccount) {
    // Disabled (or deleted) between the exchange's look-up and now.
    shard_.stats.sasl.CountFailure(mechanism, auth::SaslFailure::kBadCredentials);
    ++shard_.stats.auth_failures;
    result.code = pop3::Pop3AuthResult::Code::kBadCredentials;
    result.failure_delay_ms = failure_delay_ms;
  } else {
    shard_.stats.sasl.CountFailure(mechanism, auth::SaslFailure::kTempFailure);
    result.code = pop3::Pop3AuthResult::Code::kTempFailure;
  }
  adapter->OnAuthenticated(result);
}

bool Pop3ShardBackend::MechanismAllowed(std::string_view address, std::string_view mechanism) {
  const ShardTenantPolicies* policies = shard_.tenant_policies.get();
  if (policies == nullptr ||
      tenant::TenantAllowsMechanism(policies->ServiceFor(address), mechanism)) {
    return true;
  }
  ++shard_.stats.mechanism_refusals;
  return false;
}

// ---- Maildrop: lock at the owner shard, then open on the I/O pool ----

void Pop3ShardBackend::OpenMaildrop(uint64_t id, std::string_view user) {
  const ServeOptions& options = shard_.server->options;
  auto it = connections_.find(id);
  const bool trusted = it != connections_.end() && it->second.trusted;
  const ShardTenantPolicies* policies = shard_.tenant_policies.get();
  static const storage::TenantServiceSettings kServerDefaults;
  const storage::TenantServiceSettings& service =
      policies != nullptr ? policies->ServiceFor(user) : kServerDefaults;
  MaildropLocks::Request request{
      .user = std::string(user),
      .ip = it != connections_.end() ? it->second.ip : std::string(),
      // Trusted peers (a proxy bringing many users) are not counted per (user, IP).
      .user_ip_limit = trusted ? 0 : options.max_connections_per_user_ip,
      .policy = options.in_use_policy,
      .takeover_idle_ns = uint64_t{options.takeover_idle_s} * kNsPerSecond,
      .user_limit = service.connections_per_user,
      .login_delay_ns = uint64_t{service.login_delay_s.value_or(0)} * kNsPerSecond,
      .now_ns = reactor::MonotonicNowNs()};
  Pop3ShardBackend* self = this;
  const bool asked = shard_.locks->Acquire(
      id, std::move(request), [self, id, user = std::string(user)](MaildropLocks::Outcome outcome) {
        self->OnLockOutcome(id, user, outcome);
      });
  if (!asked) {  // RunOn counted the refused post
    AnswerLater(id, [](Pop3Adapter& a) {
      a.OnMaildropOpened({.code = pop3::Pop3MaildropResult::Code::kTempFailure});
    });
  }
}

void Pop3ShardBackend::OnLockOutcome(uint64_t id, const std::string& user,
                                     MaildropLocks::Outcome outcome) {
  Pop3Adapter* adapter = Live(id);
  if (adapter == nullptr) return;  // (MaildropLocks gives back what it was granted)
  switch (outcome) {
    case MaildropLocks::Outcome::kGranted:
      break;
    case MaildropLocks::Outcome::kInUse:
      ++shard_.stats.in_use_refusals;
      adapter->OnMaildropOpened({.code = pop3::Pop3MaildropResult::Code::kInUse});
      return;
    case MaildropLocks::Outcome::kTooManyForUserIp:
      ++shard_.stats.limit_per_user_ip;
      adapter->OnMaildropOpened({.code = pop3::Pop3MaildropResult::Code::kLimitReached});
      return;
    case MaildropLocks::Outcome::kTooManyForUser:
      ++shard_.stats.limit_per_user;
      adapter->OnMaildropOpened({.code = pop3::Pop3MaildropResult::Code::kLimitReached});
      return;
    case MaildropLocks::Outcome::kTooSoon:  // counted by the session
      adapter->OnMaildropOpened({.code = pop3::Pop3MaildropResult::Code::kLoginDelay});
      return;
    case MaildropLocks::Outcome::kAskHolder:
      PH_BUG(true, "kAskHolder is never a final outcome");
      return;
  }
  Pop3ShardBackend* self = this;
  storage::MailStore* store = shard_.server->store;
  const ShardTenantPolicies* policies = shard_.tenant_policies.get();
  uint32_t list_newest = 0;
  uint64_t daily_download_bytes = 0;
  if (policies != nullptr) {
    const storage::TenantServiceSettings& service = policies->ServiceFor(user);
    list_newest = service.list_newest;
    daily_download_bytes = service.daily_download_bytes;
  }
  const bool accepted = shard_.shard->OffloadIo(
      [self, store, id, user, list_newest, daily_download_bytes]() -> reactor::OffloadPool::Reply {
        absl::StatusOr<std::shared_ptr<const storage::MailboxSnapshot>> stored =
            store->OpenMailbox(user);
        if (stored.ok() && (*stored)->held()) {
          // Moving to another backend (MailStore::HoldAccount): this copy is about to go, and
          // the hold ended whoever held the lock before us; [SYS/TEMP] until the client is
          // sent to the new backend.
          stored = storage::StoreErrorStatus(
              storage::StoreError::kAccountHeld,
              absl::StrCat("account ", user, " is moving to another backend"));
        }
        // The day's count is read under the maildrop lock, which only one session of the user
        // holds at a time, whichever shard it is on.
        std::optional<DownloadBudget> download;
        if (stored.ok() && daily_download_bytes != 0) {
          const uint32_t day = UtcDayNow();
          absl::StatusOr<uint64_t> used = store->DownloadedOctets(user, day);
          if (used.ok()) {
            download = DownloadBudget{
                .limit_octets = daily_download_bytes, .utc_day = day, .used_octets = *used};
          } else {
            stored = used.status();
          }
        }
        absl::StatusOr<server::OpenMaildrop> loaded =
            stored.ok() ? AdaptSnapshot(*std::move(stored), list_newest) : stored.status();
        return [self, id, user, loaded = std::move(loaded), download]() mutable {
          self->OnMaildropLoaded(id, user, std::move(loaded), download);
        };
      });
  if (!accepted) {
    ++shard_.stats.offload_rejected;
    OnMaildropLoaded(id, user, absl::UnavailableError("offload queue full"));
  }
}

void Pop3ShardBackend::OnMaildropLoaded(uint64_t id, const std::string& user,
                                        absl::StatusOr<server::OpenMaildrop> loaded,
                                        std::optional<DownloadBudget> download) {
  Pop3Adapter* adapter = Live(id);
  if (adapter == nullptr) return;  // it released its lock when it ended
  if (!loaded.ok()) {
    const storage::StoreError error = storage::ErrorOf(loaded.status());
    const bool missing = error == storage::StoreError::kUnknownAccount;
    if (error == storage::StoreError::kAccountHeld) {
      ++shard_.stats.held_refusals;  // kTempFailure: "-ERR [SYS/TEMP] ..." (RFC 3206)
    } else if (!missing) {
      shard_.metrics.CountStoreError(metrics::StoreOperation::kOpenMailbox);
    }
    shard_.locks->Unlock(id);  // the lock goes back; the (user, IP) count stays while it lasts
    adapter->OnMaildropOpened({.code = missing ? pop3::Pop3MaildropResult::Code::kPermFailure
                                               : pop3::Pop3MaildropResult::Code::kTempFailure,
                               .error = loaded.status()});
    return;
  }
  ++shard_.stats.maildrops_opened;
  Pop3MaildropOpened opened{
      .code = pop3::Pop3MaildropResult::Code::kOk,
      .maildrop = std::make_shared<StoreMaildrop>(shard_.server->store, *std::move(loaded))};
  if (const ShardTenantPolicies* policies = shard_.tenant_policies.get(); policies != nullptr) {
    const storage::TenantServiceSettings& service = policies->ServiceFor(user);
    opened.user_policy.capa.login_delay_seconds = service.login_delay_s;
    opened.user_policy.capa.expire_days = service.expire_days;
    opened.user_policy.language = service.lang;
    opened.idle_timeout_ns = uint64_t{service.idle_timeout_s} * kNsPerSecond;
  }
  if (download.has_value()) {
    opened.user_policy.download_octets_left = download->limit_octets > download->used_octets
                                                  ? download->limit_octets - download->used_octets
                                                  : 0;
    Connection& connection = connections_[id];
    connection.download_user = user;
    connection.download_day = download->utc_day;
  }
  adapter->OnMaildropOpened(std::move(opened));
}

// ---- The message check, TOP's length and the commit, on the I/O pool ----

void Pop3ShardBackend::CheckMessage(uint64_t id, std::shared_ptr<const Pop3Maildrop> maildrop,
                                    pop3::MessageIndex message) {
  Pop3ShardBackend* self = this;
  const bool accepted = shard_.shard->OffloadIo(
      [self, id, maildrop = std::move(maildrop), message]() -> reactor::OffloadPool::Reply {
        absl::Status status = maildrop->VerifyStored(message);
        return [self, id, status = std::move(status)] { self->OnMessageChecked(id, status); };
      });
  if (!accepted) {
    ++shard_.stats.offload_rejected;
    AnswerLater(id, [](Pop3Adapter& a) {
      a.OnMessageChecked(absl::UnavailableError("offload queue full"));
    });
  }
}

void Pop3ShardBackend::OnMessageChecked(uint64_t id, absl::Status status) {
  // Counted even when the connection has gone meanwhile: the store is damaged all the same.
  if (!status.ok() && !absl::IsUnavailable(status)) ++shard_.stats.damaged_messages;
  Pop3Adapter* adapter = Live(id);
  if (adapter == nullptr) return;
  adapter->OnMessageChecked(std::move(status));
}

void Pop3ShardBackend::FindTopLength(uint64_t id, std::shared_ptr<const Pop3Maildrop> maildrop,
                                     pop3::MessageIndex message, uint64_t body_lines) {
  Pop3ShardBackend* self = this;
  const bool accepted = shard_.shard->OffloadIo([self, id, maildrop = std::move(maildrop), message,
                                                 body_lines]() -> reactor::OffloadPool::Reply {
    absl::StatusOr<uint64_t> length = maildrop->TopLength(message, body_lines);
    return [self, id, length] { self->OnTopLength(id, length); };
  });
  if (!accepted) {
    ++shard_.stats.offload_rejected;
    AnswerLater(
        id, [](Pop3Adapter& a) { a.OnTopLength(absl::UnavailableError("offload queue full")); });
  }
}

void Pop3ShardBackend::OnTopLength(uint64_t id, absl::StatusOr<uint64_t> length) {
  Pop3Adapter* adapter = Live(id);
  if (adapter == nullptr) return;
  if (!length.ok()) shard_.metrics.CountStoreError(metrics::StoreOperation::kTopScan);
  adapter->OnTopLength(std::move(length));
}

void Pop3ShardBackend::Commit(uint64_t id, std::shared_ptr<const Pop3Maildrop> maildrop,
                              std::vector<pop3::MessageIndex> deletions,
                              std::vector<pop3::MessageIndex> retrieved) {
  Pop3ShardBackend* self = this;
  const bool accepted = shard_.shard->OffloadIo(
      [self, id, maildrop = std::move(maildrop), deletions = std::move(deletions),
       retrieved = std::move(retrieved)]() mutable -> reactor::OffloadPool::Reply {
        absl::Status status = maildrop->CommitDeletions(deletions);
        if (status.ok() && !retrieved.empty()) {
          // Deleted messages need no retrieval time (the store skips them too).
          std::erase_if(retrieved, [&](pop3::MessageIndex m) {
            return std::binary_search(deletions.begin(), deletions.end(), m);
          });
          absl::Status recorded = maildrop->RecordRetrievals(retrieved);
          if (!recorded.ok()) {
            LogEvent(LogLevel::kWarning, "retrieval times not recorded",
                     {{"error", recorded.ToString()}});
          }
        }
        return [self, id, status] { self->OnCommitDone(id, status); };
      });
  if (!accepted) {
    ++shard_.stats.offload_rejected;
    AnswerLater(
        id, [](Pop3Adapter& a) { a.OnCommitted(absl::UnavailableError("offload queue full")); });
    return;
  }
  connections_[id].committing = true;
}

void Pop3ShardBackend::Downloaded(uint64_t id, uint64_t octets) {
  auto it = connections_.find(id);
  if (it == connections_.end() || !it->second.download_day.has_value() || octets == 0) return;
  // Added as each answer starts (not synced: see MailStore::AddDownloadedOctets), so a crash
  // loses at most the additions still queued on the I/O pool.
  storage::MailStore* store = shard_.server->store;
  Pop3ShardBackend* self = this;
  const bool accepted = shard_.shard->OffloadIo([self, store, user = it->second.download_user,
                                                 day = *it->second.download_day,
                                                 octets]() -> reactor::OffloadPool::Reply {
    absl::Status status = store->AddDownloadedOctets(user, day, octets);
    return [self, user, status] {
      if (status.ok()) return;
      self->shard_.metrics.CountStoreError(metrics::StoreOperation::kCommit);
      LogEvent(LogLevel::kWarning, "recording downloaded octets failed",
               {{"user", user}, {"error", status.ToString()}});
    };
  });
  if (!accepted) ++shard_.stats.offload_rejected;
}

void Pop3ShardBackend::OnCommitDone(uint64_t id, absl::Status status) {
  if (status.ok()) {
    ++shard_.stats.commits_ok;
  } else {
    ++shard_.stats.commits_failed;
    shard_.metrics.CountStoreError(metrics::StoreOperation::kCommit);
  }
  auto it = connections_.find(id);
  if (it != connections_.end()) it->second.committing = false;
  Pop3Adapter* adapter = Live(id);
  if (adapter == nullptr) {  // ended while committing: the lock was held back for the commit
    shard_.locks->Release(id);
    return;
  }
  adapter->OnCommitted(std::move(status));
}

// ---- The end ----

void Pop3ShardBackend::Ended(uint64_t id) {
  auto it = connections_.find(id);
  if (it == connections_.end() || it->second.ended) return;
  Connection& connection = it->second;
  connection.ended = true;
  if (connection.ip_counted) {
    GiveBackIpSlot(connection.admitted_ip);
    connection.ip_counted = false;
  }
  if (!connection.committing) shard_.locks->Release(id);
}

void Pop3ShardBackend::Finished(uint64_t id, const Pop3ConnectionEnd& end) {
  ShardStats& stats = shard_.stats;
  switch (end.cause) {
    case Pop3EndCause::kOther:
      break;
    case Pop3EndCause::kLoginTimeout:
      ++stats.timeouts_auth;
      break;
    case Pop3EndCause::kIdleTimeout:
      ++stats.timeouts_idle;
      break;
    case Pop3EndCause::kSendStalled:
      ++stats.timeouts_send_stall;
      break;
  }
  stats.session += end.session;
  connections_.erase(id);  // a commit still out finds no record and releases the lock itself
  shard_.Destroy(id);      // frees the adapter later, not inside its own callback
}

}  // namespace posthaste::server::pop3_service
