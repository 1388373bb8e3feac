// LmtpSession: the sans-I/O LMTP server protocol engine (RFC 2033, with the RFC 5321 command
// syntax and the extensions PIPELINING (RFC 2920), 8BITMIME (RFC 1652), SIZE (RFC 1870) and
// ENHANCEDSTATUSCODES (RFC 2034, RFC 3463)). Bytes go in through Feed(); the session answers
// with an ordered stream of actions (NextAction()) that the connection driver carries out:
// write these reply bytes, check this recipient, deliver this message to these recipients,
// close. Results of the slow actions come back through On*() methods. The session never
// touches a socket, a store or a clock. It has the same shape as pop3::Pop3Session so that one
// connection driver runs both.
//
// Driver contract:
//   - Carry out actions in the order NextAction() returns them.
//   - A kWrite action's bytes and every string_view/span in an action stay valid until the next
//     call of any LmtpSession method, except that kDeliver's `delivery` stays valid until
//     OnDeliveryDone() (or OnConnectionLost()): the driver may hand the message bytes to
//     storage once per recipient mailbox without copying them.
//   - Call OnOutputFlushed() when everything taken so far has left the send queue. Parsing
//     pauses while more than options.output_queued_bytes_max bytes are taken and unflushed.
//   - After kCheckRecipient or kDeliver the session parses no input until the matching On*()
//     result arrives (pipelining safety).
//   - kDeliver: store `delivery.message` for each recipient, and answer OnDeliveryDone() with
//     exactly one result per `delivery.recipients` entry, in that order. kDelivered means that
//     copy is durable: the session then replies 250 for it (RFC 2033 section 4.2).
//   - Stop reading from the socket while WantsInput() is false (input buffered beyond a limit).
//   - OnConnectionLost(): the peer is gone; the session forgets everything and closes. Results
//     arriving afterwards are ignored.
//   - Connection-level events the driver notices (OnOverCapacity, OnShutdown, OnIdleTimeout)
//     go to the session, which answers them with the reply text and a kClose like any other
//     action: the driver writes no reply of its own.
//
// Threading: single-threaded; one session belongs to one reactor thread. Not thread-safe.
#ifndef POSTHASTE_SERVER_LMTP_SESSION_H_
#define POSTHASTE_SERVER_LMTP_SESSION_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/counter_fields.h"
#include "server/protocol/line_framer.h"

namespace posthaste::lmtp {

enum class LmtpState : uint8_t {
  kGreeted,      // connected, no LHLO yet
  kReady,        // after LHLO, no mail transaction
  kTransaction,  // after MAIL FROM (RCPT TO and DATA allowed)
  kData,         // reading the message after 354
  kDelivering,   // message read, waiting for OnDeliveryDone
  kClosed,
};

// RFC 1652 BODY parameter of MAIL FROM.
enum class BodyType : uint8_t { kUnspecified, k7Bit, k8BitMime };

struct LmtpSessionOptions {
  // Greeting "220 <hostname> LMTP <greeting_text>"; LHLO's first line; QUIT's reply.
  std::string hostname = "localhost";
  std::string greeting_text = "posthaste ready";

  // RFC 2034: advertise ENHANCEDSTATUSCODES and put "x.y.z " before every reply text (except
  // the greeting and the LHLO reply, as deployed servers do). Off only to talk like RFC 2033's
  // example; RFC 2033 section 5 says a server MUST implement it.
  bool enhanced_status_codes = true;
  // RFC 1652: advertise 8BITMIME and accept BODY=8BITMIME.
  bool eight_bit_mime = true;
  // RFC 1870: "SIZE <message_bytes_max>" when true; a bare "SIZE" (no fixed limit declared)
  // when false. The limit is enforced either way.
  bool advertise_size_limit = true;
  // Put "Return-Path: <reverse-path>" at the top of the stored message (RFC 5321 section
  // 4.4: the final delivery agent records the reverse-path). Identical for every recipient,
  // so one buffer serves all of them.
  bool add_return_path = true;

