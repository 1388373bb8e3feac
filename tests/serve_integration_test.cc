// Raw-socket tests of `posthaste serve`: the real binary on 127.0.0.1 port 0 over a data
// directory provisioned through MailStore before the server starts (the server then holds the
// store's lock). Every wait is bounded; every server is stopped with SIGTERM and must exit 0.
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "server/auth/password_hash.h"
#include "storage/mail_store.h"
#include "tests/serve_harness.h"
#include "tests/subprocess.h"

namespace posthaste::testing {
namespace {

using std::chrono::milliseconds;

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

class ServeTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = MakeTempDir("serve"); }

  // Creates accounts and messages before the server starts (it locks the store).
  storage::MailStore& Store() {
    if (!store_) {
      auto store = storage::MailStore::Open({.data_dir = dir_});
      EXPECT_TRUE(store.ok()) << store.status();
      store_ = *std::move(store);
    }
    return *store_;
  }
  void AddUser(const std::string& address, const std::string& password, int messages,
               bool real_hash = false) {
    std::string hash = real_hash ? *auth::HashPassword(password) : "{PLAIN}" + password;
    ASSERT_TRUE(Store().CreateAccount(address, hash).ok());
    for (int i = 0; i < messages; ++i) {
      std::string msg = "Subject: message " + std::to_string(i + 1) +
                        "\r\n\r\nline one\r\n.leading dot\r\nline three\r\n";
      ASSERT_TRUE(Store().Deliver(address, msg).ok());
    }
  }
  uint64_t MessageCount(const std::string& address) {
    auto store = storage::MailStore::Open({.data_dir = dir_});
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return ~0ull;
    return (*store)->GetMailboxStats(address)->messages;
  }

  void StartServer(std::vector<std::string> flags) {
    store_.reset();  // release the lock
    flags.push_back("--drain_timeout_s=" + drain_timeout_s_);
    ASSERT_TRUE(server_.Start(dir_, flags)) << server_.log();
  }
  void StopServer() {
    std::optional<int> code = server_.Stop();
    EXPECT_EQ(code, std::optional<int>(0)) << server_.log();
  }

  // Connects and reads the greeting.
  void Open(RawClient& c) {
    ASSERT_TRUE(c.Connect(server_.pop3_port()));
    ASSERT_TRUE(StartsWith(c.ReadLine(), "+OK")) << server_.log();
  }
  void Login(RawClient& c, const std::string& user, const std::string& password) {
    Open(c);
    ASSERT_TRUE(StartsWith(c.Command("USER " + user), "+OK"));
    std::string reply = c.Command("PASS " + password);
    ASSERT_TRUE(StartsWith(reply, "+OK")) << reply << server_.log();
  }
  std::string Metrics() {
    std::string body;
    EXPECT_EQ(HttpGet(server_.metrics_port(), "/metrics", &body), 200);
    return body;
  }

  std::string dir_;
  std::string drain_timeout_s_ = "2";  // sessions tests leave open are cut quickly
  std::unique_ptr<storage::MailStore> store_;
  ServeProcess server_;
};

