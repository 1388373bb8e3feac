#include "server/pop3/session.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/escaping.h"
#include "base/check.h"
#include "base/short_copy.h"
#include "base/strings.h"
#include "base/uidl.h"
#include "base/utf8.h"

namespace posthaste::pop3 {

using protocol::LineFramer;
namespace {

constexpr size_t kDecimalBytesMax = 20;  // UINT64_MAX
// "N SIZE\r\n" or "N UIDL\r\n".
constexpr size_t kListingLineBytesMax =
    kDecimalBytesMax + 1 + std::max(kDecimalBytesMax, kUidlBytesMax) + 2;
constexpr size_t kListingBatchBytes = 4096;

// Writes `value` in decimal at `dst`; returns the end.
char* WriteDecimal(char* dst, uint64_t value) {
  size_t digits = 1;
  for (uint64_t rest = value; rest >= 10; rest /= 10) ++digits;
  char* const end = dst + digits;
  char* p = end;
  do {
    *--p = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  return end;
}

// A number as text, for a reply's %1.. arguments.
class DecimalText {
 public:
  explicit DecimalText(uint64_t value)
      : size_(static_cast<size_t>(WriteDecimal(buffer_, value) - buffer_)) {}
  operator std::string_view() const { return std::string_view(buffer_, size_); }

 private:
  char buffer_[kDecimalBytesMax];
  size_t size_;
};

// Writes a short string (a UIDL) at `dst`; returns the end.
char* WriteShort(char* dst, std::string_view text) {
  CopyShort(dst, text.data(), text.size());
  return dst + text.size();
}

constexpr uint8_t kInAuthorization = 1;
constexpr uint8_t kInTransaction = 2;

uint8_t StateBit(Pop3State state) {
  switch (state) {
    case Pop3State::kAuthorization:
      return kInAuthorization;
    case Pop3State::kTransaction:
      return kInTransaction;
    default:
      return 0;
  }
}

constexpr char ToUpperAscii(char c) {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c;
}

// Packs a 1-4 letter keyword, upper-cased, into one integer so the command table compares
// integers. Returns 0 for anything that cannot be a keyword.
constexpr uint32_t PackVerb(std::string_view verb) {
  if (verb.empty() || verb.size() > 4) return 0;
  uint32_t packed = 0;
  for (char c : verb) {
    if (c == '\0') return 0;  // else "\0TOP" would pack like "TOP"
    packed = (packed << 8) | static_cast<uint8_t>(ToUpperAscii(c));
  }
  return packed;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ToUpperAscii(a[i]) != ToUpperAscii(b[i])) return false;
  }
  return true;
}

// An IPv4 or IPv6 address in text form (XCLIENT ADDR).
bool IsIpAddress(std::string_view text) {
  char buffer[INET6_ADDRSTRLEN] = {};
  if (text.empty() || text.size() >= sizeof(buffer)) return false;
  std::memcpy(buffer, text.data(), text.size());
  uint8_t raw[16];
  return inet_pton(AF_INET, buffer, raw) == 1 || inet_pton(AF_INET6, buffer, raw) == 1;
}

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

// Splits off the first space-separated token; tolerates runs of spaces between tokens.
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

// RFC 1939 section 3: keywords and arguments are printable and separated by single spaces.
// A control octet (tab, bare CR, NUL, DEL...) anywhere in a line makes it a syntax error.
bool HasControlOctet(std::string_view line) {
  for (char c : line) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return true;
  }
  return false;
}

// Counts the arguments of `args` (the text after the keyword's single space). False when two
// arguments are separated by more than one space, or the text starts or ends with a space.
bool CountArguments(std::string_view args, size_t* count) {
  *count = 0;
  if (args.empty()) return true;
  size_t begin = 0;
  while (true) {
    const size_t space = args.find(' ', begin);
    const size_t end = space == std::string_view::npos ? args.size() : space;
    if (end == begin) return false;  // an empty argument
    ++*count;
    if (space == std::string_view::npos) return true;
    begin = space + 1;
  }
}

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Strict RFC 4648 base64 (standard alphabet). Padding is optional but, when present, must be
// correct and final; no whitespace. Returns false on anything else.
bool Base64Decode(std::string_view in, std::string* out) {
  out->clear();
  size_t len = in.size();
  size_t pad = 0;
  while (len > 0 && in[len - 1] == '=' && pad < 2) {
    --len;
    ++pad;
  }
  if (pad > 0 && in.size() % 4 != 0) return false;
  if (len % 4 == 1) return false;
  out->reserve(len / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < len; ++i) {
    const int v = Base64Value(in[i]);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // Leftover bits must be zero (canonical encoding).
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return false;
  if (pad > 0 && (len + pad) % 4 != 0) return false;
  return true;
}

// RFC 4648 base64 with padding (a SASL challenge).
std::string Base64Encode(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  for (size_t i = 0; i < in.size(); i += 3) {
    const size_t n = std::min<size_t>(3, in.size() - i);
    uint32_t v = static_cast<uint32_t>(static_cast<uint8_t>(in[i])) << 16;
    if (n > 1) v |= static_cast<uint32_t>(static_cast<uint8_t>(in[i + 1])) << 8;
    if (n > 2) v |= static_cast<uint8_t>(in[i + 2]);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(n > 1 ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back(n > 2 ? kAlphabet[v & 63] : '=');
  }
  return out;
}

// Overwrites a secret before its memory is reused or freed.
void Wipe(std::string* s) {
  volatile char* p = s->data();
  for (size_t i = 0; i < s->size(); ++i) p[i] = 0;
  s->clear();
}

// A name is echoed in a reply only if it is short and printable (never a CR or LF).
bool IsEchoable(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return false;
  }
  return true;
}

constexpr std::string_view kPlaintextRefused =
    "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections, use STLS";

}  // namespace

std::string_view AuthMechanismName(AuthMechanism mechanism) {
  switch (mechanism) {
    case AuthMechanism::kUserPass:
      return "USER";
    case AuthMechanism::kApop:
      return "APOP";
    case AuthMechanism::kSaslPlain:
      return "PLAIN";
    case AuthMechanism::kSaslLogin:
      return "LOGIN";
    case AuthMechanism::kSasl:
      return "SASL";
  }
  return "?";
}

std::string_view Pop3ActionKindNameForTest(Pop3ActionKind kind) {
  switch (kind) {
    case Pop3ActionKind::kNone:
      return "none";
    case Pop3ActionKind::kWrite:
      return "write";
    case Pop3ActionKind::kStreamMessage:
      return "stream";
    case Pop3ActionKind::kCheckMessage:
      return "check-message";
    case Pop3ActionKind::kAuthenticate:
      return "authenticate";
    case Pop3ActionKind::kOpenMaildrop:
      return "open-maildrop";
    case Pop3ActionKind::kCommit:
      return "commit";
    case Pop3ActionKind::kStartTls:
      return "start-tls";
    case Pop3ActionKind::kDelay:
      return "delay";
    case Pop3ActionKind::kAbandonSasl:
      return "abandon-sasl";
    case Pop3ActionKind::kClose:
      return "close";
  }
  return "?";
}

// The command table: every verb, the states it is valid in, and its handler. The state check
// happens in one place, HandleCommandLine().
// `syntax` is the reply to a line with the wrong number of arguments; PASS takes the rest of
// the line, spaces included, as its one argument (RFC 1939 section 7).
struct Pop3Session::Command {
  uint32_t packed_verb;
  uint8_t states;
  bool raw_args;
  uint8_t min_args;
  uint8_t max_args;
  std::string_view syntax;
  void (Pop3Session::*handler)(std::string_view args);
};

