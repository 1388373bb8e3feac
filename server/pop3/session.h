// Pop3Session: the sans-I/O POP3 server protocol engine (RFC 1939, 2449, 2595, 3206, 5034,
// 6856). Bytes go in through Feed(); the session answers with an ordered stream of actions
// (NextAction()) that the connection driver carries out: write these reply bytes, stream this
// stored message, authenticate these credentials, open the maildrop, commit these deletions,
// start TLS, delay, close. Results of the slow actions come back through On*() methods. The
// session never touches a socket, a store, a TLS library or a clock.
//
// Driver contract:
//   - Carry out actions in the order NextAction() returns them. kDelay means: carry out no
//     later action (in particular, write nothing) until delay_ms have passed.
//   - A kWrite action's bytes and every string_view/span in an action stay valid until the next
//     call of any Pop3Session method; copy them (e.g. into the send queue) before that.
//   - Call OnOutputFlushed() when everything taken so far (writes and streams) has left the
//     send queue. Parsing pauses while more than options.output_queued_bytes_max bytes of
//     output are queued and unflushed, and large LIST/UIDL listings are produced in pieces
//     of about that size, so per-session output memory is bounded.
//   - After kAuthenticate, kOpenMaildrop, kCommit or kStartTls the session parses no input until
//     the matching On*() result arrives (pipelining safety). Bytes fed while a STLS handshake
//     is pending are dropped (plaintext injection, CVE-2011-0411), as are bytes buffered behind
//     the STLS command line.
//   - Stop reading from the socket while WantsInput() is false (input buffered beyond a limit).
//   - kStreamMessage: send the stored, already dot-stuffed bytes of the message (for TOP: the
//     header, the blank line and the first top_body_lines body lines), then ".\r\n".
//   - kCheckMessage (options.check_stored_messages): check the stored bytes of the message
//     before RETR or TOP answers; the session parses no input and writes no status line until
//     OnMessageChecked(), so a damaged message gets "-ERR" instead of wrong bytes.
//   - OnConnectionLost(): the peer is gone; the session commits nothing and closes.
//
// Threading: single-threaded; one session belongs to one reactor thread. Not thread-safe.
#ifndef POSTHASTE_SERVER_POP3_SESSION_H_
#define POSTHASTE_SERVER_POP3_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "base/counter_fields.h"
#include "server/pop3/mailbox_snapshot.h"
#include "server/pop3/message_number.h"
#include "server/pop3/reply_catalog.h"
#include "server/protocol/line_framer.h"

