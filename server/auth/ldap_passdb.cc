#include "server/auth/ldap_passdb.h"

#include <ldap.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "base/log.h"
#include "base/strings.h"

namespace posthaste::auth {
namespace {

constexpr size_t kLoginBytesMax = 320;  // local part (64) @ domain (255), RFC 5321

timeval ToTimeval(uint32_t ms) {
  timeval tv;
  tv.tv_sec = static_cast<time_t>(ms / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms % 1000) * 1000);
  return tv;
}

bool ValidLogin(std::string_view login) {
  if (login.empty() || login.size() > kLoginBytesMax) return false;
  const size_t at = login.rfind('@');
  if (at == 0 || at == std::string_view::npos || at + 1 == login.size()) return false;
  return std::none_of(login.begin(), login.end(),
                      [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// Codes that say the directory could not be reached or did not answer (client-side codes are
// negative in libldap), as against an answer about this login.
bool IsTransportCode(int code) { return code < 0 || code == LDAP_BUSY || code == LDAP_UNAVAILABLE; }

// Answers about the credentials themselves: the login does not exist or the password is wrong.
bool IsRefusalCode(int code) {
  return code == LDAP_INVALID_CREDENTIALS || code == LDAP_INVALID_DN_SYNTAX ||
         code == LDAP_NO_SUCH_OBJECT || code == LDAP_INAPPROPRIATE_AUTH;
}

}  // namespace

// ---- LdapCircuitBreaker ----

bool LdapCircuitBreaker::Allow(absl::Time now) {
  std::lock_guard<std::mutex> lock(mu_);
  switch (state_) {
    case State::kClosed:
      return true;
    case State::kOpen:
      if (now < open_until_) return false;
      state_ = State::kHalfOpen;
      probe_out_ = true;
      return true;
    case State::kHalfOpen:
      if (probe_out_) return false;
      probe_out_ = true;
      return true;
  }
  return false;
}

void LdapCircuitBreaker::RecordSuccess() {
  std::lock_guard<std::mutex> lock(mu_);
  state_ = State::kClosed;
  failures_ = 0;
  probe_out_ = false;
}

bool LdapCircuitBreaker::RecordFailure(absl::Time now) {
  std::lock_guard<std::mutex> lock(mu_);
  probe_out_ = false;
  if (state_ == State::kOpen) return false;  // a request that started before it opened
  if (state_ == State::kClosed && ++failures_ < failures_max_) return false;
  state_ = State::kOpen;
  open_until_ = now + open_for_;
  failures_ = 0;
  return true;
}

LdapCircuitBreaker::State LdapCircuitBreaker::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

// ---- LdapNegativeCache ----

LdapNegativeCache::LdapNegativeCache(absl::Duration ttl, size_t entries_max)
    : ttl_(ttl), entries_max_(entries_max) {
  RAND_bytes(hmac_key_.data(), hmac_key_.size());
}

std::string LdapNegativeCache::Key(std::string_view login, std::string_view password) const {
  // The login's case matters to the directory (its matching rules decide), so it is kept.
  HMAC_CTX ctx;
  HMAC_CTX_init(&ctx);
  HMAC_Init_ex(&ctx, hmac_key_.data(), hmac_key_.size(), EVP_sha256(), nullptr);
  HMAC_Update(&ctx, reinterpret_cast<const uint8_t*>(login.data()), login.size());
  const uint8_t separator = 0;
  HMAC_Update(&ctx, &separator, 1);
  HMAC_Update(&ctx, reinterpret_cast<const uint8_t*>(password.data()), password.size());
  uint8_t mac[SHA256_DIGEST_LENGTH];
  unsigned mac_len = 0;
  HMAC_Final(&ctx, mac, &mac_len);
  HMAC_CTX_cleanup(&ctx);
  return std::string(reinterpret_cast<const char*>(mac), mac_len);
}

bool LdapNegativeCache::Contains(std::string_view login, std::string_view password,
                                 absl::Time now) {
  if (ttl_ <= absl::ZeroDuration()) return false;
  const std::string key = Key(login, password);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = expires_.find(key);
  if (it == expires_.end()) return false;
  if (it->second > now) return true;
  expires_.erase(it);
  return false;
}

void LdapNegativeCache::Add(std::string_view login, std::string_view password, absl::Time now) {
  if (ttl_ <= absl::ZeroDuration()) return;
  const std::string key = Key(login, password);
  std::lock_guard<std::mutex> lock(mu_);
  if (expires_.size() >= entries_max_ && !expires_.contains(key)) {
    absl::erase_if(expires_, [now](const auto& entry) { return entry.second <= now; });
    if (expires_.size() >= entries_max_) {
      // All still live: drop those expiring first (the oldest), half of them.
      std::vector<absl::Time> times;
      times.reserve(expires_.size());
      for (const auto& entry : expires_) times.push_back(entry.second);
      auto middle = times.begin() + static_cast<ptrdiff_t>(times.size() / 2);
      std::nth_element(times.begin(), middle, times.end());
      const absl::Time cut = *middle;
      absl::erase_if(expires_, [cut](const auto& entry) { return entry.second <= cut; });
    }
  }
  expires_[key] = now + ttl_;
}

size_t LdapNegativeCache::SizeForTest() {
  std::lock_guard<std::mutex> lock(mu_);
  return expires_.size();
}

// ---- LdapPassdb ----

struct LdapPassdb::Connection {
  LDAP* ld = nullptr;
  bool bound_as_service = false;
  bool timed_out = false;  // the last failure was a deadline, not a closed connection
  uint64_t uses = 0;

  ~Connection() {
    if (ld != nullptr) ldap_unbind_ext_s(ld, nullptr, nullptr);
  }
};

LdapPassdb::LdapPassdb(LdapTenantConfig config)
    : config_(std::move(config)),
      breaker_(config_.breaker_failures_max, absl::Milliseconds(config_.breaker_open_ms)),
      negative_(absl::Seconds(config_.negative_cache_ttl_s), config_.negative_cache_entries_max) {}

LdapPassdb::~LdapPassdb() = default;

absl::StatusOr<std::unique_ptr<LdapPassdb::Connection>> LdapPassdb::Open() {
  auto connection = std::make_unique<Connection>();
  std::string uris;
  for (const std::string& uri : config_.uris) {
    if (!uris.empty()) uris.push_back(' ');
    uris += uri;
  }
  // No network yet: libldap connects on the first request, under LDAP_OPT_NETWORK_TIMEOUT,
  // trying the URIs in order.
  int rc = ldap_initialize(&connection->ld, uris.c_str());
  if (rc != LDAP_SUCCESS) {
    return absl::InvalidArgumentError(std::string("ldap_initialize: ") + ldap_err2string(rc));
  }
  LDAP* ld = connection->ld;
  const int version = LDAP_VERSION3;
  ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version);
  ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);  // never follow to another server
  const timeval connect_timeout = ToTimeval(config_.connect_timeout_ms);
  ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &connect_timeout);
  // The deadline of libldap's synchronous calls (StartTLS, unbind).
  const timeval call_timeout = ToTimeval(config_.bind_timeout_ms);
  ldap_set_option(ld, LDAP_OPT_TIMEOUT, &call_timeout);
  if (config_.tls != LdapTls::kNone) {
    const int demand = LDAP_OPT_X_TLS_DEMAND;
    ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
    if (!config_.ca_file.empty()) {
      ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, config_.ca_file.c_str());
    }
    const int is_server = 0;
    ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &is_server);  // apply the options above
  }
  if (config_.tls == LdapTls::kStartTls) {
    rc = ldap_start_tls_s(ld, nullptr, nullptr);
    if (rc != LDAP_SUCCESS) {
      return absl::UnavailableError(std::string("StartTLS: ") + ldap_err2string(rc));
    }
  }
  ++stats_.connections_opened;
  return connection;
}

