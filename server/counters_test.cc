// The server's counter tables (counters.h, pop3_service/pop3_counters.h,
// lmtp_service/lmtp_counters.h, and the HTTP listeners' in admin/admin_http.cc): each follows the
// naming rules, every counter of every block is exported or listed as not exported with a reason,
// every row appears on the scrape with its labels, and counting a refusal moves its series.
#include "server/counters.h"

#include <map>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "metrics/counter_table.h"
#include "metrics/exporter.h"
#include "server/admin/admin_http.h"
#include "server/auth/ldap_counters.h"
#include "server/lmtp_service/lmtp_counters.h"
#include "server/pop3_service/auth_penalty_shard.h"
#include "server/pop3_service/pop3_counters.h"
#include "server/retention/retention_job.h"

namespace posthaste::server {
namespace {

using admin::HttpListenerCounterTable;
using metrics::CounterBlockCopy;
using metrics::CounterBlockRef;
using metrics::CounterKind;
using metrics::CounterRow;
using metrics::CounterTable;
using pop3_service::AuthPenaltyCounterTable;
using prometheus::MetricFamily;

std::vector<const CounterTable*> AllTables() {
  return {&Pop3ShardCounterTable(),    &LmtpShardCounterTable(),    &RingCounterTable(),
          &InboxCounterTable(),        &ShardOffloadCounterTable(), &BufferRingCounterTable(),
          &AcceptorCounterTable(),     &OffloadPoolCounterTable(),  &ProcessCounterTable(),
          &HttpListenerCounterTable(), &AuthPenaltyCounterTable(),  &auth::LdapCounterTable(),
          &retention::RetentionCounterTable()};
}

std::set<std::string> Members(const CounterTable& table) {
  std::set<std::string> members;
  for (const CounterRow& row : table.rows) members.insert(std::string(row.member));
  return members;
}

#define PH_NAME_OF(member, ...) #member,
#define PH_SEND_MEMBER(member, ...) "send." #member,
#define PH_TLS_MEMBER(member, ...) "tls." #member,
#define PH_TLS_PATH_MEMBER(member, ...) "tls_path." #member,
#define PH_SESSION_MEMBER(member, ...) "session." #member,
#define PH_PROXY_MEMBER(member, ...) "proxy." #member,

// Every member of a nested block has a row or a reason; a reason never names an exported or
// unknown member.
void ExpectEachExportedOrExcused(const CounterTable& table,
                                 const std::vector<std::string>& nested_members,
                                 const std::vector<std::string>& not_exported) {
  const std::set<std::string> exported = Members(table);
  const std::set<std::string> excused(not_exported.begin(), not_exported.end());
  for (const std::string& member : nested_members) {
    EXPECT_NE(exported.contains(member), excused.contains(member))
        << table.block << "." << member
        << ": export it (a row in the *_MORE_ROWS list) or say why not (*_NOT_EXPORTED)";
  }
  const std::set<std::string> known(nested_members.begin(), nested_members.end());
  for (const std::string& member : not_exported) {
    EXPECT_TRUE(known.contains(member)) << table.block << ": no nested member " << member;
  }
}

TEST(ShardCounters, EveryTableFollowsTheNamingRules) {
  for (const CounterTable* table : AllTables()) {
    EXPECT_TRUE(metrics::ValidateCounterTable(*table).ok())
        << metrics::ValidateCounterTable(*table);
  }
}

TEST(ShardCounters, EveryNestedCounterIsExportedOrExcused) {
  ExpectEachExportedOrExcused(
      Pop3ShardCounterTable(),
      {PH_SEND_STATS(PH_SEND_MEMBER) PH_TLS_COUNTERS(PH_TLS_MEMBER)
           PH_TLS_PATH_COUNTERS(PH_TLS_PATH_MEMBER) PH_POP3_SESSION_COUNTERS(PH_SESSION_MEMBER)
               PH_PROXY_HEADER_COUNTERS(PH_PROXY_MEMBER)},
      {PH_POP3_SHARD_NOT_EXPORTED(PH_NAME_OF)});
  ExpectEachExportedOrExcused(
      LmtpShardCounterTable(),
      {PH_SEND_STATS(PH_SEND_MEMBER) PH_LMTP_SESSION_COUNTERS(PH_SESSION_MEMBER)
           PH_PROXY_HEADER_COUNTERS(PH_PROXY_MEMBER)},
      {PH_LMTP_SHARD_NOT_EXPORTED(PH_NAME_OF)});
  ExpectEachExportedOrExcused(RingCounterTable(), {PH_RING_STATS(PH_NAME_OF)}, {});
  ExpectEachExportedOrExcused(
      InboxCounterTable(),
      {PH_INBOX_SENDER_STATS(PH_NAME_OF) PH_INBOX_OWNER_STATS(PH_NAME_OF)}, {});
  ExpectEachExportedOrExcused(ShardOffloadCounterTable(), {PH_SHARD_OFFLOAD_STATS(PH_NAME_OF)},
                              {});
  ExpectEachExportedOrExcused(BufferRingCounterTable(), {PH_BUFFER_RING_STATS(PH_NAME_OF)}, {});
  ExpectEachExportedOrExcused(AcceptorCounterTable(), {PH_ACCEPTOR_STATS(PH_NAME_OF)}, {});
  ExpectEachExportedOrExcused(OffloadPoolCounterTable(), {PH_OFFLOAD_STATS(PH_NAME_OF)}, {});
  ExpectEachExportedOrExcused(HttpListenerCounterTable(), {PH_HTTP_SERVER_STATS(PH_NAME_OF)}, {});
  ExpectEachExportedOrExcused(AuthPenaltyCounterTable(), {PH_AUTH_PENALTY_STATS(PH_NAME_OF)}, {});
  ExpectEachExportedOrExcused(auth::LdapCounterTable(), {PH_LDAP_STATS(PH_NAME_OF)}, {});
}

TEST(ShardCounters, OneFamilyIsOneTypeAcrossTables) {
  std::map<std::string, bool> gauge;
  for (const CounterTable* table : AllTables()) {
    for (const CounterRow& row : table->rows) {
      const bool is_gauge = row.kind == CounterKind::kGaugePerShard;
      auto [it, inserted] = gauge.emplace(std::string(row.name), is_gauge);
      EXPECT_EQ(it->second, is_gauge) << row.name;
    }
  }
}

// A scrape of one shard running POP3 and LMTP, plus the process and HTTP listener blocks.
struct Scrape {
  ShardStats pop3;
  LmtpStats lmtp;
  reactor::RingStats ring;
  reactor::InboxStats inbox;
  reactor::ShardOffloadStats offload;
  reactor::BufferRingStats buffers;
  reactor::AcceptorStats acceptor;
  reactor::OffloadStats offload_pool;
  ProcessCounters process;
  http::HttpServerStats http;
  auth::AuthPenaltyStats penalties;
  auth::LdapStats ldap;
  retention::RetentionStats retention;

