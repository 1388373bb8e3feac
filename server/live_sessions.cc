#include "server/live_sessions.h"

#include <condition_variable>
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
  struct Gather {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::unique_ptr<std::vector<admin::LiveSession>>> found;  // by mu, per shard
    uint32_t settled = 0;  // by mu: requests run, refused, or destroyed unrun
  };
  // Settles its shard's request when the last closure holding it goes.
  struct Request {
    explicit Request(std::shared_ptr<Gather> g) : gather(std::move(g)) {}
    ~Request() {
      std::lock_guard<std::mutex> lock(gather->mu);
      ++gather->settled;
      gather->cv.notify_all();
    }
    const std::shared_ptr<Gather> gather;
  };
  const uint32_t shards = static_cast<uint32_t>(service_->shards.size());
  auto gather = std::make_shared<Gather>();
  gather->found.resize(shards);
  const int64_t now_unix_ms = absl::ToUnixMillis(absl::Now());
  for (uint32_t i = 0; i < shards; ++i) {
    auto request = std::make_shared<Request>(gather);
    Pop3Shard* shard = service_->shards[i].get();
    reactor_->shard(i).inbox().Post([shard, request, filter, now_unix_ms] {
      auto found = std::make_unique<std::vector<admin::LiveSession>>(
          SessionsOn(*shard, filter, kListedSessionsMax + 1, now_unix_ms));
      std::lock_guard<std::mutex> lock(request->gather->mu);
      request->gather->found[shard->index] = std::move(found);
    });
  }
  admin::LiveSessionList list;
  std::unique_lock<std::mutex> lock(gather->mu);
  gather->cv.wait_for(lock, wait_, [&] { return gather->settled == shards; });
  for (uint32_t i = 0; i < shards; ++i) {
    if (gather->found[i] == nullptr) {
      ++list.shards_unanswered;
      continue;
    }
    for (admin::LiveSession& s : *gather->found[i]) {
      if (list.sessions.size() == kListedSessionsMax) {
        list.truncated = true;
        break;
      }
      list.sessions.push_back(std::move(s));
    }
  }
  if (shards > 0 && list.shards_unanswered == shards) {
    return absl::UnavailableError("no shard answered in time; ask again");
  }
  return list;
}

absl::Status LiveSessions::End(uint32_t shard_index, uint64_t connection) {
  if (shard_index >= service_->shards.size()) {
    return absl::NotFoundError(absl::StrCat("no session ", shard_index, "-", connection));
  }
  enum class Outcome : uint8_t { kPending, kEnded, kNotFound };
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    bool settled = false;                 // by mu
    Outcome outcome = Outcome::kPending;  // by mu
  };
  struct Settle {
    explicit Settle(std::shared_ptr<Wait> w) : wait(std::move(w)) {}
    ~Settle() {
      std::lock_guard<std::mutex> lock(wait->mu);
      wait->settled = true;
      wait->cv.notify_all();
    }
    const std::shared_ptr<Wait> wait;
  };
  auto wait_state = std::make_shared<Wait>();
  auto settle = std::make_shared<Settle>(wait_state);
  Pop3Shard* shard = service_->shards[shard_index].get();
  const bool posted = reactor_->shard(shard_index).inbox().Post([shard, connection, settle] {
    pop3_service::Pop3Adapter* conn = shard->connections.Find(connection);
    Outcome outcome = Outcome::kNotFound;
    if (conn != nullptr) {
      LogEvent(LogLevel::kInfo, "session ended by the admin API",
               {{"user", std::string(conn->session().user())},
                {"session", absl::StrCat(shard->index, "-", connection)}});
      // Closed without a reply and without UPDATE, as the idle timeout would (RFC 1939: no
      // unsolicited responses in POP3).
      conn->Abort();
      outcome = Outcome::kEnded;
    }
    std::lock_guard<std::mutex> lock(settle->wait->mu);
    settle->wait->outcome = outcome;
  });
  settle.reset();
  std::unique_lock<std::mutex> lock(wait_state->mu);
  wait_state->cv.wait_for(lock, wait_, [&] { return wait_state->settled; });
  switch (wait_state->outcome) {
    case Outcome::kEnded:
      return absl::OkStatus();
    case Outcome::kNotFound:
      return absl::NotFoundError(absl::StrCat("no session ", shard_index, "-", connection));
    case Outcome::kPending:
      break;
  }
  if (!posted || wait_state->settled) {
    return absl::UnavailableError("the shard could not be asked (busy or stopping)");
  }
  return absl::DeadlineExceededError("the shard did not answer in time");
}

}  // namespace posthaste::server