namespace posthaste::pop3 {

enum class Pop3State : uint8_t {
  kAuthorization,
  kTransaction,
  kUpdate,  // QUIT received in TRANSACTION; waiting for the commit result
  kClosed,
};

// What the driver does when the maildrop is locked by another session. The takeover itself is
// the driver's job; the session only reports [IN-USE] when the driver says the maildrop is busy.
enum class InUsePolicy : uint8_t { kRefuse, kTakeover };

// A tenant's override of the plaintext rule below (set with `posthaste tenant policy`).
enum class TenantPlaintextAuth : uint8_t {
  kDefault,     // follow plaintext_requires_tls / loopback_exempt_from_tls
  kAllow,       // plaintext logins allowed without TLS, from any address
  kRequireTls,  // refused without TLS, even from loopback or when the server-wide rule allows
};

// RFC 2449 LOGIN-DELAY and EXPIRE as CAPA announces them.
struct CapaPolicy {
  static constexpr uint32_t kExpireNever = UINT32_MAX;
  std::optional<uint32_t> login_delay_seconds;  // unset: not announced
  std::optional<uint32_t> expire_days;          // unset: not announced; kExpireNever: "NEVER"
  // Before login: the values vary per user ("USER" follows them).
  bool per_user = false;
  bool operator==(const CapaPolicy&) const = default;
};

// The driver's synchronous, non-blocking answer to "which setting has this tenant?", asked on
// the session's thread once per USER, AUTH LOGIN user name or AUTH PLAIN response, before any
// password is asked for. Implementations read an immutable snapshot (no locks, no I/O).
// Not owned by the session; must outlive it.
class TenantPlaintextAuthLookup {
 public:
  virtual ~TenantPlaintextAuthLookup() = default;
  // `domain`: the part after the last '@' of the name the client gave, as given (any case).
  virtual TenantPlaintextAuth ForDomain(std::string_view domain) const = 0;
  // Whether some tenant has kAllow. When none has, requests the server-wide rule refuses are
  // refused at the command, before the client sends even a user name (as without tenants).
  virtual bool AnyAllowed() const = 0;
  // LOGIN-DELAY and EXPIRE for CAPA before login, when tenants set them (else the policy's).
  virtual CapaPolicy BeforeLogin() const { return {}; }
};

struct Pop3TenantPolicy {
  // APOP needs a plaintext-equivalent secret on the server, so it is off unless a tenant opts in.
  bool apop_allowed = false;
  // USER/PASS, AUTH PLAIN and AUTH LOGIN only over TLS (RFC 2595 section 2.2) ...
  bool plaintext_requires_tls = true;
  // ... except from a loopback peer (webmail on the same host) when this is set.
  bool loopback_exempt_from_tls = true;
  // ... and, when this is set, on connections whose immediate peer is a trusted proxy
  // (peer_is_trusted_proxy): the proxy holds the client's TLS and enforces it (nginx's mail proxy
  // cannot speak TLS to its backends). This also overrides a tenant's kRequireTls.
  bool trusted_proxy_exempt_from_tls = false;
  // Per-tenant overrides of the two rules above; null: every tenant follows them.
  const TenantPlaintextAuthLookup* tenant_plaintext_auth = nullptr;
  // RFC 2449 EXPIRE capability: days the server keeps retrieved mail; kExpireNever advertises
  // "EXPIRE NEVER"; unset advertises nothing.
  static constexpr uint32_t kExpireNever = UINT32_MAX;
  std::optional<uint32_t> expire_days;
  // RFC 2449 LOGIN-DELAY capability in seconds; unset advertises nothing.
  std::optional<uint32_t> login_delay_seconds;
  InUsePolicy in_use = InUsePolicy::kTakeover;
};

// The commands of the command table, in its order, then anything else (unknown verbs, lines
// that are too long or empty). For the driver's per-command metrics.
enum class Pop3Command : uint8_t {
  kUser,
  kPass,
  kApop,
  kAuth,
  kStls,
  kStat,
  kList,
  kRetr,
  kDele,
  kNoop,
  kRset,
  kTop,
  kUidl,
  kCapa,
  kUtf8,
  kLang,
  kQuit,
  kUnknown
};

// Told when a command line starts being handled and when its status line (+OK / -ERR) has
// been produced and nothing is pending for it any more (auth, maildrop, commit or TLS result;
// SASL exchanges included). Called synchronously from Feed()/On*() on the session's thread.
class Pop3CommandObserver {
 public:
  virtual void OnCommandBegin(Pop3Command command) = 0;
  virtual void OnCommandEnd(Pop3Command command, bool ok) = 0;

 protected:
  ~Pop3CommandObserver() = default;
};

struct Pop3SessionOptions {
  // Used in the sign-off reply: "+OK <hostname> POP3 server signing off".
  std::string hostname = "localhost";
  // Greeting: "+OK <greeting_text>[ <apop_timestamp>]".
  std::string greeting_text = "POP3 server ready";
  // RFC 2449 IMPLEMENTATION capability; empty advertises nothing.
  std::string implementation = "posthaste";
  // RFC 1939 section 7 "<process-ID.clock@hostname>", made by the driver (the session has no
  // clock or randomness). APOP is offered only when this is set and the policy allows APOP.
  std::string apop_timestamp;
  Pop3TenantPolicy policy;