  // Limits (docs/CONTRIBUTING.md, "Limits"); each has a counter in LmtpSessionCounters.
  size_t command_line_bytes_max = 512;  // RFC 5321 4.5.3.1.4, incl. CRLF
  uint32_t recipients_max = 100;        // per transaction; RFC 5321 4.5.3.1.8
  // Counted unstuffed, a bare LF as CRLF, a bare CR as one octet. The wire form delivered is
  // at most twice as long (each bare CR becomes CRLF, each '.'-line gains a dot).
  uint64_t message_bytes_max = 64ull * 1024 * 1024;
  uint32_t bad_commands_max = 20;               // then 421 and close
  size_t output_queued_bytes_max = 64 * 1024;   // parse no input while more is queued
  size_t input_buffered_bytes_max = 64 * 1024;  // WantsInput() turns false beyond this
};

// Plain counters, read by the driver, which adds them to its shard's block when the session
// ends (server/lmtp_service/lmtp_counters.h exports them). Each counts events in this session.
// X(member, what it counts).
#define PH_LMTP_SESSION_COUNTERS(X)                                              \
  X(commands, "command lines handled (any verdict)")                             \
  X(command_line_too_long, "limit: command_line_bytes_max")                      \
  X(bare_line_feed_closes, "a command line ended in a bare LF: 500, close")      \
  X(bad_commands, "500/501/502/503/555 replies")                                 \
  X(bad_command_limit_closes, "limit: bad_commands_max")                         \
  X(transactions, "MAIL FROM accepted")                                          \
  X(recipients_checked, "kCheckRecipient actions")                               \
  X(recipients_accepted, "RCPT TO answered 250")                                 \
  X(recipients_over_limit, "limit: recipients_max (452 4.5.3)")                  \
  X(declared_size_too_large, "MAIL SIZE= over message_bytes_max (552 5.3.4)")    \
  X(messages_received, "DATA completed (terminator seen)")                       \
  X(messages_too_large, "limit: message_bytes_max (discarded, 552 5.3.4)")       \
  X(message_bytes_received, "octets received, as message_bytes_max counts them") \
  X(deliveries, "kDeliver actions")                                              \
  X(recipients_delivered, "kDelivered results")                                  \
  X(output_blocked, "limit: output_queued_bytes_max (pauses)")                   \
  X(input_over_limit, "limit: input_buffered_bytes_max (Feed past it)")          \
  X(proxy_header_refusals, "a first line \"PROXY ...\" from an untrusted peer: 554, close")
struct LmtpSessionCounters {
  PH_LMTP_SESSION_COUNTERS(PH_COUNTER_MEMBER)
};
PH_COUNTER_BLOCK_SUM(LmtpSessionCounters, PH_LMTP_SESSION_COUNTERS)

// The driver's verdict on one RCPT TO (OnRecipientChecked).
struct LmtpRecipientVerdict {
  enum class Code : uint8_t {
    kAccepted,       // 250 2.1.5
    kUnknown,        // 550 5.1.1
    kDisabled,       // 550 5.2.1
    kOverQuotaTemp,  // 452 4.2.2 (quota configured as a temporary condition)
    kOverQuotaPerm,  // 552 5.2.2
    kTempFailure,    // 451 4.3.0
    kMoving,         // 451 4.2.0 (the mailbox is moving to another backend)
    kTooBig,         // 552 5.3.4 (the declared SIZE exceeds this mailbox's message size limit)
  };
  Code code = Code::kTempFailure;
  // kAccepted: the canonical mailbox the message goes to (e.g. "user@domain" lower-cased).
  // Empty: the address as given. Two RCPTs naming the same mailbox are stored once and both
  // get that copy's reply.
  std::string mailbox;
  // Optional reply text replacing the default (must be one line of printable characters;
  // otherwise the default is used).
  std::string text;
};

// The driver's outcome for one recipient of a kDeliver (OnDeliveryDone).
struct LmtpDeliveryResult {
  enum class Code : uint8_t {
    kDelivered,      // 250 2.1.5 <addr> delivered -- only once the copy is durable
    kOverQuotaTemp,  // 452 4.2.2
    kOverQuotaPerm,  // 552 5.2.2
    kTempFailure,    // 451 4.3.0
    kMoving,         // 451 4.2.0 (the mailbox is moving to another backend)
    kPermFailure,    // 554 5.3.0
    kNoSpace,        // 452 4.3.1 (the server's disk is full; RFC 3463 "mail system full")
    kTooBig,         // 552 5.3.4 (over this mailbox's message size limit)
  };
  Code code = Code::kTempFailure;
  std::string text;  // optional replacement reply text, as in LmtpRecipientVerdict
};

// One accepted recipient of a kDeliver.
struct LmtpRecipient {
  std::string address;  // as given in RCPT TO (source route removed)
  std::string mailbox;  // LmtpRecipientVerdict::mailbox, or `address`
};

// What kDeliver asks the driver to store. Views into the session, valid until OnDeliveryDone.
struct LmtpDelivery {
  std::string_view reverse_path;  // MAIL FROM path without brackets; "" for <>
  BodyType body = BodyType::kUnspecified;
  std::span<const LmtpRecipient> recipients;  // distinct mailboxes, in first-RCPT order
  // The message in wire form, the form storage keeps and RETR sends (storage/message_format.h
  // CheckWireForm; hand it over as MessageInput::kWireForm): CRLF line ends only (a bare LF or
  // bare CR in the content became CRLF; only <CRLF>.<CRLF> ended it), every line beginning with
  // '.' dot-stuffed, ending in CRLF (an empty message is one empty line), preceded by the
  // Return-Path header when options.add_return_path. Storage checks it and stores it as it is.
  std::string_view message;
};

enum class LmtpActionKind : uint8_t {
  kNone,            // nothing to do until more input, a result, or OnOutputFlushed()
  kWrite,           // send `bytes`
  kCheckRecipient,  // check `recipient` (and `declared_size`); answer OnRecipientChecked()
  kDeliver,         // store `delivery`; answer OnDeliveryDone()
  kClose,           // flush what was taken so far, then close the connection
};

struct LmtpAction {
  LmtpActionKind kind = LmtpActionKind::kNone;
  std::string_view bytes;                 // kWrite
  std::string_view recipient;             // kCheckRecipient: the address, no brackets
  std::optional<uint64_t> declared_size;  // kCheckRecipient: MAIL FROM's SIZE=, if given
  LmtpDelivery delivery;                  // kDeliver
};

class LmtpSession {
 public:
  // Queues the greeting.
  explicit LmtpSession(LmtpSessionOptions options);
  LmtpSession(const LmtpSession&) = delete;
  LmtpSession& operator=(const LmtpSession&) = delete;