absl::StatusOr<std::unique_ptr<LdapPassdb::Connection>> LdapPassdb::Acquire() {
  std::unique_lock<std::mutex> lock(pool_mu_);
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.pool_wait_timeout_ms);
  while (idle_.empty() && open_ >= config_.connections_max) {
    if (pool_cv_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
        open_ >= config_.connections_max) {
      return absl::DeadlineExceededError("no free LDAP connection");
    }
  }
  ++stats_.connections_in_use;
  if (!idle_.empty()) {
    std::unique_ptr<Connection> connection = std::move(idle_.back());
    idle_.pop_back();
    return connection;
  }
  ++open_;
  stats_.connections_open.store(open_);
  lock.unlock();
  absl::StatusOr<std::unique_ptr<Connection>> opened = Open();
  if (!opened.ok()) Release(nullptr, true);
  return opened;
}

void LdapPassdb::Release(std::unique_ptr<Connection> connection, bool broken) {
  std::unique_lock<std::mutex> lock(pool_mu_);
  --stats_.connections_in_use;
  if (broken) {
    --open_;
    stats_.connections_open.store(open_);
  } else {
    idle_.push_back(std::move(connection));
  }
  lock.unlock();
  pool_cv_.notify_one();
  // A broken connection's unbind (its destructor) runs here, outside the lock.
}