  std::vector<MetricFamily> Families() const {
    std::vector<metrics::ShardCopy> shards(1);
    shards[0].blocks = {
        CounterBlockCopy::Of(CounterBlockRef::Of(Pop3ShardCounterTable(), pop3)),
        CounterBlockCopy::Of(CounterBlockRef::Of(LmtpShardCounterTable(), lmtp)),
        CounterBlockCopy::Of(CounterBlockRef::Of(RingCounterTable(), ring)),
        CounterBlockCopy::Of(CounterBlockRef::OfAtomicRows(InboxCounterTable(), inbox)),
        CounterBlockCopy::Of(CounterBlockRef::Of(ShardOffloadCounterTable(), offload)),
        CounterBlockCopy::Of(
            CounterBlockRef::Of(BufferRingCounterTable(), buffers).WithLabels("ring=pop3")),
        CounterBlockCopy::Of(
            CounterBlockRef::Of(AcceptorCounterTable(), acceptor).WithLabels("listener=lmtp")),
        CounterBlockCopy::Of(CounterBlockRef::Of(AuthPenaltyCounterTable(), penalties))};
    return metrics::Exporter::Families(
        shards, 1,
        {CounterBlockCopy::OfAtomics(ProcessCounterTable(), process),
         CounterBlockCopy::OfAtomics(HttpListenerCounterTable(), http).WithLabel("listener", "m"),
         CounterBlockCopy::OfAtomics(OffloadPoolCounterTable(), offload_pool)
             .WithLabel("pool", "io"),
         CounterBlockCopy::OfAtomics(auth::LdapCounterTable(), ldap).WithLabel("tenant", "t"),
         CounterBlockCopy::OfAtomics(retention::RetentionCounterTable(), retention)},
        nullptr, true);
  }
  std::string Text() const { return metrics::SerializeText(Families()); }
};

bool HasLabels(const prometheus::ClientMetric& m,
               const std::vector<std::pair<std::string, std::string>>& labels) {
  for (const auto& [key, value] : labels) {
    bool found = false;
    for (const auto& l : m.label) found |= l.name == key && l.value == value;
    if (!found) return false;
  }
  return true;
}

TEST(ShardCounters, EveryRowAppearsOnTheScrapeWithItsLabels) {
  const Scrape scrape;
  const std::vector<MetricFamily> families = scrape.Families();
  for (const CounterTable* table : AllTables()) {
    for (const CounterRow& row : table->rows) {
      auto labels = metrics::ParseCounterLabels(row.labels);
      if (table == &HttpListenerCounterTable()) {
        labels.emplace_back("listener", "m");
      } else if (table == &auth::LdapCounterTable()) {
        labels.emplace_back("tenant", "t");
      } else if (table == &retention::RetentionCounterTable()) {
        // process-wide: no shard label, gauges included
      } else if (row.kind != CounterKind::kCounter) {
        labels.emplace_back("shard", "0");
      }
      bool found = false;
      for (const MetricFamily& family : families) {
        if (family.name != row.name) continue;
        EXPECT_FALSE(family.help.empty()) << row.name;
        for (const auto& m : family.metric) found |= HasLabels(m, labels);
      }
      EXPECT_TRUE(found) << table->block << "." << row.member << " -> " << row.name << "{"
                         << row.labels << "} is not on the scrape";
    }
  }
}

bool Has(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

TEST(ShardCounters, RefusalsMoveTheirExportedSeries) {
  Scrape scrape;
  const std::string before = scrape.Text();
  EXPECT_TRUE(Has(before, "posthaste_pop3_limit_rejections_total{limit=\"per_ip\"} 0")) << before;
  EXPECT_TRUE(Has(before, "posthaste_lmtp_limit_rejections_total{limit=\"per_shard\"} 0"));

  // What the shards do when a limit refuses something.
  ++scrape.pop3.limit_per_ip;
  ++scrape.pop3.timeouts_send_stall;
  ++scrape.lmtp.limit_per_shard;
  ++scrape.lmtp.offload_rejected;
  ++scrape.pop3.offload_rejected;
  // Sessions' own limits, added to the shard's block when each session ends.
  pop3::Pop3SessionCounters pop3_session;
  pop3_session.bad_command_limit_closes = 1;
  pop3_session.command_line_too_long = 2;
  scrape.pop3.session += pop3_session;
  scrape.pop3.session += pop3_session;
  lmtp::LmtpSessionCounters lmtp_session;
  lmtp_session.recipients_over_limit = 3;
  lmtp_session.messages_too_large = 1;
  scrape.lmtp.session += lmtp_session;
  scrape.process.tls_reloads_failed.fetch_add(1);
  scrape.http.refused_per_ip.fetch_add(1);
  scrape.http.header_timeouts.fetch_add(2);
  ++scrape.penalties.address_evictions;

  const std::string text = scrape.Text();
  for (const char* line : {
           "posthaste_pop3_limit_rejections_total{limit=\"per_ip\"} 1",
           "posthaste_pop3_connections_refused_total{reason=\"per_ip\"} 1",
           "posthaste_pop3_timeouts_total{timeout=\"send_stall\"} 1",
           "posthaste_lmtp_limit_rejections_total{limit=\"per_shard\"} 1",
           "posthaste_offload_rejected_total 2",  // POP3 and LMTP add up
           "posthaste_pop3_protocol_closes_total{reason=\"bad_commands_max\"} 2",
           "posthaste_pop3_command_line_too_long_total 4",
           "posthaste_lmtp_recipients_refused_total{reason=\"recipients_max\"} 3",
           "posthaste_lmtp_messages_refused_total{reason=\"message_bytes_max\"} 1",
           "posthaste_tls_reloads_total{result=\"failed\"} 1",
           "posthaste_http_connections_refused_total{reason=\"per_ip\",listener=\"m\"} 1",
           "posthaste_http_timeouts_total{phase=\"header\",listener=\"m\"} 2",
           "posthaste_auth_penalty_evictions_total{table=\"address\"} 1",
       }) {
    EXPECT_TRUE(Has(text, line)) << line << "\n" << text;
  }
}

TEST(ShardCounters, RetrievedBytesAddUpTheSendPaths) {
  Scrape scrape;
  scrape.pop3.send.splice_bytes = 100;
  scrape.pop3.send.zc_bytes = 20;
  scrape.pop3.send.copy_bytes = 3;
  scrape.pop3.send.zc_fallback_bytes = 4;
  scrape.pop3.tls_body_bytes = 5;
  const std::string text = scrape.Text();
  EXPECT_TRUE(Has(text, "posthaste_pop3_retrieved_bytes_total{path=\"zero_copy\"} 120")) << text;
  EXPECT_TRUE(Has(text, "posthaste_pop3_retrieved_bytes_total{path=\"copied\"} 12")) << text;
  EXPECT_TRUE(Has(text, "posthaste_pop3_body_bytes_total{path=\"splice\"} 100")) << text;
  EXPECT_TRUE(Has(text, "posthaste_pop3_body_bytes_total{path=\"tls_userspace\"} 5")) << text;
}

// The reactor's own refusal and exhaustion counters reach the scrape with the labels of the
// block that counted them.
TEST(ShardCounters, ReactorRefusalsMoveTheirExportedSeries) {
  Scrape scrape;
  scrape.inbox.rejected_full.fetch_add(2);
  scrape.inbox.rejected_closed.fetch_add(1);
  scrape.inbox.dropped_at_close = 3;
  scrape.offload.io_refused = 4;
  scrape.offload.pending = 5;
  scrape.buffers.exhausted = 6;
  scrape.buffers.waiters_rearmed = 7;
  scrape.acceptor.errors_emfile = 8;
  scrape.acceptor.errors_enfile = 11;
  scrape.acceptor.refused_descriptors = 12;
  scrape.offload_pool.rejected_full.fetch_add(9);
  scrape.offload_pool.replies_dropped.fetch_add(10);
  const std::string text = scrape.Text();
  for (const char* line : {
           "posthaste_reactor_inbox_messages_total{result=\"refused_full\",shard=\"0\"} 2",
           "posthaste_reactor_inbox_messages_total{result=\"refused_closed\",shard=\"0\"} 1",
           "posthaste_reactor_inbox_messages_dropped_total{shard=\"0\"} 3",
           "posthaste_reactor_offload_jobs_total{pool=\"io\",result=\"refused\",shard=\"0\"} 4",
           "posthaste_reactor_offload_pending_jobs{shard=\"0\"} 5",
           "posthaste_reactor_buffer_ring_exhausted_total{ring=\"pop3\",shard=\"0\"} 6",
           "posthaste_reactor_buffer_ring_rearms_total{ring=\"pop3\",shard=\"0\"} 7",
           "posthaste_reactor_accept_errors_total{errno=\"EMFILE\",listener=\"lmtp\",shard=\"0\"} 8",
           "posthaste_reactor_accept_errors_total{errno=\"ENFILE\",listener=\"lmtp\",shard=\"0\"} 11",
           "posthaste_reactor_accept_refused_total{listener=\"lmtp\",shard=\"0\"} 12",
           "posthaste_offload_pool_jobs_total{result=\"refused\",pool=\"io\"} 9",
           "posthaste_offload_pool_replies_dropped_total{pool=\"io\"} 10",
       }) {
    EXPECT_TRUE(Has(text, line)) << line << "\n" << text;
  }
}

}  // namespace
}  // namespace posthaste::server