const Pop3Session::Command* Pop3Session::FindCommand(std::string_view verb, size_t* index) {
  static constexpr Command kCommands[] = {
      {PackVerb("USER"), kInAuthorization, false, 1, 1, "-ERR Syntax: USER name",
       &Pop3Session::CmdUser},
      {PackVerb("PASS"), kInAuthorization, true, 1, 1, "-ERR Syntax: PASS password",
       &Pop3Session::CmdPass},
      {PackVerb("APOP"), kInAuthorization, false, 2, 2, "-ERR Syntax: APOP name digest",
       &Pop3Session::CmdApop},
      {PackVerb("AUTH"), kInAuthorization, false, 0, 2,
       "-ERR Syntax: AUTH mechanism [initial-response]", &Pop3Session::CmdAuth},
      {PackVerb("STLS"), kInAuthorization, false, 0, 0, "-ERR Syntax: STLS takes no arguments",
       &Pop3Session::CmdStls},
      {PackVerb("STAT"), kInTransaction, false, 0, 0, "-ERR Syntax: STAT takes no arguments",
       &Pop3Session::CmdStat},
      {PackVerb("LIST"), kInTransaction, false, 0, 1, "-ERR Syntax: LIST [msg]",
       &Pop3Session::CmdList},
      {PackVerb("RETR"), kInTransaction, false, 1, 1, "-ERR Syntax: RETR msg",
       &Pop3Session::CmdRetr},
      {PackVerb("DELE"), kInTransaction, false, 1, 1, "-ERR Syntax: DELE msg",
       &Pop3Session::CmdDele},
      {PackVerb("NOOP"), kInTransaction, false, 0, 0, "-ERR Syntax: NOOP takes no arguments",
       &Pop3Session::CmdNoop},
      {PackVerb("RSET"), kInTransaction, false, 0, 0, "-ERR Syntax: RSET takes no arguments",
       &Pop3Session::CmdRset},
      {PackVerb("TOP"), kInTransaction, false, 2, 2, "-ERR Syntax: TOP msg lines",
       &Pop3Session::CmdTop},
      {PackVerb("UIDL"), kInTransaction, false, 0, 1, "-ERR Syntax: UIDL [msg]",
       &Pop3Session::CmdUidl},
      {PackVerb("CAPA"), kInAuthorization | kInTransaction, false, 0, 0,
       "-ERR Syntax: CAPA takes no arguments", &Pop3Session::CmdCapa},
      {PackVerb("UTF8"), kInAuthorization | kInTransaction, false, 0, 0,
       "-ERR Syntax: UTF8 takes no arguments", &Pop3Session::CmdUtf8},
      {PackVerb("LANG"), kInAuthorization | kInTransaction, false, 0, 1,
       "-ERR Syntax: LANG [language-range]", &Pop3Session::CmdLang},
      {PackVerb("QUIT"), kInAuthorization | kInTransaction, false, 0, 0,
       "-ERR Syntax: QUIT takes no arguments", &Pop3Session::CmdQuit},
  };
  const uint32_t packed = PackVerb(verb);
  if (packed == 0) return nullptr;
  for (const Command& command : kCommands) {
    if (command.packed_verb == packed) {
      if (index != nullptr) *index = static_cast<size_t>(&command - kCommands);
      return &command;
    }
  }
  return nullptr;
}

Pop3Session::Pop3Session(Pop3SessionOptions options)
    : options_(std::move(options)), tls_active_(options_.tls_active) {
  sasl_mechanisms_ = options_.sasl_mechanisms;
  SetPreferredLanguage(options_.preferred_language);
  Append("+OK ");
  // A proxy that speaks XCLIENT looks for the capability at the greeting's start.
  if (options_.peer_is_trusted_proxy) Append("[XCLIENT] ");
  Append(options_.greeting_text);
  if (ApopOffered()) {
    Append(" ");
    Append(options_.apop_timestamp);
  }
  Append("\r\n");
}

// ---------------------------------------------------------------------------------------------
// Input

void Pop3Session::Feed(std::string_view bytes) {
  if (state_ == Pop3State::kClosed || close_queued_) return;
  if (awaiting_ == Awaiting::kTls) {
    // Plaintext sent before the handshake completed must never reach the TLS session.
    counters_.stls_discarded_bytes += bytes.size();
    return;
  }
  if (input_.unparsed_bytes() > options_.input_buffered_bytes_max) ++counters_.input_over_limit;
  input_.Append(bytes);
  Advance();
}

bool Pop3Session::WantsInput() const {
  return state_ != Pop3State::kClosed && !close_queued_ &&
         input_.unparsed_bytes() < options_.input_buffered_bytes_max;
}

bool Pop3Session::OutputBlocked() const {
  return untaken_bytes_ + taken_unflushed_bytes_ > options_.output_queued_bytes_max;
}