LdapPassdb::Outcome LdapPassdb::Bind(Connection& connection, const std::string& dn,
                                     std::string_view password) {
  berval credentials;
  credentials.bv_val = const_cast<char*>(password.data());
  credentials.bv_len = password.size();
  int message_id = 0;
  int rc = ldap_sasl_bind(connection.ld, dn.c_str(), LDAP_SASL_SIMPLE, &credentials, nullptr,
                          nullptr, &message_id);
  if (rc != LDAP_SUCCESS)
    return IsTransportCode(rc) ? Outcome::kTransportFailure : Outcome::kOtherFailure;
  timeval timeout = ToTimeval(config_.bind_timeout_ms);
  LDAPMessage* result = nullptr;
  rc = ldap_result(connection.ld, message_id, LDAP_MSG_ALL, &timeout, &result);
  if (rc <= 0) {  // 0: the deadline passed; -1: the connection failed
    connection.timed_out = rc == 0;
    if (rc == 0) ldap_abandon_ext(connection.ld, message_id, nullptr, nullptr);
    return Outcome::kTransportFailure;
  }
  int code = LDAP_OTHER;
  rc = ldap_parse_result(connection.ld, result, &code, nullptr, nullptr, nullptr, nullptr, 1);
  if (rc != LDAP_SUCCESS) return Outcome::kTransportFailure;
  if (code == LDAP_SUCCESS) return Outcome::kOk;
  if (IsRefusalCode(code)) return Outcome::kRefused;
  return IsTransportCode(code) ? Outcome::kTransportFailure : Outcome::kOtherFailure;
}

LdapPassdb::Outcome LdapPassdb::Search(Connection& connection, const std::string& base, int scope,
                                       const std::string& filter, std::string* dn,
                                       std::string* mailbox_value) {
  std::string attribute =
      config_.mailbox_attribute.empty() ? std::string(LDAP_NO_ATTRS) : config_.mailbox_attribute;
  char* attributes[] = {attribute.data(), nullptr};
  timeval timeout = ToTimeval(config_.search_timeout_ms);
  int message_id = 0;
  // Size limit 2: one entry is the answer, a second one means an ambiguous filter.
  int rc = ldap_search_ext(connection.ld, base.c_str(), scope, filter.c_str(), attributes, 0,
                           nullptr, nullptr, &timeout, 2, &message_id);
  if (rc != LDAP_SUCCESS) {
    return IsTransportCode(rc) ? Outcome::kTransportFailure : Outcome::kOtherFailure;
  }
  LDAPMessage* result = nullptr;
  rc = ldap_result(connection.ld, message_id, LDAP_MSG_ALL, &timeout, &result);
  if (rc <= 0) {
    connection.timed_out = rc == 0;
    if (rc == 0) ldap_abandon_ext(connection.ld, message_id, nullptr, nullptr);
    return Outcome::kTransportFailure;
  }
  const int entries = ldap_count_entries(connection.ld, result);
  int code = LDAP_OTHER;
  rc = ldap_parse_result(connection.ld, result, &code, nullptr, nullptr, nullptr, nullptr, 0);
  Outcome outcome = Outcome::kOk;
  if (rc != LDAP_SUCCESS) {
    outcome = Outcome::kTransportFailure;
  } else if (code == LDAP_SIZELIMIT_EXCEEDED || (code == LDAP_SUCCESS && entries != 1) ||
             code == LDAP_NO_SUCH_OBJECT) {
    if (entries > 1 || code == LDAP_SIZELIMIT_EXCEEDED) {
      LogEvent(LogLevel::kWarning, "LDAP filter matched several entries",
               {{"tenant", config_.domain}});
    }
    outcome = Outcome::kRefused;
  } else if (code != LDAP_SUCCESS) {
    outcome = IsTransportCode(code) ? Outcome::kTransportFailure : Outcome::kOtherFailure;
  } else {
    LDAPMessage* entry = ldap_first_entry(connection.ld, result);
    char* entry_dn = entry != nullptr ? ldap_get_dn(connection.ld, entry) : nullptr;
    if (entry_dn == nullptr) {
      outcome = Outcome::kOtherFailure;
    } else {
      *dn = entry_dn;
      ldap_memfree(entry_dn);
      if (!config_.mailbox_attribute.empty()) {
        berval** values = ldap_get_values_len(connection.ld, entry, attribute.c_str());
        if (values != nullptr && values[0] != nullptr) {
          mailbox_value->assign(values[0]->bv_val, values[0]->bv_len);
        }
        if (values != nullptr) ldap_value_free_len(values);
      }
    }
  }
  ldap_msgfree(result);
  return outcome;
}

