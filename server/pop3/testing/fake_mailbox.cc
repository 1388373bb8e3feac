#include "server/pop3/testing/fake_mailbox.h"

#include <utility>

#include "base/check.h"

namespace posthaste::pop3::testing {

void FakeMailbox::Add(std::string stored, std::string uidl) {
  messages_.push_back(Message{std::move(stored), std::move(uidl)});
}

void FakeMailbox::AddOfSize(uint64_t size_octets, std::string uidl) {
  std::string stored = "Subject: x\r\n\r\n";
  if (size_octets < stored.size()) {
    stored.assign(size_octets, 'x');  // degenerate: no header structure
  } else {
    while (stored.size() + 80 <= size_octets) stored.append(std::string(78, 'y') + "\r\n");
    const uint64_t left = size_octets - stored.size();
    if (left >= 2) {
      stored.append(left - 2, 'z');
      stored.append("\r\n");
    } else {
      stored.append(left, 'z');
    }
  }
  PH_CHECK(stored.size() == size_octets);
  Add(std::move(stored), std::move(uidl));
}

std::shared_ptr<const MailboxSnapshot> FakeMailbox::Snapshot() const {
  MailboxSnapshot::Builder builder;
  builder.Reserve(count(), 0);
  for (uint32_t i = 0; i < messages_.size(); ++i) {
    PH_CHECK(builder.Add(messages_[i].stored.size(), messages_[i].uidl, 1000 + i).ok());
  }
  return std::move(builder).Build();
}

std::string FakeMailbox::Render(MessageIndex index, std::optional<uint64_t> top_body_lines) const {
  const std::string& stored = messages_[index.value()].stored;
  if (!top_body_lines.has_value()) return stored + ".\r\n";
  // Header up to and including the blank line, then N body lines.
  size_t pos = stored.find("\r\n\r\n");
  if (pos == std::string::npos) return stored + ".\r\n";
  pos += 4;
  uint64_t lines = *top_body_lines;
  while (lines > 0 && pos < stored.size()) {
    const size_t eol = stored.find("\r\n", pos);
    pos = eol == std::string::npos ? stored.size() : eol + 2;
    --lines;
  }
  return stored.substr(0, pos) + ".\r\n";
}

FakeDriver::FakeDriver(Pop3SessionOptions options)
    : session_(std::make_unique<Pop3Session>(std::move(options))) {
  Pump();
}

void FakeDriver::Feed(std::string_view input, size_t fragment_bytes) {
  if (fragment_bytes == 0) fragment_bytes = input.size() == 0 ? 1 : input.size();
  while (!input.empty()) {
    const size_t n = std::min(fragment_bytes, input.size());
    session_->Feed(input.substr(0, n));
    input.remove_prefix(n);
    Pump();
  }
}

std::string FakeDriver::TakeOutput() {
  std::string out = std::move(output_);
  output_.clear();
  return out;
}

void FakeDriver::Flush() {
  taken_since_flush_ = false;
  session_->OnOutputFlushed();
  Pump();
}

void FakeDriver::Pump() {
  while (true) {
    const Pop3Action action = session_->NextAction();
    switch (action.kind) {
      case Pop3ActionKind::kNone:
        if (auto_flush_ && taken_since_flush_) {
          taken_since_flush_ = false;
          session_->OnOutputFlushed();
          continue;
        }
        return;
      case Pop3ActionKind::kWrite:
        output_.append(action.bytes);
        break;
      case Pop3ActionKind::kStreamMessage:
        PH_CHECK(open_mailbox_ != nullptr);
        {
          const std::string rendered = open_mailbox_->Render(action.message, action.top_body_lines);
          output_.append(rendered);
          if (action.top_body_lines) {
            // As a real driver does once it knows TOP's length (without ".\r\n").
            session_->OnTopLength(action.message_octets, rendered.size() - 3);
            events_.push_back("top " + std::to_string(action.message.value()) + " " +
                              std::to_string(*action.top_body_lines));
          } else {
            events_.push_back("stream " + std::to_string(action.message.value()));
          }
          break;
        }
      case Pop3ActionKind::kAuthenticate:
        last_credentials_ = action.credentials;
        last_user_.assign(action.credentials.user);
        last_secret_.assign(action.credentials.secret);
        last_authzid_.assign(action.credentials.authzid);
        last_credentials_.user = last_user_;
        last_credentials_.secret = last_secret_;
        last_credentials_.authzid = last_authzid_;
        last_credentials_.apop_timestamp = {};
        last_sasl_mechanism_.assign(action.credentials.sasl_mechanism);
        last_credentials_.sasl_mechanism = last_sasl_mechanism_;
        if (action.credentials.mechanism == AuthMechanism::kSasl) {
          events_.push_back("sasl " + last_sasl_mechanism_ +
                            (action.credentials.sasl_start ? " start " : " step ") +
                            (action.credentials.sasl_has_response ? "[" + last_secret_ + "]"
                                                                  : std::string("none")));
        } else {
          events_.push_back("auth " + std::string(AuthMechanismName(action.credentials.mechanism)) +
                            " " + last_user_);
        }
        pending_ = Pending::kAuth;
        break;
      case Pop3ActionKind::kOpenMaildrop:
        pending_user_.assign(action.user);
        events_.push_back("open " + pending_user_);
        pending_ = Pending::kMaildrop;
        break;
      case Pop3ActionKind::kCommit: {
        last_commit_.assign(action.deletions.begin(), action.deletions.end());
        std::string list;
        for (MessageIndex i : last_commit_) {
          if (!list.empty()) list += ",";
          list += std::to_string(i.value());
        }
        events_.push_back("commit " + list);
        ++commits_;
        pending_ = Pending::kCommit;
        break;
      }
      case Pop3ActionKind::kCheckMessage:
        checking_ = action.message.value();
        events_.push_back("check " + std::to_string(checking_));
        pending_ = Pending::kMessageCheck;
        break;
      case Pop3ActionKind::kStartTls:
        events_.push_back("starttls");
        pending_ = Pending::kTls;
        break;
      case Pop3ActionKind::kDelay:
        events_.push_back("delay " + std::to_string(action.delay_ms));
        break;
      case Pop3ActionKind::kAbandonSasl:
        events_.push_back(action.sasl_cancelled ? "abandon-sasl cancelled"
                                                : "abandon-sasl malformed");
        break;
      case Pop3ActionKind::kClose:
        events_.push_back("close");
        closed_ = true;
        break;
    }
    taken_since_flush_ = true;
    if (pending_ != Pending::kNone && auto_answer_) Answer();
  }
}

void FakeDriver::AnswerPending() {
  if (pending_ != Pending::kNone) Answer();
  Pump();
}

void FakeDriver::Answer() {
  const Pending pending = pending_;
  pending_ = Pending::kNone;
  switch (pending) {
    case Pending::kNone:
      return;
    case Pending::kAuth: {
      Pop3AuthResult result;
      auto it = accounts_.find(last_user_);
      if (last_credentials_.mechanism == AuthMechanism::kSasl) {
        result.code = Pop3AuthResult::Code::kBadCredentials;
        if (sasl_answer) {
          result = sasl_answer(last_sasl_mechanism_, last_credentials_.sasl_start,
                               last_credentials_.sasl_has_response
                                   ? std::optional<std::string_view>(last_secret_)
                                   : std::nullopt);
        }
      } else if (it == accounts_.end()) {
        result.code = Pop3AuthResult::Code::kBadCredentials;
      } else if (it->second.auth_code.has_value()) {
        result.code = *it->second.auth_code;
      } else if (last_credentials_.mechanism == AuthMechanism::kApop) {
        result.code = last_secret_ == it->second.apop_digest
                          ? Pop3AuthResult::Code::kOk
                          : Pop3AuthResult::Code::kBadCredentials;
      } else {
        result.code = last_secret_ == it->second.password ? Pop3AuthResult::Code::kOk
                                                          : Pop3AuthResult::Code::kBadCredentials;
      }
      session_->OnAuthResult(result);
      return;
    }
    case Pending::kMaildrop: {
      Pop3MaildropResult result;
      auto it = accounts_.find(pending_user_);
      PH_CHECK(it != accounts_.end());
      if (it->second.in_use) {
        result.code = Pop3MaildropResult::Code::kInUse;
      } else if (it->second.maildrop_code.has_value()) {
        result.code = *it->second.maildrop_code;
      } else {
        PH_CHECK(it->second.mailbox != nullptr);
        result.code = Pop3MaildropResult::Code::kOk;
        result.snapshot = it->second.mailbox->Snapshot();
        result.user_policy = it->second.user_policy;
        open_mailbox_ = it->second.mailbox;
      }
      session_->OnMaildropOpened(std::move(result));
      return;
    }
    case Pending::kCommit:
      session_->OnCommitResult(commit_result_);
      return;
    case Pending::kMessageCheck: {
      auto it = message_checks_.find(checking_);
      session_->OnMessageChecked(it == message_checks_.end() ? Pop3MessageCheck::kIntact
                                                             : it->second);
      return;
    }
    case Pending::kTls:
      session_->OnTlsStarted();
      return;
  }
}

}  // namespace posthaste::pop3::testing
