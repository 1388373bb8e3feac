// libFuzzer target for Pop3Session: arbitrary byte streams against a fake mailbox and a fake
// driver whose answers (authentication, maildrop, commit, TLS, flushes, connection loss) are
// drawn from the same input. Invariants are checked with PH_CHECK (abort = finding):
//   - every action fits the phase the driver has seen (no stream before the maildrop is open,
//     no authentication after it, nothing at all after close or while a result is pending);
//   - "+OK <n> octets" before a RETR stream names the snapshot size of that message;
//   - no stream of a message the replies said was deleted (and not since RSET);
//   - one commit at most, only after QUIT in TRANSACTION, naming exactly the deleted set;
//   - replies are whole CRLF lines with no stray CR or LF (no injection from client bytes);
//   - reply bytes taken between flushes stay within the output limit plus one reply.
//
// Input layout: bytes 0..4 configure the session and the mailbox; the rest is a sequence of
// steps, each a control byte and its operands (see Step()).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/check.h"
#include "server/auth/utf8_credential.h"
#include "server/pop3/mailbox_snapshot.h"
#include "server/pop3/session.h"
#include "tools/build/fuzz_input.h"

namespace posthaste::pop3 {
namespace {

using Input = ::posthaste::testing::FuzzInput;

enum class Phase { kAuthorization, kTransaction, kCommitted, kClosed };
enum class Pending { kNone, kAuth, kMaildrop, kCommit, kTls, kMessageCheck };

constexpr size_t kLongestReplyBytes = 1024;  // CAPA, a listing line, a sign-off

// Tenant overrides: domain "a" allows plaintext, domain "s" requires TLS.
class FuzzTenantLookup : public TenantPlaintextAuthLookup {
 public:
  TenantPlaintextAuth ForDomain(std::string_view domain) const override {
    if (domain == "a") return TenantPlaintextAuth::kAllow;
    if (domain == "s") return TenantPlaintextAuth::kRequireTls;
    return TenantPlaintextAuth::kDefault;
  }
  bool AnyAllowed() const override { return true; }
};

// Pop3CommandObserver invariants: commands begin and end in pairs, never nested, and every
// slow action (auth, maildrop, commit, TLS) belongs to an open command.
class ObserverCheck : public Pop3CommandObserver {
 public:
  void OnCommandBegin(Pop3Command command) override {
    PH_CHECK(!open);
    open = true;
    current = command;
  }
  void OnCommandEnd(Pop3Command command, bool ok) override {
    PH_CHECK(open && command == current);
    open = false;
  }
  bool open = false;
  Pop3Command current = Pop3Command::kUnknown;
};

absl::StatusOr<std::string> PrepareCredential(std::string_view text) {
  return auth::NormalizeUtf8Credential(text);
}

class Harness {
 public:
  explicit Harness(Input* input) : input_(input) {
    const uint8_t flags = input_->Byte();
    options_.policy.apop_allowed = flags & 1;
    options_.apop_timestamp = (flags & 2) ? "<1.2@fuzz>" : "";
    options_.tls_available = flags & 4;
    options_.sasl_mechanisms = (flags & 2) ? "SCRAM-SHA-256 X-FUZZ" : "";
    options_.tls_active = flags & 8;
    options_.policy.plaintext_requires_tls = flags & 16;
    options_.peer_is_loopback = flags & 32;
    options_.policy.expire_days = (flags & 64) ? std::optional<uint32_t>(7) : std::nullopt;
    if (flags & 128) options_.policy.tenant_plaintext_auth = &tenant_lookup_;
    const uint8_t limits = input_->Byte();
    options_.output_queued_bytes_max = (limits & 1) ? (limits >> 1) : 64 * 1024;
    options_.bad_commands_max = 1 + (limits % 30);
    options_.auth_failures_max = 1 + (limits % 5);
    options_.command_line_bytes_max = (limits & 2) ? 255 : 40;
    options_.sasl_line_bytes_max = (limits & 4) ? 16 * 1024 : 300;
    options_.peer_is_trusted_proxy = limits & 8;  // XCLIENT and the [XCLIENT] greeting
    options_.policy.trusted_proxy_exempt_from_tls = limits & 16;
    // RFC 6856: SASLprep'd credentials ("UTF8 USER") and a preferred language for "LANG *".
    options_.credential_preparer = (limits & 32) ? &PrepareCredential : nullptr;
    options_.preferred_language = (limits & 64) ? "de" : "";
    // RETR and TOP wait for a check of the stored bytes, answered intact, damaged or not run.
    options_.check_stored_messages = limits & 128;
    options_.hostname = "fuzz.example";
    tls_ = options_.tls_active;
    choice_seed_ = input_->Byte();

    const uint32_t messages = input_->Byte() % 24;
    const uint8_t size_seed = input_->Byte();
    MailboxSnapshot::Builder builder;
    for (uint32_t i = 0; i < messages; ++i) {
      const uint64_t size = (size_seed * 131u + i * 977u) % 5000;
      PH_CHECK(builder.Add(size, "uid-" + std::to_string(i), i).ok());
    }
    snapshot_ = std::move(builder).Build();
    options_.command_observer = &observer_;
    session_ = std::make_unique<Pop3Session>(options_);
    Drain();
  }