  bool tls_available = false;  // the transport can start TLS (STLS)
  bool tls_active = false;     // the connection is already TLS (port 995)
  bool peer_is_loopback = false;
  // The immediate peer is a proxy in --proxy_networks: the greeting carries [XCLIENT] and the
  // XCLIENT command is accepted in AUTHORIZATION; from anyone else XCLIENT is unknown.
  bool peer_is_trusted_proxy = false;
  // SASL mechanisms beyond PLAIN and LOGIN offered on this connection now: upper-case names
  // separated by single spaces ("SCRAM-SHA-256 SCRAM-SHA-1"), listed in CAPA's SASL line and in
  // the bare AUTH listing, and accepted by AUTH (driven through kAuthenticate, AuthMechanism::
  // kSasl). Not owned: the driver's text must outlive the session. SetSaslMechanisms() changes
  // it (after a TLS handshake, when channel binding becomes possible).
  std::string_view sasl_mechanisms;
  // Optional; must outlive the session.
  Pop3CommandObserver* command_observer = nullptr;

  // RFC 6856 section 3: the language "LANG *" picks, the administrator's preference; a tag of
  // SupportedLanguages() ("de"). Empty or unknown: i-default. SetPreferredLanguage() replaces
  // it once the user's tenant is known. Replies stay in i-default until the client sends LANG,
  // as the RFC requires.
  std::string preferred_language;
  // RFC 6856 section 2 "UTF8 USER": prepares a UTF-8 user name or password for comparison
  // (SASLprep). The driver passes server/auth/utf8_credential.h's NormalizeUtf8Credential, so
  // the engine links no Unicode tables. Null: CAPA announces "UTF8" without USER and names and
  // passwords reach the driver as sent.
  using CredentialPreparer = absl::StatusOr<std::string> (*)(std::string_view text);
  CredentialPreparer credential_preparer = nullptr;

  // Limits (docs/CONTRIBUTING.md, "Limits"); each has a counter in Pop3SessionCounters.
  size_t command_line_bytes_max = 255;          // RFC 2449 section 4, including CRLF
  size_t sasl_line_bytes_max = 16 * 1024;       // SASL responses and AUTH initial responses
  uint32_t bad_commands_max = 20;               // then close
  uint32_t auth_failures_max = 3;               // then close
  uint32_t auth_failure_delay_ms = 2000;        // before each "-ERR [AUTH]"
  size_t output_queued_bytes_max = 64 * 1024;   // parse no input while more is queued
  size_t input_buffered_bytes_max = 64 * 1024;  // WantsInput() turns false beyond this

