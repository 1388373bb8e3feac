// LmtpAdapter on a FakeTransport and a FakeLmtpBackend: the session's actions reach the
// transport and the backend, replies wait for every copy, back-pressure pauses receiving, and
// the idle timeout, drain, peer FIN and resets end the connection only once every copy is back.
#include "server/lmtp_service/lmtp_adapter.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "metrics/shard_metrics.h"
#include "server/lmtp_service/lmtp_counters.h"
#include "server/lmtp_service/testing/fake_backend.h"
#include "server/transport/testing/fake_transport.h"

namespace posthaste::server {
namespace {

using lmtp::LmtpDeliveryResult;
using lmtp::LmtpRecipientVerdict;
using testing::FakeLmtpBackend;
using transport::CloseReason;
using transport::FakeTransport;

constexpr uint64_t kIdleNs = 300'000'000'000;

const std::string kGreeting = "220 lmtp.example LMTP posthaste ready\r\n";
const std::string kLhloReply =
    "250-lmtp.example\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n"
    "250 SIZE 1048576\r\n";
const std::string kOk = "250 2.0.0 OK\r\n";
const std::string kMailOk = "250 2.1.0 OK\r\n";
const std::string kRcptOk = "250 2.1.5 OK\r\n";
const std::string kStartData = "354 Start mail input; end with <CRLF>.<CRLF>\r\n";
const std::string kShutdown = "421 4.3.2 lmtp.example Service shutting down\r\n";
const std::string kIdle = "421 4.4.2 lmtp.example Idle timeout, closing connection\r\n";
const std::string kMessage = "Subject: hi\r\n\r\nbody\r\n";
const std::string kStored = "Return-Path: <a@b.test>\r\n" + kMessage;

std::string Delivered(const std::string& rcpt) { return "250 2.1.5 <" + rcpt + "> delivered\r\n"; }

LmtpAdapterOptions TestOptions() {
  LmtpAdapterOptions options;
  options.session.hostname = "lmtp.example";
  options.session.message_bytes_max = 1024 * 1024;
  options.idle_timeout_ns = kIdleNs;
  return options;
}

class LmtpAdapterTest : public ::testing::Test {
 protected:
  void Open(LmtpAdapterOptions options = TestOptions(), bool over_capacity = false) {
    auto transport = std::make_unique<FakeTransport>();
    transport_ = transport.get();
    adapter_ = std::make_unique<LmtpAdapter>(std::move(options), std::move(transport), backend_,
                                             stats_, metrics_, [this] { ++finished_; });
    if (over_capacity) {
      adapter_->StartOverCapacity();
    } else {
      adapter_->Start();
    }
  }

  // Lets the "kernel" take all output (each drain may let the session say more).
  std::string Sent() {
    while (transport_->DrainOutput()) {
    }
    return transport_->TakeSentText();
  }
  std::string Say(std::string_view input) {
    transport_->Receive(input);
    return Sent();
  }

  // Greeted, LHLO, MAIL and accepted RCPTs for `recipients`; DATA not yet sent.
  void OpenTransaction(std::initializer_list<std::string> recipients) {
    Open();
    ASSERT_EQ(Sent(), kGreeting);
    ASSERT_EQ(Say("LHLO mta.test\r\nMAIL FROM:<a@b.test>\r\n"), kLhloReply + kMailOk);
    for (const std::string& rcpt : recipients) {
      transport_->Receive("RCPT TO:<" + rcpt + ">\r\n");
      ASSERT_EQ(backend_.pending_checks().size(), 1u);
      EXPECT_EQ(backend_.pending_checks()[0].address, rcpt);
      backend_.AcceptCheck();
      ASSERT_EQ(Sent(), kRcptOk);
    }
  }

