// Pop3Adapter on FakeTransport and FakePop3Backend: what it sends and in which order, what it
// asks of the backend, its clocks, refusals, STLS, back-pressure and how it ends.
#include "server/pop3_service/pop3_adapter.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/pop3_service/testing/fake_pop3_backend.h"
#include "server/transport/testing/fake_transport.h"

namespace posthaste::server::pop3_service {
namespace {

using ::testing::ElementsAre;
using transport::CloseReason;
using transport::FakeTransport;

constexpr uint64_t kId = 7;
constexpr uint64_t kSecond = 1'000'000'000;
constexpr uint64_t kAuthTimeout = 60 * kSecond;
constexpr uint64_t kIdleTimeout = 600 * kSecond;
constexpr char kGreeting[] = "+OK POP3 server ready\r\n";
constexpr char kLoggedIn[] = "+OK mrose@example.org's maildrop has 3 messages (2150 octets)\r\n";

struct Scenario {
  bool tls_available = false;
  bool implicit_tls = false;
  size_t input_buffered_bytes_max = 64 * 1024;
  size_t output_queued_bytes_max = 64 * 1024;
  std::vector<uint64_t> sizes = {120, 2000, 30};
  bool via_trusted_proxy = false;           // the peer is in --proxy_networks: XCLIENT is accepted
  RedownloadAlarmOptions redownload_alarm;  // default: 500 messages, more than the sizes
  bool check_stored_messages = false;       // --verify_stored_messages
};

class Pop3AdapterTest : public ::testing::Test {
 protected:
  void Make(Scenario setup) {
    maildrop_ = std::make_shared<FakeMaildrop>(setup.sizes);
    Pop3AdapterOptions options;
    options.session.policy.plaintext_requires_tls = false;
    options.session.tls_available = setup.tls_available && !setup.implicit_tls;
    options.session.tls_active = setup.implicit_tls;
    options.session.hostname = "pop.example";
    options.session.input_buffered_bytes_max = setup.input_buffered_bytes_max;
    options.session.output_queued_bytes_max = setup.output_queued_bytes_max;
    options.session.peer_is_trusted_proxy = setup.via_trusted_proxy;
    options.implicit_tls = setup.implicit_tls;
    options.auth_timeout_ns = kAuthTimeout;
    options.idle_timeout_ns = kIdleTimeout;
    options.metrics = &metrics_;
    options.tenant_series = &series_;
    options.redownload_alarm = setup.redownload_alarm;
    options.session.check_stored_messages = setup.check_stored_messages;
    transport::PeerInfo peer;
    peer.ip = "192.0.2.1";
    auto transport = std::make_unique<FakeTransport>(peer, setup.tls_available, setup.implicit_tls);
    transport_ = transport.get();
    adapter_ = std::make_unique<Pop3Adapter>(kId, std::move(transport), backend_, options);
  }

  void Start(Scenario setup = {}) {
    Make(setup);
    adapter_->Start();
  }

  // Completes everything flushed, as often as the adapter flushes more.
  void Drain() {
    while (transport_->DrainOutput()) {
    }
  }
  // The peer sends `input`; returns what the adapter sent in answer (once drained).
  std::string Exchange(std::string_view input) {
    transport_->Receive(input);
    Drain();
    return transport_->TakeSentText();
  }
  void Login() {
    ASSERT_EQ(Exchange(""), kGreeting);
    EXPECT_EQ(Exchange("USER mrose\r\nPASS secret\r\n"), "+OK\r\n");
    EXPECT_THAT(backend_.TakeCalls(), ElementsAre("admit 7 192.0.2.1", "auth 7 mrose"));
    EXPECT_EQ(backend_.last_secret(), "secret");
    adapter_->OnAuthenticated({pop3::Pop3AuthResult::Code::kOk, "mrose@example.org"});
    EXPECT_THAT(backend_.TakeCalls(), ElementsAre("open 7 mrose@example.org"));
    adapter_->OnMaildropOpened({pop3::Pop3MaildropResult::Code::kOk, maildrop_});
    Drain();
    EXPECT_EQ(transport_->TakeSentText(), kLoggedIn);
  }
  // After Close(): the transport finishes, and the adapter reports how the connection ended.
  Pop3ConnectionEnd FinishClose() {
    EXPECT_TRUE(transport_->close_requested() || transport_->abort_requested());
    transport_->CompleteClose();
    EXPECT_TRUE(backend_.finished().has_value());
    return backend_.finished().value_or(Pop3ConnectionEnd{});
  }