LdapPassdb::Outcome LdapPassdb::MailboxFor(std::string_view login,
                                           const std::string& attribute_value,
                                           std::string* mailbox) const {
  std::string_view named = config_.mailbox_attribute.empty() ? login : attribute_value;
  const size_t at = named.rfind('@');
  if (named.empty() || named.size() > kLoginBytesMax || at == 0 || at == std::string_view::npos ||
      !ValidLogin(named)) {
    LogEvent(LogLevel::kWarning, "LDAP entry names no usable mailbox",
             {{"tenant", config_.domain}, {"attribute", config_.mailbox_attribute}});
    return Outcome::kRefused;
  }
  // A directory names mailboxes of its own tenant only: it cannot open another tenant's.
  std::string domain = absl::AsciiStrToLower(AbslView(named.substr(at + 1)));
  if (domain != config_.domain) {
    LogEvent(LogLevel::kWarning, "LDAP entry names a mailbox of another domain",
             {{"tenant", config_.domain}, {"mailbox_domain", domain}});
    return Outcome::kRefused;
  }
  *mailbox = std::string(named.substr(0, at + 1)) + domain;
  return Outcome::kOk;
}

LdapPassdb::Outcome LdapPassdb::Attempt(Connection& connection, std::string_view login,
                                        std::string_view password, std::string* mailbox) {
  std::string user_dn;
  std::string attribute_value;
  const std::string login_text(login);
  if (config_.bind_mode == LdapBindMode::kSearch) {
    if (!connection.bound_as_service) {
      Outcome bound = Bind(connection, config_.service_dn, config_.service_password);
      if (bound == Outcome::kRefused) {
        LogEvent(LogLevel::kWarning, "LDAP service bind refused",
                 {{"tenant", config_.domain}, {"service_dn", config_.service_dn}});
        return Outcome::kOtherFailure;
      }
      if (bound != Outcome::kOk) return bound;
      connection.bound_as_service = true;
    }
    absl::StatusOr<std::string> filter =
        ExpandLdapTemplate(config_.filter, login_text, LdapTemplateKind::kFilter);
    if (!filter.ok()) return Outcome::kRefused;
    Outcome found = Search(connection, config_.base_dn, LDAP_SCOPE_SUBTREE, *filter, &user_dn,
                           &attribute_value);
    if (found != Outcome::kOk) return found;
  } else {
    absl::StatusOr<std::string> dn =
        ExpandLdapTemplate(config_.user_dn, login_text, LdapTemplateKind::kDn);
    if (!dn.ok()) return Outcome::kRefused;
    user_dn = *std::move(dn);
  }
  connection.bound_as_service = false;
  Outcome bound = Bind(connection, user_dn, password);
  if (bound != Outcome::kOk) return bound;
  if (config_.bind_mode == LdapBindMode::kDirect && !config_.mailbox_attribute.empty()) {
    // The user's own entry, read as the user.
    std::string ignored_dn;
    Outcome read = Search(connection, user_dn, LDAP_SCOPE_BASE, "(objectClass=*)", &ignored_dn,
                          &attribute_value);
    if (read != Outcome::kOk) return read;
  }
  return MailboxFor(login, attribute_value, mailbox);
}