TEST_F(ServeTest, PipelinedCommandsAreAnsweredInOrder) {
  AddUser("pipe@example.test", "pw", 3);
  StartServer({"--shards=2"});
  RawClient c;
  Open(c);
  ASSERT_TRUE(
      c.SendAll("CAPA\r\nUSER pipe@example.test\r\nPASS pw\r\nSTAT\r\nLIST\r\nUIDL 2\r\nRETR 1\r\n"
                "TOP 2 0\r\nNOOP\r\nDELE 3\r\nSTAT\r\nRSET\r\nSTAT\r\nQUIT\r\n"));
  EXPECT_TRUE(StartsWith(c.ReadLine(), "+OK"));  // CAPA
  std::string capa = c.ReadMultiline();
  EXPECT_NE(capa.find("PIPELINING\r\n"), std::string::npos);
  EXPECT_TRUE(StartsWith(c.ReadLine(), "+OK"));  // USER
  EXPECT_TRUE(StartsWith(c.ReadLine(), "+OK"));  // PASS
  const std::string stat = c.ReadLine();
  EXPECT_TRUE(StartsWith(stat, "+OK 3 ")) << stat;
  EXPECT_TRUE(StartsWith(c.ReadLine(), "+OK"));  // LIST
  std::string list = c.ReadMultiline();
  EXPECT_TRUE(StartsWith(list, "1 ")) << list;
  EXPECT_TRUE(StartsWith(c.ReadLine(), "+OK 2 "));  // UIDL 2
  EXPECT_TRUE(StartsWith(c.ReadLine(), "+OK"));     // RETR 1
  std::string retr = c.ReadMultiline();
  EXPECT_EQ(DotUnstuff(retr),
            "Subject: message 1\r\n\r\nline one\r\n.leading dot\r\nline three\r\n");
  EXPECT_NE(retr.find("\r\n..leading dot\r\n"), std::string::npos);  // sent dot-stuffed
  EXPECT_TRUE(StartsWith(c.ReadLine(), "+OK"));                      // TOP 2 0
  EXPECT_EQ(c.ReadMultiline(), "Subject: message 2\r\n\r\n.\r\n");
  EXPECT_TRUE(StartsWith(c.ReadLine(), "+OK"));     // NOOP
  EXPECT_TRUE(StartsWith(c.ReadLine(), "+OK"));     // DELE 3
  EXPECT_TRUE(StartsWith(c.ReadLine(), "+OK 2 "));  // STAT
  EXPECT_TRUE(StartsWith(c.ReadLine(), "+OK"));     // RSET
  EXPECT_TRUE(StartsWith(c.ReadLine(), "+OK 3 "));  // STAT
  EXPECT_TRUE(StartsWith(c.ReadLine(), "+OK"));     // QUIT
  EXPECT_TRUE(c.WaitClosed());
  StopServer();
  EXPECT_EQ(MessageCount("pipe@example.test"), 3u);
}

TEST_F(ServeTest, TopSendsHeaderAndRequestedBodyLines) {
  AddUser("top@example.test", "pw", 1);
  StartServer({"--shards=1"});
  RawClient c;
  Login(c, "top@example.test", "pw");
  EXPECT_TRUE(StartsWith(c.Command("TOP 1 2"), "+OK"));
  EXPECT_EQ(c.ReadMultiline(), "Subject: message 1\r\n\r\nline one\r\n..leading dot\r\n.\r\n");
  EXPECT_TRUE(StartsWith(c.Command("TOP 1 99"), "+OK"));
  EXPECT_EQ(DotUnstuff(c.ReadMultiline()),
            "Subject: message 1\r\n\r\nline one\r\n.leading dot\r\nline three\r\n");
  EXPECT_TRUE(StartsWith(c.Command("QUIT"), "+OK"));
  StopServer();
}

TEST_F(ServeTest, OverlongLineIsRefusedAndTheSessionGoesOn) {
  AddUser("long@example.test", "pw", 1);
  StartServer({"--shards=1"});
  RawClient c;
  Open(c);
  ASSERT_TRUE(c.SendAll(std::string(5000, 'A') + "\r\n"));
  EXPECT_TRUE(StartsWith(c.ReadLine(), "-ERR"));
  ASSERT_TRUE(StartsWith(c.Command("USER long@example.test"), "+OK"));
  ASSERT_TRUE(StartsWith(c.Command("PASS pw"), "+OK"));
  ASSERT_TRUE(c.SendAll("NOOP " + std::string(300, 'x') + "\r\nSTAT\r\n"));
  EXPECT_TRUE(StartsWith(c.ReadLine(), "-ERR"));
  EXPECT_TRUE(StartsWith(c.ReadLine(), "+OK 1 "));
  EXPECT_TRUE(StartsWith(c.Command("QUIT"), "+OK"));
  StopServer();
}