  void Run() {
    int steps = 0;
    while (!input_->empty() && steps++ < 4096) Step();
    // Let everything settle: answer what is pending, flush, until the session is quiet.
    for (int i = 0; i < 64 && phase_ != Phase::kClosed; ++i) {
      if (pending_ != Pending::kNone) Answer(NextChoice());
      Flush();
      if (pending_ == Pending::kNone && !session_->AwaitingResult()) break;
    }
    if (phase_ == Phase::kTransaction && session_->state() == Pop3State::kTransaction) {
      for (uint32_t i = 0; i < snapshot_->count(); ++i) {
        PH_CHECK(session_->IsMarkedDeletedForTest(MessageIndex(i)) == (deleted_.count(i) == 1));
      }
    }
  }

 private:
  // The rule the session must follow, restated: TLS (or a trusted proxy holding it, when
  // exempt), else the tenant's override, else the server-wide rule (loopback exempt when
  // configured).
  bool PlaintextAllowedFor(std::string_view user) const {
    if (tls_) return true;
    if (options_.peer_is_trusted_proxy && options_.policy.trusted_proxy_exempt_from_tls) {
      return true;  // the proxy holds the client's TLS
    }
    const bool global = !options_.policy.plaintext_requires_tls ||
                        (options_.peer_is_loopback && options_.policy.loopback_exempt_from_tls);
    const size_t at = user.rfind('@');
    if (options_.policy.tenant_plaintext_auth == nullptr || at == std::string_view::npos) {
      return global;
    }
    switch (tenant_lookup_.ForDomain(user.substr(at + 1))) {
      case TenantPlaintextAuth::kAllow:
        return true;
      case TenantPlaintextAuth::kRequireTls:
        return false;
      case TenantPlaintextAuth::kDefault:
        break;
    }
    return global;
  }

  void Step() {
    const uint8_t control = input_->Byte();
    switch (control % 8) {
      case 0:
      case 1:
      case 2:
      case 3:
        Feed(input_->Bytes(1 + control / 8));
        break;
      case 4: {
        // A line-sized chunk: up to the next LF in the input.
        std::string chunk;
        while (!input_->empty()) {
          const char c = static_cast<char>(input_->Byte());
          chunk.push_back(c);
          if (c == '\n' || chunk.size() > 600) break;
        }
        Feed(chunk);
        break;
      }
      case 5:
        Flush();
        break;
      case 6:
        if (pending_ != Pending::kNone) Answer(input_->Byte());
        break;
      case 7:
        if (control / 8 == 31) {
          session_->OnConnectionLost();
          observer_.open = false;  // an unfinished command is dropped, not ended
          const Pop3Action after = session_->NextAction();
          PH_CHECK(after.kind == Pop3ActionKind::kNone);
          phase_ = Phase::kClosed;
          pending_ = Pending::kNone;
        } else {
          auto_answer_ = !auto_answer_;
        }
        break;
    }
  }

  // Answers chosen by the driver on its own (auto mode) vary with the input's choice seed.
  uint8_t NextChoice() { return static_cast<uint8_t>(choice_seed_ + 97 * answers_++); }

  void Feed(std::string_view bytes) {
    fed_.append(bytes);
    session_->Feed(bytes);
    Drain();
  }

  void Flush() {
    taken_write_bytes_ = 0;
    session_->OnOutputFlushed();
    Drain();
  }

  void Drain() {
    for (int guard = 0; guard < 100000; ++guard) {
      const Pop3Action action = session_->NextAction();
      if (action.kind == Pop3ActionKind::kNone) return;
      // Nothing follows an action whose result is still outstanding, and nothing follows close.
      PH_CHECK(pending_ == Pending::kNone);
      PH_CHECK(phase_ != Phase::kClosed);
      Check(action);
      if (pending_ != Pending::kNone && auto_answer_) Answer(NextChoice());
    }
    PH_CHECK(false);  // the session produced actions without end
  }