  // RETR and TOP first ask the driver to check the message's stored bytes (kCheckMessage) and
  // answer only after OnMessageChecked(). Off: the status line and the stream go at once.
  bool check_stored_messages = false;
};

// Plain counters, read by the driver, which adds them to its shard's block when the session
// ends (server/pop3_service/pop3_counters.h exports them). Each counts events in this session.
// X(member, what it counts).
#define PH_POP3_SESSION_COUNTERS(X)                                     \
  X(commands, "command lines handled (any verdict)")                    \
  X(command_line_too_long, "limit: command_line_bytes_max")             \
  X(sasl_line_too_long, "limit: sasl_line_bytes_max")                   \
  X(bad_commands, "unknown, wrong state or bad syntax")                 \
  X(bare_line_feed_closes, "a line ended in a bare LF: -ERR and close") \
  X(bad_command_limit_closes, "limit: bad_commands_max")                \
  X(auth_failures, "logins refused with -ERR [AUTH]")                   \
  X(auth_failure_limit_closes, "limit: auth_failures_max")              \
  X(output_blocked, "limit: output_queued_bytes_max (pauses)")          \
  X(input_over_limit, "limit: input_buffered_bytes_max (Feed past it)") \
  X(stls_discarded_bytes, "plaintext dropped behind/during STLS")       \
  X(proxy_header_refusals, "a first line \"PROXY ...\" from an untrusted peer: -ERR and close") \
  X(login_delay_refusals, "logins refused with -ERR [LOGIN-DELAY] (the tenant's delay)")  \
  X(expired_at_quit, "messages retrieved under EXPIRE 0 and deleted at QUIT")  \
  X(download_limit_refusals, "RETR/TOP refused with -ERR [SYS/TEMP]: the daily download limit")
struct Pop3SessionCounters {
  PH_POP3_SESSION_COUNTERS(PH_COUNTER_MEMBER)
};
PH_COUNTER_BLOCK_SUM(Pop3SessionCounters, PH_POP3_SESSION_COUNTERS)

// kSasl: any mechanism of Pop3SessionOptions::sasl_mechanisms, one kAuthenticate per step.
enum class AuthMechanism : uint8_t { kUserPass, kApop, kSaslPlain, kSaslLogin, kSasl };
std::string_view AuthMechanismName(AuthMechanism mechanism);

// What kAuthenticate asks the driver to verify. Views into the session, valid until
// OnAuthResult (and no longer: the session wipes the secret then).
struct Pop3Credentials {
  AuthMechanism mechanism = AuthMechanism::kUserPass;
  std::string_view authzid;         // SASL PLAIN only; may be empty
  std::string_view user;            // USER / APOP name / SASL authcid
  std::string_view secret;          // password, or the APOP digest (32 lowercase hex)
  std::string_view apop_timestamp;  // APOP only: the greeting's timestamp
  // kSasl only (the contract is server/auth/sasl_exchange.h's): the mechanism as offered, and
  // whether this is AUTH itself (start the exchange) or the client's next response. `secret`
  // holds the decoded response; sasl_has_response is false for AUTH without an initial
  // response ("=" is an empty one). The driver answers kContinue with the next challenge, or
  // the verdict.
  std::string_view sasl_mechanism;
  bool sasl_start = false;
  bool sasl_has_response = false;
};

struct Pop3AuthResult {
  enum class Code : uint8_t {
    kOk,
    kContinue,        // kSasl: send "+ " base64(challenge) and pass on the client's next line
    kBadCredentials,  // -ERR [AUTH] after the failure delay; counts towards the limit
    kLoginDelay,      // -ERR [LOGIN-DELAY] (RFC 2449 section 8.1.2)
    kTempFailure,     // -ERR [SYS/TEMP]
    kPermFailure,     // -ERR [SYS/PERM]
    // -ERR [AUTH]: the credentials were right but the user's tenant does not allow this login
    // mechanism (`tenant policy --login_mechanisms`); not a failed attempt.
    kMechanismRefused,
  };
  Code code = Code::kBadCredentials;
  // On kOk: the account name to open (e.g. the canonical user@domain). Empty: the name given.
  std::string user;
  std::string challenge;  // kContinue: raw bytes (the session base64-encodes them)
  // On kBadCredentials: the wait before "-ERR [AUTH]" the driver chose for this failure (its
  // penalty for the client, server/auth/auth_penalties.h). Unset: auth_failure_delay_ms.
  std::optional<uint32_t> failure_delay_ms;
};

// What the user's tenant sets for the session, known once the maildrop is open.
struct Pop3UserPolicy {
  // CAPA's LOGIN-DELAY and EXPIRE for this user (per_user is false). expire_days 0: the
  // messages retrieved with RETR are deleted at QUIT (RFC 2449 EXPIRE 0).
  CapaPolicy capa;
  // The tenant's language (`tenant policy --lang`): what `LANG *` picks from now on (as
  // SetPreferredLanguage). Empty: the options' preferred_language stays.
  std::string language;
  // What is left of the user's daily download limit (octets of RETR and TOP) when the maildrop
  // opened; unset: no limit. A RETR or TOP of a message larger than what is left is refused with
  // "-ERR [SYS/TEMP]" and the session goes on. A TOP holds back the message's whole size until
  // OnTopLength() gives back what it did not send, so output never passes the limit.
  std::optional<uint64_t> download_octets_left;
};

struct Pop3MaildropResult {
  enum class Code : uint8_t {
    kOk,
    kInUse,         // -ERR [IN-USE]
    kTempFailure,   // -ERR [SYS/TEMP]
    kPermFailure,   // -ERR [SYS/PERM]
    kLimitReached,  // -ERR [SYS/TEMP], then close: too many sessions of this user (from this IP)
    kLoginDelay,    // -ERR [LOGIN-DELAY]: logged in more recently than the tenant allows
  };
  Code code = Code::kTempFailure;
  std::shared_ptr<const MailboxSnapshot> snapshot;  // REQUIRED non-null on kOk
  Pop3UserPolicy user_policy;                       // on kOk
};

enum class Pop3CommitResult : uint8_t { kOk, kTempFailure };

// What the driver found checking a message's stored bytes (kCheckMessage).
enum class Pop3MessageCheck : uint8_t {
  kIntact,       // they match the checksum recorded at delivery: the reply and stream follow
  kDamaged,      // they do not, or cannot be read: "-ERR [SYS/PERM]", nothing of them is sent
  kUnavailable,  // the check could not run now (a full queue): "-ERR [SYS/TEMP]"
};

// Why the driver turns a connection away before the session has read anything.
enum class Pop3Refusal : uint8_t {
  kServerAtCapacity,    // the shard holds its maximum of connections
  kServerBusy,          // the driver could not ask for admission (a full cross-shard queue)
  kTooManyFromAddress,  // the per-client-IP connection limit
};

// Which of the driver's clocks ran out.
enum class Pop3Timeout : uint8_t {
  kLogin,  // no login within the AUTHORIZATION time limit
  kIdle,   // no command within the TRANSACTION idle limit
};

enum class Pop3ActionKind : uint8_t {
  kNone,           // nothing to do until more input, a result, or OnOutputFlushed()
  kWrite,          // send `bytes`
  kStreamMessage,  // send stored message `message` (whole, or TOP), then ".\r\n"
  kCheckMessage,   // check stored message `message`'s bytes; answer with OnMessageChecked()
  kAuthenticate,   // verify `credentials`; answer with OnAuthResult()
  kOpenMaildrop,   // open `user`'s maildrop; answer with OnMaildropOpened()
  kCommit,         // delete `deletions` for good; answer with OnCommitResult()
  kStartTls,       // after the preceding writes are flushed, handshake; then OnTlsStarted()
  kDelay,          // do nothing further for delay_ms
  kAbandonSasl,    // the client ended a kSasl exchange ("*", bad base64, overlong line): the
                   // driver forgets it (sasl_cancelled: "*"). No result is expected
  kClose,          // flush what was taken so far, then close the connection
};
std::string_view Pop3ActionKindNameForTest(Pop3ActionKind kind);

struct Pop3Action {
  Pop3ActionKind kind = Pop3ActionKind::kNone;
  std::string_view bytes;                   // kWrite
  MessageIndex message;                     // kStreamMessage, kCheckMessage
  std::optional<uint64_t> top_body_lines;   // kStreamMessage, kCheckMessage: set for TOP
  uint64_t message_octets = 0;              // kStreamMessage, kCheckMessage: snapshot size
  Pop3Credentials credentials;              // kAuthenticate
  std::string_view user;                    // kOpenMaildrop
  std::span<const MessageIndex> deletions;  // kCommit: ascending, possibly empty
  uint32_t delay_ms = 0;                    // kDelay
  bool sasl_cancelled = false;              // kAbandonSasl
};

class Pop3Session {
 public:
  // Queues the greeting.
  explicit Pop3Session(Pop3SessionOptions options);
  Pop3Session(const Pop3Session&) = delete;
  Pop3Session& operator=(const Pop3Session&) = delete;

