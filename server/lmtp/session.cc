#include "server/lmtp/session.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "base/strings.h"

namespace posthaste::lmtp {

using protocol::LineFramer;
namespace {

constexpr uint8_t kInGreeted = 1;
constexpr uint8_t kInReady = 2;
constexpr uint8_t kInTransaction = 4;
constexpr uint8_t kInAnyCommandState = kInGreeted | kInReady | kInTransaction;

uint8_t StateBit(LmtpState state) {
  switch (state) {
    case LmtpState::kGreeted:
      return kInGreeted;
    case LmtpState::kReady:
      return kInReady;
    case LmtpState::kTransaction:
      return kInTransaction;
    default:
      return 0;
  }
}

constexpr char ToUpperAscii(char c) {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ToUpperAscii(a[i]) != ToUpperAscii(b[i])) return false;
  }
  return true;
}

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

std::string_view NextToken(std::string_view* rest) {
  std::string_view s = *rest;
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  size_t end = 0;
  while (end < s.size() && !IsSpace(s[end])) ++end;
  std::string_view token = s.substr(0, end);
  s.remove_prefix(end);
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  *rest = s;
  return token;
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsHigh(char c) { return static_cast<unsigned char>(c) >= 0x80; }

// RFC 5322 atext. Octets >= 0x80 are tolerated too (8-bit local parts exist in the wild; they
// cannot break a reply line).
bool IsAtext(char c) {
  if (IsAlpha(c) || IsDigit(c) || IsHigh(c)) return true;
  return std::strchr("!#$%&'*+-/=?^_`{|}~", c) != nullptr && c != '\0';
}

// RFC 5321 section 4.1.2 Domain (dot-separated labels of letters, digits and hyphens) or
// address-literal ("[...]"). Lenient about label length and 8-bit octets.
bool IsValidDomain(std::string_view d) {
  if (d.empty()) return false;
  if (d.front() == '[') {
    if (d.size() < 3 || d.back() != ']') return false;
    for (char c : d.substr(1, d.size() - 2)) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x21 || u > 0x7e || c == '[' || c == ']' || c == '\\') return false;
    }
    return true;
  }
  if (d.front() == '.' || d.back() == '.') return false;
  char previous = '\0';
  for (char c : d) {
    if (!(IsAlpha(c) || IsDigit(c) || IsHigh(c) || c == '-' || c == '.')) return false;
    if (c == '.' && previous == '.') return false;
    previous = c;
  }
  return true;
}

// RFC 5321 Mailbox: Local-part "@" Domain, where Local-part is a Dot-string or a
// Quoted-string. "postmaster" without a domain is accepted (RFC 5321 section 4.1.1.3).
bool IsValidMailbox(std::string_view m) {
  if (EqualsIgnoreCase(m, "postmaster")) return true;
  size_t at;
  if (!m.empty() && m.front() == '"') {
    size_t i = 1;
    while (i < m.size() && m[i] != '"') {
      const auto u = static_cast<unsigned char>(m[i]);
      if (m[i] == '\\') {
        ++i;
        if (i >= m.size()) return false;
        const auto escaped = static_cast<unsigned char>(m[i]);
        if (escaped < 0x20 || escaped == 0x7f) return false;
      } else if ((u < 0x20 && u != '\t') || u == 0x7f) {
        return false;
      }
      ++i;
    }
    if (i >= m.size() || i == 1) return false;  // unterminated or empty quoted string
    at = i + 1;
    if (at >= m.size() || m[at] != '@') return false;
  } else {
    at = m.find('@');
    if (at == std::string_view::npos || at == 0) return false;
    for (char c : m.substr(0, at)) {
      if (!IsAtext(c) && c != '.') return false;
    }
  }
  return IsValidDomain(m.substr(at + 1));
}

enum class PathStatus { kOk, kSyntax };

// Parses "<path>" at the start of `s` (RFC 5321 section 4.1.2 Path and Reverse-path): sets
// *address to the mailbox without brackets or source route and *rest to what follows '>'.
// "<>" is allowed only when `allow_null`. Paths longer than 256 octets (section 4.5.3.1.3)
// are refused.
PathStatus ParsePath(std::string_view s, bool allow_null, std::string_view* address,
                     std::string_view* rest) {
  if (s.empty() || s.front() != '<') return PathStatus::kSyntax;
  size_t i = 1;
  bool quoted = false;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (quoted) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        quoted = false;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == '>') {
      break;
    }
  }
  if (i >= s.size()) return PathStatus::kSyntax;
  if (i + 1 > 256) return PathStatus::kSyntax;
  std::string_view inner = s.substr(1, i - 1);
  *rest = s.substr(i + 1);
  if (inner.empty()) {
    *address = inner;
    return allow_null ? PathStatus::kOk : PathStatus::kSyntax;
  }
  if (inner.front() == '@') {
    // A-d-l source route ("@a,@b:"): accepted and ignored (RFC 5321 section 4.1.2, C.).
    const size_t colon = inner.find(':');
    if (colon == std::string_view::npos) return PathStatus::kSyntax;
    std::string_view route = inner.substr(0, colon);
    while (!route.empty()) {
      if (route.front() != '@') return PathStatus::kSyntax;
      const size_t comma = route.find(',');
      const std::string_view domain = route.substr(1, comma == route.npos ? route.npos : comma - 1);
      if (!IsValidDomain(domain)) return PathStatus::kSyntax;
      route = comma == route.npos ? std::string_view() : route.substr(comma + 1);
      if (comma != std::string_view::npos && route.empty()) return PathStatus::kSyntax;
    }
    inner = inner.substr(colon + 1);
  }
  if (!IsValidMailbox(inner)) return PathStatus::kSyntax;
  *address = inner;
  return PathStatus::kOk;
}

