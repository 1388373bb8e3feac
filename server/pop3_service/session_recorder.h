// SessionRecorder: what one POP3 connection contributes to its shard's metrics and to the logs.
// It counts authentications (tenant, mechanism, result), commands (verb, status, latency, as
// the session's Pop3CommandObserver), and at the end the session (tenant, outcome), and writes
// the per-session summary line (like Dovecot's pop3_logout_format): session id, client,
// tenant, user, outcome, commands, retrieved/top counts, deleted, bytes, whether the UIDL list
// changed, duration. Passwords, SASL responses and APOP digests never reach it. It also logs
// and counts (per tenant) a session that downloads most of a large mailbox again
// (RedownloadWatch).
//
// Threading: owned by one connection, used only on its shard's thread.
#ifndef POSTHASTE_SERVER_POP3_SERVICE_SESSION_RECORDER_H_
#define POSTHASTE_SERVER_POP3_SERVICE_SESSION_RECORDER_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "base/log.h"
#include "metrics/shard_metrics.h"
#include "metrics/tenant_series.h"
#include "server/pop3/session.h"
#include "server/pop3_service/redownload_watch.h"

namespace posthaste::server {

class SessionRecorder final : public pop3::Pop3CommandObserver {
 public:
  // `metrics`, `tenants` (its series, in `metrics`) and the text `client_ip` views (the
  // connection's peer address) must outlive the recorder. `counting`: false turns off the
  // per-session/per-command counting and timing (--metrics_sessions=false); the summary log line is
  // written either way.
  SessionRecorder(metrics::ShardMetrics& metrics, metrics::ShardTenantSeries& tenants,
                  bool counting, uint32_t shard, uint64_t connection_id, std::string_view client_ip,
                  RedownloadAlarmOptions redownload_alarm = {});

  // For Pop3SessionOptions::command_observer (null when not counting).
  pop3::Pop3CommandObserver* observer() { return counting_ ? this : nullptr; }

  // A trusted proxy's XCLIENT named the client: later lines and the summary carry `ip`.
  void SetClientIp(std::string ip) { client_ip_ = std::move(ip); }
  std::string_view client_ip() const { return client_ip_; }
  // Login attempt: remembers the mechanism and the tenant of `credentials.user`.
  void AuthStarted(const pop3::Pop3Credentials& credentials);
  void AuthFinished(metrics::AuthResult result);
  // The maildrop of `account` (user@domain) is open: the session belongs to its tenant.
  void LoggedIn(std::string_view account);
  void Streamed(bool top) { ++(top ? top_ : retrieved_); }
  // The open maildrop's size, for the re-download alarm.
  void MaildropOpened(uint32_t messages, uint64_t octets) {
    redownload_.MaildropOpened(messages, octets);
  }
  // A RETR of the message at 0-based `index` (`octets` on the wire) is being sent: past the
  // alarm's share, logs "redownload alarm" and counts the session for its tenant (once).
  void Retrieving(uint32_t index, uint64_t octets);
  void MessageBytesSent(uint64_t bytes) { message_bytes_ += bytes; }
  void ReplyBytesSent(uint64_t bytes) { reply_bytes_ += bytes; }
  void CommitStarted(size_t deletions) { pending_deletions_ = deletions; }
  void CommitFinished(bool ok) {
    if (ok) deleted_ += pending_deletions_;
    pending_deletions_ = 0;
  }
  // The first outcome set wins (a QUIT that logged out stays a logout when a drain follows).
  void SetOutcome(metrics::SessionOutcome outcome) {
    if (!outcome_set_) outcome_ = outcome;
    outcome_set_ = true;
  }
  // Counts the session and logs the summary (`commands`: command lines the session handled).
  // Call once, when the connection is finished.
  void Finish(uint64_t commands);

  // A log line carrying the session's id, client and tenant, then `fields`.
  void Log(LogLevel level, std::string_view message, std::initializer_list<LogField> fields = {});

  // Pop3CommandObserver.
  void OnCommandBegin(pop3::Pop3Command command) override;
  void OnCommandEnd(pop3::Pop3Command command, bool ok) override;

 private:
  metrics::ShardMetrics& metrics_;
  metrics::ShardTenantSeries& tenants_;
  const bool counting_;
  const std::string session_id_;
  std::string client_ip_;  // changed by a trusted proxy's XCLIENT
  const uint64_t started_ns_;

  std::string user_;    // the account once logged in
  // The name of the last failed login (never the secret), for fail2ban-style log watchers.
  std::string failed_user_;
  std::string attempted_user_;
  uint32_t auth_failures_ = 0;
  std::string tenant_;  // its domain
  uint16_t tenant_series_ = metrics::TenantLabels::kNone;
  uint16_t auth_tenant_series_ = metrics::TenantLabels::kNone;
  metrics::AuthMechanismLabel auth_mechanism_ = metrics::AuthMechanismLabel::kUser;
  metrics::SessionOutcome outcome_ = metrics::SessionOutcome::kDisconnected;
  bool outcome_set_ = false;
  bool finished_ = false;

  uint64_t command_started_ns_ = 0;
  uint32_t retrieved_ = 0;
  uint32_t top_ = 0;
  uint64_t deleted_ = 0;
  uint64_t pending_deletions_ = 0;
  uint64_t message_bytes_ = 0;
  uint64_t reply_bytes_ = 0;
  RedownloadWatch redownload_;
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_POP3_SERVICE_SESSION_RECORDER_H_
