// Pop3Backend: everything a POP3 connection needs done away from its connection, asked for by
// its Pop3Adapter: admission per client IP, verifying credentials, locking and opening the
// maildrop, finding TOP's length, committing deletions, and giving back what the connection
// held when it ends. Pop3Maildrop: an open maildrop as the adapter holds it.
//
// Implementations: Pop3ShardBackend (server/pop3_service/pop3_shard_backend.h: the offload
// pools, the store and the maildrop locks of the owner shards) and, for the adapter's unit
// tests, FakePop3Backend (server/pop3_service/testing/fake_pop3_backend.h).
//
// Contract: every request names its connection by id. Its answer comes later, on the
// connection's shard thread, as a call of the Pop3Adapter registered under that id
// (Pop3Adapter::OnAdmitted, OnAuthenticated, OnMaildropOpened, OnMessageChecked, OnTopLength,
// OnCommitted), and
// never from inside the request call. After Ended(id) no answer comes for that id, and what a
// late answer would have granted (an IP slot, the maildrop lock) is given back by the backend.
//
// Threading: the connection's shard thread, except Pop3Maildrop's blocking operations, which
// the backend runs on its I/O pool.
#ifndef POSTHASTE_SERVER_POP3_SERVICE_POP3_BACKEND_H_
#define POSTHASTE_SERVER_POP3_SERVICE_POP3_BACKEND_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/auth/sasl_exchange.h"
#include "server/pop3/mailbox_snapshot.h"
#include "server/pop3/message_number.h"
#include "server/pop3/session.h"
#include "server/transport/transport.h"

namespace posthaste::server::pop3_service {

// An open maildrop: the session's view of it and where its messages are stored. It keeps the
// stored files open while it lives, so a FileRange from Locate() stays valid as long as the
// Pop3Maildrop does. Shared between the adapter and the backend's offloaded work.
class Pop3Maildrop {
 public:
  virtual ~Pop3Maildrop() = default;
  // What the session sees (sizes and UIDLs). Never null.
  virtual std::shared_ptr<const pop3::MailboxSnapshot> view() const = 0;
  // The stored bytes of `message`, already in wire form (CRLF, dot-stuffed): what RETR sends
  // before ".\r\n". Cheap; no I/O.
  virtual transport::FileRange Locate(pop3::MessageIndex message) const = 0;

  // Blocking (they read or write the store): only the backend calls them, off the reactor.
  // The length TOP sends of `message`: its header block and first `body_lines` body lines.
  virtual absl::StatusOr<uint64_t> TopLength(pop3::MessageIndex message,
                                             uint64_t body_lines) const = 0;
  // Reads the stored bytes of `message` and checks them against the checksum recorded at
  // delivery. OK: they match. Unavailable: the check could not run now. Anything else: the
  // message is damaged or unreadable (the status names segment and offset).
  virtual absl::Status VerifyStored(pop3::MessageIndex message) const = 0;
  // Removes `deletions` for good (durable when OK).
  virtual absl::Status CommitDeletions(std::span<const pop3::MessageIndex> deletions) const = 0;
  // Records now as the first retrieval of `retrieved` (those not deleted), from which the
  // retention job counts a tenant's EXPIRE n days (storage::MailStore::RecordRetrievals).
  virtual absl::Status RecordRetrievals(std::span<const pop3::MessageIndex> retrieved) const = 0;
};

// The answer to OpenMaildrop.
struct Pop3MaildropOpened {
  pop3::Pop3MaildropResult::Code code = pop3::Pop3MaildropResult::Code::kTempFailure;
  std::shared_ptr<const Pop3Maildrop> maildrop;  // set on kOk
  absl::Status error;  // why the store could not open it (for the session's log line)
  // On kOk: what the user's tenant sets for the session, and its idle limit (0: the server's).
  pop3::Pop3UserPolicy user_policy;
  uint64_t idle_timeout_ns = 0;
};

// Why a connection ended, for the counters (told once, in Finished).
enum class Pop3EndCause : uint8_t {
  kOther,         // QUIT, peer gone, refusal, abort: counted elsewhere or not at all
  kLoginTimeout,  // no login in time (also a TLS handshake that never finished)
  kIdleTimeout,   // no command in TRANSACTION for the idle limit
  kSendStalled,   // the transport cut a peer that stopped reading
};

struct Pop3ConnectionEnd {
  transport::CloseReason reason = transport::CloseReason::kClosed;
  Pop3EndCause cause = Pop3EndCause::kOther;
  // The session's own counters (commands, limits hit, protocol closes), added to the shard's.
  pop3::Pop3SessionCounters session;
};

class Pop3Backend {
 public:
  virtual ~Pop3Backend() = default;