// One "keyword[=value]" ESMTP parameter (RFC 5321 section 4.1.2 esmtp-param).
bool SplitParameter(std::string_view param, std::string_view* key, std::string_view* value) {
  const size_t eq = param.find('=');
  *key = param.substr(0, eq);
  *value = eq == std::string_view::npos ? std::string_view() : param.substr(eq + 1);
  if (key->empty() || !(IsAlpha(key->front()) || IsDigit(key->front()))) return false;
  for (char c : *key) {
    if (!(IsAlpha(c) || IsDigit(c) || c == '-')) return false;
  }
  if (eq != std::string_view::npos) {
    if (value->empty()) return false;
    for (char c : *value) {
      const auto u = static_cast<unsigned char>(c);
      if (u < 0x21 || u > 0x7e || c == '=') return false;
    }
  }
  return true;
}

// A driver-supplied reply text is used only if it is one clean line.
bool IsReplyText(std::string_view text) {
  if (text.empty() || text.size() > 400) return false;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) return false;
  }
  return true;
}

constexpr std::string_view kSizeExceeded = "Message size exceeds fixed maximum message size";

}  // namespace

// The command table: every verb, the states it is valid in, the 503 text when it is not, and
// its handler. The state check happens in one place, HandleCommandLine().
struct LmtpSession::Command {
  std::string_view verb;
  uint8_t states;
  std::string_view wrong_state_text;
  void (LmtpSession::*handler)(std::string_view args);
};

const LmtpSession::Command* LmtpSession::FindCommand(std::string_view verb) {
  static constexpr Command kCommands[] = {
      {"LHLO", kInAnyCommandState, "", &LmtpSession::CmdLhlo},
      {"MAIL", kInReady, "Nested MAIL command", &LmtpSession::CmdMail},
      {"RCPT", kInTransaction, "Need MAIL command first", &LmtpSession::CmdRcpt},
      {"DATA", kInTransaction, "Need MAIL command first", &LmtpSession::CmdData},
      {"RSET", kInAnyCommandState, "", &LmtpSession::CmdRset},
      {"NOOP", kInAnyCommandState, "", &LmtpSession::CmdNoop},
      {"VRFY", kInAnyCommandState, "", &LmtpSession::CmdVrfy},
      {"QUIT", kInAnyCommandState, "", &LmtpSession::CmdQuit},
      // RFC 2033 section 4.1: LMTP has no HELO or EHLO.
      {"HELO", kInAnyCommandState, "", &LmtpSession::CmdHelo},
      {"EHLO", kInAnyCommandState, "", &LmtpSession::CmdHelo},
      // Known SMTP commands this server does not offer.
      {"EXPN", kInAnyCommandState, "", &LmtpSession::CmdNotImplemented},
      {"HELP", kInAnyCommandState, "", &LmtpSession::CmdNotImplemented},
      {"BDAT", kInAnyCommandState, "", &LmtpSession::CmdNotImplemented},
      {"STARTTLS", kInAnyCommandState, "", &LmtpSession::CmdNotImplemented},
      {"AUTH", kInAnyCommandState, "", &LmtpSession::CmdNotImplemented},
      {"ETRN", kInAnyCommandState, "", &LmtpSession::CmdNotImplemented},
      {"TURN", kInAnyCommandState, "", &LmtpSession::CmdNotImplemented},
  };
  if (verb.empty() || verb.size() > 8) return nullptr;
  for (const Command& command : kCommands) {
    if (EqualsIgnoreCase(command.verb, verb)) return &command;
  }
  return nullptr;
}

LmtpSession::LmtpSession(LmtpSessionOptions options) : options_(std::move(options)) {
  // RFC 2034 puts no enhanced code on the greeting (nor on LHLO's reply), as deployed
  // servers do.
  Append("220 ");
  Append(options_.hostname);
  Append(" LMTP ");
  Append(options_.greeting_text);
  Append("\r\n");
}

// ---------------------------------------------------------------------------------------------
// Input

void LmtpSession::Feed(std::string_view bytes) {
  if (state_ == LmtpState::kClosed || close_queued_) return;
  if (input_.unparsed_bytes() > options_.input_buffered_bytes_max) ++counters_.input_over_limit;
  input_.Append(bytes);
  Advance();
}