  // Buffers `bytes` (copied) and parses as far as the session may. Ignored once closed.
  void Feed(std::string_view bytes);
  // False while more than options.input_buffered_bytes_max bytes wait unparsed, or closed.
  bool WantsInput() const;

  // The next action, or kNone. See the driver contract above for lifetimes.
  Pop3Action NextAction();

  // Results of the actions above. REQUIRES: the matching action was taken and not yet
  // answered, unless the session has closed since (OnConnectionLost): then they are ignored.
  void OnAuthResult(const Pop3AuthResult& result);
  void OnMaildropOpened(Pop3MaildropResult result);
  void OnCommitResult(Pop3CommitResult result);
  // The result of the kCheckMessage taken last. kIntact queues RETR's or TOP's "+OK" and the
  // kStreamMessage; otherwise an "-ERR" goes out instead, the download budget gets the
  // message's size back, and the session goes on.
  void OnMessageChecked(Pop3MessageCheck result);
  void OnTlsStarted();
  // The TOP being sent of `message` covers the whole message (its line count reached past the
  // end): under EXPIRE 0 it counts as retrieved, as RETR does (a client keeping its mail with
  // "TOP n 99999999", as fetchmail does with `keep`, cannot leave it behind that way).
  void OnWholeMessageSentByTop(MessageIndex message);
  // The driver found the length `top_octets` of a TOP's stream for a message of
  // `message_octets` (Pop3Action::message_octets): the difference goes back to the download
  // budget (Pop3UserPolicy::download_octets_left). No reply; ignored without a limit.
  void OnTopLength(uint64_t message_octets, uint64_t top_octets);
  // The driver's offer of SASL mechanisms changed (see Pop3SessionOptions::sasl_mechanisms;
  // same lifetime rule). Call before OnTlsStarted() when a handshake changes it.
  void SetSaslMechanisms(std::string_view mechanisms) { sasl_mechanisms_ = mechanisms; }
  std::string_view sasl_mechanisms() const { return sasl_mechanisms_; }
  void OnOutputFlushed();
  void OnConnectionLost();
  // The driver turns the connection away before any input (instead of the greeting): the
  // next actions write the refusal and close. Nothing was read, so nothing is lost.
  void Refuse(Pop3Refusal refusal);
  // A driver's clock ran out: like OnConnectionLost (nothing is committed, queued output is
  // forgotten), but the next actions write the reason and close. Ignored once closed.
  void OnTimeout(Pop3Timeout timeout);