  void Check(const Pop3Action& action) {
    switch (action.kind) {
      case Pop3ActionKind::kNone:
        break;
      case Pop3ActionKind::kWrite:
        CheckWrite(action.bytes);
        break;
      case Pop3ActionKind::kCheckMessage:
        PH_CHECK(options_.check_stored_messages);
        PH_CHECK(phase_ == Phase::kTransaction);
        PH_CHECK(action.message.value() < snapshot_->count());
        PH_CHECK(deleted_.count(action.message.value()) == 0);
        pending_ = Pending::kMessageCheck;
        break;
      case Pop3ActionKind::kStreamMessage: {
        PH_CHECK(phase_ == Phase::kTransaction);
        PH_CHECK(action.message.value() < snapshot_->count());
        PH_CHECK(deleted_.count(action.message.value()) == 0);
        PH_CHECK(action.message_octets == snapshot_->size_octets(action.message));
        if (action.top_body_lines.has_value()) {
          PH_CHECK(last_line_ == "+OK");
        } else {
          PH_CHECK(last_line_ ==
                   "+OK " + std::to_string(snapshot_->size_octets(action.message)) + " octets");
        }
        last_line_.clear();
        break;
      }
      case Pop3ActionKind::kAuthenticate:
        PH_CHECK(observer_.open);
        PH_CHECK(phase_ == Phase::kAuthorization);
        sasl_ = action.credentials.mechanism == AuthMechanism::kSasl;
        if (sasl_) {
          // Only an offered mechanism, spelt as offered.
          PH_CHECK(action.credentials.sasl_mechanism == "SCRAM-SHA-256" ||
                   action.credentials.sasl_mechanism == "X-FUZZ");
          PH_CHECK(session_->sasl_mechanisms().find(action.credentials.sasl_mechanism) !=
                   std::string_view::npos);
          PH_CHECK(action.credentials.sasl_has_response || action.credentials.secret.empty());
        } else if (action.credentials.mechanism == AuthMechanism::kApop) {
          PH_CHECK(options_.policy.apop_allowed && !options_.apop_timestamp.empty());
          PH_CHECK(action.credentials.apop_timestamp == options_.apop_timestamp);
          PH_CHECK(action.credentials.secret.size() == 32);
        } else {
          PH_CHECK(PlaintextAllowedFor(action.credentials.user));
        }
        auth_user_.assign(action.credentials.user);
        pending_ = Pending::kAuth;
        break;
      case Pop3ActionKind::kOpenMaildrop:
        PH_CHECK(observer_.open);
        PH_CHECK(phase_ == Phase::kAuthorization && auth_ok_);
        auth_ok_ = false;
        pending_ = Pending::kMaildrop;
        break;
      case Pop3ActionKind::kCommit: {
        PH_CHECK(observer_.open && observer_.current == Pop3Command::kQuit);
        PH_CHECK(phase_ == Phase::kTransaction);
        PH_CHECK(commits_ == 0);
        ++commits_;
        // Only QUIT commits: the client must have sent one (any case).
        bool saw_quit = false;
        for (size_t i = 0; i + 4 <= fed_.size() && !saw_quit; ++i) {
          saw_quit = (fed_[i] | 0x20) == 'q' && (fed_[i + 1] | 0x20) == 'u' &&
                     (fed_[i + 2] | 0x20) == 'i' && (fed_[i + 3] | 0x20) == 't';
        }
        PH_CHECK(saw_quit);
        std::vector<uint32_t> expected(deleted_.begin(), deleted_.end());
        PH_CHECK(action.deletions.size() == expected.size());
        for (size_t i = 0; i < expected.size(); ++i) {
          PH_CHECK(action.deletions[i].value() == expected[i]);
        }
        phase_ = Phase::kCommitted;
        pending_ = Pending::kCommit;
        break;
      }
      case Pop3ActionKind::kStartTls:
        PH_CHECK(observer_.open);
        PH_CHECK(phase_ == Phase::kAuthorization);
        PH_CHECK(options_.tls_available && !tls_);
        pending_ = Pending::kTls;
        break;
      case Pop3ActionKind::kDelay:
        PH_CHECK(phase_ == Phase::kAuthorization);
        PH_CHECK(action.delay_ms == options_.auth_failure_delay_ms);
        break;
      case Pop3ActionKind::kAbandonSasl:
        PH_CHECK(phase_ == Phase::kAuthorization && sasl_);
        sasl_ = false;
        break;
      case Pop3ActionKind::kClose:
        phase_ = Phase::kClosed;
        break;
    }
  }

  void CheckWrite(std::string_view bytes) {
    PH_CHECK(!bytes.empty());
    PH_CHECK(bytes.size() >= 2 && bytes.substr(bytes.size() - 2) == "\r\n");
    taken_write_bytes_ += bytes.size();
    PH_CHECK(taken_write_bytes_ <= options_.output_queued_bytes_max + kLongestReplyBytes);
    size_t start = 0;
    while (start < bytes.size()) {
      const size_t cr = bytes.find('\r', start);
      PH_CHECK(cr != std::string_view::npos && cr + 1 < bytes.size() && bytes[cr + 1] == '\n');
      const std::string_view line = bytes.substr(start, cr - start);
      PH_CHECK(line.find('\n') == std::string_view::npos);
      PH_CHECK(line.size() + 2 <= 512);  // RFC 2449 section 4: responses fit 512 octets
      ObserveLine(line);
      start = cr + 2;
    }
  }