bool LmtpSession::WantsInput() const {
  return state_ != LmtpState::kClosed && !close_queued_ &&
         input_.unparsed_bytes() < options_.input_buffered_bytes_max;
}

bool LmtpSession::OutputBlocked() const {
  return untaken_bytes_ + taken_unflushed_bytes_ > options_.output_queued_bytes_max;
}

void LmtpSession::Advance() {
  while (state_ != LmtpState::kClosed && !close_queued_ && awaiting_ == Awaiting::kNothing) {
    if (state_ == LmtpState::kData) {
      // Message bytes produce no output, so the output limit does not pause them.
      if (!ReadData()) break;
      FinishData();
      continue;
    }
    if (shutdown_requested_ && (state_ == LmtpState::kGreeted || state_ == LmtpState::kReady)) {
      CloseWith421("4.3.2", "Service shutting down");
      break;
    }
    if (OutputBlocked()) {
      if (!blocked_counted_) {
        ++counters_.output_blocked;
        blocked_counted_ = true;
      }
      break;
    }
    std::string_view line;
    size_t raw_bytes = 0;
    const LineFramer::Status status =
        input_.Next(options_.command_line_bytes_max, &line, &raw_bytes);
    if (status == LineFramer::Status::kNeedMore) break;
    if (status == LineFramer::Status::kOverflow) {
      ++counters_.commands;
      ++counters_.command_line_too_long;
      BadCommand("500", "5.5.2", "Line too long");
      continue;
    }
    if (status == LineFramer::Status::kBareLineFeed) {
      // Only CRLF ends a command (RFC 5321 section 2.3.8). A peer that ends one with a bare LF
      // may be trying to make us and an MTA in front of us disagree about where commands and
      // messages end (SMTP smuggling): answer once and close, as Postfix's
      // smtpd_forbid_bare_newline=reject does.
      ++counters_.commands;
      ++counters_.bare_line_feed_closes;
      ++counters_.bad_commands;
      Append("500 ");
      if (options_.enhanced_status_codes) Append("5.5.2 ");
      Append(options_.hostname);
      Append(" Bare LF received, lines must end with CRLF; closing connection\r\n");
      QueueClose();
      break;
    }
    HandleCommandLine(line, raw_bytes);
  }
  // Reclaim parsed input (line views handed to handlers are dead by now).
  input_.Compact();
}

void LmtpSession::BadCommand(std::string_view code, std::string_view enhanced,
                             std::string_view text) {
  ++counters_.bad_commands;
  ++bad_commands_;
  if (bad_commands_ >= options_.bad_commands_max) {
    ++counters_.bad_command_limit_closes;
    CloseWith421("4.7.0", "Too many errors, closing connection");
    return;
  }
  Reply(code, enhanced, text);
}

void LmtpSession::HandleCommandLine(std::string_view line, size_t raw_bytes) {
  ++counters_.commands;
  for (char c : line) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) {  // a bare CR, NUL or other control octet
      BadCommand("500", "5.5.2", "Syntax error, control character in command");
      return;
    }
  }
  std::string_view rest = line;
  while (!rest.empty() && IsSpace(rest.front())) rest.remove_prefix(1);
  size_t verb_end = 0;
  while (verb_end < rest.size() && !IsSpace(rest[verb_end])) ++verb_end;
  const std::string_view verb = rest.substr(0, verb_end);
  const std::string_view args = Trim(rest.substr(verb_end));
  if (verb.empty()) {
    BadCommand("500", "5.5.2", "Syntax error, empty command");
    return;
  }
  const Command* command = FindCommand(verb);
  if (command == nullptr && counters_.commands == 1 && verb == "PROXY") {
    // A PROXY protocol header from a peer outside --proxy_networks (a trusted proxy's header
    // is read before the session exists): it may not choose the address we see, and a peer
    // that sends one expects a proxy's treatment, so say why and close (as POP3 does).
    ++counters_.proxy_header_refusals;
    Append("554 ");
    if (options_.enhanced_status_codes) Append("5.7.1 ");
    Append(options_.hostname);
    Append(" PROXY header not accepted from this address; closing connection\r\n");
    QueueClose();
    return;
  }
  if (command == nullptr) {
    BadCommand("500", "5.5.1", "Command unrecognized");
    return;
  }
  if ((command->states & StateBit(state_)) == 0) {
    BadCommand("503", "5.5.1",
               state_ == LmtpState::kGreeted ? "Send LHLO first" : command->wrong_state_text);
    return;
  }
  (this->*command->handler)(args);
}

