#include "metrics/shard_metrics.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "base/strings.h"

namespace posthaste::metrics {

void LatencyHistogram::Observe(uint64_t ns) {
  // Bounds in ns, computed once; a linear scan of 16 entries beats a binary search here.
  static constexpr auto kBoundsNs = [] {
    std::array<uint64_t, kLatencyBucketsSeconds.size()> bounds{};
    for (size_t i = 0; i < bounds.size(); ++i) {
      bounds[i] = static_cast<uint64_t>(kLatencyBucketsSeconds[i] * 1e9 + 0.5);
    }
    return bounds;
  }();
  size_t i = 0;
  while (i < kBoundsNs.size() && ns > kBoundsNs[i]) ++i;
  ++buckets[i];
  sum_ns += ns;
}

uint64_t LatencyHistogram::count() const {
  uint64_t n = 0;
  for (uint64_t b : buckets) n += b;
  return n;
}

void LatencyHistogram::Add(const LatencyHistogram& other) {
  for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += other.buckets[i];
  sum_ns += other.sum_ns;
}

std::string_view CommandLabel(Command command) {
  static constexpr std::string_view kNames[] = {"USER", "PASS", "APOP", "AUTH", "STLS", "STAT",
                                                "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP",
                                                "UIDL", "CAPA", "UTF8", "LANG", "QUIT", "unknown"};
  static_assert(std::size(kNames) == kCommandCount);
  return kNames[static_cast<size_t>(command)];
}

std::string_view CommandResultLabel(CommandResult result) {
  return result == CommandResult::kOk ? "ok" : "err";
}

std::string_view AuthMechanismName(AuthMechanismLabel mechanism) {
  switch (mechanism) {
    case AuthMechanismLabel::kUser:
      return "user";
    case AuthMechanismLabel::kApop:
      return "apop";
    case AuthMechanismLabel::kPlain:
      return "plain";
    case AuthMechanismLabel::kLogin:
      return "login";
    case AuthMechanismLabel::kSasl:
      return "sasl";
    case AuthMechanismLabel::kCount:
      break;
  }
  return "?";
}

std::string_view AuthResultLabel(AuthResult result) {
  switch (result) {
    case AuthResult::kOk:
      return "ok";
    case AuthResult::kFailed:
      return "failed";
    case AuthResult::kTempFailure:
      return "temp_failure";
    case AuthResult::kPermFailure:
      return "perm_failure";
    case AuthResult::kCount:
      break;
  }
  return "?";
}

std::string_view SessionOutcomeLabel(SessionOutcome outcome) {
  switch (outcome) {
    case SessionOutcome::kLogout:
      return "logout";
    case SessionOutcome::kQuit:
      return "quit";
    case SessionOutcome::kCommitFailed:
      return "commit_failed";
    case SessionOutcome::kDisconnected:
      return "disconnected";
    case SessionOutcome::kTimeout:
      return "timeout";
    case SessionOutcome::kAborted:
      return "aborted";
    case SessionOutcome::kRefused:
      return "refused";
    case SessionOutcome::kCount:
      break;
  }
  return "?";
}

std::string_view RefuseReasonLabel(RefuseReason reason) {
  switch (reason) {
    case RefuseReason::kBusy:
      return "busy";
    case RefuseReason::kCount:
      break;
  }
  return "?";
}

std::string_view TlsVersionLabel(TlsVersion version) {
  switch (version) {
    case TlsVersion::kTls12:
      return "TLSv1.2";
    case TlsVersion::kTls13:
      return "TLSv1.3";
    case TlsVersion::kOther:
      return "other";
    case TlsVersion::kCount:
      break;
  }
  return "?";
}

TlsVersion TlsVersionFromName(std::string_view name) {
  if (name == "TLSv1.3") return TlsVersion::kTls13;
  if (name == "TLSv1.2") return TlsVersion::kTls12;
  return TlsVersion::kOther;
}

std::string_view TlsOutcomeLabel(TlsOutcome outcome) {
  switch (outcome) {
    case TlsOutcome::kOk:
      return "ok";
    case TlsOutcome::kResumed:
      return "resumed";
    case TlsOutcome::kFailed:
      return "failed";
    case TlsOutcome::kCount:
      break;
  }
  return "?";
}

std::string_view LmtpResultLabel(LmtpResult result) {
  switch (result) {
    case LmtpResult::kDelivered:
      return "delivered";
    case LmtpResult::kOverQuota:
      return "over_quota";
    case LmtpResult::kTempFailure:
      return "temp_failure";
    case LmtpResult::kPermFailure:
      return "perm_failure";
    case LmtpResult::kCount:
      break;
  }
  return "?";
}

std::string_view StoreOperationLabel(StoreOperation operation) {
  switch (operation) {
    case StoreOperation::kOpenMailbox:
      return "open_mailbox";
    case StoreOperation::kCommit:
      return "commit";
    case StoreOperation::kTopScan:
      return "top_scan";
    case StoreOperation::kCount:
      break;
  }
  return "?";
}

TenantLabels::TenantLabels(std::vector<std::string> tenants) {
  labels_ = {"other", "none"};
  for (std::string& t : tenants) {
    absl::AsciiStrToLower(&t);
    if (t.empty() || t == "other" || t == "none" || slots_.contains(t)) continue;
    slots_.emplace(t, static_cast<uint16_t>(labels_.size()));
    labels_.push_back(std::move(t));
  }
}

TenantLabels TenantLabels::Largest(
    const absl::flat_hash_map<std::string, uint64_t>& accounts_per_domain, size_t max_tenants) {
  std::vector<std::pair<std::string, uint64_t>> all(accounts_per_domain.begin(),
                                                    accounts_per_domain.end());
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  if (all.size() > max_tenants) all.resize(max_tenants);
  std::vector<std::string> names;
  names.reserve(all.size());
  for (auto& [name, count] : all) names.push_back(name);
  return TenantLabels(std::move(names));
}

TenantLabels TenantLabels::Ranked(
    const absl::flat_hash_map<std::string, uint64_t>& sessions_per_domain,
    const absl::flat_hash_map<std::string, uint64_t>& accounts_per_domain, size_t max_tenants) {
  struct Candidate {
    std::string_view name;
    uint64_t sessions = 0;
    uint64_t accounts = 0;
  };
  absl::flat_hash_map<std::string_view, Candidate> by_name;
  for (const auto& [name, n] : sessions_per_domain) by_name[name] = {name, n, 0};
  for (const auto& [name, n] : accounts_per_domain) {
    Candidate& c = by_name[name];
    c.name = name;
    c.accounts = n;
  }
  std::vector<Candidate> all;
  all.reserve(by_name.size());
  for (const auto& [name, c] : by_name) all.push_back(c);
  const auto larger = [](const Candidate& a, const Candidate& b) {
    if (a.sessions != b.sessions) return a.sessions > b.sessions;
    if (a.accounts != b.accounts) return a.accounts > b.accounts;
    return a.name < b.name;
  };
  if (all.size() > max_tenants) {
    std::partial_sort(all.begin(), all.begin() + static_cast<ptrdiff_t>(max_tenants), all.end(),
                      larger);
    all.resize(max_tenants);
  } else {
    std::sort(all.begin(), all.end(), larger);
  }
  std::vector<std::string> names;
  names.reserve(all.size());
  for (const Candidate& c : all) names.emplace_back(c.name);
  return TenantLabels(std::move(names));
}

uint16_t TenantLabels::SlotOf(std::string_view domain) const {
  if (slots_.empty()) return kOther;
  std::string lower(domain);
  absl::AsciiStrToLower(&lower);
  auto it = slots_.find(lower);
  return it == slots_.end() ? kOther : it->second;
}

uint16_t TenantLabels::SlotOfAddress(std::string_view address) const {
  const size_t at = address.rfind('@');
  if (at == std::string_view::npos) return kOther;
  return SlotOf(address.substr(at + 1));
}

void TenantSeriesCounters::Add(const TenantSeriesCounters& o) {
  for (size_t i = 0; i < sessions.size(); ++i) sessions[i] += o.sessions[i];
  for (size_t m = 0; m < authentications.size(); ++m) {
    for (size_t r = 0; r < authentications[m].size(); ++r) {
      authentications[m][r] += o.authentications[m][r];
    }
  }
  redownload_sessions += o.redownload_sessions;
}

ShardMetrics::ShardMetrics() : tenant_labels{"other", "none"}, tenants(2) {}

uint16_t ShardMetrics::AppendTenantSeries(std::string_view label) {
  tenant_labels.emplace_back(label);
  tenants.emplace_back();
  return static_cast<uint16_t>(tenant_labels.size() - 1);
}

void ShardMetrics::Add(const ShardMetrics& o) {
  for (size_t i = 0; i < connections_refused.size(); ++i) {
    connections_refused[i] += o.connections_refused[i];
  }
  // Series by label value: one shard's series 5 may be another's series 3.
  absl::flat_hash_map<std::string, size_t> index;
  index.reserve(tenant_labels.size());
  for (size_t i = 0; i < tenant_labels.size(); ++i) index.emplace(tenant_labels[i], i);
  for (size_t t = 0; t < o.tenant_labels.size() && t < o.tenants.size(); ++t) {
    auto it = index.find(o.tenant_labels[t]);
    size_t mine;
    if (it != index.end()) {
      mine = it->second;
    } else {
      mine = tenant_labels.size();
      tenant_labels.push_back(o.tenant_labels[t]);
      tenants.emplace_back();
      index.emplace(o.tenant_labels[t], mine);
    }
    tenants[mine].Add(o.tenants[t]);
  }
  for (size_t c = 0; c < kCommandCount; ++c) {
    for (size_t r = 0; r < commands[c].size(); ++r) commands[c][r] += o.commands[c][r];
    command_latency[c].Add(o.command_latency[c]);
  }
  for (size_t v = 0; v < tls_handshakes.size(); ++v) {
    for (size_t r = 0; r < tls_handshakes[v].size(); ++r) {
      tls_handshakes[v][r] += o.tls_handshakes[v][r];
    }
  }
  for (size_t i = 0; i < lmtp_deliveries.size(); ++i) lmtp_deliveries[i] += o.lmtp_deliveries[i];
  for (size_t i = 0; i < store_errors.size(); ++i) store_errors[i] += o.store_errors[i];
}

}  // namespace posthaste::metrics