  metrics::ShardMetrics metrics_;
  metrics::ShardTenantSeries series_{nullptr, metrics_, 2, 0};
  FakePop3Backend backend_;
  std::shared_ptr<FakeMaildrop> maildrop_;
  FakeTransport* transport_ = nullptr;  // owned by adapter_
  std::unique_ptr<Pop3Adapter> adapter_;
};

TEST_F(Pop3AdapterTest, GreetsOnceAdmitted) {
  backend_.admit_at_once = false;
  Make({});
  adapter_->Start();
  EXPECT_TRUE(transport_->started());
  Drain();
  EXPECT_EQ(transport_->TakeSentText(), "");  // nothing before admission
  transport_->Receive("CAPA\r\n");            // waits behind the greeting
  adapter_->OnAdmitted(std::nullopt);
  Drain();
  EXPECT_THAT(transport_->TakeSentText(),
              ::testing::StartsWith(std::string(kGreeting) + "+OK Capability list follows\r\n"));
}

TEST_F(Pop3AdapterTest, UserPassAuthenticatesThenLocksAndOpens) {
  Start();
  Login();
  EXPECT_EQ(adapter_->session().state(), pop3::Pop3State::kTransaction);
  EXPECT_EQ(Exchange("STAT\r\n"), "+OK 3 2150\r\n");
}

TEST_F(Pop3AdapterTest, XclientNamesTheClientToTheBackendBeforeItsLogin) {
  Start({.via_trusted_proxy = true});
  EXPECT_THAT(Exchange(""), ::testing::StartsWith("+OK [XCLIENT] "));
  EXPECT_EQ(Exchange("XCLIENT ADDR=198.51.100.23 PORT=40000\r\nUSER mrose\r\nPASS secret\r\n"),
            "+OK XCLIENT accepted\r\n+OK\r\n");
  EXPECT_THAT(backend_.TakeCalls(),
              ElementsAre("admit 7 192.0.2.1", "client 7 198.51.100.23", "auth 7 mrose"));
}

TEST_F(Pop3AdapterTest, WithoutXclientTheBackendKeepsTheAdmittedAddress) {
  Start({.via_trusted_proxy = true});
  Exchange("");
  Exchange("USER mrose\r\nPASS secret\r\n");
  EXPECT_THAT(backend_.TakeCalls(), ElementsAre("admit 7 192.0.2.1", "auth 7 mrose"));
}

TEST_F(Pop3AdapterTest, RetrSendsStatusBodyAndTerminatorInOrderInOneFlush) {
  Start();
  Login();
  transport_->Receive("RETR 2\r\nNOOP\r\n");
  EXPECT_TRUE(transport_->queued().empty());  // flushed at once, as one batch
  Drain();
  ASSERT_EQ(transport_->sent().size(), 7u);  // greeting, two login replies, then these
  EXPECT_FALSE(transport_->sent()[3].is_file);
  EXPECT_TRUE(transport_->sent()[4].is_file);
  EXPECT_EQ(transport_->TakeSentText(), "+OK 2000 octets\r\n<file 50:1000+2000>.\r\n+OK\r\n");
  EXPECT_EQ(maildrop_->locate_calls(), 1);  // the stored message is looked up once
}

TEST_F(Pop3AdapterTest, RetrievingMostOfTheMailboxIsCountedOnceForTheTenant) {
  const auto alarms = [&] {
    return metrics_.tenants[metrics::TenantLabels::kOther].redownload_sessions;
  };
  Start({.redownload_alarm = {.percent = 50, .messages_min = 3}});
  Login();
  EXPECT_EQ(Exchange("RETR 1\r\nRETR 1\r\n").substr(0, 3), "+OK");
  EXPECT_EQ(alarms(), 0u);  // one distinct message of three
  Exchange("RETR 3\r\n");
  EXPECT_EQ(alarms(), 1u);  // two of three: more than half
  Exchange("RETR 2\r\n");
  EXPECT_EQ(alarms(), 1u);  // once per session
}

TEST_F(Pop3AdapterTest, RetrievingAllOfASmallMailboxRaisesNoAlarm) {
  Start();  // 3 messages, below the default minimum
  Login();
  Exchange("RETR 1\r\nRETR 2\r\nRETR 3\r\n");
  EXPECT_EQ(metrics_.tenants[metrics::TenantLabels::kOther].redownload_sessions, 0u);
}

TEST_F(Pop3AdapterTest, TopWaitsForTheLengthFromTheBackendAndKeepsOrder) {
  Start();
  Login();
  EXPECT_EQ(Exchange("TOP 2 5\r\nNOOP\r\n"), "+OK\r\n");  // the NOOP's reply waits for the body
  EXPECT_THAT(backend_.TakeCalls(), ElementsAre("top 7 1 5"));
  adapter_->OnTopLength(700);
  Drain();
  EXPECT_EQ(transport_->TakeSentText(), "<file 50:1000+700>.\r\n+OK\r\n");
  EXPECT_EQ(maildrop_->locate_calls(), 1);
}

// What RETR and TOP send is reported to the backend, which counts it towards the tenant's
// daily download limit: RETR its size, TOP the length it found.
TEST_F(Pop3AdapterTest, RetrAndTopReportWhatTheySendForTheDownloadLimit) {
  Start();
  Login();
  backend_.TakeCalls();
  Exchange("RETR 2\r\n");
  Exchange("TOP 2 5\r\n");
  adapter_->OnTopLength(700);
  Drain();
  EXPECT_THAT(backend_.TakeCalls(),
              ElementsAre("downloaded 7 2000", "top 7 1 5", "downloaded 7 700"));
}

TEST_F(Pop3AdapterTest, TopOfHeaderlessZeroLengthSendsOnlyTheTerminator) {
  Start();
  Login();
  EXPECT_EQ(Exchange("TOP 1 0\r\n"), "+OK\r\n");
  adapter_->OnTopLength(0);
  Drain();
  EXPECT_EQ(transport_->TakeSentText(), ".\r\n");
}

TEST_F(Pop3AdapterTest, TopLengthFailureAbortsTheConnection) {
  Start();
  Login();
  Exchange("TOP 2 5\r\n");
  adapter_->OnTopLength(absl::DataLossError("segment ended inside a message"));
  EXPECT_TRUE(transport_->abort_requested());
  EXPECT_EQ(FinishClose().reason, CloseReason::kAborted);
}

// --verify_stored_messages: RETR asks the backend to check the stored bytes and sends nothing,
// not even its status line, until the answer; a damaged message then gets -ERR [SYS/PERM] and
// not one byte of it, and the session goes on.
TEST_F(Pop3AdapterTest, RetrWaitsForTheCheckAndRefusesADamagedMessage) {
  Start({.check_stored_messages = true});
  Login();
  backend_.TakeCalls();
  EXPECT_EQ(Exchange("RETR 2\r\nNOOP\r\n"), "");  // nothing until the check is answered
  EXPECT_THAT(backend_.TakeCalls(), ElementsAre("check 7 1"));
  adapter_->OnMessageChecked(
      absl::DataLossError("stored bytes fail their checksum (segment 1.seg offset 1000)"));
  Drain();
  EXPECT_EQ(transport_->TakeSentText(),
            "-ERR [SYS/PERM] Message 2 is damaged in storage and was not sent\r\n+OK\r\n");
  EXPECT_EQ(maildrop_->locate_calls(), 0);                  // never located, never sent
  EXPECT_THAT(backend_.TakeCalls(), ::testing::IsEmpty());  // nothing counted as downloaded
  // An intact message goes out by SendFile as before.
  EXPECT_EQ(Exchange("RETR 1\r\n"), "");
  EXPECT_THAT(backend_.TakeCalls(), ElementsAre("check 7 0"));
  adapter_->OnMessageChecked(absl::OkStatus());
  Drain();
  EXPECT_EQ(transport_->TakeSentText(), "+OK 120 octets\r\n<file 50:0+120>.\r\n");
  // A check that could not run is a temporary refusal.
  Exchange("RETR 3\r\n");
  adapter_->OnMessageChecked(absl::UnavailableError("offload queue full"));
  Drain();
  EXPECT_EQ(transport_->TakeSentText(),
            "-ERR [SYS/TEMP] Message cannot be read now, try again later\r\n");
  EXPECT_EQ(Exchange("STAT\r\n"), "+OK 3 2150\r\n");
}

TEST_F(Pop3AdapterTest, TopIsCheckedBeforeItsLengthIsFound) {
  Start({.check_stored_messages = true});
  Login();
  backend_.TakeCalls();
  EXPECT_EQ(Exchange("TOP 2 5\r\n"), "");
  EXPECT_THAT(backend_.TakeCalls(), ElementsAre("check 7 1"));
  adapter_->OnMessageChecked(absl::OkStatus());
  Drain();
  EXPECT_EQ(transport_->TakeSentText(), "+OK\r\n");
  EXPECT_THAT(backend_.TakeCalls(), ElementsAre("top 7 1 5"));
  adapter_->OnTopLength(700);
  Drain();
  EXPECT_EQ(transport_->TakeSentText(), "<file 50:1000+700>.\r\n");
  EXPECT_THAT(backend_.TakeCalls(), ElementsAre("downloaded 7 700"));
  // A damaged one: no length lookup, no bytes.
  Exchange("TOP 1 0\r\n");
  adapter_->OnMessageChecked(absl::InternalError("read segment 1.seg: Input/output error"));
  Drain();
  EXPECT_EQ(transport_->TakeSentText(),
            "-ERR [SYS/PERM] Message 1 is damaged in storage and was not sent\r\n");
  EXPECT_THAT(backend_.TakeCalls(), ElementsAre("check 7 0"));
}

TEST_F(Pop3AdapterTest, StlsAnswersInPlaintextThenRunsUnderTls) {
  Start({.tls_available = true});
  EXPECT_EQ(Exchange("STLS\r\n"), std::string(kGreeting) + "+OK Begin TLS negotiation\r\n");
  EXPECT_TRUE(transport_->tls_start_requested());
  EXPECT_FALSE(transport_->sent().back().under_tls);
  transport_->CompleteTlsHandshake();
  EXPECT_THAT(Exchange("CAPA\r\n"), ::testing::Not(::testing::HasSubstr("STLS")));
  EXPECT_TRUE(transport_->sent().back().under_tls);
  EXPECT_TRUE(adapter_->session().tls_active());
  Exchange("QUIT\r\n");
  EXPECT_EQ(FinishClose().reason, CloseReason::kClosed);
}

TEST_F(Pop3AdapterTest, HandshakesAreCountedByOutcome) {
  Start({.tls_available = true, .implicit_tls = true});
  transport_->CompleteTlsHandshake({.version = "TLSv1.3", .resumed = true});
  const auto tls13 = static_cast<size_t>(metrics::TlsVersion::kTls13);
  EXPECT_EQ(metrics_.tls_handshakes[tls13][static_cast<size_t>(metrics::TlsOutcome::kResumed)], 1u);

  Start({.tls_available = true, .implicit_tls = true});  // a second connection, failing
  transport_->FailConnection(CloseReason::kTlsFailed);
  const auto other = static_cast<size_t>(metrics::TlsVersion::kOther);
  EXPECT_EQ(metrics_.tls_handshakes[other][static_cast<size_t>(metrics::TlsOutcome::kFailed)], 1u);
}

TEST_F(Pop3AdapterTest, ImplicitTlsIsNotReportedToTheSession) {
  Start({.tls_available = true, .implicit_tls = true});
  transport_->CompleteTlsHandshake();
  EXPECT_EQ(Exchange("CAPA\r\n").substr(0, sizeof(kGreeting) - 1), kGreeting);
  EXPECT_TRUE(adapter_->session().tls_active());
}

// The adapter gives the session SASLprep (server/auth/utf8_credential.h): CAPA says so.
TEST_F(Pop3AdapterTest, SessionsPrepareUtf8Credentials) {
  Start({});
  EXPECT_THAT(Exchange("CAPA\r\n"), ::testing::HasSubstr("\r\nUTF8 USER\r\nLANG\r\n"));
}

// SASL beyond PLAIN/LOGIN: the backend's offer reaches CAPA and changes with a TLS 1.3
// binding; steps go to StepSasl with the binding, challenges come back as "+ ", "*" is told.
TEST_F(Pop3AdapterTest, SaslStepsGoToTheBackendWithTheChannelBinding) {
  Start({.tls_available = true});
  EXPECT_THAT(Exchange("CAPA\r\n"), ::testing::HasSubstr("SASL PLAIN LOGIN SCRAM-SHA-256\r\n"));
  Exchange("STLS\r\n");
  const std::string exporter(32, 'x');
  transport_->CompleteTlsHandshake({.version = "TLSv1.3", .tls_exporter = exporter});
  EXPECT_THAT(Exchange("CAPA\r\n"),
              ::testing::HasSubstr("SASL PLAIN LOGIN SCRAM-SHA-256-PLUS SCRAM-SHA-256\r\n"));
  backend_.TakeCalls();
  EXPECT_EQ(Exchange("AUTH SCRAM-SHA-256-PLUS\r\n"), "");
  EXPECT_THAT(backend_.TakeCalls(), ElementsAre("sasl 7 SCRAM-SHA-256-PLUS start binding=32"));
  adapter_->OnAuthenticated({pop3::Pop3AuthResult::Code::kContinue, {}, "abc"});
  Drain();
  EXPECT_EQ(transport_->TakeSentText(), "+ YWJj\r\n");
  EXPECT_EQ(Exchange("eHl6\r\n"), "");
  EXPECT_THAT(backend_.TakeCalls(), ElementsAre("sasl 7 SCRAM-SHA-256-PLUS step binding=32"));
  EXPECT_EQ(backend_.last_secret(), "xyz");
  adapter_->OnAuthenticated({pop3::Pop3AuthResult::Code::kContinue, {}, "v"});
  Drain();
  EXPECT_EQ(Exchange("*\r\n"), "+ dg==\r\n-ERR Authentication cancelled\r\n");
  EXPECT_THAT(backend_.TakeCalls(), ElementsAre("abandon-sasl 7 cancelled"));
}

TEST_F(Pop3AdapterTest, QuitCommitsThenClosesAfterTheReply) {
  Start();
  Login();
  EXPECT_EQ(Exchange("DELE 1\r\nQUIT\r\n"), "+OK message 1 deleted\r\n");
  EXPECT_THAT(backend_.TakeCalls(), ElementsAre("commit 7 0"));
  EXPECT_FALSE(transport_->close_requested());  // not before the commit is durable
  adapter_->OnCommitted(absl::OkStatus());
  EXPECT_TRUE(transport_->close_requested());
  EXPECT_THAT(backend_.TakeCalls(), ElementsAre("ended 7"));
  const Pop3ConnectionEnd end = FinishClose();
  EXPECT_EQ(transport_->TakeSentText(),
            "+OK pop.example POP3 server signing off (2 messages left)\r\n");
  EXPECT_EQ(end.reason, CloseReason::kClosed);
  EXPECT_EQ(end.cause, Pop3EndCause::kOther);
  EXPECT_EQ(end.session.commands, 4u);
  EXPECT_THAT(backend_.TakeCalls(), ElementsAre("finished 7 closed"));
}

TEST_F(Pop3AdapterTest, QuitCommitsTheMessagesSentWithRetrOnceEach) {
  Start();
  Login();
  Exchange("RETR 2\r\nRETR 2\r\n");
  Drain();
  transport_->TakeSentText();
  backend_.TakeCalls();
  Exchange("QUIT\r\n");
  // Message 2 is index 1; asked for twice, recorded once (EXPIRE n counts from it).
  EXPECT_THAT(backend_.TakeCalls(), ElementsAre("commit 7  retrieved 1"));
}

TEST_F(Pop3AdapterTest, FailedAuthenticationIsAnsweredAfterTheDelay) {
  Start();
  EXPECT_EQ(Exchange("USER mrose\r\nPASS wrong\r\n"), std::string(kGreeting) + "+OK\r\n");
  adapter_->OnAuthenticated({pop3::Pop3AuthResult::Code::kBadCredentials, {}});
  Drain();
  EXPECT_EQ(transport_->TakeSentText(), "");
  transport_->AdvanceBy(1999 * kSecond / 1000);
  Drain();
  EXPECT_EQ(transport_->TakeSentText(), "");
  transport_->AdvanceBy(kSecond / 1000);
  Drain();
  EXPECT_EQ(transport_->TakeSentText(), "-ERR [AUTH] Authentication failed\r\n");
}

TEST_F(Pop3AdapterTest, LoginTimeoutIsAnsweredThenClosed) {
  Start();
  EXPECT_EQ(Exchange("USER mrose\r\n"), std::string(kGreeting) + "+OK\r\n");
  transport_->AdvanceBy(kAuthTimeout - 1);
  EXPECT_FALSE(transport_->close_requested());
  transport_->AdvanceBy(1);
  EXPECT_TRUE(transport_->close_requested());
  const Pop3ConnectionEnd end = FinishClose();
  EXPECT_EQ(transport_->TakeSentText(), "-ERR Disconnected: no login in time\r\n");
  EXPECT_EQ(end.cause, Pop3EndCause::kLoginTimeout);
}

TEST_F(Pop3AdapterTest, LoginTimeoutWaitsForAPendingAuthentication) {
  Start();
  Exchange("USER mrose\r\nPASS secret\r\n");
  transport_->AdvanceBy(kAuthTimeout);
  EXPECT_FALSE(transport_->close_requested());
  adapter_->OnAuthenticated({pop3::Pop3AuthResult::Code::kTempFailure, {}});
  Drain();
  transport_->AdvanceBy(kSecond);  // looked at again a second later
  EXPECT_TRUE(transport_->close_requested());
  FinishClose();
  EXPECT_THAT(transport_->TakeSentText(),
              ::testing::EndsWith("-ERR Disconnected: no login in time\r\n"));
}

TEST_F(Pop3AdapterTest, UnfinishedHandshakeIsAbortedAtTheLoginTimeout) {
  Start({.tls_available = true, .implicit_tls = true});
  transport_->AdvanceBy(kAuthTimeout);
  EXPECT_TRUE(transport_->abort_requested());
  EXPECT_EQ(FinishClose().cause, Pop3EndCause::kLoginTimeout);
}

TEST_F(Pop3AdapterTest, IdleTimeoutCountsFromTheLastInput) {
  Start();
  Login();
  transport_->AdvanceBy(kIdleTimeout / 2);
  EXPECT_EQ(Exchange("NOOP\r\n"), "+OK\r\n");
  transport_->AdvanceBy(kIdleTimeout / 2 + kSecond);
  EXPECT_FALSE(transport_->close_requested());
  transport_->AdvanceBy(kIdleTimeout / 2);
  EXPECT_TRUE(transport_->close_requested());
  const Pop3ConnectionEnd end = FinishClose();
  EXPECT_EQ(transport_->TakeSentText(), "-ERR Disconnected for inactivity\r\n");
  EXPECT_EQ(end.cause, Pop3EndCause::kIdleTimeout);
}

TEST_F(Pop3AdapterTest, IdleTimeoutIsNotHeldOffByALineDribbledAByteAtATime) {
  Start();
  Login();
  // One byte every 10 s of a line that never ends (a slowloris in TRANSACTION).
  for (uint64_t waited = 0; waited <= kIdleTimeout + 20 * kSecond && !transport_->close_requested();
       waited += 10 * kSecond) {
    transport_->Receive("N");
    Drain();
    transport_->AdvanceBy(10 * kSecond);
  }
  EXPECT_TRUE(transport_->close_requested());
  EXPECT_EQ(FinishClose().cause, Pop3EndCause::kIdleTimeout);
}

TEST_F(Pop3AdapterTest, TimeoutWithUnreadOutputAborts) {
  Start();
  transport_->AdvanceBy(kAuthTimeout);  // the greeting was never taken by the peer
  EXPECT_TRUE(transport_->abort_requested());
}

TEST_F(Pop3AdapterTest, RefusalReplacesTheGreeting) {
  Make({});
  adapter_->Refuse(pop3::Pop3Refusal::kServerAtCapacity);
  EXPECT_TRUE(transport_->close_requested());
  FinishClose();
  EXPECT_EQ(transport_->SentText(), "-ERR [SYS/TEMP] Server at capacity, try again later\r\n");
}

TEST_F(Pop3AdapterTest, AdmissionRefusalIsSentThenClosed) {
  backend_.admit_at_once = false;
  Start();
  adapter_->OnAdmitted(pop3::Pop3Refusal::kTooManyFromAddress);
  FinishClose();
  EXPECT_EQ(transport_->SentText(), "-ERR [SYS/TEMP] Too many connections from your address\r\n");
}

TEST_F(Pop3AdapterTest, RefusalOnImplicitTlsClosesWithoutPlaintext) {
  Make({.tls_available = true, .implicit_tls = true});
  adapter_->Refuse(pop3::Pop3Refusal::kServerBusy);
  FinishClose();
  EXPECT_EQ(transport_->SentText(), "");
}

TEST_F(Pop3AdapterTest, PeerFinishClosesOnceEverythingIsAnswered) {
  Start();
  Exchange("");
  transport_->Receive("USER mrose\r\nPASS secret\r\n");
  transport_->PeerFinishes();
  EXPECT_FALSE(transport_->close_requested());  // authentication still pending
  adapter_->OnAuthenticated({pop3::Pop3AuthResult::Code::kTempFailure, {}});
  EXPECT_FALSE(transport_->close_requested());  // its reply not yet taken by the peer
  Drain();
  EXPECT_TRUE(transport_->close_requested());
  EXPECT_EQ(transport_->TakeSentText(),
            "+OK\r\n-ERR [SYS/TEMP] Temporary authentication failure, try again later\r\n");
}

// A connection lost while a request is out: the backend is told at once (so it gives back
// what the answer grants, the maildrop lock included), and a late answer changes nothing.
TEST_F(Pop3AdapterTest, ConnectionLostWhileAuthenticating) {
  Start();
  Exchange("USER mrose\r\nPASS secret\r\n");
  backend_.TakeCalls();
  transport_->FailConnection(CloseReason::kPeerReset);
  EXPECT_THAT(backend_.TakeCalls(), ElementsAre("ended 7", "finished 7 peer_reset"));
  adapter_->OnAuthenticated({pop3::Pop3AuthResult::Code::kOk, "mrose@example.org"});
  EXPECT_THAT(backend_.calls(), ::testing::IsEmpty());  // no maildrop is opened for it
}

TEST_F(Pop3AdapterTest, ConnectionLostWhileTheLockIsAskedFor) {
  Start();
  Exchange("USER mrose\r\nPASS secret\r\n");
  adapter_->OnAuthenticated({pop3::Pop3AuthResult::Code::kOk, "mrose@example.org"});
  EXPECT_THAT(backend_.TakeCalls(), ::testing::Contains("open 7 mrose@example.org"));
  transport_->FailConnection(CloseReason::kPeerReset);
  EXPECT_THAT(backend_.TakeCalls(), ElementsAre("ended 7", "finished 7 peer_reset"));
  adapter_->OnMaildropOpened({pop3::Pop3MaildropResult::Code::kOk, maildrop_});
  EXPECT_THAT(backend_.calls(), ::testing::IsEmpty());
  EXPECT_EQ(backend_.ended_count(), 1);
}

TEST_F(Pop3AdapterTest, ConnectionLostWhileCommitting) {
  Start();
  Login();
  Exchange("DELE 2\r\nQUIT\r\n");
  EXPECT_THAT(backend_.TakeCalls(), ElementsAre("commit 7 1"));
  transport_->FailConnection(CloseReason::kPeerReset);
  EXPECT_THAT(backend_.TakeCalls(), ElementsAre("ended 7", "finished 7 peer_reset"));
  adapter_->OnCommitted(absl::OkStatus());
  EXPECT_THAT(backend_.calls(), ::testing::IsEmpty());
}

TEST_F(Pop3AdapterTest, AbortEndsAtOnceAndTellsTheBackendOnce) {
  Start();
  Login();
  adapter_->Abort();
  adapter_->Abort();
  EXPECT_TRUE(transport_->abort_requested());
  EXPECT_EQ(FinishClose().reason, CloseReason::kAborted);
  EXPECT_EQ(backend_.ended_count(), 1);
}

TEST_F(Pop3AdapterTest, SendStallIsReportedAsSuch) {
  Start();
  Login();
  transport_->FailConnection(CloseReason::kSendStalled);
  ASSERT_TRUE(backend_.finished().has_value());
  EXPECT_EQ(backend_.finished()->cause, Pop3EndCause::kSendStalled);
}

TEST_F(Pop3AdapterTest, IdleHolderCanBeTakenOverButNotWhileSending) {
  Start();
  Login();
  EXPECT_FALSE(adapter_->IdleInTransactionFor(10 * kSecond));
  transport_->AdvanceBy(10 * kSecond);
  EXPECT_TRUE(adapter_->IdleInTransactionFor(10 * kSecond));
  transport_->Receive("RETR 1\r\n");  // not drained: the peer is still reading
  transport_->AdvanceBy(10 * kSecond);
  EXPECT_FALSE(adapter_->IdleInTransactionFor(10 * kSecond));
}

// Pipelined RETRs beyond the output bound: answered one flush at a time, in order, and the
// transport is told to stop receiving while the session wants no more input.
TEST_F(Pop3AdapterTest, PipelinedCommandsPauseReceivingUnderBackPressure) {
  Start({.input_buffered_bytes_max = 100, .output_queued_bytes_max = 1000});
  Login();
  std::string commands;
  std::string expected;
  for (int i = 0; i < 30; ++i) {
    commands += "RETR 2\r\n";
    expected += "+OK 2000 octets\r\n<file 50:1000+2000>.\r\n";
  }
  transport_->Receive(commands);
  EXPECT_TRUE(transport_->receive_paused());
  EXPECT_EQ(transport_->queued().size(), 0u);
  int drains = 0;
  while (transport_->DrainOutput()) ++drains;
  EXPECT_EQ(drains, 30);  // one RETR per flush: the session parsed no further meanwhile
  EXPECT_FALSE(transport_->receive_paused());
  EXPECT_EQ(transport_->TakeSentText(), expected);
  EXPECT_EQ(Exchange("NOOP\r\n"), "+OK\r\n");
}

}  // namespace
}  // namespace posthaste::server::pop3_service