TEST_F(ServeTest, DeleWithoutQuitDeletesNothingAndDeleQuitDeletes) {
  AddUser("dele@example.test", "pw", 3);
  StartServer({"--shards=2"});
  {
    RawClient c;
    Login(c, "dele@example.test", "pw");
    EXPECT_TRUE(StartsWith(c.Command("DELE 1"), "+OK"));
    EXPECT_TRUE(StartsWith(c.Command("DELE 2"), "+OK"));
    c.Close();  // dropped without QUIT
  }
  {
    RawClient c;
    // The dropped session's lock is released asynchronously: retry briefly on [IN-USE].
    std::string reply;
    for (int i = 0; i < 100; ++i) {
      ASSERT_TRUE(c.Connect(server_.pop3_port()));
      c.ReadLine();
      c.Command("USER dele@example.test");
      reply = c.Command("PASS pw");
      if (StartsWith(reply, "+OK")) break;
      std::this_thread::sleep_for(milliseconds(50));
    }
    ASSERT_TRUE(StartsWith(reply, "+OK")) << reply;
    EXPECT_TRUE(StartsWith(c.Command("STAT"), "+OK 3 "));
    EXPECT_TRUE(StartsWith(c.Command("DELE 1"), "+OK"));
    EXPECT_TRUE(StartsWith(c.Command("QUIT"), "+OK"));
    EXPECT_TRUE(c.WaitClosed());
  }
  {
    RawClient c;
    Login(c, "dele@example.test", "pw");
    EXPECT_TRUE(StartsWith(c.Command("STAT"), "+OK 2 "));
    EXPECT_TRUE(StartsWith(c.Command("QUIT"), "+OK"));
  }
  StopServer();
  EXPECT_EQ(MessageCount("dele@example.test"), 2u);
}

TEST_F(ServeTest, InUseIsRefusedUnderRefusePolicy) {
  AddUser("busy@example.test", "pw", 1);
  StartServer({"--shards=2", "--in_use_policy=refuse"});
  RawClient first, second;
  Login(first, "busy@example.test", "pw");
  Open(second);
  ASSERT_TRUE(StartsWith(second.Command("USER busy@example.test"), "+OK"));
  const std::string reply = second.Command("PASS pw");
  EXPECT_TRUE(StartsWith(reply, "-ERR [IN-USE]")) << reply;
  EXPECT_TRUE(StartsWith(first.Command("STAT"), "+OK 1 "));  // the holder is untouched
  EXPECT_TRUE(StartsWith(first.Command("QUIT"), "+OK"));
  EXPECT_GE(MetricValue(Metrics(), "posthaste_pop3_in_use_refusals_total"), 1);
  StopServer();
}

TEST_F(ServeTest, IdleHolderIsTakenOverWithoutCommitting) {
  AddUser("take@example.test", "pw", 2);
  StartServer({"--shards=2", "--takeover_idle_s=1"});
  RawClient holder, newcomer;
  Login(holder, "take@example.test", "pw");
  EXPECT_TRUE(StartsWith(holder.Command("DELE 1"), "+OK"));
  std::this_thread::sleep_for(milliseconds(1500));  // idle past --takeover_idle_s
  Login(newcomer, "take@example.test", "pw");
  EXPECT_TRUE(holder.WaitClosed());                             // ended by the takeover
  EXPECT_TRUE(StartsWith(newcomer.Command("STAT"), "+OK 2 "));  // the DELE was not committed
  EXPECT_TRUE(StartsWith(newcomer.Command("QUIT"), "+OK"));
  EXPECT_GE(MetricValue(Metrics(), "posthaste_pop3_takeovers_total"), 1);
  StopServer();
  EXPECT_EQ(MessageCount("take@example.test"), 2u);
}

