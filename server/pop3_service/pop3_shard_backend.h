// Pop3ShardBackend: the Pop3Backend of one serving shard (see pop3_backend.h for the
// contract). It does, for the shard's Pop3Adapters, what stays off the connection:
//   admission   the per-client-IP count, kept by the IP's owner shard (a message there and back)
//   auth        AuthService::Verify on the CPU offload pool (password hashing); SASL exchanges
//               beyond PLAIN and LOGIN (one per connection, made by auth::NewSaslExchange),
//               their account look-ups on the I/O pool, counted by mechanism and reason; each
//               verdict told to the shard's AuthPenaltyShard, which sets a failure's delay
//   maildrop    the lock through the shard's MaildropLocks (owner shard, takeover), then
//               MailStore::OpenMailbox on the I/O pool, adapted to the session's snapshot; a
//               snapshot of an account held for a move is refused ([SYS/TEMP])
//   TOP length  MailboxSnapshot::TopLength on the I/O pool
//   message check  MailboxSnapshot::VerifyStoredBytes on the I/O pool (before RETR and TOP)
//   commit      MailStore::CommitDeletions on the I/O pool (fdatasync); the lock is held until
//               it is durable even when the connection has gone
// and counts what it sees into the shard's ShardStats and metrics. Answers are delivered to
// the adapter found under the connection's id, always from a later callback on this shard.
//
// It keeps a small record per connection (admitted and counted for its IP? committing? ended?)
// from Admit to Finished, so a late answer for an ended connection is dropped and what it
// granted is given back.
//
// Threading: the shard's thread (offloaded closures touch only what they capture by value).
// Ownership: one per Pop3Shard, alive as long as the shard; it does not own the adapters.
#ifndef POSTHASTE_SERVER_POP3_SERVICE_POP3_SHARD_BACKEND_H_
#define POSTHASTE_SERVER_POP3_SERVICE_POP3_SHARD_BACKEND_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "server/auth/sasl_exchange.h"
#include "server/pop3_service/auth_penalty_shard.h"
#include "server/pop3_service/auth_service.h"
#include "server/pop3_service/maildrop_locks.h"
#include "server/pop3_service/pop3_backend.h"
#include "server/pop3_service/storage_adapter.h"

namespace posthaste::server {

struct Pop3Shard;

namespace pop3_service {

class Pop3Adapter;

class Pop3ShardBackend final : public Pop3Backend {
 public:
  // `find_adapter`: the shard's adapter under a connection id, or null once it is freed.
  Pop3ShardBackend(Pop3Shard& shard, absl::AnyInvocable<Pop3Adapter*(uint64_t)> find_adapter);
  Pop3ShardBackend(const Pop3ShardBackend&) = delete;
  Pop3ShardBackend& operator=(const Pop3ShardBackend&) = delete;

  bool Admit(uint64_t id, const transport::PeerInfo& peer) override;
  void ClientNamed(uint64_t id, std::string_view ip) override;
  void Authenticate(uint64_t id, const pop3::Pop3Credentials& credentials) override;
  std::string_view SaslMechanismsOffered(bool tls, bool channel_binding,
                                         bool client_certificate) const override;
  void StepSasl(uint64_t id, const pop3::Pop3Credentials& credentials,
                const auth::SaslConnectionFacts& connection) override;
  void AbandonSasl(uint64_t id, bool cancelled) override;
  // Whether `address`'s tenant allows `mechanism` ("USER", "PLAIN", "SCRAM-SHA-256"...);
  // counts a refusal.
  bool MechanismAllowed(std::string_view address, std::string_view mechanism);
  void OpenMaildrop(uint64_t id, std::string_view user) override;
  void CheckMessage(uint64_t id, std::shared_ptr<const Pop3Maildrop> maildrop,
                    pop3::MessageIndex message) override;
  void FindTopLength(uint64_t id, std::shared_ptr<const Pop3Maildrop> maildrop,
                     pop3::MessageIndex message, uint64_t body_lines) override;
  void Commit(uint64_t id, std::shared_ptr<const Pop3Maildrop> maildrop,
              std::vector<pop3::MessageIndex> deletions,
              std::vector<pop3::MessageIndex> retrieved) override;
  void Downloaded(uint64_t id, uint64_t octets) override;
  void Ended(uint64_t id) override;
  void Finished(uint64_t id, const Pop3ConnectionEnd& end) override;