  // Tracks deletions from the replies, the way a client would, in either language of LANG.
  void ObserveLine(std::string_view line) {
    last_line_.assign(line);
    if (phase_ != Phase::kTransaction) return;
    static constexpr std::string_view kDeleted[][2] = {{"+OK message ", " deleted"},
                                                       {"+OK Nachricht ", " gelöscht"}};
    for (const auto& [prefix, suffix] : kDeleted) {
      if (line.size() > prefix.size() + suffix.size() && line.starts_with(prefix) &&
          line.ends_with(suffix)) {
        const uint32_t number = static_cast<uint32_t>(std::stoul(
            std::string(line.substr(prefix.size(), line.size() - prefix.size() - suffix.size()))));
        PH_CHECK(number >= 1 && number <= snapshot_->count());
        PH_CHECK(deleted_.insert(number - 1).second);
      }
    }
    if (line.starts_with("+OK maildrop has ") || line.starts_with("+OK Postfach enthält ")) {
      deleted_.clear();  // RSET
    }
  }

  void Answer(uint8_t choice) {
    const Pending pending = pending_;
    pending_ = Pending::kNone;
    switch (pending) {
      case Pending::kNone:
        return;
      case Pending::kAuth: {
        Pop3AuthResult result;
        if (sasl_ && (choice & 0x20)) {  // another round of the exchange
          result.code = Pop3AuthResult::Code::kContinue;
          result.challenge = std::string("r=\0\xff", 4);
          session_->OnAuthResult(result);
          break;
        }
        sasl_ = false;
        switch (choice % 6) {
          case 0:
          case 1:
          case 2:
            result.code = Pop3AuthResult::Code::kOk;
            result.user = (choice & 0x40) ? auth_user_ : "";
            auth_ok_ = true;
            break;
          case 3:
            result.code = Pop3AuthResult::Code::kBadCredentials;
            break;
          case 4:
            result.code = Pop3AuthResult::Code::kTempFailure;
            break;
          default:
            result.code = (choice & 0x80) ? Pop3AuthResult::Code::kLoginDelay
                                          : Pop3AuthResult::Code::kPermFailure;
        }
        session_->OnAuthResult(result);
        break;
      }
      case Pending::kMaildrop: {
        Pop3MaildropResult result;
        switch (choice % 5) {
          case 0:
          case 1:
          case 2:
            result.code = Pop3MaildropResult::Code::kOk;
            result.snapshot = snapshot_;
            phase_ = Phase::kTransaction;
            deleted_.clear();
            break;
          case 3:
            result.code = Pop3MaildropResult::Code::kInUse;
            break;
          default:
            result.code = (choice & 0x80)   ? Pop3MaildropResult::Code::kTempFailure
                          : (choice & 0x40) ? Pop3MaildropResult::Code::kLimitReached
                                            : Pop3MaildropResult::Code::kPermFailure;
        }
        session_->OnMaildropOpened(std::move(result));
        break;
      }
      case Pending::kCommit:
        session_->OnCommitResult(choice % 3 == 0 ? Pop3CommitResult::kTempFailure
                                                 : Pop3CommitResult::kOk);
        break;
      case Pending::kTls:
        tls_ = true;
        session_->OnTlsStarted();
        break;
      case Pending::kMessageCheck:
        session_->OnMessageChecked(static_cast<Pop3MessageCheck>(choice % 3));
        break;
    }
    Drain();
  }

  FuzzTenantLookup tenant_lookup_;
  Input* input_;
  ObserverCheck observer_;
  Pop3SessionOptions options_;
  std::shared_ptr<const MailboxSnapshot> snapshot_;
  std::unique_ptr<Pop3Session> session_;
  Phase phase_ = Phase::kAuthorization;
  Pending pending_ = Pending::kNone;
  bool auto_answer_ = true;
  bool auth_ok_ = false;
  bool sasl_ = false;  // a kSasl exchange is on (the driver's side)
  bool tls_ = false;
  int commits_ = 0;
  std::set<uint32_t> deleted_;
  std::string last_line_;
  std::string auth_user_;
  std::string fed_;
  size_t taken_write_bytes_ = 0;
  uint8_t choice_seed_ = 0;
  uint32_t answers_ = 0;
};

}  // namespace
}  // namespace posthaste::pop3

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  posthaste::pop3::Input input(data, size);
  posthaste::pop3::Harness harness(&input);
  harness.Run();
  return 0;
}