  Pop3State state() const { return state_; }
  const Pop3SessionCounters& counters() const { return counters_; }
  const Pop3SessionOptions& options() const { return options_; }
  bool tls_active() const { return tls_active_; }
  bool utf8_enabled() const { return utf8_enabled_; }
  // The language of the reply texts (RFC 6856 section 3): i-default until a LANG succeeds.
  ReplyLanguage language() const { return language_; }
  // The language "LANG *" picks from now on (the tenant's, once the driver knows the user).
  // False, and nothing changes, when `tag` is not one of SupportedLanguages().
  bool SetPreferredLanguage(std::string_view tag);
  // The authenticated account (empty before TRANSACTION).
  std::string_view user() const { return account_; }
  // The snapshot in TRANSACTION/UPDATE; null before.
  const MailboxSnapshot* snapshot() const { return snapshot_.get(); }
  bool IsMarkedDeletedForTest(MessageIndex index) const;
  // What a trusted proxy's XCLIENT said (empty/0 when it sent none): the client's address and
  // port, which replace the connection's in the driver's logs from then on.
  std::string_view xclient_address() const { return xclient_address_; }
  uint16_t xclient_port() const { return xclient_port_; }
  // True while a result (auth, maildrop, commit, TLS, message check) is pending.
  bool AwaitingResult() const { return awaiting_ != Awaiting::kNothing; }

 private:
  enum class Awaiting : uint8_t { kNothing, kAuth, kMaildrop, kCommit, kTls, kMessageCheck };
  enum class SaslStep : uint8_t {
    kNone,
    kPlainResponse,
    kLoginUser,
    kLoginPassword,
    kMechanismResponse,  // the next line goes to the driver's exchange (AuthMechanism::kSasl)
  };
  enum class ListingKind : uint8_t { kNone, kList, kUidl };