void Pop3Session::Advance() {
  while (state_ != Pop3State::kClosed && !close_queued_ && awaiting_ == Awaiting::kNothing) {
    MaybeEndCommand();
    if (listing_ != ListingKind::kNone) {
      ContinueListing();
      if (listing_ != ListingKind::kNone) break;
      continue;
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
    // The framer's limit is the largest line limit (SASL); command lines are checked against
    // their own limit by HandleCommandLine.
    const LineFramer::Status status = input_.Next(
        std::max(options_.sasl_line_bytes_max, options_.command_line_bytes_max), &line, &raw_bytes);
    if (status == LineFramer::Status::kNeedMore) break;
    if (status == LineFramer::Status::kOverflow) {
      HandleOverflow();
      continue;
    }
    if (status == LineFramer::Status::kBareLineFeed) {
      // Only CRLF ends a line (RFC 1939 section 3). Reading on after a bare LF could make us
      // and a proxy in front of us disagree about where commands end: answer once and close.
      ++counters_.commands;
      ++counters_.bad_commands;
      ++counters_.bare_line_feed_closes;
      if (sasl_step_ != SaslStep::kNone) {
        sasl_step_ = SaslStep::kNone;
        WipeCredentials();
      }
      AppendLine("-ERR Lines must end with CRLF, closing connection");
      QueueClose();
      break;
    }
    if (sasl_step_ != SaslStep::kNone) {
      HandleSaslLine(line);
    } else {
      HandleCommandLine(line, raw_bytes);
    }
  }
  MaybeEndCommand();
  // Reclaim parsed input (line views handed to handlers are dead by now); when all of it was
  // parsed the session now waits for its peer, without an input buffer.
  input_.Compact();
  input_.ReleaseIfEmpty();
}

void Pop3Session::BeginCommand(Pop3Command command) {
  if (options_.command_observer == nullptr) return;
  open_command_ = command;
  command_open_ = true;
  command_status_ = -1;
  options_.command_observer->OnCommandBegin(command);
}

void Pop3Session::MaybeEndCommand() {
  if (!command_open_ || command_status_ < 0 || awaiting_ != Awaiting::kNothing ||
      sasl_step_ != SaslStep::kNone) {
    return;
  }
  command_open_ = false;
  options_.command_observer->OnCommandEnd(open_command_, command_status_ == 1);
}

void Pop3Session::HandleOverflow() {
  if (sasl_step_ != SaslStep::kNone) {
    ++counters_.sasl_line_too_long;
    if (sasl_step_ == SaslStep::kMechanismResponse) AbandonSasl(/*cancelled=*/false);
    sasl_step_ = SaslStep::kNone;
    WipeCredentials();
    BadCommand("-ERR Authentication line too long");
    return;
  }
  ++counters_.commands;
  ++counters_.command_line_too_long;
  BeginCommand(Pop3Command::kUnknown);
  BadCommand("-ERR Line too long");
}

void Pop3Session::BadCommand(std::string_view reply) {
  ++counters_.bad_commands;
  ++bad_commands_;
  if (bad_commands_ >= options_.bad_commands_max) {
    ++counters_.bad_command_limit_closes;
    AppendLine("-ERR Too many bad commands, closing connection");
    QueueClose();
    return;
  }
  AppendLine(reply);
}

// One grammar for every command (RFC 1939 section 3): KEYWORD, then arguments each preceded
// by exactly one space; printable octets only; the arity from the command table. Handlers get
// arguments already checked, so they never see tabs, runs of spaces or control octets.
void Pop3Session::HandleCommandLine(std::string_view line, size_t raw_bytes) {
  ++counters_.commands;
  const size_t verb_end = std::min(line.find(' '), line.size());
  const std::string_view verb = line.substr(0, verb_end);
  const bool has_args = verb_end < line.size();
  const std::string_view args = has_args ? line.substr(verb_end + 1) : std::string_view();
  size_t command_index = static_cast<size_t>(Pop3Command::kUnknown);
  const Command* command = FindCommand(verb, &command_index);
  BeginCommand(static_cast<Pop3Command>(command_index));
  // RFC 2449 section 4 limits command lines to 255 octets; AUTH lines may carry a SASL
  // initial response (RFC 5034 section 4) and get the SASL limit instead.
  const bool is_auth = command != nullptr && command->handler == &Pop3Session::CmdAuth;
  if (!is_auth && raw_bytes > options_.command_line_bytes_max) {
    ++counters_.command_line_too_long;
    BadCommand("-ERR Line too long");
    return;
  }
  if (HasControlOctet(line)) {
    BadCommand("-ERR Syntax error: control character in command");
    return;
  }
  if (command == nullptr && options_.peer_is_trusted_proxy && EqualsIgnoreCase(verb, "XCLIENT")) {
    CmdXclient(args);
    return;
  }
  if (command == nullptr && counters_.commands == 1 && verb == "PROXY") {
    // A PROXY protocol header from a peer outside --proxy_networks (a trusted proxy's header
    // is read before the session exists): it may not choose the address we see.
    ++counters_.proxy_header_refusals;
    EndWith("-ERR PROXY header not accepted from this address");
    return;
  }
  if (command == nullptr) {
    BadCommand(line.empty() ? "-ERR Empty command" : "-ERR Unknown command");
    return;
  }
  if ((command->states & StateBit(state_)) == 0) {
    BadCommand("-ERR Command not valid in this state");
    return;
  }
  size_t arg_count = 0;
  if (command->raw_args) {
    arg_count = args.empty() ? 0 : 1;
  } else if (!CountArguments(args, &arg_count) || (has_args && arg_count == 0)) {
    BadCommand("-ERR Syntax error: arguments are separated by a single space");
    return;
  }
  if (arg_count < command->min_args || arg_count > command->max_args) {
    BadCommand(command->syntax);
    return;
  }
  (this->*command->handler)(args);
}

// ---------------------------------------------------------------------------------------------
// AUTHORIZATION

bool Pop3Session::TrustedProxyHoldsTls() const {
  return options_.peer_is_trusted_proxy && options_.policy.trusted_proxy_exempt_from_tls;
}

bool Pop3Session::PlaintextAllowed() const {
  const Pop3TenantPolicy& policy = options_.policy;
  return !policy.plaintext_requires_tls || tls_active_ || TrustedProxyHoldsTls() ||
         (options_.peer_is_loopback && policy.loopback_exempt_from_tls);
}

bool Pop3Session::TenantsMayAllowPlaintext() const {
  const TenantPlaintextAuthLookup* lookup = options_.policy.tenant_plaintext_auth;
  return lookup != nullptr && lookup->AnyAllowed();
}

bool Pop3Session::PlaintextAllowedFor(std::string_view user) const {
  if (tls_active_ || TrustedProxyHoldsTls()) return true;
  const TenantPlaintextAuthLookup* lookup = options_.policy.tenant_plaintext_auth;
  const size_t at = user.rfind('@');
  if (lookup == nullptr || at == std::string_view::npos) return PlaintextAllowed();
  switch (lookup->ForDomain(user.substr(at + 1))) {
    case TenantPlaintextAuth::kAllow:
      return true;
    case TenantPlaintextAuth::kRequireTls:
      return false;
    case TenantPlaintextAuth::kDefault:
      break;
  }
  return PlaintextAllowed();
}

bool Pop3Session::ApopOffered() const {
  return options_.policy.apop_allowed && !options_.apop_timestamp.empty();
}

void Pop3Session::CmdUser(std::string_view args) {
  if (!PlaintextAllowed() && !TenantsMayAllowPlaintext()) {
    AppendLine(kPlaintextRefused);
    return;
  }
  if (args.empty()) {
    BadCommand("-ERR Missing user name");
    return;
  }
  // Refused here, before the client sends the password (RFC 2595 section 2.2).
  user_refused_plaintext_ = !PlaintextAllowedFor(args);
  if (user_refused_plaintext_) {
    have_user_ = false;
    user_arg_.clear();
    AppendLine(kPlaintextRefused);
    return;
  }
  // Any name is accepted here: whether it exists is only learnt (and never told) at PASS.
  user_arg_.assign(args);
  have_user_ = true;
  AppendLine("+OK");
}

void Pop3Session::CmdPass(std::string_view args) {
  // An accepted USER passed its tenant's check; otherwise answer as that USER was answered.
  if (!have_user_ && (!PlaintextAllowed() || user_refused_plaintext_)) {
    AppendLine(kPlaintextRefused);
    return;
  }
  if (!have_user_) {
    BadCommand("-ERR No user name given, send USER first");
    return;
  }
  auth_user_ = std::move(user_arg_);
  user_arg_.clear();
  have_user_ = false;
  auth_secret_.assign(args);
  if (!PrepareCredentials(/*with_secret=*/true)) return;
  StartAuthentication(AuthMechanism::kUserPass);
}

void Pop3Session::CmdApop(std::string_view args) {
  if (!ApopOffered()) {
    BadCommand("-ERR APOP is not available");
    return;
  }
  std::string_view rest = args;
  const std::string_view name = NextToken(&rest);
  const std::string_view digest = NextToken(&rest);
  bool valid = !name.empty() && digest.size() == 32 && rest.empty();
  for (char c : digest) {
    valid = valid && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'));
  }
  if (!valid) {
    BadCommand("-ERR Syntax: APOP name digest");
    return;
  }
  have_user_ = false;
  user_arg_.clear();
  auth_user_.assign(name);
  auth_secret_.assign(digest);
  for (char& c : auth_secret_) c = (c >= 'A' && c <= 'F') ? static_cast<char>(c + 32) : c;
  // The digest covers the password as the client typed it: only the name is prepared.
  if (!PrepareCredentials(/*with_secret=*/false)) return;
  StartAuthentication(AuthMechanism::kApop);
}

void Pop3Session::CmdAuth(std::string_view args) {
  std::string_view rest = args;
  const std::string_view mechanism = NextToken(&rest);
  if (mechanism.empty()) {
    // Pre-RFC 5034 clients (Outlook among them) send a bare AUTH to list the mechanisms.
    AppendLine("+OK");
    if (PlaintextAllowed()) {
      AppendLine("PLAIN");
      AppendLine("LOGIN");
    }
    for (std::string_view offer = sasl_mechanisms_; !offer.empty();) {
      AppendLine(NextToken(&offer));
    }
    AppendLine(".");
    return;
  }
  SaslStep first;
  if (EqualsIgnoreCase(mechanism, "PLAIN")) {
    first = SaslStep::kPlainResponse;
  } else if (EqualsIgnoreCase(mechanism, "LOGIN")) {
    first = SaslStep::kLoginUser;
  } else if (const std::string_view offered = OfferedSaslMechanism(mechanism); !offered.empty()) {
    const std::string_view initial = NextToken(&rest);
    if (!rest.empty()) {
      BadCommand("-ERR Syntax: AUTH mechanism [initial-response]");
      return;
    }
    if (!initial.empty() && initial != "=" && !Base64Decode(initial, &auth_secret_)) {
      WipeCredentials();
      BadCommand("-ERR Invalid base64 data");
      return;
    }
    have_user_ = false;
    user_arg_.clear();
    sasl_mechanism_ = offered;
    StartSaslStep(/*start=*/true, /*has_response=*/!initial.empty());
    return;
  } else {
    AppendLine("-ERR Unsupported authentication mechanism");
    return;
  }
  const std::string_view initial_response = NextToken(&rest);
  // Where the server-wide rule refuses, a tenant that allows plaintext may still log in: the
  // user name is checked once it arrives (AUTH LOGIN's first step, or an AUTH PLAIN initial
  // response, which already carries the password). AUTH PLAIN without one is refused here, so
  // the server never asks for a password it might refuse.
  if (!PlaintextAllowed() && (!TenantsMayAllowPlaintext() ||
                              (first == SaslStep::kPlainResponse && initial_response.empty()))) {
    AppendLine(kPlaintextRefused);
    return;
  }
  if (!rest.empty()) {
    BadCommand("-ERR Syntax: AUTH mechanism [initial-response]");
    return;
  }
  have_user_ = false;
  user_arg_.clear();
  sasl_step_ = first;
  if (!initial_response.empty()) {
    HandleSaslLine(initial_response);  // RFC 5034 section 4: "=" is an empty response
    return;
  }
  AppendLine(first == SaslStep::kPlainResponse ? "+ " : "+ VXNlcm5hbWU6");  // "Username:"
}

void Pop3Session::HandleSaslLine(std::string_view line) {
  if (line == "*") {
    if (sasl_step_ == SaslStep::kMechanismResponse) AbandonSasl(/*cancelled=*/true);
    sasl_step_ = SaslStep::kNone;
    WipeCredentials();
    AppendLine("-ERR Authentication cancelled");
    return;
  }
  std::string decoded;
  if (line != "=" && !Base64Decode(line, &decoded)) {
    if (sasl_step_ == SaslStep::kMechanismResponse) AbandonSasl(/*cancelled=*/false);
    sasl_step_ = SaslStep::kNone;
    WipeCredentials();
    Wipe(&decoded);
    BadCommand("-ERR Invalid base64 data");
    return;
  }
  const SaslStep step = sasl_step_;
  sasl_step_ = SaslStep::kNone;
  switch (step) {
    case SaslStep::kPlainResponse: {
      // RFC 4616: [authzid] NUL authcid NUL passwd.
      const size_t first_nul = decoded.find('\0');
      const size_t second_nul =
          first_nul == std::string::npos ? std::string::npos : decoded.find('\0', first_nul + 1);
      if (second_nul == std::string::npos ||
          decoded.find('\0', second_nul + 1) != std::string::npos || second_nul == first_nul + 1) {
        WipeCredentials();
        Wipe(&decoded);
        BadCommand("-ERR Invalid SASL PLAIN response");
        return;
      }
      auth_authzid_.assign(decoded, 0, first_nul);
      auth_user_.assign(decoded, first_nul + 1, second_nul - first_nul - 1);
      auth_secret_.assign(decoded, second_nul + 1);
      Wipe(&decoded);
      if (!PlaintextAllowedFor(auth_user_)) {
        WipeCredentials();
        AppendLine(kPlaintextRefused);
        return;
      }
      if (!PrepareCredentials(/*with_secret=*/true)) return;
      StartAuthentication(AuthMechanism::kSaslPlain);
      return;
    }
    case SaslStep::kLoginUser:
      auth_user_ = std::move(decoded);
      if (!PlaintextAllowedFor(auth_user_)) {  // before the password is asked for
        WipeCredentials();
        AppendLine(kPlaintextRefused);
        return;
      }
      sasl_step_ = SaslStep::kLoginPassword;
      AppendLine("+ UGFzc3dvcmQ6");  // "Password:"
      return;
    case SaslStep::kLoginPassword:
      auth_secret_ = std::move(decoded);
      if (!PrepareCredentials(/*with_secret=*/true)) return;
      StartAuthentication(AuthMechanism::kSaslLogin);
      return;
    case SaslStep::kMechanismResponse:
      auth_secret_ = std::move(decoded);
      StartSaslStep(/*start=*/false, /*has_response=*/true);
      return;
    case SaslStep::kNone:
      break;
  }
  PH_CHECK(false);
}

// RFC 6856 section 2 asks a server announcing "UTF8 USER" to prepare UTF-8 names and passwords
// (SASLprep) and to refuse those that are not UTF-8; RFC 4616 asks the same of SASL PLAIN.
// Text that is valid UTF-8 is prepared whether or not the client sent UTF8 (many clients send
// UTF-8 without it), so a password meets the hash made of its prepared form. Before UTF8,
// text that is not UTF-8 or that SASLprep refuses goes to the driver as sent (RFC 1939 allows
// ASCII only; older clients send their own 8-bit charsets); in UTF8 mode it gets -ERR.
bool Pop3Session::PrepareCredentials(bool with_secret) {
  if (utf8_enabled_ && (!IsValidUtf8(auth_user_) || (with_secret && !IsValidUtf8(auth_secret_)))) {
    WipeCredentials();
    BadCommand("-ERR User name or password is not valid UTF-8");
    return false;
  }
  const Pop3SessionOptions::CredentialPreparer prepare = options_.credential_preparer;
  if (prepare == nullptr) return true;
  std::string* const fields[] = {&auth_user_, with_secret ? &auth_secret_ : nullptr};
  for (std::string* field : fields) {
    if (field == nullptr) continue;
    absl::StatusOr<std::string> prepared = prepare(*field);
    if (prepared.ok()) {
      field->swap(*prepared);
      Wipe(&*prepared);  // now the text as sent
    } else if (utf8_enabled_) {
      WipeCredentials();
      BadCommand("-ERR User name or password has characters not allowed (RFC 4013)");
      return false;
    }
  }
  return true;
}

void Pop3Session::StartAuthentication(AuthMechanism mechanism) {
  auth_mechanism_ = mechanism;
  QueuedAction action{Pop3ActionKind::kAuthenticate};
  Push(action);
  awaiting_ = Awaiting::kAuth;
}

std::string_view Pop3Session::OfferedSaslMechanism(std::string_view name) const {
  for (std::string_view offer = sasl_mechanisms_; !offer.empty();) {
    const std::string_view offered = NextToken(&offer);
    if (EqualsIgnoreCase(offered, name)) return offered;
  }
  return {};
}

void Pop3Session::StartSaslStep(bool start, bool has_response) {
  sasl_start_ = start;
  sasl_has_response_ = has_response;
  StartAuthentication(AuthMechanism::kSasl);
}

void Pop3Session::AbandonSasl(bool cancelled) {
  QueuedAction abandon{Pop3ActionKind::kAbandonSasl};
  abandon.sasl_cancelled = cancelled;
  Push(abandon);
}

void Pop3Session::WipeCredentials() {
  Wipe(&auth_secret_);
  auth_authzid_.clear();
  auth_user_.clear();
  // Their memory goes back too: an idle session keeps only its account name.
  auth_secret_.shrink_to_fit();
  auth_authzid_.shrink_to_fit();
  auth_user_.shrink_to_fit();
}

void Pop3Session::OnAuthResult(const Pop3AuthResult& result) {
  if (state_ == Pop3State::kClosed) return;  // a result outliving the connection
  PH_CHECK(awaiting_ == Awaiting::kAuth);
  awaiting_ = Awaiting::kNothing;
  switch (result.code) {
    case Pop3AuthResult::Code::kContinue:
      PH_CHECK(auth_mechanism_ == AuthMechanism::kSasl);
      WipeCredentials();
      Append("+ ");
      Append(Base64Encode(result.challenge));
      Append("\r\n");
      sasl_step_ = SaslStep::kMechanismResponse;
      break;
    case Pop3AuthResult::Code::kOk:
      account_ = result.user.empty() ? auth_user_ : result.user;
      WipeCredentials();
      Push(QueuedAction{Pop3ActionKind::kOpenMaildrop});
      awaiting_ = Awaiting::kMaildrop;
      return;
    case Pop3AuthResult::Code::kBadCredentials: {
      WipeCredentials();
      ++auth_failures_;
      ++counters_.auth_failures;
      QueuedAction delay{Pop3ActionKind::kDelay};
      delay.delay_ms = result.failure_delay_ms.value_or(options_.auth_failure_delay_ms);
      Push(delay);
      AppendLine("-ERR [AUTH] Authentication failed");
      if (auth_failures_ >= options_.auth_failures_max) {
        ++counters_.auth_failure_limit_closes;
        QueueClose();
        return;
      }
      break;
    }
    case Pop3AuthResult::Code::kLoginDelay:
      WipeCredentials();
      AppendLine("-ERR [LOGIN-DELAY] Logged in too recently, try again later");
      break;
    case Pop3AuthResult::Code::kTempFailure:
      WipeCredentials();
      AppendLine("-ERR [SYS/TEMP] Temporary authentication failure, try again later");
      break;
    case Pop3AuthResult::Code::kPermFailure:
      WipeCredentials();
      AppendLine("-ERR [SYS/PERM] Account unavailable");
      break;
    case Pop3AuthResult::Code::kMechanismRefused:
      WipeCredentials();
      AppendLine("-ERR [AUTH] This login mechanism is not allowed for this domain");
      break;
  }
  Advance();
}

void Pop3Session::OnMaildropOpened(Pop3MaildropResult result) {
  if (state_ == Pop3State::kClosed) return;  // a result outliving the connection
  PH_CHECK(awaiting_ == Awaiting::kMaildrop);
  awaiting_ = Awaiting::kNothing;
  switch (result.code) {
    case Pop3MaildropResult::Code::kOk: {
      PH_CHECK(result.snapshot != nullptr);
      snapshot_ = std::move(result.snapshot);
      deleted_.assign(snapshot_->count(), 0);
      user_policy_ = result.user_policy;
      if (!user_policy_.language.empty()) SetPreferredLanguage(user_policy_.language);
      if (user_policy_.capa.expire_days == 0u) retrieved_.assign(snapshot_->count(), 0);
      live_count_ = snapshot_->count();
      live_octets_ = snapshot_->total_octets();
      state_ = Pop3State::kTransaction;
      if (IsEchoable(account_)) {
        AppendLocalized("+OK",
                        live_count_ == 1 ? "%1's maildrop has %2 message (%3 octets)"
                                         : "%1's maildrop has %2 messages (%3 octets)",
                        {account_, DecimalText(live_count_), DecimalText(live_octets_)});
      } else {
        AppendMaildropSummary();
      }
      break;
    }
    case Pop3MaildropResult::Code::kInUse:
      account_.clear();
      AppendLine("-ERR [IN-USE] maildrop already locked");
      break;
    case Pop3MaildropResult::Code::kTempFailure:
      account_.clear();
      AppendLine("-ERR [SYS/TEMP] Maildrop temporarily unavailable, try again later");
      break;
    case Pop3MaildropResult::Code::kLimitReached:
      // A limit, not a failure to retry at once on this connection: answered, then closed.
      account_.clear();
      AppendLine("-ERR [SYS/TEMP] Maildrop temporarily unavailable, try again later");
      QueueClose();
      MaybeEndCommand();
      return;
    case Pop3MaildropResult::Code::kPermFailure:
      account_.clear();
      AppendLine("-ERR [SYS/PERM] Maildrop unavailable");
      break;
    case Pop3MaildropResult::Code::kLoginDelay:
      // RFC 2449 section 8.1.1: the session goes on; the client may try again later.
      account_.clear();
      ++counters_.login_delay_refusals;
      AppendLine("-ERR [LOGIN-DELAY] Logged in too recently, try again later");
      break;
  }
  Advance();
}

void Pop3Session::CmdStls(std::string_view args) {
  if (tls_active_) {
    AppendLine("-ERR Command not permitted when TLS active");
    return;
  }
  if (!options_.tls_available) {
    AppendLine("-ERR STLS not available");
    return;
  }
  AppendLine("+OK Begin TLS negotiation");
  // Anything pipelined behind STLS was sent in plaintext: drop it (RFC 2595 section 4,
  // CVE-2011-0411).
  counters_.stls_discarded_bytes += input_.DiscardUnparsed();
  Push(QueuedAction{Pop3ActionKind::kStartTls});
  awaiting_ = Awaiting::kTls;
}

void Pop3Session::OnWholeMessageSentByTop(MessageIndex message) {
  if (message.value() < retrieved_.size()) retrieved_[message.value()] = 1;
}

void Pop3Session::OnTlsStarted() {
  if (state_ == Pop3State::kClosed) return;  // a result outliving the connection
  PH_CHECK(awaiting_ == Awaiting::kTls);
  awaiting_ = Awaiting::kNothing;
  tls_active_ = true;
  // RFC 2595 section 4: forget what the client said before the handshake.
  have_user_ = false;
  user_refused_plaintext_ = false;
  user_arg_.clear();
  utf8_enabled_ = false;
  language_ = ReplyLanguage::kDefault;
  Advance();
}

// ---------------------------------------------------------------------------------------------
// Commands valid in both states

void Pop3Session::CmdCapa(std::string_view args) {
  AppendLine("+OK Capability list follows");
  AppendLine("TOP");
  // Plaintext mechanisms are advertised only where they would be accepted (RFC 2595 2.2).
  const bool plaintext = PlaintextAllowed();
  if (plaintext) AppendLine("USER");
  if (plaintext || !sasl_mechanisms_.empty()) {
    Append("SASL");
    if (plaintext) Append(" PLAIN LOGIN");
    if (!sasl_mechanisms_.empty()) {
      Append(" ");
      Append(sasl_mechanisms_);
    }
    Append("\r\n");
  }
  const CapaPolicy capa = CurrentCapaPolicy();
  AppendLine("RESP-CODES");
  AppendLoginDelay(capa);
  AppendLine("PIPELINING");
  AppendExpire(capa);
  AppendLine("UIDL");
  if (!options_.implementation.empty()) {
    Append("IMPLEMENTATION ");
    AppendLine(options_.implementation);
  }
  AppendLine("AUTH-RESP-CODE");
  if (state_ == Pop3State::kAuthorization && options_.tls_available && !tls_active_) {
    AppendLine("STLS");
  }
  // RFC 6856 section 2: USER when UTF-8 names and passwords are prepared (SASLprep).
  AppendLine(options_.credential_preparer != nullptr ? "UTF8 USER" : "UTF8");
  AppendLine("LANG");  // RFC 6856 section 3
  AppendLine(".");
}

CapaPolicy Pop3Session::CurrentCapaPolicy() const {
  const Pop3TenantPolicy& policy = options_.policy;
  CapaPolicy server{.login_delay_seconds = policy.login_delay_seconds,
                    .expire_days = policy.expire_days};
  if (state_ != Pop3State::kAuthorization) {
    CapaPolicy user = user_policy_.capa;
    user.per_user = false;
    if (!user.login_delay_seconds.has_value()) user.login_delay_seconds = server.login_delay_seconds;
    if (!user.expire_days.has_value()) user.expire_days = server.expire_days;
    return user;
  }
  if (policy.tenant_plaintext_auth != nullptr) {
    CapaPolicy tenants = policy.tenant_plaintext_auth->BeforeLogin();
    if (tenants.login_delay_seconds.has_value() || tenants.expire_days.has_value()) return tenants;
  }
  return server;
}

void Pop3Session::AppendLoginDelay(const CapaPolicy& capa) {
  if (capa.login_delay_seconds.has_value()) {
    Append("LOGIN-DELAY ");
    AppendNumber(*capa.login_delay_seconds);
    Append(capa.per_user ? " USER\r\n" : "\r\n");
  }
}

void Pop3Session::AppendExpire(const CapaPolicy& capa) {
  if (capa.expire_days.has_value()) {
    if (*capa.expire_days == CapaPolicy::kExpireNever) {
      Append("EXPIRE NEVER");
    } else {
      Append("EXPIRE ");
      AppendNumber(*capa.expire_days);
    }
    Append(capa.per_user ? " USER\r\n" : "\r\n");
  }
}

// RFC 6856 section 2. What UTF8 changes here: names and passwords must then be UTF-8 (see
// PrepareCredentials). Messages go out as stored in either mode: they are kept in wire form and
// never downgraded (docs/ARCHITECTURE.md, "LANG and UTF8"). Also accepted after login, where
// Outlook sends it.
void Pop3Session::CmdUtf8(std::string_view args) {
  utf8_enabled_ = true;
  AppendLine("+OK UTF8 enabled");
}

bool Pop3Session::SetPreferredLanguage(std::string_view tag) {
  if (tag.empty()) {
    preferred_language_ = ReplyLanguage::kDefault;
    return true;
  }
  for (const LanguageListing& listing : SupportedLanguages()) {
    if (EqualsIgnoreCase(listing.tag, tag)) {
      preferred_language_ = listing.language;
      return true;
    }
  }
  return false;
}

// RFC 6856 section 3. Without an argument: the languages, each as "tag description". With a
// basic language range (RFC 4647): the language it picks ("*": the preferred one) becomes the
// language of every reply text from this reply on, and the reply names its tag. A range that
// picks nothing leaves the language as it was.
void Pop3Session::CmdLang(std::string_view args) {
  if (args.empty()) {
    AppendLine("+OK Language listing follows");
    for (const LanguageListing& listing : SupportedLanguages()) {
      Append(listing.tag);
      Append(" ");
      AppendLine(listing.description);
    }
    AppendLine(".");
    return;
  }
  if (!IsBasicLanguageRange(args)) {
    BadCommand("-ERR Syntax: LANG [language-range]");
    return;
  }
  const std::optional<ReplyLanguage> picked =
      args == "*" ? std::optional<ReplyLanguage>(preferred_language_) : LookupLanguage(args);
  if (!picked.has_value()) {
    AppendLocalized("-ERR", "Unsupported language %1", {args});
    return;
  }
  language_ = *picked;
  Append("+OK ");
  AppendLocalized(LanguageTag(language_), "Language changed");
}

// Dovecot-style XCLIENT from a trusted proxy: KEY=VALUE fields separated by spaces. ADDR and
// PORT name the client (ADDR is an IP address, optionally "IPV6:"-prefixed); SESSION, TTL,
// LOGIN and any other key are accepted and ignored (they matter to proxies, not to a backend).
// Only in AUTHORIZATION before any login step, so one login never mixes two addresses.
void Pop3Session::CmdXclient(std::string_view args) {
  if (state_ != Pop3State::kAuthorization) {
    BadCommand("-ERR Command not valid in this state");
    return;
  }
  if (have_user_ || sasl_step_ != SaslStep::kNone) {
    BadCommand("-ERR XCLIENT must come before USER or AUTH");
    return;
  }
  std::string address;
  std::optional<uint16_t> port;
  while (!args.empty()) {
    const size_t space = args.find(' ');
    const std::string_view field = args.substr(0, space);
    args = space == std::string_view::npos ? std::string_view() : args.substr(space + 1);
    if (field.empty()) continue;
    const size_t equals = field.find('=');
    if (equals == std::string_view::npos || equals == 0) {
      BadCommand("-ERR Syntax: XCLIENT KEY=VALUE ...");
      return;
    }
    const std::string_view key = field.substr(0, equals);
    std::string_view value = field.substr(equals + 1);
    if (EqualsIgnoreCase(key, "ADDR")) {
      if (value.size() > 5 && EqualsIgnoreCase(value.substr(0, 5), "IPV6:")) value.remove_prefix(5);
      if (!IsIpAddress(value)) {
        BadCommand("-ERR XCLIENT ADDR is not an IP address");
        return;
      }
      address = std::string(value);
    } else if (EqualsIgnoreCase(key, "PORT")) {
      const std::optional<uint64_t> parsed = ParseDecimalAtMost(value, 65535);
      if (!parsed.has_value()) {
        BadCommand("-ERR XCLIENT PORT is not a port number");
        return;
      }
      port = static_cast<uint16_t>(*parsed);
    }
  }
  if (!address.empty()) xclient_address_ = std::move(address);
  if (port.has_value()) xclient_port_ = *port;
  AppendLine("+OK XCLIENT accepted");
}

void Pop3Session::CmdQuit(std::string_view args) {
  if (state_ == Pop3State::kAuthorization) {
    AppendLocalized("+OK", "%1 POP3 server signing off", {options_.hostname});
    QueueClose();
    return;
  }
  // TRANSACTION: enter UPDATE and commit once; the reply waits for the result. Under
  // EXPIRE 0 what RETR sent goes too (retrieved_ is empty otherwise).
  deletions_.clear();
  for (uint32_t i = 0; i < deleted_.size(); ++i) {
    const bool retrieved = i < retrieved_.size() && retrieved_[i] != 0;
    if (deleted_[i] || retrieved) deletions_.push_back(MessageIndex(i));
    if (!deleted_[i] && retrieved) {
      --live_count_;
      live_octets_ -= snapshot_->size_octets(MessageIndex(i));
      ++counters_.expired_at_quit;
    }
  }
  state_ = Pop3State::kUpdate;
  Push(QueuedAction{Pop3ActionKind::kCommit});
  awaiting_ = Awaiting::kCommit;
}

void Pop3Session::OnCommitResult(Pop3CommitResult result) {
  if (state_ == Pop3State::kClosed) return;  // a result outliving the connection
  PH_CHECK(awaiting_ == Awaiting::kCommit);
  awaiting_ = Awaiting::kNothing;
  if (result == Pop3CommitResult::kOk) {
    if (live_count_ == 0) {
      AppendLocalized("+OK", "%1 POP3 server signing off (maildrop empty)", {options_.hostname});
    } else {
      AppendLocalized("+OK",
                      live_count_ == 1 ? "%1 POP3 server signing off (%2 message left)"
                                       : "%1 POP3 server signing off (%2 messages left)",
                      {options_.hostname, DecimalText(live_count_)});
    }
  } else {
    AppendLine("-ERR [SYS/TEMP] Could not remove deleted messages, none were removed");
  }
  QueueClose();
  MaybeEndCommand();
}

// ---------------------------------------------------------------------------------------------
// TRANSACTION

bool Pop3Session::IsMarkedDeletedForTest(MessageIndex index) const {
  return index.value() < deleted_.size() && deleted_[index.value()] != 0;
}

std::optional<MessageIndex> Pop3Session::ParseLiveMessage(std::string_view arg,
                                                          std::string_view missing) {
  // RFC 1939 numbers: digits only, and a value that fits in 64 bits.
  const std::optional<uint64_t> parsed = ParseDecimalU64(arg);
  if (!parsed.has_value()) {
    BadCommand("-ERR Invalid message number");
    return std::nullopt;
  }
  const uint64_t number = *parsed;
  const uint32_t count = snapshot_->count();
  if (number == 0 || number > count) {
    if (missing.empty()) {
      // RFC 1939 section 5 (LIST) and 7 (UIDL) example text.
      AppendLocalized("-ERR",
                      count == 1 ? "no such message, only %1 message in maildrop"
                                 : "no such message, only %1 messages in maildrop",
                      {DecimalText(count)});
    } else {
      AppendLine(missing);
    }
    return std::nullopt;
  }
  const MessageIndex index = MessageNumber(static_cast<uint32_t>(number)).ToIndex();
  if (deleted_[index.value()]) {
    AppendLocalized("-ERR", "message %1 already deleted", {DecimalText(number)});
    return std::nullopt;
  }
  return index;
}

void Pop3Session::AppendMaildropSummary() {
  AppendLocalized("+OK",
                  live_count_ == 1 ? "maildrop has %1 message (%2 octets)"
                                   : "maildrop has %1 messages (%2 octets)",
                  {DecimalText(live_count_), DecimalText(live_octets_)});
}

void Pop3Session::CmdStat(std::string_view args) {
  Append("+OK ");
  AppendNumber(live_count_);
  Append(" ");
  AppendNumber(live_octets_);
  Append("\r\n");
}

void Pop3Session::CmdList(std::string_view args) {
  if (args.empty()) {
    Append("+OK ");
    AppendNumber(live_count_);
    Append(live_count_ == 1 ? " message (" : " messages (");
    AppendNumber(live_octets_);
    Append(" octets)\r\n");
    listing_ = ListingKind::kList;
    listing_next_ = 0;
    return;
  }
  const std::optional<MessageIndex> index = ParseLiveMessage(args, "");
  if (!index) return;
  Append("+OK ");
  AppendNumber(MessageNumber::FromIndex(*index).value());
  Append(" ");
  AppendNumber(snapshot_->size_octets(*index));
  Append("\r\n");
}

void Pop3Session::CmdUidl(std::string_view args) {
  if (args.empty()) {
    AppendLine("+OK");
    listing_ = ListingKind::kUidl;
    listing_next_ = 0;
    return;
  }
  const std::optional<MessageIndex> index = ParseLiveMessage(args, "");
  if (!index) return;
  Append("+OK ");
  AppendNumber(MessageNumber::FromIndex(*index).value());
  Append(" ");
  Append(snapshot_->uidl(*index));
  Append("\r\n");
}

// Produces LIST/UIDL lines until the listing ends or the output queue is full; Advance()
// resumes it after OnOutputFlushed().
void Pop3Session::ContinueListing() {
  const MailboxSnapshot& snapshot = *snapshot_;
  const uint32_t count = snapshot.count();
  // Lines are formatted into a local batch that is appended whole: appending line by line
  // (a library memmove of a few dozen bytes each) was most of a 10,000-message UIDL or LIST.
  // The output bound counts the batch, so the listing stops where it did line by line.
  char batch[kListingBatchBytes];
  size_t used = 0;
  while (listing_next_ < count) {
    if (untaken_bytes_ + used + taken_unflushed_bytes_ > options_.output_queued_bytes_max) {
      Append(std::string_view(batch, used));
      if (!blocked_counted_) {
        ++counters_.output_blocked;
        blocked_counted_ = true;
      }
      return;
    }
    const MessageIndex index(listing_next_++);
    if (deleted_[index.value()]) continue;
    if (used + kListingLineBytesMax > sizeof(batch)) {
      Append(std::string_view(batch, used));
      used = 0;
    }
    char* p = WriteDecimal(batch + used, MessageNumber::FromIndex(index).value());
    *p++ = ' ';
    if (listing_ == ListingKind::kList) {
      p = WriteDecimal(p, snapshot.size_octets(index));
    } else {
      p = WriteShort(p, snapshot.uidl(index));
    }
    *p++ = '\r';
    *p++ = '\n';
    used = static_cast<size_t>(p - batch);
  }
  Append(std::string_view(batch, used));
  Append(".\r\n");
  listing_ = ListingKind::kNone;
}

void Pop3Session::CmdRetr(std::string_view args) {
  const std::optional<MessageIndex> index = ParseLiveMessage(args, "-ERR no such message");
  if (!index) return;
  if (!ChargeDownload(snapshot_->size_octets(*index))) return;
  if (options_.check_stored_messages) {
    QueueCheck(*index, std::nullopt);
  } else {
    QueueRetrieval(*index, std::nullopt);
  }
}

void Pop3Session::QueueCheck(MessageIndex index, std::optional<uint64_t> top_body_lines) {
  QueuedAction check{Pop3ActionKind::kCheckMessage};
  check.message = index;
  check.top_body_lines = top_body_lines;
  Push(check);
  checking_message_ = index;
  checking_top_body_lines_ = top_body_lines;
  awaiting_ = Awaiting::kMessageCheck;
}

void Pop3Session::QueueRetrieval(MessageIndex index, std::optional<uint64_t> top_body_lines) {
  const uint64_t octets = snapshot_->size_octets(index);
  QueuedAction stream{Pop3ActionKind::kStreamMessage};
  stream.message = index;
  stream.top_body_lines = top_body_lines;
  // TOP: an upper bound, as TOP sends at most the whole message.
  stream.weight = octets;
  if (top_body_lines.has_value()) {
    AppendLine("+OK");
    Push(stream);
    return;
  }
  Append("+OK ");
  AppendNumber(octets);
  Append(" octets\r\n");
  Push(stream);
  if (!retrieved_.empty()) retrieved_[index.value()] = 1;
}

void Pop3Session::OnMessageChecked(Pop3MessageCheck result) {
  if (state_ == Pop3State::kClosed) return;  // a result outliving the connection
  PH_CHECK(awaiting_ == Awaiting::kMessageCheck);
  awaiting_ = Awaiting::kNothing;
  const MessageIndex index = checking_message_;
  switch (result) {
    case Pop3MessageCheck::kIntact:
      QueueRetrieval(index, checking_top_body_lines_);
      break;
    // RFC 3206: SYS/PERM says trying again will not help until the administrator acts, which
    // is so for bytes that no longer match their checksum (or a sector that cannot be read):
    // a client must not loop on RETR, and DELE of the message still works.
    case Pop3MessageCheck::kDamaged:
      RefundDownload(index);
      AppendLocalized("-ERR [SYS/PERM]", "Message %1 is damaged in storage and was not sent",
                      {DecimalText(MessageNumber::FromIndex(index).value())});
      break;
    // SYS/TEMP: nothing is known to be wrong with the message; the check could not run now.
    case Pop3MessageCheck::kUnavailable:
      RefundDownload(index);
      AppendLine("-ERR [SYS/TEMP] Message cannot be read now, try again later");
      break;
  }
  Advance();
}

void Pop3Session::RefundDownload(MessageIndex index) {
  std::optional<uint64_t>& left = user_policy_.download_octets_left;
  if (left.has_value()) *left += snapshot_->size_octets(index);
}

void Pop3Session::CmdTop(std::string_view args) {
  std::string_view rest = args;
  const std::string_view number = NextToken(&rest);
  const std::string_view lines = NextToken(&rest);
  const std::optional<uint64_t> line_count = ParseDecimalU64(lines);
  if (!line_count.has_value()) {
    BadCommand("-ERR Invalid number of lines");
    return;
  }
  const std::optional<MessageIndex> index = ParseLiveMessage(number, "-ERR no such message");
  if (!index) return;
  // Its length is known only once the driver has scanned it: hold back the whole message.
  if (!ChargeDownload(snapshot_->size_octets(*index))) return;
  if (options_.check_stored_messages) {
    QueueCheck(*index, *line_count);
  } else {
    QueueRetrieval(*index, *line_count);
  }
}

bool Pop3Session::ChargeDownload(uint64_t octets) {
  std::optional<uint64_t>& left = user_policy_.download_octets_left;
  if (!left.has_value()) return true;
  if (octets > *left) {
    ++counters_.download_limit_refusals;
    AppendLine("-ERR [SYS/TEMP] Daily download limit reached, try again tomorrow");
    return false;
  }
  *left -= octets;
  return true;
}

void Pop3Session::OnTopLength(uint64_t message_octets, uint64_t top_octets) {
  std::optional<uint64_t>& left = user_policy_.download_octets_left;
  if (left.has_value() && top_octets < message_octets) *left += message_octets - top_octets;
}

void Pop3Session::CmdDele(std::string_view args) {
  const std::optional<MessageIndex> index = ParseLiveMessage(args, "-ERR no such message");
  if (!index) return;
  deleted_[index->value()] = 1;
  --live_count_;
  live_octets_ -= snapshot_->size_octets(*index);
  AppendLocalized("+OK", "message %1 deleted",
                  {DecimalText(MessageNumber::FromIndex(*index).value())});
}

void Pop3Session::CmdNoop(std::string_view args) { AppendLine("+OK"); }

void Pop3Session::CmdRset(std::string_view args) {
  std::fill(deleted_.begin(), deleted_.end(), 0);
  live_count_ = snapshot_->count();
  live_octets_ = snapshot_->total_octets();
  AppendMaildropSummary();
}

// ---------------------------------------------------------------------------------------------
// Output and actions

void Pop3Session::Append(std::string_view text) {
  // The first status line after a command began decides its result ("+ " SASL continuations
  // do not count).
  if (command_open_ && command_status_ < 0) {
    if (text.starts_with("+OK")) command_status_ = 1;
    if (text.starts_with("-ERR")) command_status_ = 0;
  }
  out_.append(text);
  untaken_bytes_ += text.size();
}

void Pop3Session::AppendNumber(uint64_t value) {
  char buffer[kDecimalBytesMax];
  Append(std::string_view(buffer, static_cast<size_t>(WriteDecimal(buffer, value) - buffer)));
}

void Pop3Session::AppendLine(std::string_view text) {
  if (language_ == ReplyLanguage::kGerman &&
      (text.starts_with("+OK ") || text.starts_with("-ERR "))) {
    // The status and any response code stay; the text after them is translated.
    size_t text_begin = text.find(' ') + 1;
    if (text.substr(text_begin).starts_with("[")) {
      const size_t code_end = text.find("] ", text_begin);
      if (code_end != std::string_view::npos) text_begin = code_end + 2;
    }
    Append(text.substr(0, text_begin));
    Append(LocalizeReplyText(language_, text.substr(text_begin)));
  } else {
    Append(text);
  }
  Append("\r\n");
}

void Pop3Session::AppendLocalized(std::string_view prefix, std::string_view english,
                                  std::initializer_list<std::string_view> args) {
  localized_.clear();
  localized_.append(prefix);
  localized_.push_back(' ');
  FormatReplyText(language_, english, args, &localized_);
  localized_.append("\r\n");
  Append(localized_);
}

void Pop3Session::SealWrite() {
  if (out_.size() == write_begin_) return;
  QueuedAction write{Pop3ActionKind::kWrite};
  write.begin = write_begin_;
  write.end = out_.size();
  write.weight = write.end - write.begin;  // already counted in untaken_bytes_ by Append()
  actions_.push_back(write);
  write_begin_ = out_.size();
}

void Pop3Session::Push(QueuedAction action) {
  SealWrite();
  untaken_bytes_ += action.weight;
  actions_.push_back(action);
}

void Pop3Session::QueueClose() {
  Push(QueuedAction{Pop3ActionKind::kClose});
  close_queued_ = true;
  listing_ = ListingKind::kNone;
  sasl_step_ = SaslStep::kNone;
  state_ = Pop3State::kClosed;
}

Pop3Action Pop3Session::NextAction() {
  if (action_head_ == actions_.size()) {
    SealWrite();
    if (action_head_ == actions_.size()) {
      // Everything was taken: reuse the buffers (earlier views are dead by contract) while
      // a listing goes on in pieces; otherwise give their memory back, as the session now
      // waits (for input or a result) and most sessions wait long (docs/BENCHMARKS.md,
      // memory per idle session).
      actions_.clear();
      action_head_ = 0;
      out_.clear();
      write_begin_ = 0;
      if (listing_ == ListingKind::kNone) {
        actions_.shrink_to_fit();
        out_.shrink_to_fit();
      }
      return Pop3Action{};
    }
  }
  const QueuedAction& queued = actions_[action_head_++];
  untaken_bytes_ -= queued.weight;
  taken_unflushed_bytes_ += queued.weight;
  Pop3Action action;
  action.kind = queued.kind;
  switch (queued.kind) {
    case Pop3ActionKind::kWrite:
      action.bytes = std::string_view(out_).substr(queued.begin, queued.end - queued.begin);
      break;
    case Pop3ActionKind::kStreamMessage:
    case Pop3ActionKind::kCheckMessage:
      action.message = queued.message;
      action.top_body_lines = queued.top_body_lines;
      action.message_octets = snapshot_->size_octets(queued.message);
      break;
    case Pop3ActionKind::kAuthenticate:
      action.credentials.mechanism = auth_mechanism_;
      action.credentials.authzid = auth_authzid_;
      action.credentials.user = auth_user_;
      action.credentials.secret = auth_secret_;
      if (auth_mechanism_ == AuthMechanism::kApop) {
        action.credentials.apop_timestamp = options_.apop_timestamp;
      }
      if (auth_mechanism_ == AuthMechanism::kSasl) {
        action.credentials.sasl_mechanism = sasl_mechanism_;
        action.credentials.sasl_start = sasl_start_;
        action.credentials.sasl_has_response = sasl_has_response_;
      }
      break;
    case Pop3ActionKind::kOpenMaildrop:
      action.user = account_;
      break;
    case Pop3ActionKind::kCommit:
      action.deletions = deletions_;
      break;
    case Pop3ActionKind::kDelay:
      action.delay_ms = queued.delay_ms;
      break;
    case Pop3ActionKind::kAbandonSasl:
      action.sasl_cancelled = queued.sasl_cancelled;
      break;
    case Pop3ActionKind::kNone:
    case Pop3ActionKind::kStartTls:
    case Pop3ActionKind::kClose:
      break;
  }
  return action;
}

void Pop3Session::OnOutputFlushed() {
  taken_unflushed_bytes_ = 0;
  blocked_counted_ = false;
  Advance();
}

void Pop3Session::OnConnectionLost() {
  command_open_ = false;  // an unfinished command is not reported
  // Nothing is committed: deletions marked in TRANSACTION are forgotten (RFC 1939 section 6).
  state_ = Pop3State::kClosed;
  close_queued_ = true;
  awaiting_ = Awaiting::kNothing;
  listing_ = ListingKind::kNone;
  sasl_step_ = SaslStep::kNone;
  WipeCredentials();
  actions_.clear();
  action_head_ = 0;
  out_.clear();
  write_begin_ = 0;
  untaken_bytes_ = 0;
  input_.Clear();
}

void Pop3Session::Refuse(Pop3Refusal refusal) {
  switch (refusal) {
    case Pop3Refusal::kServerAtCapacity:
      EndWith("-ERR [SYS/TEMP] Server at capacity, try again later");
      return;
    case Pop3Refusal::kServerBusy:
      EndWith("-ERR [SYS/TEMP] Server busy, try again later");
      return;
    case Pop3Refusal::kTooManyFromAddress:
      EndWith("-ERR [SYS/TEMP] Too many connections from your address");
      return;
  }
}

void Pop3Session::OnTimeout(Pop3Timeout timeout) {
  if (state_ == Pop3State::kClosed) return;
  switch (timeout) {
    case Pop3Timeout::kLogin:
      EndWith("-ERR Disconnected: no login in time");
      return;
    case Pop3Timeout::kIdle:
      EndWith("-ERR Disconnected for inactivity");
      return;
  }
}

void Pop3Session::EndWith(std::string_view line) {
  OnConnectionLost();
  AppendLine(line);
  QueueClose();
}

}  // namespace posthaste::pop3