LdapCheckResult LdapPassdb::Check(std::string_view login, std::string_view password) {
  LdapCheckResult result;
  if (password.empty() || !ValidLogin(login)) {
    ++stats_.requests_bad_credentials;
    result.code = LdapCheckResult::Code::kBadCredentials;
    return result;
  }
  const absl::Time now = absl::Now();
  if (negative_.Contains(login, password, now)) {
    ++stats_.negative_cache_hits;
    result.code = LdapCheckResult::Code::kBadCredentials;
    return result;
  }
  if (!breaker_.Allow(now)) {
    ++stats_.breaker_refused;
    result.code = LdapCheckResult::Code::kUnavailable;
    return result;
  }
  Outcome outcome = Outcome::kTransportFailure;
  for (int attempt = 0; attempt < 2; ++attempt) {
    absl::StatusOr<std::unique_ptr<Connection>> connection = Acquire();
    if (!connection.ok()) {
      if (absl::IsDeadlineExceeded(connection.status())) ++stats_.pool_wait_timeouts;
      LogEvent(LogLevel::kWarning, "LDAP connection unavailable",
               {{"tenant", config_.domain}, {"error", connection.status().ToString()}});
      outcome = Outcome::kTransportFailure;
      break;
    }
    const bool reused = (*connection)->uses++ > 0;
    outcome = Attempt(**connection, login, password, &result.mailbox);
    const bool timed_out = (*connection)->timed_out;
    const bool broken = outcome == Outcome::kTransportFailure || outcome == Outcome::kOtherFailure;
    Release(*std::move(connection), broken);
    // A pooled connection the server closed while idle fails at once: one retry on a new one.
    if (!(outcome == Outcome::kTransportFailure && reused && !timed_out)) break;
  }
  switch (outcome) {
    case Outcome::kOk:
      breaker_.RecordSuccess();
      ++stats_.requests_ok;
      result.code = LdapCheckResult::Code::kOk;
      break;
    case Outcome::kRefused:
      breaker_.RecordSuccess();  // the directory answered
      negative_.Add(login, password, absl::Now());
      ++stats_.requests_bad_credentials;
      result.mailbox.clear();
      result.code = LdapCheckResult::Code::kBadCredentials;
      break;
    case Outcome::kTransportFailure:
      if (breaker_.RecordFailure(absl::Now())) {
        ++stats_.breaker_opened;
        LogEvent(
            LogLevel::kWarning, "LDAP circuit breaker opened",
            {{"tenant", config_.domain}, {"open_ms", std::to_string(config_.breaker_open_ms)}});
      }
      ++stats_.requests_unavailable;
      result.mailbox.clear();
      result.code = LdapCheckResult::Code::kUnavailable;
      break;
    case Outcome::kOtherFailure:
      breaker_.RecordSuccess();  // reachable; the error is logged where it was seen
      ++stats_.requests_unavailable;
      result.mailbox.clear();
      result.code = LdapCheckResult::Code::kUnavailable;
      break;
  }
  stats_.breaker_state.store(static_cast<uint64_t>(breaker_.state()));
  return result;
}

// ---- LdapDirectory ----

LdapDirectory::LdapDirectory(LdapConfig config) {
  for (LdapTenantConfig& tenant : config.tenants) {
    auto passdb = std::make_unique<LdapPassdb>(std::move(tenant));
    by_domain_[passdb->config().domain] = passdb.get();
    passdbs_.push_back(std::move(passdb));
  }
}

LdapPassdb* LdapDirectory::ForLogin(std::string_view login) const {
  const size_t at = login.rfind('@');
  if (at == std::string_view::npos) return nullptr;
  const std::string domain = absl::AsciiStrToLower(AbslView(login.substr(at + 1)));
  auto it = by_domain_.find(domain);
  return it == by_domain_.end() ? nullptr : it->second;
}

}  // namespace posthaste::auth
