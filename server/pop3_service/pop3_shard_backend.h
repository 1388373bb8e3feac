// Pop3ShardBackend: the Pop3Backend of one serving shard (see pop3_backend.h for the
// contract). It does, for the shard's Pop3Adapters, what stays off the connection:
//   admission   the per-client-IP count, kept by the IP's owner shard (a message there and back)
//   auth        AuthService::Verify on the CPU offload pool (password hashing)
//   maildrop    the lock through the shard's MaildropLocks (owner shard, takeover), then
//               MailStore::OpenMailbox on the I/O pool, adapted to the session's snapshot
//   TOP length  MailboxSnapshot::TopLength on the I/O pool
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

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
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
  void OpenMaildrop(uint64_t id, std::string_view user) override;
  void FindTopLength(uint64_t id, std::shared_ptr<const Pop3Maildrop> maildrop,
                     pop3::MessageIndex message, uint64_t body_lines) override;
  void Commit(uint64_t id, std::shared_ptr<const Pop3Maildrop> maildrop,
              std::vector<pop3::MessageIndex> deletions) override;
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
  };

  // The adapter to answer, or null when the connection has ended or gone.
  Pop3Adapter* Live(uint64_t id);
  // Runs `answer` on the adapter of `id` from a later callback on this shard (never inside
  // the request call), unless the connection has ended by then.
  void AnswerLater(uint64_t id, absl::AnyInvocable<void(Pop3Adapter&)> answer);
  void OnAdmission(uint64_t id, const std::string& ip, bool ok);
  void GiveBackIpSlot(const std::string& ip);
  void OnAuthVerdict(uint64_t id, const AuthVerdict& verdict);
  // APOP and CRAM-MD5: refused unless the user's tenant allows them; the digest is checked
  // off the reactor.
  void AuthenticateApop(uint64_t id, const pop3::Pop3Credentials& credentials);
  // SASL PLAIN with an authorisation id naming another user: only a master user of that
  // user's own tenant may (audited in the session log and counted).
  void AuthenticateAs(uint64_t id, const pop3::Pop3Credentials& credentials);
  // Answers kBadCredentials later and counts the failure.
  void RefuseLogin(uint64_t id);
  // Runs `verify` on the CPU offload pool and answers with its verdict.
  void VerifyOffReactor(uint64_t id, absl::AnyInvocable<AuthVerdict()> verify);
  void OnLockOutcome(uint64_t id, const std::string& user, MaildropLocks::Outcome outcome);
  void OnMaildropLoaded(uint64_t id, absl::StatusOr<server::OpenMaildrop> loaded);
  void OnTopLength(uint64_t id, absl::StatusOr<uint64_t> length);
  void OnCommitDone(uint64_t id, absl::Status status);

  Pop3Shard& shard_;
  absl::AnyInvocable<Pop3Adapter*(uint64_t)> find_adapter_;
  absl::flat_hash_map<uint64_t, Connection> connections_;
};

}  // namespace pop3_service
}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_POP3_SERVICE_POP3_SHARD_BACKEND_H_