  // Buffers `bytes` (copied) and parses as far as the session may. Ignored once closed.
  void Feed(std::string_view bytes);
  // False while more than options.input_buffered_bytes_max bytes wait unparsed, or closed.
  bool WantsInput() const;

  // The next action, or kNone. See the driver contract above for lifetimes.
  LmtpAction NextAction();

  // Results of the actions above. REQUIRES: the matching action was taken and not yet
  // answered, unless the session has closed since (OnConnectionLost): then they are ignored.
  void OnRecipientChecked(LmtpRecipientVerdict verdict);
  // `results[i]` belongs to `delivery.recipients[i]`. Missing results count as kTempFailure.
  void OnDeliveryDone(std::span<const LmtpDeliveryResult> results);
  void OnOutputFlushed();
  void OnConnectionLost();

  // The server is at its connection limit. REQUIRES: nothing taken yet. The greeting is
  // replaced by "421 4.3.2 Server at capacity, try again later" and kClose.
  void OnOverCapacity();
  // The server is stopping (SIGTERM drain). Between transactions (kGreeted, kReady) the session
  // answers "421 4.3.2 <hostname> Service shutting down" and kClose at once; in a transaction
  // it does so as soon as the transaction ends (its replies go out first, RFC 5321 section
  // 3.8). Input pipelined behind that point is not parsed. Repeated calls change nothing.
  void OnShutdown();
  // The driver's idle timeout passed with no input and no result pending. Forgets everything
  // not yet taken and answers "421 4.4.2 <hostname> Idle timeout, closing connection" and
  // kClose. Ignored once closed.
  void OnIdleTimeout();

  LmtpState state() const { return state_; }
  const LmtpSessionCounters& counters() const { return counters_; }
  const LmtpSessionOptions& options() const { return options_; }
  // True while a recipient check or a delivery result is pending.
  bool AwaitingResult() const { return awaiting_ != Awaiting::kNothing; }
  // RCPTs accepted in the current transaction (duplicates included: each gets a reply).
  size_t accepted_rcpt_count() const { return rcpt_slots_.size(); }
  // Octets reserved for the message buffer (shows the size limit bounds memory).
  size_t MessageBufferCapacityForTest() const { return message_.capacity(); }