TEST_F(ServeTest, BusyHolderIsNotTakenOver) {
  AddUser("keep@example.test", "pw", 1);
  StartServer({"--shards=2", "--takeover_idle_s=600"});
  RawClient holder, newcomer;
  Login(holder, "keep@example.test", "pw");
  Open(newcomer);
  ASSERT_TRUE(StartsWith(newcomer.Command("USER keep@example.test"), "+OK"));
  EXPECT_TRUE(StartsWith(newcomer.Command("PASS pw"), "-ERR [IN-USE]"));
  EXPECT_TRUE(StartsWith(holder.Command("STAT"), "+OK 1 "));
  EXPECT_TRUE(StartsWith(holder.Command("QUIT"), "+OK"));
  StopServer();
}

// A 10 MiB message with dot-leading lines, already in CRLF form so the store keeps it as is.
std::string BigMessage() {
  std::string msg = "Subject: big\r\nFrom: a@example.test\r\n\r\n";
  uint32_t x = 12345;
  while (msg.size() < (10u << 20)) {
    x = x * 1103515245 + 12345;
    std::string line = (x % 7 == 0) ? "." : "";
    const size_t len = 1 + (x >> 8) % 200;
    for (size_t i = 0; i < len; ++i) line.push_back(static_cast<char>('!' + (x + i * 31) % 90));
    if (line == ".") line += "x";
    msg += line + "\r\n";
  }
  return msg;
}

TEST_F(ServeTest, Retr10MiBIsByteExactAndTakesAZeroCopyPath) {
  AddUser("big@example.test", "pw", 0);
  const std::string msg = BigMessage();
  ASSERT_TRUE(Store().Deliver("big@example.test", msg).ok());
  AddUser("small@example.test", "pw", 1);
  StartServer({"--shards=2"});
  for (const char* user : {"big@example.test", "small@example.test"}) {
    RawClient c;
    Login(c, user, "pw");
    const std::string ok = c.Command("RETR 1");
    ASSERT_TRUE(StartsWith(ok, "+OK")) << ok;
    const std::string body = c.ReadMultiline(60000);
    ASSERT_FALSE(body.empty());
    if (std::string_view(user) == "big@example.test") {
      EXPECT_EQ(ok, "+OK " + std::to_string(msg.size()) + " octets\r\n");
      EXPECT_TRUE(DotUnstuff(body) == msg) << "RETR body differs from the delivered message";
    }
    EXPECT_TRUE(StartsWith(c.Command("QUIT"), "+OK"));
  }
  const std::string metrics = Metrics();
  const double splice = MetricValue(metrics, "posthaste_pop3_body_bytes_total{path=\"splice\"}");
  const double zc = MetricValue(metrics, "posthaste_pop3_body_bytes_total{path=\"send_zc\"}");
  const double copy = MetricValue(metrics, "posthaste_pop3_body_bytes_total{path=\"copy\"}");
  EXPECT_GE(splice + zc, static_cast<double>(msg.size())) << metrics;
  EXPECT_EQ(copy, 0) << metrics;
  StopServer();
}

TEST_F(ServeTest, SendZcCarriesLargeBodiesWhenEnabled) {
  AddUser("zc@example.test", "pw", 0);
  const std::string msg = BigMessage();
  ASSERT_TRUE(Store().Deliver("zc@example.test", msg).ok());
  StartServer({"--shards=1", "--send_zc_min_bytes=1048576"});
  RawClient c;
  Login(c, "zc@example.test", "pw");
  ASSERT_TRUE(StartsWith(c.Command("RETR 1"), "+OK"));
  EXPECT_TRUE(DotUnstuff(c.ReadMultiline(60000)) == msg);
  EXPECT_TRUE(StartsWith(c.Command("QUIT"), "+OK"));
  const std::string metrics = Metrics();
  // Chunks the kernel refuses to pin (shared locked-memory limits) go out by a plain send and
  // are counted apart; every body byte was submitted on the SEND_ZC path.
  const double zc = MetricValue(metrics, "posthaste_pop3_body_bytes_total{path=\"send_zc\"}");
  const double refused =
      MetricValue(metrics, "posthaste_pop3_body_bytes_total{path=\"send_zc_refused_copy\"}");
  EXPECT_GE(zc + refused, static_cast<double>(msg.size())) << metrics;
  EXPECT_EQ(MetricValue(metrics, "posthaste_pop3_body_bytes_total{path=\"splice\"}"), 0);
  StopServer();
}