  FakeLmtpBackend backend_;
  LmtpStats stats_;
  metrics::ShardMetrics metrics_;
  int finished_ = 0;
  FakeTransport* transport_ = nullptr;
  std::unique_ptr<LmtpAdapter> adapter_;
};

TEST_F(LmtpAdapterTest, RepliesToEachRecipientOnlyAfterEveryCopyIsBack) {
  OpenTransaction({"pat@x.test", "green@x.test"});
  EXPECT_EQ(Say("DATA\r\n" + kMessage + ".\r\n"), kStartData);
  // One copy per recipient, all reading the session's one message buffer, concurrently.
  ASSERT_EQ(backend_.pending_copies().size(), 2u);
  EXPECT_EQ(backend_.pending_copies()[0].message.data(),
            backend_.pending_copies()[1].message.data());
  backend_.DeliverCopy("green@x.test");  // the second copy finishes first
  EXPECT_EQ(Sent(), "");
  backend_.DeliverCopy("pat@x.test");
  EXPECT_EQ(Sent(), Delivered("pat@x.test") + Delivered("green@x.test"));  // in RCPT order
  EXPECT_EQ(backend_.stored().at("pat@x.test").at(0), kStored);
  EXPECT_EQ(backend_.stored().at("green@x.test").at(0), kStored);
  EXPECT_EQ(stats_.messages_received, 1u);
  EXPECT_EQ(stats_.copies_delivered, 2u);
  EXPECT_EQ(metrics_.lmtp_deliveries[static_cast<size_t>(metrics::LmtpResult::kDelivered)], 2u);
  EXPECT_EQ(Say("QUIT\r\n"), "221 2.0.0 lmtp.example closing connection\r\n");
  EXPECT_TRUE(transport_->close_requested());
  transport_->CompleteClose();
  EXPECT_EQ(finished_, 1);
}

TEST_F(LmtpAdapterTest, AFailedCopyGetsItsOwnReplyAndTheOthersTheirs) {
  OpenTransaction({"pat@x.test", "full@x.test", "pat@x.test"});
  EXPECT_EQ(Say("DATA\r\n" + kMessage + ".\r\n"), kStartData);
  ASSERT_EQ(backend_.pending_copies().size(), 2u);  // the duplicate RCPT is one copy
  backend_.AnswerCopy("full@x.test", {LmtpDeliveryResult::Code::kOverQuotaTemp, ""});
  backend_.DeliverCopy("pat@x.test");
  EXPECT_EQ(Sent(), Delivered("pat@x.test") +
                        "452 4.2.2 <full@x.test> is temporarily over quota\r\n" +
                        Delivered("pat@x.test"));
  EXPECT_EQ(stats_.copies_delivered, 1u);
  EXPECT_EQ(stats_.copies_failed, 1u);
  EXPECT_EQ(metrics_.lmtp_deliveries[static_cast<size_t>(metrics::LmtpResult::kOverQuota)], 1u);
}

TEST_F(LmtpAdapterTest, RefusedRecipientAndWorkTheBackendCannotStart) {
  OpenTransaction({});
  transport_->Receive("RCPT TO:<nobody@x.test>\r\n");
  backend_.AnswerCheck({LmtpRecipientVerdict::Code::kUnknown, "", ""});
  EXPECT_EQ(Sent(), "550 5.1.1 No such user here\r\n");
  EXPECT_EQ(stats_.recipients_refused, 1u);
  transport_->Receive("RCPT TO:<pat@x.test>\r\n");
  backend_.AcceptCheck();
  EXPECT_EQ(Sent(), kRcptOk);
  // The offload queue is full: a check and a copy fail as temporary errors at once.
  backend_.set_refuse_work(true);
  EXPECT_EQ(Say("RCPT TO:<green@x.test>\r\n"),
            "451 4.3.0 <green@x.test> Temporary internal error\r\n");
  EXPECT_EQ(Say("DATA\r\n" + kMessage + ".\r\n"),
            kStartData + "451 4.3.0 <pat@x.test> Temporary internal error\r\n");
  EXPECT_EQ(stats_.offload_rejected, 2u);
  EXPECT_EQ(stats_.recipients_checked, 3u);
}

TEST_F(LmtpAdapterTest, PipelinedCommandsAreAnsweredInOrderOneCheckAtATime) {
  Open();
  Sent();
  transport_->Receive(
      "LHLO mta.test\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<pat@x.test>\r\n"
      "RCPT TO:<green@x.test>\r\nDATA\r\n" +
      kMessage + ".\r\nNOOP\r\n");
  EXPECT_EQ(Sent(), kLhloReply + kMailOk);
  EXPECT_EQ(backend_.pending_checks().size(), 1u);  // the next RCPT waits for this verdict
  backend_.AcceptCheck();
  EXPECT_EQ(backend_.pending_checks().size(), 1u);
  backend_.AcceptCheck();
  EXPECT_EQ(Sent(), kRcptOk + kRcptOk + kStartData);
  EXPECT_EQ(backend_.pending_copies().size(), 2u);
  backend_.DeliverCopy("pat@x.test");
  backend_.DeliverCopy("green@x.test");
  EXPECT_EQ(Sent(), Delivered("pat@x.test") + Delivered("green@x.test") + kOk);
}

TEST_F(LmtpAdapterTest, UnreadRepliesPauseParsingAndThenReceiving) {
  LmtpAdapterOptions options = TestOptions();
  options.session.output_queued_bytes_max = 30;   // three NOOP replies
  options.session.input_buffered_bytes_max = 40;  // about seven NOOPs
  Open(options);
  Sent();
  std::string noops;
  for (int i = 0; i < 10; ++i) noops += "NOOP\r\n";
  transport_->Receive(noops);
  // The peer has not taken the replies: parsing stops, input piles up, receiving pauses.
  EXPECT_TRUE(transport_->receive_paused());
  EXPECT_EQ(transport_->TakeSentText(), "");
  std::string replies;
  while (transport_->DrainOutput()) replies += transport_->TakeSentText();
  std::string expected;
  for (int i = 0; i < 10; ++i) expected += kOk;
  EXPECT_EQ(replies, expected);
  EXPECT_FALSE(transport_->receive_paused());
  EXPECT_EQ(Say("NOOP\r\n"), kOk);
}

TEST_F(LmtpAdapterTest, IdleTimeoutAnswers421AndCloses) {
  Open();
  Sent();
  transport_->AdvanceBy(kIdleNs - 1);
  EXPECT_EQ(Say("LHLO mta.test\r\n"), kLhloReply);  // input restarts the idle clock
  transport_->AdvanceBy(kIdleNs - 1);
  EXPECT_FALSE(transport_->close_requested());
  EXPECT_EQ(stats_.timeouts_idle, 0u);
  transport_->AdvanceBy(1);
  EXPECT_EQ(Sent(), kIdle);
  EXPECT_TRUE(transport_->close_requested());
  EXPECT_EQ(stats_.timeouts_idle, 1u);
  EXPECT_EQ(finished_, 0);
  transport_->CompleteClose();
  EXPECT_EQ(finished_, 1);
}

TEST_F(LmtpAdapterTest, NoIdleTimeoutWhileTheStoreWorks) {
  OpenTransaction({"pat@x.test"});
  EXPECT_EQ(Say("DATA\r\n" + kMessage + ".\r\n"), kStartData);
  transport_->AdvanceBy(2 * kIdleNs);  // a slow disk: the peer is waiting on us
  EXPECT_FALSE(transport_->close_requested());
  backend_.DeliverCopy("pat@x.test");
  EXPECT_EQ(Sent(), Delivered("pat@x.test"));
  transport_->AdvanceBy(kIdleNs - 1);  // the peer's idle time began with our answer
  EXPECT_FALSE(transport_->close_requested());
  transport_->AdvanceBy(1);
  EXPECT_EQ(Sent(), kIdle);
}

TEST_F(LmtpAdapterTest, IdlePeerThatReadsNothingIsAborted) {
  Open();
  transport_->AdvanceBy(kIdleNs);  // the greeting was never taken
  EXPECT_TRUE(transport_->abort_requested());
  transport_->CompleteClose();
  EXPECT_EQ(transport_->SentText(), "");
  EXPECT_EQ(finished_, 1);
}

TEST_F(LmtpAdapterTest, DrainBetweenTransactionsAnswers421AtOnce) {
  Open();
  Sent();
  EXPECT_EQ(Say("LHLO mta.test\r\n"), kLhloReply);
  adapter_->Drain();
  EXPECT_EQ(Sent(), kShutdown);
  EXPECT_TRUE(transport_->close_requested());
  transport_->CompleteClose();
  EXPECT_EQ(finished_, 1);
}

TEST_F(LmtpAdapterTest, DrainDuringDataFinishesTheTransactionFirst) {
  OpenTransaction({"pat@x.test"});
  EXPECT_EQ(Say("DATA\r\nSubject: hi\r\n"), kStartData);
  adapter_->Drain();
  EXPECT_EQ(Sent(), "");
  EXPECT_FALSE(transport_->close_requested());
  transport_->Receive("\r\nbody\r\n.\r\n");
  ASSERT_EQ(backend_.pending_copies().size(), 1u);
  EXPECT_FALSE(transport_->close_requested());
  backend_.DeliverCopy("pat@x.test");
  EXPECT_EQ(Sent(), Delivered("pat@x.test") + kShutdown);
  EXPECT_TRUE(transport_->close_requested());
  EXPECT_EQ(backend_.stored().at("pat@x.test").at(0), kStored);
}

TEST_F(LmtpAdapterTest, PeerFinWithCopiesInFlightGetsItsRepliesThenCloses) {
  OpenTransaction({"pat@x.test", "green@x.test"});
  transport_->Receive("DATA\r\n" + kMessage + ".\r\n");
  transport_->PeerFinishes();
  EXPECT_EQ(Sent(), kStartData);
  EXPECT_FALSE(transport_->close_requested());
  backend_.DeliverCopy("pat@x.test");
  EXPECT_FALSE(transport_->close_requested());
  backend_.DeliverCopy("green@x.test");
  EXPECT_EQ(Sent(), Delivered("pat@x.test") + Delivered("green@x.test"));
  EXPECT_TRUE(transport_->close_requested());
  transport_->CompleteClose();
  EXPECT_EQ(finished_, 1);
}

TEST_F(LmtpAdapterTest, PeerFinInsideTheMessageStoresNothing) {
  OpenTransaction({"pat@x.test"});
  EXPECT_EQ(Say("DATA\r\nSubject: cut\r\n"), kStartData);
  transport_->PeerFinishes();
  EXPECT_TRUE(transport_->close_requested());
  transport_->CompleteClose();
  EXPECT_EQ(backend_.copies_started(), 0u);
  EXPECT_EQ(finished_, 1);
}

TEST_F(LmtpAdapterTest, ResetWithCopiesInFlightFinishesOnlyWhenTheyAreBack) {
  OpenTransaction({"pat@x.test", "green@x.test"});
  transport_->Receive("DATA\r\n" + kMessage + ".\r\n");
  transport_->FailConnection(CloseReason::kPeerReset);
  EXPECT_EQ(finished_, 0);  // the copies still read the session's buffer
  backend_.DeliverCopy("green@x.test");
  EXPECT_EQ(finished_, 0);
  backend_.DeliverCopy("pat@x.test");
  EXPECT_EQ(finished_, 1);
  EXPECT_EQ(backend_.stored().at("pat@x.test").at(0), kStored);
  EXPECT_EQ(stats_.copies_delivered, 2u);
  adapter_.reset();
}

TEST_F(LmtpAdapterTest, AbortDuringACheckFinishesWhenTheVerdictIsBack) {
  OpenTransaction({});
  transport_->Receive("RCPT TO:<pat@x.test>\r\n");
  adapter_->Abort();
  EXPECT_TRUE(transport_->abort_requested());
  transport_->CompleteClose();
  EXPECT_EQ(finished_, 0);
  backend_.AcceptCheck();
  EXPECT_EQ(finished_, 1);
  EXPECT_EQ(transport_->TakeSentText(), "");
}

TEST_F(LmtpAdapterTest, OverCapacityIsRefusedWithTheSessionsReply) {
  Open(TestOptions(), /*over_capacity=*/true);
  EXPECT_EQ(Sent(), "421 4.3.2 Server at capacity, try again later\r\n");
  EXPECT_TRUE(transport_->close_requested());
  transport_->CompleteClose();
  EXPECT_EQ(finished_, 1);
}

TEST_F(LmtpAdapterTest, SendStallIsCounted) {
  Open();
  transport_->FailConnection(CloseReason::kSendStalled);
  EXPECT_EQ(stats_.timeouts_send_stall, 1u);
  EXPECT_EQ(finished_, 1);
}

}  // namespace
}  // namespace posthaste::server