  // Admission under the per-client-IP connection limit. True: admitted at once (no answer
  // follows). False: OnAdmitted follows (admitted, or the refusal to send).
  virtual bool Admit(uint64_t id, const transport::PeerInfo& peer) = 0;
  // A trusted proxy's XCLIENT named the client (`ip`, an IP address in text form, checked by
  // the session): from now on the (user, IP) count and the --trusted_networks exemption use it.
  // The per-IP connection slot taken at admission stays where it was. No answer.
  virtual void ClientNamed(uint64_t id, std::string_view ip) = 0;
  // Verifies `credentials` (views valid during this call only). Answer: OnAuthenticated.
  virtual void Authenticate(uint64_t id, const pop3::Pop3Credentials& credentials) = 0;
  // The SASL mechanisms beyond PLAIN and LOGIN offered on a connection with or without TLS,
  // a tls-exporter channel binding and a verified client certificate
  // (Pop3SessionOptions::sasl_mechanisms' form). The text lives as long as the backend.
  // Synchronous, no answer.
  virtual std::string_view SaslMechanismsOffered(bool tls, bool channel_binding,
                                                 bool client_certificate) const = 0;
  // One step of a SASL exchange (credentials.mechanism == kSasl; server/auth/sasl_exchange.h):
  // starts one (credentials.sasl_start; `connection` says what it may know of the connection)
  // or feeds the current one the client's next response. Answer: OnAuthenticated, kContinue
  // with the next challenge, or the verdict.
  virtual void StepSasl(uint64_t id, const pop3::Pop3Credentials& credentials,
                        const auth::SaslConnectionFacts& connection) = 0;
  // The client abandoned the exchange ("*" when `cancelled`, else a malformed line): forget
  // it. No answer.
  virtual void AbandonSasl(uint64_t id, bool cancelled) = 0;
  // Locks `user`'s maildrop at its owner shard (taking it over from an idle holder when the
  // policy says so), counts the connection for (user, client IP), then opens the maildrop.
  // A lock granted is held until Ended(id) (or until a commit in flight then is done).
  // Answer: OnMaildropOpened.
  virtual void OpenMaildrop(uint64_t id, std::string_view user) = 0;
  // Checks the stored bytes of `message` before RETR or TOP sends them (Pop3Maildrop::
  // VerifyStored, off the reactor); counts and logs a damaged one. Answer: OnMessageChecked.
  virtual void CheckMessage(uint64_t id, std::shared_ptr<const Pop3Maildrop> maildrop,
                            pop3::MessageIndex message) = 0;
  // Finds the length TOP sends of `message`. Answer: OnTopLength.
  virtual void FindTopLength(uint64_t id, std::shared_ptr<const Pop3Maildrop> maildrop,
                             pop3::MessageIndex message, uint64_t body_lines) = 0;
  // Removes `deletions` (ascending, possibly empty) for good, then records the retrieval of
  // `retrieved` (ascending: the messages the session sent whole with RETR; a failure to record
  // them is logged, not answered). The maildrop stays locked until the commit is durable even if
  // the connection ends first. Answer: OnCommitted.
  virtual void Commit(uint64_t id, std::shared_ptr<const Pop3Maildrop> maildrop,
                      std::vector<pop3::MessageIndex> deletions,
                      std::vector<pop3::MessageIndex> retrieved) = 0;
  // A RETR or TOP answer of `octets` is being sent to the connection's user: recorded towards
  // the tenant's daily download limit (Pop3UserPolicy::download_octets_left) when it has one.
  // No answer.
  virtual void Downloaded(uint64_t id, uint64_t octets) = 0;

  // The connection is closing: no answer is wanted any more; give back its IP slot and its
  // maildrop lock (at once, or when the request or commit still out comes back).
  virtual void Ended(uint64_t id) = 0;
  // The transport has closed (after Ended): count `end` and free the adapter, later (never
  // from inside this call: the adapter is still running).
  virtual void Finished(uint64_t id, const Pop3ConnectionEnd& end) = 0;
};

}  // namespace posthaste::server::pop3_service

#endif  // POSTHASTE_SERVER_POP3_SERVICE_POP3_BACKEND_H_
