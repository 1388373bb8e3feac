#include "server/live_sessions.h"

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "base/strings.h"
#include "server/shard_query.h"

namespace posthaste::server {
namespace {

std::string_view StateName(const pop3::Pop3Session& session, bool closing) {
  if (closing) return "closing";
  switch (session.state()) {
    case pop3::Pop3State::kAuthorization:
      return "authorization";
    case pop3::Pop3State::kTransaction:
      return "transaction";
    case pop3::Pop3State::kUpdate:
      return "update";
    case pop3::Pop3State::kClosed:
      break;
  }
  return "closing";
}

std::string_view DomainOf(std::string_view address) {
  const size_t at = address.rfind('@');
  return at == std::string_view::npos ? std::string_view() : address.substr(at + 1);
}

bool Matches(const admin::LiveSessionFilter& filter, std::string_view user) {
  if (filter.user.has_value() && !absl::EqualsIgnoreCase(AbslView(user), *filter.user)) {
    return false;
  }
  if (filter.tenant.has_value() &&
      (user.empty() || !absl::EqualsIgnoreCase(AbslView(DomainOf(user)), *filter.tenant))) {
    return false;
  }
  return true;
}

// What one shard found, copied on its thread (REQUIRES: on `shard`'s thread).
std::vector<admin::LiveSession> SessionsOn(Pop3Shard& shard, const admin::LiveSessionFilter& filter,
                                           size_t max, int64_t now_unix_ms) {
  std::vector<admin::LiveSession> out;
  for (uint64_t id : shard.connections.Ids()) {
    const pop3_service::Pop3Adapter* conn = shard.connections.Find(id);
    if (conn == nullptr) continue;
    const pop3::Pop3Session& session = conn->session();
    if (!Matches(filter, session.user())) continue;
    if (out.size() == max) break;  // one past the caller's bound: it marks the list truncated
    const pop3_service::Pop3Adapter::AdminView view = conn->ViewForAdmin();
    admin::LiveSession s;
    s.shard = shard.index;
    s.connection = id;
    s.user = std::string(session.user());
    s.tenant = std::string(DomainOf(session.user()));
    s.peer = std::string(view.client_ip);
    s.started_unix_ms = now_unix_ms - static_cast<int64_t>(view.age_ns / 1'000'000);
    s.state = std::string(StateName(session, view.closing));
    s.tls = session.tls_active();
    s.bytes_sent = view.bytes_sent;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace

absl::StatusOr<admin::LiveSessionList> LiveSessions::List(const admin::LiveSessionFilter& filter) {
  std::vector<uint32_t> shards(service_->shards.size());
  for (uint32_t i = 0; i < shards.size(); ++i) shards[i] = i;
  const int64_t now_unix_ms = absl::ToUnixMillis(absl::Now());
  Pop3Service* service = service_;
  ShardAnswers<std::vector<admin::LiveSession>> found = AskShards<std::vector<admin::LiveSession>>(
      *reactor_, shards,
      [service, filter, now_unix_ms](uint32_t shard) {
        return SessionsOn(*service->shards[shard], filter, kListedSessionsMax + 1, now_unix_ms);
      },
      wait_);
  admin::LiveSessionList list;
  for (std::optional<std::vector<admin::LiveSession>>& answer : found.answers) {
    if (!answer.has_value()) {
      ++list.shards_unanswered;
      continue;
    }
    for (admin::LiveSession& s : *answer) {
      if (list.sessions.size() == kListedSessionsMax) {
        list.truncated = true;
        break;
      }
      list.sessions.push_back(std::move(s));
    }
  }
  if (!shards.empty() && list.shards_unanswered == shards.size()) {
    return absl::UnavailableError("no shard answered in time; ask again");
  }
  return list;
}

absl::Status LiveSessions::End(uint32_t shard_index, uint64_t connection) {
  const std::string id = absl::StrCat(shard_index, "-", connection);
  if (shard_index >= service_->shards.size()) {
    return absl::NotFoundError(absl::StrCat("no session ", id));
  }
  Pop3Service* service = service_;
  ShardAnswers<bool> ended = AskShards<bool>(
      *reactor_, {shard_index},
      [service, connection, id](uint32_t shard) {
        pop3_service::Pop3Adapter* conn = service->shards[shard]->connections.Find(connection);
        if (conn == nullptr) return false;
        LogEvent(LogLevel::kInfo, "session ended by the admin API",
                 {{"user", std::string(conn->session().user())}, {"session", id}});
        // Closed without a reply and without UPDATE, as the idle timeout would (RFC 1939: no
        // unsolicited responses in POP3).
        conn->Abort();
        return true;
      },
      wait_);
  if (ended.answers[0].has_value()) {
    if (*ended.answers[0]) return absl::OkStatus();
    return absl::NotFoundError(absl::StrCat("no session ", id));
  }
  if (ended.all_settled) {
    return absl::UnavailableError("the shard could not be asked (busy or stopping)");
  }
  return absl::DeadlineExceededError("the shard did not answer in time");
}

}  // namespace posthaste::server