// Reads message bytes after 354 (RFC 5321 section 4.5.2) into message_ in wire form: the form
// storage keeps (storage/message_format.h: CRLF lines, each line beginning with '.' stuffed with
// a second one), so storage checks it and stores it as it is. Framing first, content second:
//   - Only CRLF ends a line, and only a line that is a single dot, begun after a CRLF (or at
//     the start of the data), ends the message: <CRLF>.<CRLF>. A dot between bare LFs or bare
//     CRs is content, never a boundary, so nothing after it can run as a command.
//   - The client's stuffing is read as RFC 5321 section 4.5.2 says: one leading dot is removed
//     from each such line. Content lines beginning with '.' get it back: so a client's ".."
//     line is kept as it came, and a lone stuffing dot before other text is dropped.
//   - Content: a bare LF becomes CRLF, but the line after it did not start after a CRLF on the
//     wire, so it is not unstuffed. A bare CR becomes CRLF too, as storage's normalisation of
//     text does. The lines after either are stuffed when they begin with '.'.
// The size limit counts the message unstuffed, a bare LF as CRLF and a bare CR as one octet
// (the count it has always had: which messages get 552 does not depend on the wire form), so
// the buffer holds at most twice the limit (a bare CR grows to CRLF, a '.'-line by a dot).
// Consumes all available input that belongs to the message, so input buffering is bounded by
// one Feed; beyond the size limit the rest is counted and discarded. Clean CRLF lines are
// copied in runs. Returns true once the terminator was consumed.
bool LmtpSession::ReadData() {
  const std::string_view unparsed = input_.unparsed();
  const char* base = unparsed.data();
  const size_t end = unparsed.size();
  size_t pos = 0;
  bool done = false;
  while (pos < end && !done) {
    const char c = base[pos];
    switch (data_pos_) {
      case DataPos::kLineStart:
        if (c == '.') {
          ++pos;
          data_pos_ = DataPos::kDot;
        } else {
          data_pos_ = DataPos::kMid;
        }
        break;
      case DataPos::kDot:
        if (c == '\r') {
          ++pos;
          data_pos_ = DataPos::kDotCr;
        } else {
          data_pos_ = DataPos::kNewLine;  // the leading dot was stuffing: dropped
        }
        break;
      case DataPos::kDotCr:
        if (c == '\n') {
          ++pos;
          done = true;
        } else {
          AppendWire("\r\n", 1);  // ".\r" then more: stuffing, then a bare CR
          data_pos_ = DataPos::kNewLine;
        }
        break;
      case DataPos::kCr:
        // A CR ended the previous chunk.
        if (c == '\n') {
          ++pos;
          AppendWire("\r\n", 2);
          data_pos_ = DataPos::kLineStart;
        } else {
          AppendWire("\r\n", 1);  // a bare CR
          data_pos_ = DataPos::kNewLine;
        }
        break;
      case DataPos::kNewLine:
        if (c == '.') AppendWire(".", 0);  // stuffed; not part of the message's size
        data_pos_ = DataPos::kMid;
        break;
      case DataPos::kMid:
        pos = ReadContent(base, pos, end);
        break;
    }
  }
  input_.Consume(pos);
  return done;
}

// In kMid at `pos`: copies content up to the next line break that needs a decision, handles that
// break, sets data_pos_ and returns where reading goes on. Lines that end in CRLF and are followed
// by a line not beginning with '.' are already in wire form: they are copied together.
size_t LmtpSession::ReadContent(const char* base, size_t pos, size_t end) {
  const size_t run_begin = pos;
  for (;;) {
    const void* lf = std::memchr(base + pos, '\n', end - pos);
    const size_t lf_pos = lf ? static_cast<size_t>(static_cast<const char*>(lf) - base) : end;
    // In kMid the byte before `pos` is never an undecided CR, so a CR that belongs to this LF
    // is in this run.
    const void* cr = std::memchr(base + pos, '\r', lf_pos - pos);
    const size_t cr_pos = cr ? static_cast<size_t>(static_cast<const char*>(cr) - base) : end;
    if (lf != nullptr && cr_pos + 1 == lf_pos) {  // a CRLF with no bare CR before it
      pos = lf_pos + 1;
      if (pos < end && base[pos] != '.') continue;  // the next line is plain content too
      AppendContent(base + run_begin, pos - run_begin);
      data_pos_ = DataPos::kLineStart;
      return pos;
    }
    if (cr == nullptr) {
      if (lf == nullptr) {  // no line break in what has arrived
        AppendContent(base + run_begin, end - run_begin);
        return end;
      }
      AppendContent(base + run_begin, lf_pos - run_begin);
      AppendWire("\r\n", 2);  // a bare LF: the line goes on, but not as a wire line start
      data_pos_ = DataPos::kNewLine;
      return lf_pos + 1;
    }
    AppendContent(base + run_begin, cr_pos - run_begin);
    if (cr_pos + 1 == end) {  // maybe half of a CRLF: decide with the next chunk
      data_pos_ = DataPos::kCr;
      return end;
    }
    AppendWire("\r\n", 1);  // a bare CR (a CRLF was handled above)
    data_pos_ = DataPos::kNewLine;
    return cr_pos + 1;
  }
}

void LmtpSession::AppendWire(std::string_view bytes, size_t counted) {
  if (bytes.empty()) return;
  data_bytes_ += counted;
  if (data_oversize_) return;
  if (data_bytes_ > options_.message_bytes_max) {
    data_oversize_ = true;
    std::string().swap(message_);  // release what was buffered; the rest is discarded
    return;
  }
  message_.append(bytes.data(), bytes.size());
}

