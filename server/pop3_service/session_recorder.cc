#include "server/pop3_service/session_recorder.h"

#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace posthaste::server {
namespace {

metrics::AuthMechanismLabel MechanismOf(pop3::AuthMechanism mechanism) {
  switch (mechanism) {
    case pop3::AuthMechanism::kUserPass:
      return metrics::AuthMechanismLabel::kUser;
    case pop3::AuthMechanism::kApop:
      return metrics::AuthMechanismLabel::kApop;
    case pop3::AuthMechanism::kSaslPlain:
      return metrics::AuthMechanismLabel::kPlain;
    case pop3::AuthMechanism::kSaslLogin:
      return metrics::AuthMechanismLabel::kLogin;
    case pop3::AuthMechanism::kSasl:
      return metrics::AuthMechanismLabel::kSasl;
  }
  return metrics::AuthMechanismLabel::kUser;
}

static_assert(static_cast<size_t>(pop3::Pop3Command::kUnknown) ==
                  static_cast<size_t>(metrics::Command::kUnknown),
              "pop3::Pop3Command and metrics::Command must list the commands in the same order");

constexpr size_t kLoggedNameBytesMax = 256;  // a longer login name is cut in the log

// The monotonic clock (CLOCK_MONOTONIC, as the reactor's timers), read here directly so that
// the recorder, and the protocol adapters that own one, need no reactor.
uint64_t MonotonicNowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace

SessionRecorder::SessionRecorder(metrics::ShardMetrics& metrics,
                                 metrics::ShardTenantSeries& tenants, bool counting, uint32_t shard,
                                 uint64_t connection_id, std::string_view client_ip,
                                 RedownloadAlarmOptions redownload_alarm)
    : metrics_(metrics),
      tenants_(tenants),
      counting_(counting),
      session_id_(absl::StrCat(shard, "-", connection_id)),
      client_ip_(client_ip),
      started_ns_(MonotonicNowNs()),
      redownload_(redownload_alarm) {}

void SessionRecorder::AuthStarted(const pop3::Pop3Credentials& credentials) {
  auth_mechanism_ = MechanismOf(credentials.mechanism);
  // Bounded: the name is the client's text.
  attempted_user_.assign(credentials.user.substr(0, kLoggedNameBytesMax));
  auth_tenant_series_ =
      counting_ ? tenants_.SeriesOfAddress(credentials.user) : metrics::TenantLabels::kOther;
}

void SessionRecorder::AuthFinished(metrics::AuthResult result) {
  if (counting_) metrics_.CountAuth(auth_tenant_series_, auth_mechanism_, result);
  if (result != metrics::AuthResult::kOk) {
    ++auth_failures_;
    failed_user_ = std::move(attempted_user_);
  }
  std::string().swap(attempted_user_);  // only a failure's name is kept, for the log
}

void SessionRecorder::LoggedIn(std::string_view account) {
  user_ = std::string(account);
  const size_t at = user_.rfind('@');
  tenant_ = at == std::string::npos ? std::string() : user_.substr(at + 1);
  if (counting_) {
    tenant_series_ = tenants_.SeriesOfAddress(account);
    tenants_.CountLogin(account);  // what the label ranking orders tenants by
  }
}

void SessionRecorder::Retrieving(uint32_t index, uint64_t octets) {
  if (!redownload_.Retrieved(index, octets)) return;
  // Counted even with --metrics_sessions=false (then as "other": no tenant series is looked up).
  metrics_.CountRedownloadSession(counting_ ? tenant_series_ : metrics::TenantLabels::kOther);
  Log(LogLevel::kWarning, "redownload alarm",
      {{"user", user_},
       {"retrieved", std::to_string(redownload_.retrieved())},
       {"messages", std::to_string(redownload_.messages())},
       {"retrieved_bytes", std::to_string(redownload_.retrieved_octets())},
       {"mailbox_bytes", std::to_string(redownload_.mailbox_octets())}});
}

void SessionRecorder::OnCommandBegin(pop3::Pop3Command command) {
  command_started_ns_ = MonotonicNowNs();
}

void SessionRecorder::OnCommandEnd(pop3::Pop3Command command, bool ok) {
  metrics_.CountCommand(static_cast<metrics::Command>(command),
                        ok ? metrics::CommandResult::kOk : metrics::CommandResult::kErr,
                        MonotonicNowNs() - command_started_ns_);
  if (command == pop3::Pop3Command::kQuit) {
    if (!ok) {
      SetOutcome(metrics::SessionOutcome::kCommitFailed);
    } else {
      SetOutcome(user_.empty() ? metrics::SessionOutcome::kQuit : metrics::SessionOutcome::kLogout);
    }
  }
}

void SessionRecorder::Log(LogLevel level, std::string_view message,
                          std::initializer_list<LogField> fields) {
  std::vector<LogField> all = {
      {"session", session_id_}, {"client", std::string(client_ip_)}, {"tenant", tenant_}};
  all.insert(all.end(), fields.begin(), fields.end());
  LogEvent(level, message, std::span<const LogField>(all));
}

void SessionRecorder::Finish(uint64_t commands) {
  if (finished_) return;
  finished_ = true;
  if (counting_) metrics_.CountSession(tenant_series_, outcome_);
  const uint64_t duration_ms = (MonotonicNowNs() - started_ns_) / 1'000'000;
  Log(LogLevel::kInfo, "session end",
      {{"user", user_},
       {"outcome", std::string(metrics::SessionOutcomeLabel(outcome_))},
       {"commands", std::to_string(commands)},
       {"retrieved", std::to_string(retrieved_)},
       {"top", std::to_string(top_)},
       {"deleted", std::to_string(deleted_)},
       {"message_bytes", std::to_string(message_bytes_)},
       {"bytes_out", std::to_string(message_bytes_ + reply_bytes_)},
       {"uidls_changed", deleted_ > 0 ? "true" : "false"},
       {"auth_failures", std::to_string(auth_failures_)},
       {"failed_user", failed_user_},
       {"duration_ms", std::to_string(duration_ms)}});
}

}  // namespace posthaste::server