  struct QueuedAction {
    Pop3ActionKind kind;
    size_t begin = 0;  // kWrite: bytes are out_[begin, end)
    size_t end = 0;
    MessageIndex message;
    std::optional<uint64_t> top_body_lines;
    uint64_t weight = 0;  // bytes this action adds to the output queue
    uint32_t delay_ms = 0;
    bool sasl_cancelled = false;
  };

  struct Command;
  // `index`, when given, receives the row number (the Pop3Command).
  static const Command* FindCommand(std::string_view verb, size_t* index = nullptr);

  // Parsing.
  void Advance();
  void HandleCommandLine(std::string_view line, size_t raw_bytes);
  void HandleSaslLine(std::string_view line);
  void HandleOverflow();
  bool OutputBlocked() const;
  void BadCommand(std::string_view reply);
  void BeginCommand(Pop3Command command);
  void MaybeEndCommand();

  // Command handlers; `args` has surrounding spaces trimmed except for PASS.
  void CmdUser(std::string_view args);
  void CmdPass(std::string_view args);
  void CmdApop(std::string_view args);
  void CmdAuth(std::string_view args);
  void CmdStat(std::string_view args);
  void CmdList(std::string_view args);
  void CmdRetr(std::string_view args);
  void CmdDele(std::string_view args);
  void CmdNoop(std::string_view args);
  void CmdRset(std::string_view args);
  void CmdTop(std::string_view args);
  // RETR's and TOP's "+OK" and stream, once the message may be sent (checked or unchecked).
  void QueueRetrieval(MessageIndex index, std::optional<uint64_t> top_body_lines);
  // Asks the driver to check `index` first (options_.check_stored_messages).
  void QueueCheck(MessageIndex index, std::optional<uint64_t> top_body_lines);
  void CmdUidl(std::string_view args);
  void CmdCapa(std::string_view args);
  void CmdStls(std::string_view args);
  void CmdUtf8(std::string_view args);
  void CmdLang(std::string_view args);
  void CmdQuit(std::string_view args);
  void CmdXclient(std::string_view args);  // outside the table: longer than a 4-letter verb

  // Helpers.
  bool PlaintextAllowed() const;  // by the server-wide rule
  bool TrustedProxyHoldsTls() const;
  // For the tenant of user name `user` (which may override the server-wide rule).
  bool PlaintextAllowedFor(std::string_view user) const;
  bool TenantsMayAllowPlaintext() const;
  bool ApopOffered() const;
  // Parses one message number argument; on failure writes the -ERR and returns nullopt.
  std::optional<MessageIndex> ParseLiveMessage(std::string_view arg, std::string_view missing);
  void StartAuthentication(AuthMechanism mechanism);
  // RFC 6856 section 2 and RFC 4616: prepares auth_user_ (and auth_secret_ when `with_secret`)
  // with options_.credential_preparer. False after writing the -ERR (credentials wiped).
  bool PrepareCredentials(bool with_secret);
  // The offered mechanism named `name` (any case), as the offer spells it; empty if none.
  std::string_view OfferedSaslMechanism(std::string_view name) const;
  // A kSasl step: the decoded response (if any) is in auth_secret_.
  void StartSaslStep(bool start, bool has_response);
  // The client ended a kSasl exchange: tell the driver.
  void AbandonSasl(bool cancelled);
  void ContinueListing();
  void AppendMaildropSummary();
  void AppendLoginDelay(const CapaPolicy& capa);
  void AppendExpire(const CapaPolicy& capa);
  // LOGIN-DELAY and EXPIRE as CAPA announces them now: the user's once logged in, else what
  // the tenants set, else the server's policy.
  CapaPolicy CurrentCapaPolicy() const;
  void WipeCredentials();
  // Charges a RETR or TOP of `octets` to the daily download budget; false (and the -ERR
  // written, the refusal counted) when it does not fit.
  bool ChargeDownload(uint64_t octets);
  // Gives a refused RETR's or TOP's charge back to the download budget.
  void RefundDownload(MessageIndex index);

