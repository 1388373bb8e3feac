#include "server/transport/testing/fake_transport.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace posthaste::server::transport {
namespace {

// Records callbacks; answers input with an echo to show no callback re-enters a Transport call.
class EchoClient : public TransportClient {
 public:
  explicit EchoClient(Transport& transport) : transport_(transport) {}
  void OnReceive(std::string_view bytes) override {
    events.push_back("receive:" + std::string(bytes));
    transport_.Send(bytes);
    transport_.Flush();
  }
  void OnPeerFinished() override { events.push_back("peer_finished"); }
  void OnOutputDrained() override { events.push_back("drained"); }
  void OnTlsStarted(const TlsSessionInfo& info) override {
    events.push_back("tls:" + std::string(info.version));
  }
  void OnDeadline() override { events.push_back("deadline"); }
  void OnClosed(CloseReason reason) override {
    events.push_back("closed:" + std::string(CloseReasonName(reason)));
  }
  std::vector<std::string> events;

 private:
  Transport& transport_;
};

TEST(FakeTransportTest, OutputGoesOutOnlyWhenFlushedAndDrained) {
  FakeTransport transport;
  EchoClient client(transport);
  transport.Start(&client);
  transport.Send("+OK hello\r\n");
  EXPECT_TRUE(transport.OutputPending());
  EXPECT_FALSE(transport.DrainOutput());  // nothing flushed yet
  transport.Flush();
  EXPECT_TRUE(transport.DrainOutput());
  EXPECT_EQ(transport.TakeSentText(), "+OK hello\r\n");
  EXPECT_FALSE(transport.OutputPending());
  transport.Receive("NOOP\r\n");
  transport.SendFile({.fd = 7, .offset = 10, .length = 5});
  transport.Flush();
  transport.DrainOutput();
  EXPECT_EQ(transport.TakeSentText(), "NOOP\r\n<file 7:10+5>");
  EXPECT_EQ(transport.totals().file_bytes_sent, 5u);
  EXPECT_EQ(client.events, (std::vector<std::string>{"drained", "receive:NOOP\r\n", "drained"}));
}

TEST(FakeTransportTest, DeadlineFiresOnceWhenTheClockReachesIt) {
  FakeTransport transport;
  EchoClient client(transport);
  transport.Start(&client);
  transport.SetDeadline(transport.NowNs() + 100);
  transport.AdvanceBy(99);
  EXPECT_TRUE(client.events.empty());
  transport.AdvanceBy(1);
  transport.AdvanceBy(1000);
  EXPECT_EQ(client.events, (std::vector<std::string>{"deadline"}));
}

TEST(FakeTransportTest, StartTlsMarksLaterOutputAsEncrypted) {
  FakeTransport transport(PeerInfo{}, /*tls_available=*/true);
  EchoClient client(transport);
  transport.Start(&client);
  transport.Send("+OK begin TLS\r\n");
  transport.StartTls();
  transport.CompleteTlsHandshake();
  transport.Send("+OK secret\r\n");
  transport.Flush();
  transport.DrainOutput();
  ASSERT_EQ(transport.sent().size(), 2u);
  EXPECT_FALSE(transport.sent()[0].under_tls);
  EXPECT_TRUE(transport.sent()[1].under_tls);
  EXPECT_EQ(client.events.front(), "tls:TLSv1.3");
}

TEST(FakeTransportTest, CloseFlushesThenEndsAbortDrops) {
  FakeTransport graceful;
  EchoClient a(graceful);
  graceful.Start(&a);
  graceful.Send("+OK bye\r\n");
  graceful.Close();
  EXPECT_FALSE(graceful.closed_reason().has_value());
  graceful.CompleteClose();
  EXPECT_EQ(graceful.SentText(), "+OK bye\r\n");
  EXPECT_EQ(a.events.back(), "closed:closed");

  FakeTransport aborted;
  EchoClient b(aborted);
  aborted.Start(&b);
  aborted.Send("+OK lost\r\n");
  aborted.Abort();
  aborted.CompleteClose();
  EXPECT_EQ(aborted.SentText(), "");
  EXPECT_EQ(b.events.back(), "closed:aborted");
}

}  // namespace
}  // namespace posthaste::server::transport