void LmtpSession::AppendContent(const char* data, size_t size) {
  AppendWire(std::string_view(data, size), size);
}

void LmtpSession::FinishData() {
  ++counters_.messages_received;
  counters_.message_bytes_received += data_bytes_;
  if (data_oversize_) {
    ++counters_.messages_too_large;
    // RFC 2033 section 4.2: one reply per accepted RCPT, in order.
    for (size_t slot = 0; slot < rcpt_slots_.size(); ++slot) {
      Reply("552", "5.3.4", kSizeExceeded);
    }
    ResetTransaction();
    state_ = LmtpState::kReady;
    return;
  }
  // An empty message is stored as one empty line (as storage normalises empty text).
  if (message_.empty()) message_.assign("\r\n");
  state_ = LmtpState::kDelivering;
  awaiting_ = Awaiting::kDelivery;
  ++counters_.deliveries;
  Push(QueuedAction{LmtpActionKind::kDeliver});
}

// ---------------------------------------------------------------------------------------------
// Commands

void LmtpSession::CmdLhlo(std::string_view args) {
  std::string_view rest = args;
  const std::string_view domain = NextToken(&rest);
  if (domain.empty() || !rest.empty()) {
    BadCommand("501", "5.5.4", "Syntax: LHLO hostname");
    return;
  }
  // LHLO, like EHLO, resets any transaction (RFC 5321 section 4.1.4).
  ResetTransaction();
  state_ = LmtpState::kReady;
  Append("250-");
  Append(options_.hostname);
  Append("\r\n250-PIPELINING\r\n");
  if (options_.enhanced_status_codes) Append("250-ENHANCEDSTATUSCODES\r\n");
  if (options_.eight_bit_mime) Append("250-8BITMIME\r\n");
  if (options_.advertise_size_limit) {
    Append("250 SIZE ");
    AppendNumber(options_.message_bytes_max);
    Append("\r\n");
  } else {
    Append("250 SIZE\r\n");
  }
}

void LmtpSession::CmdHelo(std::string_view args) {
  BadCommand("500", "5.5.1", "\"EHLO/HELO\" not allowed in LMTP, use LHLO");
}

void LmtpSession::CmdNotImplemented(std::string_view args) {
  BadCommand("502", "5.5.1", "Command not implemented");
}

void LmtpSession::CmdMail(std::string_view args) {
  if (!StartsWithIgnoreCase(args, "FROM:")) {
    BadCommand("501", "5.5.4", "Syntax: MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME]");
    return;
  }
  // Lenient: "MAIL FROM: <a@b>" (a space after the colon) is common and harmless.
  const std::string_view path = Trim(args.substr(5));
  std::string_view address;
  std::string_view rest;
  if (ParsePath(path, /*allow_null=*/true, &address, &rest) != PathStatus::kOk ||
      (!rest.empty() && !IsSpace(rest.front()))) {
    BadCommand("501", "5.1.7", "Bad sender address syntax");
    return;
  }
  std::optional<uint64_t> size;
  BodyType body = BodyType::kUnspecified;
  while (!rest.empty()) {
    const std::string_view param = NextToken(&rest);
    if (param.empty()) break;
    std::string_view key;
    std::string_view value;
    if (!SplitParameter(param, &key, &value)) {
      BadCommand("501", "5.5.4", "Bad MAIL parameter syntax");
      return;
    }
    if (EqualsIgnoreCase(key, "SIZE")) {
      // 1-20 digits. A value past UINT64_MAX saturates on purpose: it is simply "too large",
      // refused with the size reply rather than as a syntax error.
      if (size.has_value() || value.size() > 20 || !IsDecimalDigits(value)) {
        BadCommand("501", "5.5.4", "Bad SIZE parameter");
        return;
      }
      size = ParseDecimalU64(value).value_or(UINT64_MAX);
    } else if (EqualsIgnoreCase(key, "BODY")) {
      if (body != BodyType::kUnspecified) {
        BadCommand("501", "5.5.4", "Duplicate BODY parameter");
        return;
      }
      if (EqualsIgnoreCase(value, "7BIT")) {
        body = BodyType::k7Bit;
      } else if (EqualsIgnoreCase(value, "8BITMIME") && options_.eight_bit_mime) {
        body = BodyType::k8BitMime;
      } else {
        BadCommand("501", "5.5.4", "Unsupported BODY type");
        return;
      }
    } else {
      BadCommand("555", "5.5.4", "Unsupported MAIL parameter");
      return;
    }
  }
  if (size.has_value() && *size > options_.message_bytes_max) {
    // RFC 1870 section 6.1: refuse at once when the declared size is over the fixed limit.
    ++counters_.declared_size_too_large;
    Reply("552", "5.3.4", kSizeExceeded);
    return;
  }
  ResetTransaction();
  reverse_path_.assign(address.data(), address.size());
  declared_size_ = size;
  body_ = body;
  state_ = LmtpState::kTransaction;
  ++counters_.transactions;
  Reply("250", "2.1.0", "OK");
}