  // Output.
  void Append(std::string_view text);
  void AppendNumber(uint64_t value);
  // text + CRLF; a "+OK"/"-ERR" line's text after any response code in the current language.
  void AppendLine(std::string_view text);
  // `prefix` (status, response code...), a space, the catalog text for `english` in the current
  // language with %1.. filled from `args`, CRLF.
  void AppendLocalized(std::string_view prefix, std::string_view english,
                       std::initializer_list<std::string_view> args = {});
  void Push(QueuedAction action);
  void SealWrite();
  void QueueClose();
  // Forgets everything queued and pending, then queues `line` and a close.
  void EndWith(std::string_view line);

  const Pop3SessionOptions options_;
  Pop3State state_ = Pop3State::kAuthorization;
  Awaiting awaiting_ = Awaiting::kNothing;
  SaslStep sasl_step_ = SaslStep::kNone;
  bool sasl_start_ = false;
  bool sasl_has_response_ = false;
  bool tls_active_;
  bool utf8_enabled_ = false;
  ReplyLanguage language_ = ReplyLanguage::kDefault;
  ReplyLanguage preferred_language_ = ReplyLanguage::kDefault;
  bool close_queued_ = false;
  bool blocked_counted_ = false;

  protocol::LineFramer input_;

  // Output: reply text accumulates in out_; out_[write_begin_, end) is not yet in a kWrite.
  std::string out_;
  std::string localized_;  // AppendLocalized's scratch line
  size_t write_begin_ = 0;
  std::vector<QueuedAction> actions_;
  size_t action_head_ = 0;
  uint64_t untaken_bytes_ = 0;
  uint64_t taken_unflushed_bytes_ = 0;

  // Authentication in progress (wiped after the result).
  AuthMechanism auth_mechanism_ = AuthMechanism::kUserPass;
  std::string_view sasl_mechanisms_;  // the driver's offer
  std::string_view sasl_mechanism_;   // kSasl: the one in use (a view into the offer)
  std::string auth_authzid_;
  std::string auth_user_;
  std::string auth_secret_;
  std::string user_arg_;  // from USER, until PASS
  bool have_user_ = false;
  bool user_refused_plaintext_ = false;  // the last USER was refused for its tenant's policy
  uint32_t auth_failures_ = 0;
  uint32_t bad_commands_ = 0;

  // TRANSACTION.
  std::string account_;
  std::shared_ptr<const MailboxSnapshot> snapshot_;
  std::vector<uint8_t> deleted_;  // 1: marked by DELE
  // What the user's tenant sets (from the maildrop's opening).
  Pop3UserPolicy user_policy_;
  // EXPIRE 0 only: 1 for each message sent by RETR in this session (deleted at QUIT).
  std::vector<uint8_t> retrieved_;
  // Awaiting::kMessageCheck: the RETR (no line count) or TOP that waits for the check.
  MessageIndex checking_message_{0};
  std::optional<uint64_t> checking_top_body_lines_;
  uint32_t live_count_ = 0;
  uint64_t live_octets_ = 0;
  std::vector<MessageIndex> deletions_;  // filled at QUIT for the commit action
  ListingKind listing_ = ListingKind::kNone;
  uint32_t listing_next_ = 0;

  // XCLIENT (trusted proxies only).
  std::string xclient_address_;
  uint16_t xclient_port_ = 0;

  Pop3SessionCounters counters_;

  // The command being handled, for options_.command_observer.
  Pop3Command open_command_ = Pop3Command::kUnknown;
  bool command_open_ = false;
  int8_t command_status_ = -1;  // -1: no status line yet; 1: +OK; 0: -ERR
};

}  // namespace posthaste::pop3

#endif  // POSTHASTE_SERVER_POP3_SESSION_H_