TEST_F(ServeTest, DisconnectInTheMiddleOfRetrLeavesTheServerFine) {
  AddUser("cut@example.test", "pw", 0);
  const std::string msg = BigMessage();
  ASSERT_TRUE(Store().Deliver("cut@example.test", msg).ok());
  StartServer({"--shards=1"});
  for (int round = 0; round < 3; ++round) {
    RawClient c;
    // The previous round's lock is released asynchronously: retry briefly on [IN-USE].
    std::string reply;
    for (int i = 0; i < 100; ++i) {
      ASSERT_TRUE(c.Connect(server_.pop3_port()));
      c.ReadLine();
      c.Command("USER cut@example.test");
      reply = c.Command("PASS pw");
      if (StartsWith(reply, "+OK")) break;
      std::this_thread::sleep_for(milliseconds(50));
    }
    ASSERT_TRUE(StartsWith(reply, "+OK")) << reply;
    EXPECT_TRUE(StartsWith(c.Command("DELE 1"), "+OK"));
    ASSERT_TRUE(c.SendAll("RSET\r\nRETR 1\r\n"));
    EXPECT_TRUE(StartsWith(c.ReadLine(), "+OK"));
    EXPECT_TRUE(StartsWith(c.ReadLine(), "+OK"));
    EXPECT_EQ(c.ReadBytes(100000).size(), 100000u);
    if (round % 2 == 0) {
      c.Reset();
    } else {
      c.Close();
    }
  }
  RawClient c;
  std::string reply;
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(c.Connect(server_.pop3_port()));
    c.ReadLine();
    c.Command("USER cut@example.test");
    reply = c.Command("PASS pw");
    if (StartsWith(reply, "+OK")) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  ASSERT_TRUE(StartsWith(reply, "+OK")) << reply;
  EXPECT_TRUE(StartsWith(c.Command("RETR 1"), "+OK"));
  EXPECT_TRUE(DotUnstuff(c.ReadMultiline(60000)) == msg);
  EXPECT_TRUE(StartsWith(c.Command("QUIT"), "+OK"));
  StopServer();
  EXPECT_EQ(MessageCount("cut@example.test"), 1u);
}

