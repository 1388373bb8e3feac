// ServiceShard on a real reactor: it registers the reactor's counter blocks (ring, inbox,
// offload, and each buffer ring and listener a service adds) so a scrape of the shard shows
// every one of their rows with the shard's and the block's labels, and the counts move with
// what the shard did; RunOn reaches a peer; the services' hooks run at stop and once drained,
// before the shard frees its buffer rings.
#include "server/shard/service_shard.h"

#include <unistd.h>

#include <chrono>
#include <future>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "metrics/exporter.h"
#include "server/counters.h"
#include "server/reactor/net.h"
#include "server/reactor/testing/loopback.h"
#include "server/shard/shard_listener.h"

namespace posthaste::server {
namespace {

using metrics::CounterRow;
using metrics::CounterTable;

// Runs `fn` on shard `index`'s thread and waits for it (bounded).
template <typename Fn>
void RunOnShard(reactor::Reactor& reactor, uint32_t index, Fn fn) {
  std::promise<void> done;
  ASSERT_TRUE(reactor.shard(index).inbox().Post([&] {
    fn();
    done.set_value();
  }));
  ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
}

bool Has(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

// The family named `name` has a sample whose labels start with `labels` (the row's and the
// block's) and end with shard="<index>".
bool HasSeries(const std::vector<prometheus::MetricFamily>& families, std::string_view name,
               const std::vector<std::pair<std::string, std::string>>& labels) {
  for (const prometheus::MetricFamily& family : families) {
    if (family.name != name) continue;
    for (const prometheus::ClientMetric& m : family.metric) {
      if (m.label.size() != labels.size()) continue;
      bool same = true;
      for (size_t i = 0; i < labels.size(); ++i) {
        same &= m.label[i].name == labels[i].first && m.label[i].value == labels[i].second;
      }
      if (same) return true;
    }
  }
  return false;
}

TEST(ServiceShardTest, EveryReactorCounterOfTheShardIsOnTheScrape) {
  auto reactor = reactor::Reactor::Create({.shards = 2}).value();
  ServiceShards shards(ServiceShardOptions{}, 2);
  auto listen_fd = reactor::CreateListener({.host = "127.0.0.1", .port = 0});
  ASSERT_TRUE(listen_fd.ok()) << listen_fd.status();
  const uint16_t port = reactor::LocalPort(*listen_fd).value();
  ShardListener listener;
  listener.set_fd(*listen_fd);
  std::promise<void> accepted;
  ASSERT_TRUE(reactor
                  ->Start([&](reactor::Shard& shard) {
                    ServiceShard& service_shard = shards[shard.index()];
                    service_shard.Start(shard);
                    if (shard.index() != 0) return;
                    service_shard.AddBufferRing(
                        {.group_id = 3, .buffer_count = 8, .buffer_bytes = 4096}, "ring=test");
                    listener.Start(service_shard, "listener=test", [&](int fd) {
                      close(fd);
                      accepted.set_value();
                    });
                    // What a service's lifecycle hooks do with its listener.
                    service_shard.OnStop([&] { listener.Stop(); });
                    service_shard.OnDrained([&] { listener.Release(); });
                  })
                  .ok());

  // Something for each block to count: a connection, a message to the peer, an offloaded job.
  const int client = reactor::testing::ConnectLoopback(port);
  ASSERT_GE(client, 0);
  ASSERT_EQ(accepted.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  close(client);
  std::promise<uint32_t> peer_ran;
  std::promise<void> offload_replied;
  RunOnShard(*reactor, 0, [&] {
    EXPECT_EQ(&shards[0].Peer(1), &shards[1]);
    EXPECT_TRUE(shards[0].RunOn(1, [&] { peer_ran.set_value(reactor->shard(1).index()); }));
    EXPECT_TRUE(shards[0].Offload([&]() -> reactor::OffloadPool::Reply {
      return [&] { offload_replied.set_value(); };
    }));
  });
  auto peer = peer_ran.get_future();
  ASSERT_EQ(peer.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(peer.get(), 1u);
  ASSERT_EQ(offload_replied.get_future().wait_for(std::chrono::seconds(10)),
            std::future_status::ready);

  std::vector<metrics::ShardCopy> copies(2);
  for (uint32_t i = 0; i < 2; ++i) {
    RunOnShard(*reactor, i, [&] {
      copies[i].metrics = shards[i].metrics();
      for (const metrics::CounterBlockRef& ref : shards[i].counter_blocks()) {
        copies[i].blocks.push_back(metrics::CounterBlockCopy::Of(ref));
      }
    });
  }
  reactor->Stop();
  reactor->Wait();

  const auto families = metrics::Exporter::Families(copies, 2, {}, nullptr, true);
  // Every row of every reactor table the shard keeps, with its labels.
  const std::vector<std::pair<const CounterTable*, std::vector<std::pair<std::string, std::string>>>>
      blocks = {{&RingCounterTable(), {}},
                {&InboxCounterTable(), {}},
                {&ShardOffloadCounterTable(), {}},
                {&BufferRingCounterTable(), {{"ring", "test"}}},
                {&AcceptorCounterTable(), {{"listener", "test"}}}};
  for (const auto& [table, block_labels] : blocks) {
    for (const CounterRow& row : table->rows) {
      auto labels = metrics::ParseCounterLabels(row.labels);
      labels.insert(labels.end(), block_labels.begin(), block_labels.end());
      labels.emplace_back("shard", "0");
      EXPECT_TRUE(HasSeries(families, row.name, labels))
          << table->block << "." << row.member << " -> " << row.name << " is not on the scrape";
    }
  }
  const std::string text = metrics::SerializeText(families);
  for (const char* line : {
           "posthaste_reactor_accepts_total{listener=\"test\",shard=\"0\"} 1",
           "posthaste_reactor_offload_jobs_total{pool=\"cpu\",result=\"queued\",shard=\"0\"} 1",
           "posthaste_reactor_offload_replies_run_total{shard=\"0\"} 1",
           "posthaste_reactor_offload_pending_jobs{shard=\"0\"} 0",
       }) {
    EXPECT_TRUE(Has(text, line)) << line << "\n" << text;
  }
  // The message shard 0 sent was queued in shard 1's inbox.
  bool peer_counted = false;
  for (const prometheus::MetricFamily& family : families) {
    if (family.name != "posthaste_reactor_inbox_messages_total") continue;
    for (const prometheus::ClientMetric& m : family.metric) {
      if (m.label.size() == 2 && m.label[0].value == "queued" && m.label[1].value == "1") {
        peer_counted = m.counter.value >= 1;
      }
    }
  }
  EXPECT_TRUE(peer_counted) << text;
}

// A service's hooks run at stop and when drained, before the shard frees the buffer rings the
// service's connections use.
TEST(ServiceShardTest, ServicesDrainBeforeTheShardFreesItsParts) {
  auto reactor = reactor::Reactor::Create({.shards = 1}).value();
  ServiceShards shards(ServiceShardOptions{}, 1);
  std::vector<std::string> events;
  reactor::BufferRing* buffers = nullptr;
  ASSERT_TRUE(reactor
                  ->Start([&](reactor::Shard& shard) {
                    ServiceShard& service_shard = shards[0];
                    service_shard.Start(shard);
                    buffers = &service_shard.AddBufferRing(
                        {.group_id = 0, .buffer_count = 8, .buffer_bytes = 4096}, "ring=test");
                    service_shard.OnStop([&] { events.push_back("stop"); });
                    service_shard.OnDrained([&] {
                      // The ring is still there for the service's connections to give back.
                      events.push_back(buffers->stats().buffers_taken == 0 ? "drained" : "?");
                    });
                  })
                  .ok());
  reactor->Stop();
  reactor->Wait();
  EXPECT_EQ(events, (std::vector<std::string>{"stop", "drained"}));
}

}  // namespace
}  // namespace posthaste::server
