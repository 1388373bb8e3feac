#include "server/pop3_service/pop3_adapter.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "base/check.h"
#include "base/log.h"
#include "server/auth/utf8_credential.h"

namespace posthaste::server::pop3_service {
namespace {

using pop3::Pop3ActionKind;
using pop3::Pop3State;

constexpr std::string_view kTerminator = ".\r\n";
constexpr uint64_t kNsPerMs = 1'000'000;
// While a clock has run out but a result or the peer's reading holds the timeout back.
constexpr uint64_t kRecheckNs = 1'000'000'000;

metrics::AuthResult AuthResultOf(pop3::Pop3AuthResult::Code code) {
  switch (code) {
    case pop3::Pop3AuthResult::Code::kOk:
      return metrics::AuthResult::kOk;
    case pop3::Pop3AuthResult::Code::kBadCredentials:
    case pop3::Pop3AuthResult::Code::kLoginDelay:
    case pop3::Pop3AuthResult::Code::kContinue:  // never asked for (a step, not a verdict)
      return metrics::AuthResult::kFailed;
    case pop3::Pop3AuthResult::Code::kTempFailure:
      return metrics::AuthResult::kTempFailure;
    case pop3::Pop3AuthResult::Code::kPermFailure:
    case pop3::Pop3AuthResult::Code::kMechanismRefused:
      return metrics::AuthResult::kPermFailure;
  }
  return metrics::AuthResult::kFailed;
}

// RFC 6856 "UTF8 USER": names and passwords as offered at login are SASLprep'd queries.
absl::StatusOr<std::string> PrepareLoginCredential(std::string_view text) {
  return auth::NormalizeUtf8Credential(text, auth::Utf8CredentialUse::kQuery);
}

pop3::Pop3SessionOptions WithObserver(pop3::Pop3SessionOptions options,
                                      pop3::Pop3CommandObserver* observer,
                                      const Pop3Backend& backend) {
  options.command_observer = observer;
  options.credential_preparer = &PrepareLoginCredential;
  // Implicit TLS: no binding until the handshake is done (nothing is parsed before it).
  options.sasl_mechanisms = backend.SaslMechanismsOffered(options.tls_active, false, false);
  return options;
}

}  // namespace

Pop3Adapter::Pop3Adapter(uint64_t id, std::unique_ptr<transport::Transport> transport,
                         Pop3Backend& backend, Pop3AdapterOptions options)
    : id_(id),
      transport_(std::move(transport)),
      backend_(backend),
      metrics_(options.metrics),
      auth_timeout_ns_(options.auth_timeout_ns),
      idle_timeout_ns_(options.idle_timeout_ns),
      recorder_(*options.metrics, *options.tenant_series, options.count_sessions, options.shard, id,
                transport_->peer().ip, options.redownload_alarm),
      session_(WithObserver(std::move(options.session), recorder_.observer(), backend)),
      implicit_tls_(options.implicit_tls),
      handshaking_(options.implicit_tls) {
  connected_ns_ = last_input_ns_ = transport_->NowNs();
}

Pop3Adapter::~Pop3Adapter() = default;

// ---- Entry points from the shard ----

void Pop3Adapter::Start() {
  transport_->Start(this);
  ArmDeadline();
  if (backend_.Admit(id_, transport_->peer())) OnAdmitted(std::nullopt);
}

void Pop3Adapter::Refuse(pop3::Pop3Refusal refusal) {
  transport_->Start(this);
  OnAdmitted(refusal);
}

void Pop3Adapter::Abort() {
  recorder_.SetOutcome(metrics::SessionOutcome::kAborted);
  BeginClose(/*abort=*/true);
}

bool Pop3Adapter::IdleInTransactionFor(uint64_t idle_ns) const {
  return phase_ == Phase::kOpen && session_.state() == Pop3State::kTransaction &&
         !session_.AwaitingResult() && hold_ == Hold::kNone && !transport_->OutputPending() &&
         transport_->NowNs() - last_input_ns_ >= idle_ns;
}

// ---- Backend answers ----

void Pop3Adapter::OnAdmitted(std::optional<pop3::Pop3Refusal> refusal) {
  if (phase_ != Phase::kAdmitting) return;
  if (refusal.has_value()) {
    recorder_.SetOutcome(metrics::SessionOutcome::kRefused);
    if (implicit_tls_) {  // no plaintext reply is possible before a handshake
      BeginClose(/*abort=*/false);
      return;
    }
    session_.Refuse(*refusal);
  }
  phase_ = Phase::kOpen;
  Drive();
}

void Pop3Adapter::OnAuthenticated(const pop3::Pop3AuthResult& result) {
  if (phase_ != Phase::kOpen) return;
  // A SASL challenge is a step, not a verdict.
  if (result.code != pop3::Pop3AuthResult::Code::kContinue) {
    recorder_.AuthFinished(AuthResultOf(result.code));
  }
  session_.OnAuthResult(result);
  Drive();
}

void Pop3Adapter::OnMaildropOpened(Pop3MaildropOpened opened) {
  if (phase_ != Phase::kOpen) return;
  if (opened.code == pop3::Pop3MaildropResult::Code::kOk) {
    PH_CHECK(opened.maildrop != nullptr);
    maildrop_ = std::move(opened.maildrop);
    recorder_.LoggedIn(session_.user());
    if (opened.idle_timeout_ns != 0) idle_timeout_ns_ = opened.idle_timeout_ns;
    const auto view = maildrop_->view();
    recorder_.MaildropOpened(view->count(), view->total_octets());
    session_.OnMaildropOpened({pop3::Pop3MaildropResult::Code::kOk, view, opened.user_policy});
    last_input_ns_ = transport_->NowNs();  // TRANSACTION's idle clock starts now
  } else {
    if (!opened.error.ok()) {
      recorder_.Log(LogLevel::kWarning, "opening maildrop failed",
                    {{"user", std::string(session_.user())}, {"error", opened.error.ToString()}});
    }
    session_.OnMaildropOpened({opened.code, nullptr});
  }
  Drive();
}

void Pop3Adapter::OnMessageChecked(absl::Status status) {
  if (phase_ != Phase::kOpen) return;
  pop3::Pop3MessageCheck result = pop3::Pop3MessageCheck::kIntact;
  if (!status.ok()) {
    // Unavailable: the check did not run (a full queue, no memory); nothing is known to be
    // wrong with the message. Anything else: its bytes are not what was delivered.
    const bool unavailable = absl::IsUnavailable(status);
    result = unavailable ? pop3::Pop3MessageCheck::kUnavailable : pop3::Pop3MessageCheck::kDamaged;
    const uint64_t number = pop3::MessageNumber::FromIndex(checking_message_).value();
    recorder_.Log(unavailable ? LogLevel::kWarning : LogLevel::kError,
                  unavailable ? "stored message not checked, refused for now"
                              : "stored message damaged, refused instead of sent",
                  {{"user", std::string(session_.user())},
                   {"message", std::to_string(number)},
                   {"uidl", std::string(maildrop_->view()->uidl(checking_message_))},
                   {"error", status.ToString()}});
  }
  session_.OnMessageChecked(result);
  Drive();
}

void Pop3Adapter::OnTopLength(absl::StatusOr<uint64_t> length) {
  if (phase_ != Phase::kOpen || hold_ != Hold::kTopLength) return;
  hold_ = Hold::kNone;
  if (!length.ok()) {
    recorder_.Log(LogLevel::kError, "TOP failed", {{"error", length.status().ToString()}});
    BeginClose(/*abort=*/true);  // the status line has gone out: no reply can follow
    return;
  }
  if (*length >= top_range_.length) {  // the whole message: a retrieval (EXPIRE 0 and n)
    session_.OnWholeMessageSentByTop(top_message_);
    NoteRetrieved(top_message_);
  }
  top_range_.length = std::min(*length, top_range_.length);
  session_.OnTopLength(top_message_octets_, top_range_.length);
  backend_.Downloaded(id_, top_range_.length);
  if (top_range_.length > 0) transport_->SendFile(top_range_);
  transport_->Send(kTerminator);
  unflushed_ = true;
  Drive();
}

void Pop3Adapter::OnCommitted(absl::Status status) {
  if (phase_ != Phase::kOpen) return;
  recorder_.CommitFinished(status.ok());
  if (!status.ok()) {
    recorder_.Log(LogLevel::kWarning, "commit failed",
                  {{"user", std::string(session_.user())}, {"error", status.ToString()}});
  }
  session_.OnCommitResult(status.ok() ? pop3::Pop3CommitResult::kOk
                                      : pop3::Pop3CommitResult::kTempFailure);
  Drive();
}

// ---- Transport callbacks ----

void Pop3Adapter::OnReceive(std::string_view bytes) {
  if (phase_ != Phase::kOpen && phase_ != Phase::kAdmitting) return;
  session_.Feed(bytes);  // before admission it waits, parsed, behind the greeting
  NoteCommandLines();
  if (phase_ == Phase::kOpen) {
    Drive();
  } else if (!session_.WantsInput() && !receive_paused_) {
    receive_paused_ = true;
    transport_->PauseReceive();
  }
}

void Pop3Adapter::OnPeerFinished() {
  peer_finished_ = true;
  if (phase_ == Phase::kOpen) Drive();
}

void Pop3Adapter::OnOutputDrained() {
  if (phase_ == Phase::kOpen) Drive();
}

void Pop3Adapter::OnTlsStarted(const transport::TlsSessionInfo& info) {
  if (phase_ != Phase::kOpen && phase_ != Phase::kAdmitting) return;
  handshaking_ = false;
  has_tls_exporter_ = info.tls_exporter.size() == tls_exporter_.size();
  if (has_tls_exporter_) {
    std::copy(info.tls_exporter.begin(), info.tls_exporter.end(), tls_exporter_.begin());
  }
  // A client CA speaks for its own tenant only: an identity of another tenant is not used.
  client_certificate_identity_.clear();
  if (auth::IdentityFitsCertificateName(info.client_certificate_identity, info.certificate_name)) {
    client_certificate_identity_.assign(info.client_certificate_identity);
  }
  session_.SetSaslMechanisms(backend_.SaslMechanismsOffered(
      /*tls=*/true, has_tls_exporter_, !client_certificate_identity_.empty()));
  metrics_->CountTlsHandshake(
      metrics::TlsVersionFromName(info.version),
      info.resumed ? metrics::TlsOutcome::kResumed : metrics::TlsOutcome::kOk);
  if (!implicit_tls_) session_.OnTlsStarted();
  if (phase_ == Phase::kOpen) Drive();
}

void Pop3Adapter::OnDeadline() {
  deadline_ns_ = 0;
  if (phase_ != Phase::kOpen && phase_ != Phase::kAdmitting) return;
  const uint64_t now = transport_->NowNs();
  if (hold_ == Hold::kDelay && now >= delay_until_ns_) hold_ = Hold::kNone;
  const bool login_over = now >= connected_ns_ + auth_timeout_ns_;
  if (handshaking_ && login_over) {  // a TLS handshake that never finishes
    end_cause_ = Pop3EndCause::kLoginTimeout;
    BeginClose(/*abort=*/true);
    return;
  }
  const Pop3State state = session_.state();
  if (state == Pop3State::kAuthorization && !session_.AwaitingResult() && login_over) {
    TimeOut(pop3::Pop3Timeout::kLogin);
    return;
  }
  if (state == Pop3State::kTransaction && !session_.AwaitingResult() && hold_ == Hold::kNone &&
      !transport_->OutputPending() && now >= last_input_ns_ + idle_timeout_ns_) {
    TimeOut(pop3::Pop3Timeout::kIdle);
    return;
  }
  if (phase_ == Phase::kOpen) {
    Drive();  // a delay may be over
  } else {
    ArmDeadline();
  }
}

void Pop3Adapter::OnClosed(transport::CloseReason reason) {
  const bool ended = phase_ == Phase::kClosing;
  phase_ = Phase::kClosed;
  if (!ended) {  // the transport ended it (peer reset, send stall, TLS error)
    if (session_.state() != Pop3State::kClosed) session_.OnConnectionLost();
    backend_.Ended(id_);
  }
  if (reason == transport::CloseReason::kTlsFailed && handshaking_) {
    metrics_->CountTlsHandshake(metrics::TlsVersion::kOther, metrics::TlsOutcome::kFailed);
  }
  if (reason == transport::CloseReason::kSendStalled) {
    end_cause_ = Pop3EndCause::kSendStalled;
    recorder_.SetOutcome(metrics::SessionOutcome::kTimeout);
    recorder_.Log(LogLevel::kInfo, "send stalled, closing");
  }
  const Pop3ConnectionEnd end{
      .reason = reason, .cause = end_cause_, .session = session_.counters()};
  recorder_.ReplyBytesSent(transport_->totals().reply_bytes_sent);
  recorder_.MessageBytesSent(transport_->totals().file_bytes_sent);
  recorder_.Finish(end.session.commands);
  backend_.Finished(id_, end);
}

// ---- The action loop ----

void Pop3Adapter::NoteCommandLines() {
  // The idle clock restarts on a whole command line, not on any byte: a peer dribbling one
  // byte a second of a line it never ends would otherwise hold its session for ever.
  const uint64_t commands = session_.counters().commands;
  if (commands != commands_seen_) {
    commands_seen_ = commands;
    last_input_ns_ = transport_->NowNs();
  }
}

void Pop3Adapter::Drive() {
  PH_CHECK(!driving_);
  driving_ = true;
  TakeActions();
  NoteCommandLines();  // parsing resumed behind drained output counts as input too
  if (phase_ == Phase::kOpen) {
    const bool want_input = session_.WantsInput() && !peer_finished_;
    if (want_input == receive_paused_) {
      receive_paused_ = !want_input;
      if (want_input) {
        transport_->ResumeReceive();
      } else {
        transport_->PauseReceive();
      }
    }
    if (peer_finished_ && handshaking_) {
      BeginClose(/*abort=*/false);  // gone in mid-handshake: nothing can be answered
    } else if (peer_finished_ && hold_ == Hold::kNone && !session_.AwaitingResult() &&
               !transport_->OutputPending()) {
      BeginClose(/*abort=*/false);  // everything the peer sent has been answered
    }
  }
  if (phase_ == Phase::kOpen) ArmDeadline();
  driving_ = false;
}

void Pop3Adapter::TakeActions() {
  for (;;) {
    while (phase_ == Phase::kOpen && hold_ == Hold::kNone) {
      const pop3::Pop3Action action = session_.NextAction();
      if (action.kind == Pop3ActionKind::kNone) break;
      Handle(action);
    }
    if (phase_ != Phase::kOpen) return;
    if (unflushed_) {
      unflushed_ = false;
      transport_->Flush();  // once per batch: a reply line and the body after it travel together
    }
    if (hold_ != Hold::kNone || !taken_unflushed_ || transport_->OutputPending()) return;
    taken_unflushed_ = false;
    session_.OnOutputFlushed();  // may parse buffered commands and make more actions
  }
}

void Pop3Adapter::Handle(const pop3::Pop3Action& action) {
  switch (action.kind) {
    case Pop3ActionKind::kNone:
      break;
    case Pop3ActionKind::kWrite:
      transport_->Send(action.bytes);
      unflushed_ = taken_unflushed_ = true;
      break;
    case Pop3ActionKind::kStreamMessage:
      StartStream(action);
      break;
    case Pop3ActionKind::kCheckMessage:
      checking_message_ = action.message;
      backend_.CheckMessage(id_, maildrop_, action.message);
      break;
    case Pop3ActionKind::kAuthenticate:
      if (!session_.xclient_address().empty()) {
        // XCLIENT comes before any login step: the address is final by now. The log lines and
        // the backend's per-(user, IP) accounting name the client, not the proxy.
        recorder_.SetClientIp(std::string(session_.xclient_address()));
        backend_.ClientNamed(id_, session_.xclient_address());
      }
      if (action.credentials.mechanism == pop3::AuthMechanism::kSasl) {
        if (action.credentials.sasl_start) recorder_.AuthStarted(action.credentials);
        auth::SaslConnectionFacts facts;
        facts.tls = transport_->tls_active();
        if (has_tls_exporter_)
          facts.tls_exporter.assign(tls_exporter_.begin(), tls_exporter_.end());
        facts.client_certificate_identity = client_certificate_identity_;
        backend_.StepSasl(id_, action.credentials, facts);
        break;
      }
      recorder_.AuthStarted(action.credentials);
      backend_.Authenticate(id_, action.credentials);
      break;
    case Pop3ActionKind::kAbandonSasl:
      backend_.AbandonSasl(id_, action.sasl_cancelled);
      break;
    case Pop3ActionKind::kOpenMaildrop:
      backend_.OpenMaildrop(id_, action.user);
      break;
    case Pop3ActionKind::kCommit:
      recorder_.CommitStarted(action.deletions.size());
      backend_.Commit(
          id_, maildrop_,
          std::vector<pop3::MessageIndex>(action.deletions.begin(), action.deletions.end()),
          RetrievedMessages());
      break;
    case Pop3ActionKind::kStartTls:
      StartTls();
      break;
    case Pop3ActionKind::kDelay:
      hold_ = Hold::kDelay;
      delay_until_ns_ = transport_->NowNs() + uint64_t{action.delay_ms} * kNsPerMs;
      break;
    case Pop3ActionKind::kClose:
      BeginClose(/*abort=*/false);
      break;
  }
}

void Pop3Adapter::NoteRetrieved(pop3::MessageIndex message) {
  // One bit per message of the maildrop, however often a client repeats RETR.
  if (retrieved_.empty()) retrieved_.resize(maildrop_->view()->count());
  if (message.value() < retrieved_.size()) retrieved_[message.value()] = true;
}

std::vector<pop3::MessageIndex> Pop3Adapter::RetrievedMessages() const {
  std::vector<pop3::MessageIndex> out;
  for (uint32_t i = 0; i < retrieved_.size(); ++i) {
    if (retrieved_[i]) out.emplace_back(i);
  }
  return out;
}

void Pop3Adapter::StartStream(const pop3::Pop3Action& action) {
  recorder_.Streamed(action.top_body_lines.has_value());
  if (!action.top_body_lines.has_value()) NoteRetrieved(action.message);
  taken_unflushed_ = true;
  const transport::FileRange range = maildrop_->Locate(action.message);  // the only lookup
  if (action.top_body_lines.has_value()) {
    top_range_ = range;
    top_message_ = action.message;
    top_message_octets_ = action.message_octets;
    hold_ = Hold::kTopLength;
    backend_.FindTopLength(id_, maildrop_, action.message, *action.top_body_lines);
    return;
  }
  recorder_.Retrieving(action.message.value(), range.length);
  backend_.Downloaded(id_, action.message_octets);
  if (range.length > 0) transport_->SendFile(range);
  transport_->Send(kTerminator);
  unflushed_ = true;
}

void Pop3Adapter::StartTls() {
  if (!transport_->tls_available() || transport_->tls_active()) {
    recorder_.Log(LogLevel::kWarning, "session asked for TLS that is not available");
    BeginClose(/*abort=*/true);
    return;
  }
  handshaking_ = true;
  transport_->StartTls();  // the "+OK" queued before still goes out in plaintext
}

// ---- Timeouts ----

void Pop3Adapter::TimeOut(pop3::Pop3Timeout timeout) {
  end_cause_ = timeout == pop3::Pop3Timeout::kLogin ? Pop3EndCause::kLoginTimeout
                                                    : Pop3EndCause::kIdleTimeout;
  recorder_.SetOutcome(metrics::SessionOutcome::kTimeout);
  if (transport_->OutputPending()) {  // the peer is not reading what it has either
    BeginClose(/*abort=*/true);
    return;
  }
  session_.OnTimeout(timeout);  // commits nothing; its last reply, then close
  hold_ = Hold::kNone;
  phase_ = Phase::kOpen;
  Drive();
}

void Pop3Adapter::ArmDeadline() {
  const bool authorizing = session_.state() == Pop3State::kAuthorization || handshaking_;
  uint64_t deadline =
      authorizing ? connected_ns_ + auth_timeout_ns_ : last_input_ns_ + idle_timeout_ns_;
  if (hold_ == Hold::kDelay) deadline = std::min(deadline, delay_until_ns_);
  const uint64_t now = transport_->NowNs();
  if (deadline <= now) deadline = now + kRecheckNs;  // a result or the peer holds it back
  // A deadline already set earlier stays: it fires, and the next one is worked out then (so
  // input, which moves the idle clock, does not reset a timer each time).
  if (deadline_ns_ != 0 && deadline_ns_ <= deadline) return;
  deadline_ns_ = deadline;
  transport_->SetDeadline(deadline);
}

// ---- Closing ----

void Pop3Adapter::BeginClose(bool abort) {
  if (phase_ == Phase::kClosing || phase_ == Phase::kClosed) return;
  phase_ = Phase::kClosing;
  if (session_.state() != Pop3State::kClosed) session_.OnConnectionLost();
  backend_.Ended(id_);
  if (deadline_ns_ != 0) {
    deadline_ns_ = 0;
    transport_->SetDeadline(0);
  }
  if (abort) {
    transport_->Abort();
  } else {
    transport_->Close();
  }
}

}  // namespace posthaste::server::pop3_service