TEST_F(ServeTest, SigtermDrainsReadyzFailsAndSessionsMayFinish) {
  AddUser("drain@example.test", "pw", 2);
  drain_timeout_s_ = "30";
  StartServer({"--shards=2"});
  std::string body;
  EXPECT_EQ(HttpGet(server_.metrics_port(), "/readyz", &body), 200);
  EXPECT_EQ(HttpGet(server_.metrics_port(), "/healthz", &body), 200);
  RawClient c;
  Login(c, "drain@example.test", "pw");
  server_.Signal(SIGTERM);
  int code = 0;
  for (int i = 0; i < 200 && code != 503; ++i) {
    code = HttpGet(server_.metrics_port(), "/readyz", &body);
    if (code != 503) std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_EQ(code, 503);
  // New connections are refused while the open session carries on. The listeners close just
  // after /readyz turns 503 (each shard stops accepting when its inbox gets there), so a
  // connection may still be accepted in between: it is closed here and the test tries again.
  bool refused = false;
  for (int i = 0; i < 250 && !refused; ++i) {
    RawClient late;
    refused = !(late.Connect(server_.pop3_port()) && StartsWith(late.ReadLine(2000), "+OK"));
    if (!refused) std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_TRUE(refused);
  EXPECT_TRUE(server_.running());
  EXPECT_TRUE(StartsWith(c.Command("DELE 1"), "+OK"));
  EXPECT_TRUE(StartsWith(c.Command("QUIT"), "+OK"));
  EXPECT_EQ(server_.Wait(30000), std::optional<int>(0)) << server_.log();
  EXPECT_EQ(MessageCount("drain@example.test"), 1u);
}

TEST_F(ServeTest, SigtermClosesUnfinishedSessionsWithoutCommitting) {
  AddUser("late@example.test", "pw", 2);
  drain_timeout_s_ = "1";
  StartServer({"--shards=2"});
  RawClient c;
  Login(c, "late@example.test", "pw");
  EXPECT_TRUE(StartsWith(c.Command("DELE 1"), "+OK"));
  server_.Signal(SIGTERM);
  EXPECT_TRUE(c.WaitClosed(20000));
  EXPECT_EQ(server_.Wait(30000), std::optional<int>(0)) << server_.log();
  EXPECT_EQ(MessageCount("late@example.test"), 2u);
}

TEST_F(ServeTest, FailedAuthenticationIsDelayedAndCacheServesRepeatLogins) {
  AddUser("auth@example.test", "right", 1, /*real_hash=*/true);
  StartServer({"--shards=1", "--auth_failure_delay_ms=1500"});
  RawClient c;
  Open(c);
  ASSERT_TRUE(StartsWith(c.Command("USER auth@example.test"), "+OK"));
  const auto start = std::chrono::steady_clock::now();
  const std::string reply = c.Command("PASS wrong");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(StartsWith(reply, "-ERR [AUTH]")) << reply;
  // A lower bound only: the server must not answer before the delay (never asserts speed).
  EXPECT_GE(elapsed, milliseconds(1400));
  c.Close();
  for (int i = 0; i < 2; ++i) {
    RawClient ok;
    Login(ok, "auth@example.test", "right");
    EXPECT_TRUE(StartsWith(ok.Command("QUIT"), "+OK"));
    ok.WaitClosed();
  }
  EXPECT_GE(MetricValue(Metrics(), "posthaste_pop3_auth_cache_hits_total"), 1);
  EXPECT_GE(MetricValue(Metrics(), "posthaste_pop3_auth_failures_total"), 1);
  StopServer();
}

TEST_F(ServeTest, PerIpLimitAnswersSysTempAndCloses) {
  AddUser("ip@example.test", "pw", 1);
  StartServer({"--shards=2", "--max_connections_per_ip=2", "--trusted_networks="});
  RawClient a, b, c;
  Open(a);
  Open(b);
  ASSERT_TRUE(c.Connect(server_.pop3_port()));
  EXPECT_TRUE(StartsWith(c.ReadLine(), "-ERR [SYS/TEMP]"));
  EXPECT_TRUE(c.WaitClosed());
  a.Close();
  // The slot comes back once the close is counted.
  bool admitted = false;
  for (int i = 0; i < 100 && !admitted; ++i) {
    RawClient d;
    ASSERT_TRUE(d.Connect(server_.pop3_port()));
    admitted = StartsWith(d.ReadLine(), "+OK");
    if (!admitted) std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_TRUE(admitted);
  EXPECT_GE(MetricValue(Metrics(), "posthaste_pop3_limit_rejections_total{limit=\"per_ip\"}"), 1);
  StopServer();
}

TEST_F(ServeTest, TrustedNetworksAreExemptFromPerIpLimit) {
  StartServer({"--shards=1", "--max_connections_per_ip=1", "--trusted_networks=127.0.0.0/8"});
  RawClient a, b;
  Open(a);
  Open(b);
  StopServer();
}

TEST_F(ServeTest, PerUserIpLimitAnswersSysTempAndCloses) {
  AddUser("uip@example.test", "pw", 1);
  StartServer({"--shards=2", "--max_connections_per_user_ip=1", "--trusted_networks="});
  RawClient a, b;
  Login(a, "uip@example.test", "pw");
  Open(b);
  ASSERT_TRUE(StartsWith(b.Command("USER uip@example.test"), "+OK"));
  EXPECT_TRUE(StartsWith(b.Command("PASS pw"), "-ERR [SYS/TEMP]"));
  EXPECT_TRUE(b.WaitClosed());
  EXPECT_TRUE(StartsWith(a.Command("QUIT"), "+OK"));
  StopServer();
}

TEST_F(ServeTest, AuthorizationTimeoutClosesSilentClients) {
  StartServer({"--shards=1", "--auth_timeout_s=1"});
  RawClient c;
  Open(c);
  EXPECT_TRUE(StartsWith(c.ReadLine(20000), "-ERR"));
  EXPECT_TRUE(c.WaitClosed(20000));
  StopServer();
}

TEST_F(ServeTest, IdleTimeoutClosesIdleSessionsWithoutCommitting) {
  AddUser("idle@example.test", "pw", 1);
  StartServer({"--shards=1", "--idle_timeout_s=1"});
  RawClient c;
  Login(c, "idle@example.test", "pw");
  EXPECT_TRUE(StartsWith(c.Command("DELE 1"), "+OK"));
  EXPECT_TRUE(StartsWith(c.ReadLine(20000), "-ERR"));
  EXPECT_TRUE(c.WaitClosed(20000));
  StopServer();
  EXPECT_EQ(MessageCount("idle@example.test"), 1u);
}

// A local IPv4 address that is not loopback, or "" when the machine has none.
std::string NonLoopbackAddress() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return "";
  std::string found;
  for (ifaddrs* i = list; i != nullptr && found.empty(); i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET) continue;
    const auto* sin = reinterpret_cast<const sockaddr_in*>(i->ifa_addr);
    if ((ntohl(sin->sin_addr.s_addr) >> 24) == 127) continue;
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
    found = text;
  }
  freeifaddrs(list);
  return found;
}

TEST_F(ServeTest, PlaintextLoginNeedsTlsExceptOnLoopback) {
  const std::string address = NonLoopbackAddress();
  if (address.empty()) GTEST_SKIP() << "no non-loopback IPv4 address on this machine";
  AddUser("tls@example.test", "pw", 1);
  StartServer({"--shards=1", "--pop3_listen=0.0.0.0:0"});
  RawClient remote;
  ASSERT_TRUE(remote.ConnectTo(address, server_.pop3_port()));
  ASSERT_TRUE(StartsWith(remote.ReadLine(), "+OK"));
  ASSERT_TRUE(StartsWith(remote.Command("CAPA"), "+OK"));
  const std::string capa = remote.ReadMultiline();
  // No USER capability line ("UTF8 USER" is RFC 6856's, about UTF-8 names).
  EXPECT_EQ(("\r\n" + capa).find("\r\nUSER\r\n"), std::string::npos) << capa;
  EXPECT_TRUE(StartsWith(remote.Command("USER tls@example.test"), "-ERR")) << address;
  EXPECT_TRUE(StartsWith(remote.Command("AUTH PLAIN AHRsc0BleGFtcGxlLnRlc3QAcHc="), "-ERR"));
  // Loopback is exempt.
  RawClient local;
  Login(local, "tls@example.test", "pw");
  EXPECT_TRUE(StartsWith(local.Command("QUIT"), "+OK"));
  remote.Close();
  StopServer();

  // --plaintext_requires_tls=false lets remote plaintext logins in.
  StartServer({"--shards=1", "--pop3_listen=0.0.0.0:0", "--plaintext_requires_tls=false"});
  RawClient allowed;
  ASSERT_TRUE(allowed.ConnectTo(address, server_.pop3_port()));
  ASSERT_TRUE(StartsWith(allowed.ReadLine(), "+OK"));
  EXPECT_TRUE(StartsWith(allowed.Command("USER tls@example.test"), "+OK"));
  EXPECT_TRUE(StartsWith(allowed.Command("PASS pw"), "+OK"));
  EXPECT_TRUE(StartsWith(allowed.Command("QUIT"), "+OK"));
  StopServer();
}

TEST_F(ServeTest, BadFlagsExitWithUsage) {
  ProcessResult r = RunProcess({RunfilePath("server/posthaste"), "serve", "--bogus=1"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown flag --bogus"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace posthaste::testing