 private:
  enum class Awaiting : uint8_t { kNothing, kRecipient, kDelivery };
  // Where the DATA reader is within a line (see ReadData()): at the start of a line that began
  // after a CRLF on the wire (or the data), after its leading dot, after ".\r", at the start of
  // a line that began after a bare LF or CR or a dropped stuffing dot (kNewLine), inside a line,
  // or after a CR that ended the previous chunk.
  enum class DataPos : uint8_t { kLineStart, kDot, kDotCr, kNewLine, kMid, kCr };

  struct QueuedAction {
    LmtpActionKind kind;
    size_t begin = 0;  // kWrite: bytes are out_[begin, end)
    size_t end = 0;
    uint64_t weight = 0;  // bytes this action adds to the output queue
  };

  struct Command;
  static const Command* FindCommand(std::string_view verb);

  // Parsing.
  void Advance();
  void HandleCommandLine(std::string_view line, size_t raw_bytes);
  bool OutputBlocked() const;
  void BadCommand(std::string_view code, std::string_view enhanced, std::string_view text);
  // Consumes message bytes; returns true once the terminator was read.
  bool ReadData();
  size_t ReadContent(const char* base, size_t pos, size_t end);
  // Message bytes: content as it came (counted as it is), or wire bytes the reader writes
  // (`counted`: octets of them the size limit counts).
  void AppendContent(const char* data, size_t size);
  void AppendWire(std::string_view bytes, size_t counted);
  void FinishData();

  // Command handlers; `args` is the text after the verb with surrounding spaces trimmed.
  void CmdLhlo(std::string_view args);
  void CmdHelo(std::string_view args);
  void CmdMail(std::string_view args);
  void CmdRcpt(std::string_view args);
  void CmdData(std::string_view args);
  void CmdRset(std::string_view args);
  void CmdNoop(std::string_view args);
  void CmdVrfy(std::string_view args);
  void CmdQuit(std::string_view args);
  void CmdNotImplemented(std::string_view args);

  void ResetTransaction();
  void ReplyForRecipient(size_t slot, std::string_view code, std::string_view enhanced,
                         std::string_view default_text, const std::string& text);

  // Output.
  void Reply(std::string_view code, std::string_view enhanced, std::string_view text);
  void Append(std::string_view text);
  void AppendNumber(uint64_t value);
  void Push(QueuedAction action);
  void SealWrite();
  void QueueClose();
  // "421 <enhanced> <hostname> <text>" and kClose.
  void CloseWith421(std::string_view enhanced, std::string_view text);

  const LmtpSessionOptions options_;
  LmtpState state_ = LmtpState::kGreeted;
  Awaiting awaiting_ = Awaiting::kNothing;
  bool close_queued_ = false;
  bool shutdown_requested_ = false;  // OnShutdown(): 421 at the next transaction boundary
  bool blocked_counted_ = false;
  uint32_t bad_commands_ = 0;

  protocol::LineFramer input_;

  // Output: reply text accumulates in out_; out_[write_begin_, end) is not yet in a kWrite.
  std::string out_;
  size_t write_begin_ = 0;
  std::vector<QueuedAction> actions_;
  size_t action_head_ = 0;
  uint64_t untaken_bytes_ = 0;
  uint64_t taken_unflushed_bytes_ = 0;

  // The mail transaction.
  std::string reverse_path_;
  BodyType body_ = BodyType::kUnspecified;
  std::optional<uint64_t> declared_size_;
  std::string pending_rcpt_;               // address awaiting OnRecipientChecked
  std::vector<LmtpRecipient> recipients_;  // distinct mailboxes
  std::vector<uint32_t> rcpt_slots_;       // per accepted RCPT: index into recipients_
  std::vector<LmtpDeliveryResult> results_;

  // DATA.
  DataPos data_pos_ = DataPos::kLineStart;
  bool data_oversize_ = false;
  uint64_t data_bytes_ = 0;  // unstuffed message octets so far (counted even when discarding)
  std::string message_;

  LmtpSessionCounters counters_;
};

}  // namespace posthaste::lmtp

#endif  // POSTHASTE_SERVER_LMTP_SESSION_H_
