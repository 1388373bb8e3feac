// AuthService's LDAP path: tenants whose passwords live in a directory (server/auth/ldap_passdb.h).
//
// Order: the auth cache (successes for cache_ttl, keyed apart from store accounts), then the
// directory (its negative cache and circuit breaker in front). A success then needs the
// mailbox the directory named in the store: created on first login when the tenant has
// auto_create (with the tenant's default quota, as an account made by `user add` gets),
// otherwise it must have been provisioned. A disabled account is refused whatever the
// directory says. The store's password hash of such an account is kLdapAccountHash, which
// VerifyPassword never accepts: if the tenant leaves LDAP, its users need `user passwd`.
#include "base/log.h"
#include "server/pop3_service/auth_service.h"

namespace posthaste::server {
namespace {

constexpr char kLdapAccountHash[] = "{LDAP}";

// Cache keys of directory logins start with a NUL, which no store address holds, so a login and
// an account of the same name never share an entry.
std::string LdapCacheName(std::string_view user) {
  std::string name(1, '\0');
  name += "ldap";
  name.push_back('\0');
  name += user;
  return name;
}

}  // namespace

AuthVerdict AuthService::OpenLdapAccount(const auth::LdapPassdb& passdb,
                                         const std::string& mailbox) {
  AuthVerdict verdict;
  absl::StatusOr<storage::AccountInfo> account = store_->GetAccount(mailbox);
  if (!account.ok() && absl::IsNotFound(account.status()) && passdb.config().auto_create) {
    account = store_->CreateAccount(mailbox, kLdapAccountHash);
    if (account.ok()) {
      LogEvent(LogLevel::kInfo, "mailbox created for a directory login",
               {{"account", account->address}, {"tenant", passdb.config().domain}});
    } else if (absl::IsAlreadyExists(account.status())) {
      account = store_->GetAccount(mailbox);  // another login created it meanwhile
    }
  }
  if (!account.ok()) {
    if (absl::IsNotFound(account.status()) || absl::IsInvalidArgument(account.status())) {
      LogEvent(LogLevel::kWarning, "directory login without a mailbox",
               {{"account", mailbox}, {"tenant", passdb.config().domain}});
      verdict.code = AuthVerdict::Code::kBadCredentials;
    } else {
      LogEvent(LogLevel::kWarning, "account lookup failed",
               {{"error", account.status().ToString()}});
      verdict.code = AuthVerdict::Code::kTempFailure;
    }
    return verdict;
  }
  if (account->disabled) {
    verdict.code = AuthVerdict::Code::kBadCredentials;
    return verdict;
  }
  verdict.code = AuthVerdict::Code::kOk;
  verdict.address = account->address;
  return verdict;
}

AuthVerdict AuthService::VerifyWithLdap(auth::LdapPassdb& passdb, std::string_view user,
                                        std::string_view password) {
  const bool use_cache = options_.cache_ttl > absl::ZeroDuration();
  std::string key;
  if (use_cache) {
    key = CacheKey(LdapCacheName(user), password);
    std::string cached_mailbox;
    {
      Stripe& stripe = StripeFor(key);
      std::lock_guard<std::mutex> lock(stripe.mu);
      auto it = stripe.entries.find(key);
      if (it != stripe.entries.end()) {
        if (it->second.expires > absl::Now()) {
          cached_mailbox = it->second.address;
        } else {
          stripe.entries.erase(it);
        }
      }
    }
    if (!cached_mailbox.empty()) {
      ++passdb.stats().positive_cache_hits;
      AuthVerdict verdict = OpenLdapAccount(passdb, cached_mailbox);
      verdict.cache_hit = verdict.code == AuthVerdict::Code::kOk;
      return verdict;
    }
  }

  AuthVerdict verdict;
  const auth::LdapCheckResult checked = passdb.Check(user, password);
  switch (checked.code) {
    case auth::LdapCheckResult::Code::kBadCredentials:
      verdict.code = AuthVerdict::Code::kBadCredentials;
      return verdict;
    case auth::LdapCheckResult::Code::kUnavailable:
      verdict.code = AuthVerdict::Code::kTempFailure;
      return verdict;
    case auth::LdapCheckResult::Code::kOk:
      break;
  }
  verdict = OpenLdapAccount(passdb, checked.mailbox);
  if (verdict.code == AuthVerdict::Code::kOk && use_cache) {
    Stripe& stripe = StripeFor(key);
    std::lock_guard<std::mutex> lock(stripe.mu);
    if (stripe.entries.size() >= options_.cache_entries_max / kStripes + 1) stripe.entries.clear();
    stripe.entries[key] = Entry{
        .stored_hash = {}, .expires = absl::Now() + options_.cache_ttl, .address = checked.mailbox};
  }
  return verdict;
}

}  // namespace posthaste::server