 private:
  struct Connection {
    std::string ip;           // the client's: from the socket, a PROXY header or XCLIENT
    bool trusted = false;     // ip is in --trusted_networks
    std::string admitted_ip;  // the address whose per-IP count admitted it
    bool ip_counted = false;  // holds a slot in admitted_ip's count at its owner shard
    bool committing = false;  // a commit is out: the maildrop lock waits for it
    bool ended = false;
    std::unique_ptr<auth::SaslServerExchange> sasl;  // the SASL exchange under way, if any
    std::string sasl_user;  // the account it named (cut for the penalty tables), once named
    // Under a daily download limit: the account and the UTC day its downloads count towards
    // (the day the maildrop opened).
    std::string download_user;
    std::optional<uint32_t> download_day;
  };
  // What the daily download limit was at the maildrop's opening.
  struct DownloadBudget {
    uint64_t limit_octets = 0;
    uint32_t utc_day = 0;
    uint64_t used_octets = 0;  // recorded for utc_day so far
  };

  // The adapter to answer, or null when the connection has ended or gone.
  Pop3Adapter* Live(uint64_t id);
  // Runs `answer` on the adapter of `id` from a later callback on this shard (never inside
  // the request call), unless the connection has ended by then.
  void AnswerLater(uint64_t id, absl::AnyInvocable<void(Pop3Adapter&)> answer);
  void OnAdmission(uint64_t id, const std::string& ip, bool ok);
  void GiveBackIpSlot(const std::string& ip);
  // The attempt as the failed-login penalty needs it, taken when it is made.
  PenalisedLogin PenalisedLoginOf(uint64_t id, const pop3::Pop3Credentials& credentials);
  // The same for a SASL exchange (its account name, once the exchange has named one).
  PenalisedLogin PenalisedSaslLogin(uint64_t id, auth::SaslMechanism mechanism);
  void OnAuthVerdict(uint64_t id, const AuthVerdict& verdict, const PenalisedLogin& login);
  // APOP: refused unless the user's tenant allows it; the digest is checked off the reactor.
  void AuthenticateApop(uint64_t id, const pop3::Pop3Credentials& credentials,
                        PenalisedLogin login);
  // SASL PLAIN with an authorisation id naming another user: only a master user of that
  // user's own tenant may (audited in the session log and counted).
  void AuthenticateAs(uint64_t id, const pop3::Pop3Credentials& credentials, PenalisedLogin login);
  // Whether `authcid` is a master user of `authzid`'s tenant (their canonical addresses in
  // `master` and `target`); a refusal is logged and counted.
  bool MayActFor(uint64_t id, std::string_view authcid, std::string_view authzid,
                 std::string* master, std::string* target);
  // Answers kBadCredentials later (after the penalty's delay) and counts the failure.
  void RefuseLogin(uint64_t id, const PenalisedLogin& login);
  // Runs `verify` on the CPU offload pool (the I/O pool for a `directory` login) and answers
  // with its verdict.
  void VerifyOffReactor(uint64_t id, PenalisedLogin login, bool directory,
                        absl::AnyInvocable<AuthVerdict()> verify);
  // Carries out a SASL exchange's step for connection `id` (answers, looks up, or ends it).
  void OnSaslStep(uint64_t id, auth::SaslStep step);
  void OnSaslAccount(uint64_t id, absl::StatusOr<auth::SaslAccount> account);
  // The exchange succeeded as `authcid`: the account may log in if it exists and is enabled.
  // `master`: the master user acting for the account (empty when it logs in as itself).
  void OnSaslLoginChecked(uint64_t id, auth::SaslMechanism mechanism, const std::string& master,
                          absl::StatusOr<storage::AccountInfo> account);
  void EndSasl(uint64_t id, auth::SaslMechanism mechanism, auth::SaslFailure failure);
  void OnLockOutcome(uint64_t id, const std::string& user, MaildropLocks::Outcome outcome);
  void OnMaildropLoaded(uint64_t id, const std::string& user,
                        absl::StatusOr<server::OpenMaildrop> loaded,
                        std::optional<DownloadBudget> download = std::nullopt);
  void OnMessageChecked(uint64_t id, absl::Status status);
  void OnTopLength(uint64_t id, absl::StatusOr<uint64_t> length);
  void OnCommitDone(uint64_t id, absl::Status status);

  Pop3Shard& shard_;
  absl::AnyInvocable<Pop3Adapter*(uint64_t)> find_adapter_;
  absl::flat_hash_map<uint64_t, Connection> connections_;
  // SaslMechanismsOffered's answers, made once, by SaslOfferIndex.
  static constexpr size_t kSaslOfferCount = 16;
  static size_t SaslOfferIndex(bool tls, bool channel_binding, bool client_certificate,
                               bool shared_secret);
  std::array<std::string, kSaslOfferCount> sasl_offers_;
  // Whether some tenant allows APOP and CRAM-MD5 now (its policies change online).
  bool SharedSecretAllowed() const;
  // The facts a SASL exchange gets: the connection's, and what the tenants allow.
  auth::SaslConnectionFacts ExchangeFacts(const auth::SaslConnectionFacts& connection);
};

}  // namespace pop3_service
}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_POP3_SERVICE_POP3_SHARD_BACKEND_H_