void LmtpSession::CmdRcpt(std::string_view args) {
  if (!StartsWithIgnoreCase(args, "TO:")) {
    BadCommand("501", "5.5.4", "Syntax: RCPT TO:<address>");
    return;
  }
  const std::string_view path = Trim(args.substr(3));
  std::string_view address;
  std::string_view rest;
  if (ParsePath(path, /*allow_null=*/false, &address, &rest) != PathStatus::kOk ||
      (!rest.empty() && !IsSpace(rest.front()))) {
    BadCommand("501", "5.1.3", "Bad recipient address syntax");
    return;
  }
  rest = Trim(rest);
  if (!rest.empty()) {
    std::string_view key;
    std::string_view value;
    if (!SplitParameter(NextToken(&rest), &key, &value)) {
      BadCommand("501", "5.5.4", "Bad RCPT parameter syntax");
    } else {
      BadCommand("555", "5.5.4", "Unsupported RCPT parameter");
    }
    return;
  }
  if (rcpt_slots_.size() >= options_.recipients_max) {
    // RFC 5321 section 4.5.3.1.10: 452, and the client sends the rest in a later transaction.
    ++counters_.recipients_over_limit;
    Reply("452", "4.5.3", "Too many recipients");
    return;
  }
  pending_rcpt_.assign(address.data(), address.size());
  awaiting_ = Awaiting::kRecipient;
  ++counters_.recipients_checked;
  Push(QueuedAction{LmtpActionKind::kCheckRecipient});
}

void LmtpSession::CmdData(std::string_view args) {
  if (!args.empty()) {
    BadCommand("501", "5.5.4", "Syntax: DATA");
    return;
  }
  if (rcpt_slots_.empty()) {
    // RFC 2033 section 4.2: DATA with no successful RCPT fails with 503.
    BadCommand("503", "5.5.1", "No valid recipients");
    return;
  }
  state_ = LmtpState::kData;
  data_pos_ = DataPos::kLineStart;
  data_oversize_ = false;
  data_bytes_ = 0;
  message_.clear();
  if (options_.add_return_path) {
    message_.append("Return-Path: <");
    message_.append(reverse_path_);
    message_.append(">\r\n");
  }
  if (declared_size_.has_value()) {
    // RFC 1870's SIZE is the sender's estimate: reserving it (never beyond the limit) saves the
    // copies of repeated growth. Untouched reserved pages cost address space, not memory.
    const uint64_t expected = std::min<uint64_t>(*declared_size_, options_.message_bytes_max);
    message_.reserve(message_.size() + static_cast<size_t>(expected) + 64);
  }
  // 3xx replies carry no enhanced code (RFC 3463 defines classes 2, 4 and 5 only).
  Reply("354", "", "Start mail input; end with <CRLF>.<CRLF>");
}

void LmtpSession::CmdRset(std::string_view args) {
  if (!args.empty()) {
    BadCommand("501", "5.5.4", "Syntax: RSET");
    return;
  }
  ResetTransaction();
  if (state_ == LmtpState::kTransaction) state_ = LmtpState::kReady;
  Reply("250", "2.0.0", "OK");
}

void LmtpSession::CmdNoop(std::string_view args) { Reply("250", "2.0.0", "OK"); }

void LmtpSession::CmdVrfy(std::string_view args) {
  if (args.empty()) {
    BadCommand("501", "5.5.4", "Syntax: VRFY address");
    return;
  }
  // No account enumeration (RFC 5321 section 3.5.3 allows 252).
  Reply("252", "2.0.0", "Cannot VRFY user, but will accept message and attempt delivery");
}

void LmtpSession::CmdQuit(std::string_view args) {
  Append("221 ");
  if (options_.enhanced_status_codes) Append("2.0.0 ");
  Append(options_.hostname);
  Append(" closing connection\r\n");
  QueueClose();
}

void LmtpSession::ResetTransaction() {
  reverse_path_.clear();
  body_ = BodyType::kUnspecified;
  declared_size_.reset();
  pending_rcpt_.clear();
  recipients_.clear();
  rcpt_slots_.clear();
  // Keep a small message buffer for the next transaction; give a large one back.
  if (message_.capacity() > 1024 * 1024) {
    std::string().swap(message_);
  } else {
    message_.clear();
  }
  data_oversize_ = false;
  data_bytes_ = 0;
}

// ---------------------------------------------------------------------------------------------
// Results

void LmtpSession::ReplyForRecipient(size_t slot, std::string_view code, std::string_view enhanced,
                                    std::string_view default_text, const std::string& text) {
  if (IsReplyText(text)) {
    Reply(code, enhanced, text);
    return;
  }
  std::string line;
  if (slot < rcpt_slots_.size()) {
    line.append("<");
    line.append(recipients_[rcpt_slots_[slot]].address);
    line.append("> ");
  } else {
    line.append("<");
    line.append(pending_rcpt_);
    line.append("> ");
  }
  line.append(default_text);
  Reply(code, enhanced, line);
}

void LmtpSession::OnRecipientChecked(LmtpRecipientVerdict verdict) {
  if (state_ == LmtpState::kClosed || awaiting_ != Awaiting::kRecipient) return;
  awaiting_ = Awaiting::kNothing;
  const size_t pending_slot = rcpt_slots_.size() + 1;  // out of range: uses pending_rcpt_
  switch (verdict.code) {
    case LmtpRecipientVerdict::Code::kAccepted: {
      std::string mailbox = verdict.mailbox.empty() ? pending_rcpt_ : std::move(verdict.mailbox);
      size_t index = 0;
      while (index < recipients_.size() && recipients_[index].mailbox != mailbox) ++index;
      if (index == recipients_.size()) {
        recipients_.push_back(LmtpRecipient{pending_rcpt_, std::move(mailbox)});
      }
      rcpt_slots_.push_back(static_cast<uint32_t>(index));
      ++counters_.recipients_accepted;
      Reply("250", "2.1.5", IsReplyText(verdict.text) ? std::string_view(verdict.text) : "OK");
      break;
    }
    case LmtpRecipientVerdict::Code::kUnknown:
      Reply("550", "5.1.1",
            IsReplyText(verdict.text) ? std::string_view(verdict.text) : "No such user here");
      break;
    case LmtpRecipientVerdict::Code::kDisabled:
      ReplyForRecipient(pending_slot, "550", "5.2.1", "Mailbox disabled", verdict.text);
      break;
    case LmtpRecipientVerdict::Code::kOverQuotaTemp:
      ReplyForRecipient(pending_slot, "452", "4.2.2", "is temporarily over quota", verdict.text);
      break;
    case LmtpRecipientVerdict::Code::kOverQuotaPerm:
      ReplyForRecipient(pending_slot, "552", "5.2.2", "is over quota", verdict.text);
      break;
    case LmtpRecipientVerdict::Code::kTempFailure:
      ReplyForRecipient(pending_slot, "451", "4.3.0", "Temporary internal error", verdict.text);
      break;
    case LmtpRecipientVerdict::Code::kMoving:
      ReplyForRecipient(pending_slot, "451", "4.2.0", "Mailbox is moving, try again later",
                        verdict.text);
      break;
    case LmtpRecipientVerdict::Code::kTooBig:
      ReplyForRecipient(pending_slot, "552", "5.3.4", "Message too big for this mailbox",
                        verdict.text);
      break;
  }
  pending_rcpt_.clear();
  Advance();
}

void LmtpSession::OnDeliveryDone(std::span<const LmtpDeliveryResult> results) {
  if (awaiting_ != Awaiting::kDelivery) return;
  awaiting_ = Awaiting::kNothing;
  if (state_ == LmtpState::kClosed) {
    // The connection was lost while storage held views of the message: release it now.
    ResetTransaction();
    return;
  }
  for (size_t i = 0; i < recipients_.size() && i < results.size(); ++i) {
    if (results[i].code == LmtpDeliveryResult::Code::kDelivered) ++counters_.recipients_delivered;
  }
  static const LmtpDeliveryResult kMissing{LmtpDeliveryResult::Code::kTempFailure, ""};
  // RFC 2033 section 4.2: one reply per successful RCPT, in RCPT order; RCPTs naming the same
  // mailbox share that copy's outcome.
  for (size_t slot = 0; slot < rcpt_slots_.size(); ++slot) {
    const uint32_t index = rcpt_slots_[slot];
    const LmtpDeliveryResult& result = index < results.size() ? results[index] : kMissing;
    switch (result.code) {
      case LmtpDeliveryResult::Code::kDelivered:
        ReplyForRecipient(slot, "250", "2.1.5", "delivered", result.text);
        break;
      case LmtpDeliveryResult::Code::kOverQuotaTemp:
        ReplyForRecipient(slot, "452", "4.2.2", "is temporarily over quota", result.text);
        break;
      case LmtpDeliveryResult::Code::kOverQuotaPerm:
        ReplyForRecipient(slot, "552", "5.2.2", "is over quota", result.text);
        break;
      case LmtpDeliveryResult::Code::kTempFailure:
        ReplyForRecipient(slot, "451", "4.3.0", "Temporary internal error", result.text);
        break;
      case LmtpDeliveryResult::Code::kMoving:
        ReplyForRecipient(slot, "451", "4.2.0", "Mailbox is moving, try again later", result.text);
        break;
      case LmtpDeliveryResult::Code::kPermFailure:
        ReplyForRecipient(slot, "554", "5.3.0", "Delivery failed", result.text);
        break;
      case LmtpDeliveryResult::Code::kTooBig:
        ReplyForRecipient(slot, "552", "5.3.4", "Message too big for this mailbox", result.text);
        break;
      // RFC 5321 section 4.2.2 (452 insufficient system storage) and RFC 3463 4.3.1: a full
      // disk is temporary, and tells the MTA the server rather than the message is the cause.
      case LmtpDeliveryResult::Code::kNoSpace:
        ReplyForRecipient(slot, "452", "4.3.1", "Insufficient system storage", result.text);
        break;
    }
  }
  ResetTransaction();
  state_ = LmtpState::kReady;
  Advance();
}

// ---------------------------------------------------------------------------------------------
// Output and actions

void LmtpSession::Reply(std::string_view code, std::string_view enhanced, std::string_view text) {
  Append(code);
  Append(" ");
  if (options_.enhanced_status_codes && !enhanced.empty()) {
    Append(enhanced);
    Append(" ");
  }
  Append(text);
  Append("\r\n");
}

void LmtpSession::Append(std::string_view text) {
  out_.append(text.data(), text.size());
  untaken_bytes_ += text.size();
}

void LmtpSession::AppendNumber(uint64_t value) {
  char buffer[20];
  char* end = buffer + sizeof(buffer);
  char* p = end;
  do {
    *--p = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  Append(std::string_view(p, static_cast<size_t>(end - p)));
}

void LmtpSession::SealWrite() {
  if (out_.size() == write_begin_) return;
  QueuedAction write{LmtpActionKind::kWrite};
  write.begin = write_begin_;
  write.end = out_.size();
  write.weight = write.end - write.begin;  // already counted in untaken_bytes_ by Append()
  actions_.push_back(write);
  write_begin_ = out_.size();
}

void LmtpSession::Push(QueuedAction action) {
  SealWrite();
  untaken_bytes_ += action.weight;
  actions_.push_back(action);
}

void LmtpSession::QueueClose() {
  Push(QueuedAction{LmtpActionKind::kClose});
  close_queued_ = true;
  state_ = LmtpState::kClosed;
}

LmtpAction LmtpSession::NextAction() {
  if (action_head_ == actions_.size()) {
    SealWrite();
    if (action_head_ == actions_.size()) {
      // Everything was taken: reuse the buffers (earlier views are dead by contract).
      actions_.clear();
      action_head_ = 0;
      out_.clear();
      write_begin_ = 0;
      return LmtpAction{};
    }
  }
  const QueuedAction& queued = actions_[action_head_++];
  untaken_bytes_ -= queued.weight;
  taken_unflushed_bytes_ += queued.weight;
  LmtpAction action;
  action.kind = queued.kind;
  switch (queued.kind) {
    case LmtpActionKind::kWrite:
      action.bytes = std::string_view(out_).substr(queued.begin, queued.end - queued.begin);
      break;
    case LmtpActionKind::kCheckRecipient:
      action.recipient = pending_rcpt_;
      action.declared_size = declared_size_;
      break;
    case LmtpActionKind::kDeliver:
      action.delivery.reverse_path = reverse_path_;
      action.delivery.body = body_;
      action.delivery.recipients = recipients_;
      action.delivery.message = message_;
      break;
    case LmtpActionKind::kNone:
    case LmtpActionKind::kClose:
      break;
  }
  return action;
}

void LmtpSession::OnOutputFlushed() {
  taken_unflushed_bytes_ = 0;
  blocked_counted_ = false;
  Advance();
}

void LmtpSession::OnOverCapacity() {
  // Nothing was taken yet, so the queued greeting is dropped unsent.
  OnConnectionLost();
  Append("421 ");
  if (options_.enhanced_status_codes) Append("4.3.2 ");
  Append("Server at capacity, try again later\r\n");
  QueueClose();
}

void LmtpSession::OnShutdown() {
  if (state_ == LmtpState::kClosed || shutdown_requested_) return;
  shutdown_requested_ = true;
  // Between transactions this answers now; otherwise when the transaction ends.
  Advance();
}

void LmtpSession::OnIdleTimeout() {
  if (state_ == LmtpState::kClosed) return;
  OnConnectionLost();
  CloseWith421("4.4.2", "Idle timeout, closing connection");
}

void LmtpSession::CloseWith421(std::string_view enhanced, std::string_view text) {
  Append("421 ");
  if (options_.enhanced_status_codes) {
    Append(enhanced);
    Append(" ");
  }
  Append(options_.hostname);
  Append(" ");
  Append(text);
  Append("\r\n");
  QueueClose();
}

void LmtpSession::OnConnectionLost() {
  state_ = LmtpState::kClosed;
  close_queued_ = true;
  if (awaiting_ == Awaiting::kDelivery) {
    // Storage may still be reading the message and recipient views: they stay alive until
    // OnDeliveryDone() (or the session's destruction, which the driver defers until storage
    // is done with them).
  } else {
    awaiting_ = Awaiting::kNothing;
    ResetTransaction();
  }
  actions_.clear();
  action_head_ = 0;
  out_.clear();
  write_begin_ = 0;
  untaken_bytes_ = 0;
  input_.Clear();
}

}  // namespace posthaste::lmtp
