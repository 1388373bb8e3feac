// RingTransport on a real ring with real loopback TCP sockets (127.0.0.1): the test plays the
// adapter (a TransportClient that asserts no callback comes from inside a Transport call) and
// the peer (a blocking client socket, on a thread where it must block). Every wait is bounded
// by RunUntil's wall-clock guard; no test asserts a duration except "not before the timeout".
#include "server/transport/ring_transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "server/reactor/buffer_ring.h"
#include "server/reactor/net.h"
#include "server/reactor/ring.h"
#include "server/reactor/testing/loopback.h"
#include "tls/testing/tls_test_util.h"
#include "tls/tls_context.h"

namespace posthaste::server::transport {
namespace {

using reactor::testing::PatternBytes;
using reactor::testing::RunUntil;
using reactor::testing::WriteAll;

constexpr uint64_t kMs = 1'000'000;
constexpr size_t kMiB = 1 << 20;

// What a shard would own: a ring, its buffer ring, counters, and (optionally) TLS contexts
// with a certificate generated for the test.
struct Shard {
  std::unique_ptr<reactor::Ring> ring;
  std::unique_ptr<reactor::BufferRing> buffers;
  reactor::SendStats send_stats;
  TlsCounters tls_counters;
  TlsPathCounters tls_path;
  uint64_t tls_body_bytes = 0;
  uint64_t tls_stls_started = 0;
  TlsErrorLogLimiter tls_error_log;
  std::unique_ptr<TlsContextSet> tls_set;
  std::unique_ptr<TlsShardContexts> tls_shard;
  TransportEnv env;

  explicit Shard(bool with_tls) {
    ring = reactor::Ring::Create({}).value();
    buffers = reactor::BufferRing::Create(*ring,
                                          {.group_id = 1, .buffer_count = 64, .buffer_bytes = 4096})
                  .value();
    env.ring = ring.get();
    env.buffers = buffers.get();
    env.send_stats = &send_stats;
    if (!with_tls) return;
    const std::string dir = MakeTestDir("ring_transport");
    WriteCertPair(dir, "server", MakeTestCertificate("mail.test", {"mail.test"}));
    tls_set =
        TlsContextSet::Create({.cert_path = dir + "/server.crt", .key_path = dir + "/server.key"})
            .value();
    tls_shard = std::make_unique<TlsShardContexts>(*tls_set);
    env.tls = tls_shard.get();
    env.ktls = KtlsCapability{};  // this machine has no kTLS; the engine carries the records
    env.tls_counters = &tls_counters;
    env.tls_path_counters = &tls_path;
    env.tls_body_bytes = &tls_body_bytes;
    env.tls_stls_started = &tls_stls_started;
    env.tls_error_log = &tls_error_log;
  }
};

// The adapter's side. Every callback checks that it does not come from inside a Transport call
// (the test's own calls go through Do()) and that nothing comes after OnClosed.
class TestClient : public TransportClient {
 public:
  void Do(const std::function<void(Transport&)>& fn) {
    ++depth_;
    fn(*transport);
    --depth_;
  }

  void OnReceive(std::string_view bytes) override {
    Check("OnReceive");
    received.append(bytes);
    events.push_back("receive:" + std::string(bytes));
    if (on_receive) on_receive(bytes);
  }
  void OnPeerFinished() override {
    Check("OnPeerFinished");
    peer_finished = true;
    events.push_back("peer_finished");
    if (on_peer_finished) on_peer_finished();
  }
  void OnOutputDrained() override {
    Check("OnOutputDrained");
    ++drained;
    if (on_drained) on_drained();
  }
  void OnTlsStarted(const TlsSessionInfo& info) override {
    Check("OnTlsStarted");
    tls_version = std::string(info.version);
    tls_kernel = info.kernel_tls;
    events.push_back("tls_started");
    if (on_tls_started) on_tls_started();
  }
  void OnDeadline() override {
    Check("OnDeadline");
    ++deadlines;
    deadline_seen_ns = transport->NowNs();
    events.push_back("deadline");
    if (on_deadline) on_deadline();
  }
  void OnClosed(CloseReason reason) override {
    Check("OnClosed");
    closed = reason;
    events.push_back("closed:" + std::string(CloseReasonName(reason)));
  }

  Transport* transport = nullptr;
  std::string received;
  std::vector<std::string> events;
  bool peer_finished = false;
  int drained = 0;
  int deadlines = 0;
  uint64_t deadline_seen_ns = 0;
  std::string tls_version;
  bool tls_kernel = false;
  std::optional<CloseReason> closed;
  std::function<void(std::string_view)> on_receive;
  std::function<void()> on_peer_finished;
  std::function<void()> on_drained;
  std::function<void()> on_tls_started;
  std::function<void()> on_deadline;

 private:
  void Check(const char* what) {
    EXPECT_EQ(depth_, 0) << what << " came from inside a Transport call";
    EXPECT_FALSE(closed.has_value()) << what << " came after OnClosed";
  }
  int depth_ = 0;
};

// A loopback connection: the server end in a RingTransport, the client end a blocking socket
// (with receive and send timeouts, so a broken test fails instead of hanging).
struct Connection {
  Shard& shard;
  int peer_fd = -1;
  TestClient client;
  std::unique_ptr<RingTransport> transport;

  Connection(Shard& s, bool implicit_tls = false, int peer_rcvbuf = 0) : shard(s) {
    const int listener = reactor::CreateListener({}).value();
    peer_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (peer_rcvbuf > 0) {
      setsockopt(peer_fd, SOL_SOCKET, SO_RCVBUF, &peer_rcvbuf, sizeof(peer_rcvbuf));
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(reactor::LocalPort(listener).value());
    PH_CHECK(connect(peer_fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    const int server_fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    PH_CHECK(server_fd >= 0);
    close(listener);
    timeval timeout{20, 0};
    setsockopt(peer_fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(peer_fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    PeerInfo peer;
    peer.ip = "127.0.0.1";
    peer.loopback = true;
    transport = std::make_unique<RingTransport>(shard.env, server_fd, peer, implicit_tls);
    client.transport = transport.get();
  }
  ~Connection() {
    if (started && !client.closed.has_value()) {
      client.Do([](Transport& t) { t.Abort(); });
      RunUntil(
          *shard.ring, [&] { return client.closed.has_value(); }, 10000);
    }
    transport.reset();
    if (peer_fd >= 0) close(peer_fd);
  }

  void Start() {
    started = true;
    client.Do([&](Transport& t) { t.Start(&client); });
  }
  bool RunUntilClosed(int limit_ms = 30000) {
    return RunUntil(
        *shard.ring, [&] { return client.closed.has_value(); }, limit_ms);
  }

  bool started = false;
};

// Reads until EOF or an error; `error` gets errno of the error (0 for a clean EOF).
struct ReadResult {
  std::string data;
  int error = 0;
};
ReadResult ReadToEnd(int fd) {
  ReadResult result;
  char buf[65536];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      result.error = errno;
      return result;
    }
    if (n == 0) return result;
    result.data.append(buf, static_cast<size_t>(n));
  }
}

// A file under $TEST_TMPDIR holding `data`, open for reading.
struct TempFile {
  int fd = -1;
  std::string data;
  explicit TempFile(std::string contents, const std::string& name = "body")
      : data(std::move(contents)) {
    const std::string path = reactor::testing::WriteTempFile(name, data);
    fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    PH_CHECK(fd >= 0);
  }
  ~TempFile() { close(fd); }
};

// A blocking BoringSSL client on the peer socket (certificate checks off: the test certificate
// is self-signed).
class TlsPeer {
 public:
  explicit TlsPeer(int fd) : fd_(fd) {
    ctx_.reset(SSL_CTX_new(TLS_method()));
    SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_NONE, nullptr);
    ssl_.reset(SSL_new(ctx_.get()));
    // One BIO per direction, so the read side can be swapped (SendClientHelloEarly).
    SSL_set0_rbio(ssl_.get(), BIO_new_socket(fd, BIO_NOCLOSE));
    SSL_set0_wbio(ssl_.get(), BIO_new_socket(fd, BIO_NOCLOSE));
  }
  bool Connect() { return SSL_connect(ssl_.get()) == 1; }
  // Sends the ClientHello now but reads nothing yet (the plaintext before the handshake is
  // read by ReadPlainExactly first); Connect() then finishes the handshake.
  bool SendClientHelloEarly() {
    SSL_set0_rbio(ssl_.get(), BIO_new(BIO_s_mem()));
    const int rc = SSL_connect(ssl_.get());
    const bool waiting = rc < 0 && SSL_get_error(ssl_.get(), rc) == SSL_ERROR_WANT_READ;
    SSL_set0_rbio(ssl_.get(), BIO_new_socket(fd_, BIO_NOCLOSE));
    return waiting;
  }
  bool Write(std::string_view bytes) {
    return SSL_write(ssl_.get(), bytes.data(), static_cast<int>(bytes.size())) ==
           static_cast<int>(bytes.size());
  }
  std::string ReadExactly(size_t n) {
    std::string out(n, '\0');
    size_t got = 0;
    while (got < n) {
      const int rc = SSL_read(ssl_.get(), out.data() + got, static_cast<int>(n - got));
      if (rc <= 0) break;
      got += static_cast<size_t>(rc);
    }
    out.resize(got);
    return out;
  }
  // Reads until the server's close_notify (true) or anything else that ends the stream.
  bool ReadToCloseNotify(std::string* out) {
    char buf[65536];
    for (;;) {
      const int rc = SSL_read(ssl_.get(), buf, sizeof(buf));
      if (rc > 0) {
        out->append(buf, static_cast<size_t>(rc));
        continue;
      }
      return SSL_get_error(ssl_.get(), rc) == SSL_ERROR_ZERO_RETURN;
    }
  }

 private:
  int fd_;
  bssl::UniquePtr<SSL_CTX> ctx_;
  bssl::UniquePtr<SSL> ssl_;
};

// ---- Output, by each send path ----

class SendPathTest : public ::testing::TestWithParam<reactor::SendPath> {};

// A reply, a stored body and the reply after it arrive in order and byte-exact, by the path the
// policy names; then a graceful close ends the stream with EOF.
TEST_P(SendPathTest, ReplyFileReplyArriveInOrderByteExact) {
  Shard shard(/*with_tls=*/false);
  shard.env.send_path = GetParam();
  TempFile file(PatternBytes(3 * kMiB, 7));
  const uint64_t offset = 12345;
  const uint64_t length = 2 * kMiB + 77;
  Connection conn(shard);
  ReadResult got;
  std::thread reader([&] { got = ReadToEnd(conn.peer_fd); });
  conn.Start();
  const std::string header = "+OK 2097229 octets\r\n";
  const std::string trailer = ".\r\n+OK next\r\n";
  conn.client.Do([&](Transport& t) {
    t.Send(header);
    t.SendFile({file.fd, offset, length});
    t.Send(trailer);
    EXPECT_TRUE(t.OutputPending());
    t.Flush();
  });
  ASSERT_TRUE(RunUntil(*shard.ring, [&] { return conn.client.drained == 1; }));
  EXPECT_FALSE(conn.transport->OutputPending());
  conn.client.Do([](Transport& t) { t.Close(); });
  ASSERT_TRUE(conn.RunUntilClosed());
  reader.join();
  EXPECT_EQ(*conn.client.closed, CloseReason::kClosed);
  EXPECT_EQ(got.error, 0) << "the stream did not end with a FIN";
  const std::string want = header + file.data.substr(offset, length) + trailer;
  ASSERT_EQ(got.data.size(), want.size());
  EXPECT_TRUE(got.data == want) << "bytes differ";
  EXPECT_EQ(conn.transport->totals().reply_bytes_sent, header.size() + trailer.size());
  EXPECT_EQ(conn.transport->totals().file_bytes_sent, length);
  EXPECT_EQ(shard.send_stats.streams_ok, 1u);
  switch (GetParam()) {
    case reactor::SendPath::kSplice:
      EXPECT_EQ(shard.send_stats.splice_bytes, length);
      break;
    case reactor::SendPath::kCopy:
      EXPECT_EQ(shard.send_stats.copy_bytes, length);
      break;
    case reactor::SendPath::kSendZc:
      EXPECT_EQ(shard.send_stats.zc_bytes + shard.send_stats.zc_fallback_bytes, length);
      break;
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, SendPathTest,
                         ::testing::Values(reactor::SendPath::kSplice, reactor::SendPath::kCopy,
                                           reactor::SendPath::kSendZc),
                         [](const auto& info) { return std::string(SendPathName(info.param)); });

// Output goes out only when flushed, and OnOutputDrained comes once per flush that had output.
TEST(RingTransportTest, OutputWaitsForFlushAndDrainIsToldOnce) {
  Shard shard(false);
  Connection conn(shard);
  conn.Start();
  conn.client.Do([](Transport& t) { t.Send("+OK one\r\n"); });
  RunUntil(
      *shard.ring, [] { return false; }, 200);
  EXPECT_EQ(conn.client.drained, 0);
  EXPECT_TRUE(conn.transport->OutputPending());
  conn.client.Do([](Transport& t) {
    t.Flush();
    t.Flush();  // nothing new: no second drain
  });
  ASSERT_TRUE(RunUntil(*shard.ring, [&] { return conn.client.drained == 1; }));
  EXPECT_EQ(reactor::testing::ReadExactly(conn.peer_fd, 9), "+OK one\r\n");
  RunUntil(
      *shard.ring, [] { return false; }, 100);
  EXPECT_EQ(conn.client.drained, 1);
}

// A file range that the file does not hold cannot start on any path: kResourceFailed.
TEST(RingTransportTest, FileRangeBeyondTheFileEndsTheConnection) {
  Shard shard(false);
  TempFile file("short body\r\n");
  Connection conn(shard);
  conn.Start();
  conn.client.Do([&](Transport& t) {
    t.SendFile({file.fd, 0, 1 * kMiB});
    t.Flush();
  });
  ASSERT_TRUE(conn.RunUntilClosed());
  EXPECT_EQ(*conn.client.closed, CloseReason::kResourceFailed);
}

// ---- Input ----

TEST(RingTransportTest, PauseReceiveHoldsInputUntilResumed) {
  Shard shard(false);
  Connection conn(shard);
  conn.Start();
  ASSERT_TRUE(WriteAll(conn.peer_fd, "USER a\r\n"));
  ASSERT_TRUE(RunUntil(*shard.ring, [&] { return conn.client.received == "USER a\r\n"; }));
  conn.client.Do([](Transport& t) { t.PauseReceive(); });
  ASSERT_TRUE(WriteAll(conn.peer_fd, "PASS b\r\n"));
  RunUntil(
      *shard.ring, [] { return false; }, 300);
  EXPECT_EQ(conn.client.received, "USER a\r\n") << "OnReceive while paused";
  conn.client.Do([](Transport& t) { t.ResumeReceive(); });
  ASSERT_TRUE(
      RunUntil(*shard.ring, [&] { return conn.client.received == "USER a\r\nPASS b\r\n"; }));
  EXPECT_EQ(conn.transport->totals().bytes_received, 16u);
}

// FIN: OnPeerFinished after the input before it; the adapter may still answer, then close.
TEST(RingTransportTest, PeerFinishedOnFinAndAnswersStillGoOut) {
  Shard shard(false);
  Connection conn(shard);
  conn.client.on_peer_finished = [&] {
    conn.client.Do([](Transport& t) {
      t.Send("+OK bye\r\n");
      t.Flush();
      t.Close();
    });
  };
  conn.Start();
  ASSERT_TRUE(WriteAll(conn.peer_fd, "QUIT\r\n"));
  shutdown(conn.peer_fd, SHUT_WR);
  ASSERT_TRUE(conn.RunUntilClosed());
  EXPECT_EQ(conn.client.events,
            (std::vector<std::string>{"receive:QUIT\r\n", "peer_finished", "closed:closed"}));
  const ReadResult got = ReadToEnd(conn.peer_fd);
  EXPECT_EQ(got.data, "+OK bye\r\n");
  EXPECT_EQ(got.error, 0);
}

// ---- Endings ----

// Close() right after queueing megabytes: all of it arrives, then EOF.
TEST(RingTransportTest, GracefulCloseDeliversEverythingThenEof) {
  Shard shard(false);
  Connection conn(shard);
  const std::string data = PatternBytes(4 * kMiB, 11);
  ReadResult got;
  std::thread reader([&] { got = ReadToEnd(conn.peer_fd); });
  conn.Start();
  conn.client.Do([&](Transport& t) {
    for (size_t off = 0; off < data.size(); off += kMiB) t.Send(data.substr(off, kMiB));
    t.Flush();
    t.Close();
    t.Send("dropped: after Close");
  });
  ASSERT_TRUE(conn.RunUntilClosed());
  reader.join();
  EXPECT_EQ(*conn.client.closed, CloseReason::kClosed);
  EXPECT_EQ(got.error, 0);
  EXPECT_TRUE(got.data == data) << "got " << got.data.size() << " of " << data.size() << " bytes";
  EXPECT_EQ(conn.client.drained, 0) << "no OnOutputDrained after Close";
}

// Abort(): queued output is dropped and the peer sees a reset.
TEST(RingTransportTest, AbortResetsTheConnection) {
  Shard shard(false);
  Connection conn(shard);
  conn.Start();
  conn.client.Do([](Transport& t) {
    t.Send("+OK never sent\r\n");
    t.Abort();
    t.Abort();  // any number of times
  });
  ASSERT_TRUE(conn.RunUntilClosed());
  EXPECT_EQ(*conn.client.closed, CloseReason::kAborted);
  const ReadResult got = ReadToEnd(conn.peer_fd);
  EXPECT_EQ(got.data, "");
  EXPECT_EQ(got.error, ECONNRESET);
}

// ---- Timers ----

TEST(RingTransportTest, DeadlineFiresOnceAndCanBeCleared) {
  Shard shard(false);
  Connection conn(shard);
  conn.Start();
  uint64_t deadline = 0;
  conn.client.Do([&](Transport& t) {
    deadline = t.NowNs() + 50 * kMs;
    t.SetDeadline(deadline);
  });
  ASSERT_TRUE(RunUntil(*shard.ring, [&] { return conn.client.deadlines == 1; }));
  EXPECT_GE(conn.client.deadline_seen_ns, deadline);
  conn.client.Do([&](Transport& t) {
    t.SetDeadline(t.NowNs() + 50 * kMs);
    t.SetDeadline(0);
  });
  RunUntil(
      *shard.ring, [] { return false; }, 250);
  EXPECT_EQ(conn.client.deadlines, 1);
}

// A peer that reads nothing while megabytes wait: kSendStalled after the stall timeout (never
// before it), and a reset.
TEST(RingTransportTest, SendStallAbortsAPeerThatNeverReads) {
  Shard shard(false);
  shard.env.send_stall_timeout_ns = 1000 * kMs;
  Connection conn(shard, /*implicit_tls=*/false, /*peer_rcvbuf=*/64 * 1024);
  conn.Start();
  const std::string data = PatternBytes(32 * kMiB, 5);
  const uint64_t sent_at = reactor::MonotonicNowNs();
  conn.client.Do([&](Transport& t) {
    t.Send(data);
    t.Flush();
  });
  ASSERT_TRUE(conn.RunUntilClosed(15000));
  EXPECT_EQ(*conn.client.closed, CloseReason::kSendStalled);
  EXPECT_GE(reactor::MonotonicNowNs() - sent_at, shard.env.send_stall_timeout_ns);
}

// No callback from inside a Transport call, even when the adapter calls back into the
// transport from every callback (the TestClient checks each one).
TEST(RingTransportTest, CallbacksNeverComeFromInsideTransportCalls) {
  Shard shard(false);
  Connection conn(shard);
  conn.client.on_receive = [&](std::string_view) {
    conn.client.Do([](Transport& t) {
      t.Send("+OK\r\n");
      t.Flush();
      t.PauseReceive();
      t.ResumeReceive();
      t.SetDeadline(t.NowNs());  // already due: told later, not now
    });
  };
  conn.client.on_drained = [&] { conn.client.Do([](Transport& t) { t.Flush(); }); };
  conn.client.on_deadline = [&] {
    conn.client.Do([](Transport& t) {
      t.Close();
      t.Abort();
      t.Close();
    });
  };
  conn.Start();
  ASSERT_TRUE(WriteAll(conn.peer_fd, "NOOP\r\n"));
  ASSERT_TRUE(conn.RunUntilClosed());
  EXPECT_EQ(*conn.client.closed, CloseReason::kAborted);
  EXPECT_EQ(conn.client.events.back(), "closed:aborted");
}

// ---- TLS ----

// pop3s: the greeting queued before the handshake goes out sealed after it; a reply, a file
// sealed from its mapping (larger than the engine's output bound) and a reply arrive in order;
// Close sends close_notify before the FIN.
TEST(RingTransportTlsTest, ImplicitTlsRoundTripWithSendFile) {
  Shard shard(/*with_tls=*/true);
  TempFile file(PatternBytes(1 * kMiB + 4096, 9));
  const uint64_t offset = 100;
  const uint64_t length = 1 * kMiB + 13;
  Connection conn(shard, /*implicit_tls=*/true);
  const std::string greeting = "+OK ready\r\n";
  const std::string header = "+OK message follows\r\n";
  const std::string trailer = ".\r\n";
  bool body_flushed = false;
  conn.client.on_receive = [&](std::string_view bytes) {
    if (bytes != "RETR 1\r\n") return;
    conn.client.Do([&](Transport& t) {
      t.Send(header);
      t.SendFile({file.fd, offset, length});
      t.Send(trailer);
      t.Flush();
    });
    body_flushed = true;
  };
  conn.client.on_drained = [&] {
    if (body_flushed) conn.client.Do([](Transport& t) { t.Close(); });
  };
  std::string peer_greeting;
  std::string peer_rest;
  bool handshake_ok = false;
  bool close_notify = false;
  std::thread peer([&] {
    TlsPeer tls(conn.peer_fd);
    handshake_ok = tls.Connect();
    if (!handshake_ok) return;
    peer_greeting = tls.ReadExactly(greeting.size());
    tls.Write("RETR 1\r\n");
    close_notify = tls.ReadToCloseNotify(&peer_rest);
  });
  conn.Start();
  conn.client.Do([&](Transport& t) {
    EXPECT_TRUE(t.tls_active());
    t.Send(greeting);
    t.Flush();
  });
  ASSERT_TRUE(conn.RunUntilClosed());
  peer.join();
  ASSERT_TRUE(handshake_ok);
  EXPECT_EQ(*conn.client.closed, CloseReason::kClosed);
  EXPECT_EQ(peer_greeting, greeting);
  const std::string want = header + file.data.substr(offset, length) + trailer;
  EXPECT_EQ(peer_rest.size(), want.size());
  EXPECT_TRUE(peer_rest == want) << "bytes differ";
  EXPECT_TRUE(close_notify) << "no close_notify before the FIN";
  ASSERT_GE(conn.client.events.size(), 2u);
  EXPECT_EQ(conn.client.events[0], "tls_started");
  EXPECT_EQ(conn.client.events[1], "receive:RETR 1\r\n");
  EXPECT_EQ(conn.client.tls_version, "TLSv1.3");
  EXPECT_FALSE(conn.client.tls_kernel);
  EXPECT_EQ(shard.tls_body_bytes, length);
  EXPECT_EQ(shard.tls_path.userspace_sessions, 1u);
  EXPECT_EQ(shard.tls_counters.sessions, 1u);
  EXPECT_EQ(shard.tls_counters.handshakes_completed, 1u);
  EXPECT_EQ(shard.send_stats.streams_ok, 1u);
  EXPECT_EQ(conn.transport->totals().file_bytes_sent, length);
}

// STLS: the +OK queued before StartTls goes out in plaintext, and the handshake records only
// after it, even when the peer's ClientHello arrives before the +OK has left (it goes to the
// engine). Receiving paused after the handshake holds the decrypted input.
TEST(RingTransportTlsTest, StlsUpgradeKeepsTheOrderAndTakesEarlyCiphertext) {
  Shard shard(/*with_tls=*/true);
  Connection conn(shard);
  conn.client.on_receive = [&](std::string_view bytes) {
    if (bytes == "STLS\r\n") {
      conn.client.Do([](Transport& t) {
        EXPECT_TRUE(t.tls_available());
        EXPECT_FALSE(t.tls_active());
        t.Send("+OK begin TLS\r\n");
        t.StartTls();
        EXPECT_TRUE(t.tls_active());
        // Flushed only later, so the ClientHello arrives while the +OK still waits here.
        t.SetDeadline(t.NowNs() + 300 * kMs);
      });
    } else if (bytes == "CAPA\r\n") {
      conn.client.Do([](Transport& t) {
        t.PauseReceive();
        t.Send("+OK tls\r\n");
        t.Flush();
      });
    }
  };
  conn.client.on_deadline = [&] { conn.client.Do([](Transport& t) { t.Flush(); }); };
  std::string plain_reply;
  std::string tls_reply;
  bool early_hello = false;
  bool handshake_ok = false;
  bool close_notify = false;
  std::string after_pause;
  std::atomic<bool> noop_sent{false};
  std::thread peer([&] {
    if (!WriteAll(conn.peer_fd, "STLS\r\n")) return;
    usleep(100'000);  // STLS is read on its own, before the ClientHello
    TlsPeer tls(conn.peer_fd);
    early_hello = tls.SendClientHelloEarly();
    plain_reply = reactor::testing::ReadExactly(conn.peer_fd, 15);
    handshake_ok = tls.Connect();
    if (!handshake_ok) return;
    tls.Write("CAPA\r\n");
    tls_reply = tls.ReadExactly(9);
    tls.Write("NOOP\r\n");  // arrives while the client has paused receiving
    noop_sent = true;
    close_notify = tls.ReadToCloseNotify(&after_pause);
  });
  conn.Start();
  const bool noop_arrives = RunUntil(*shard.ring, [&] { return noop_sent.load(); });
  RunUntil(
      *shard.ring, [] { return false; }, 200);
  EXPECT_EQ(conn.client.received, "STLS\r\nCAPA\r\n") << "OnReceive while paused";
  conn.client.Do([](Transport& t) { t.ResumeReceive(); });
  RunUntil(*shard.ring, [&] { return conn.client.received.size() >= 18; });
  EXPECT_EQ(conn.client.received, "STLS\r\nCAPA\r\nNOOP\r\n");
  conn.client.Do([](Transport& t) { t.Close(); });
  EXPECT_TRUE(conn.RunUntilClosed());
  peer.join();
  ASSERT_TRUE(noop_arrives);
  EXPECT_TRUE(close_notify);
  EXPECT_TRUE(early_hello);
  EXPECT_EQ(plain_reply, "+OK begin TLS\r\n");
  ASSERT_TRUE(handshake_ok);
  EXPECT_EQ(tls_reply, "+OK tls\r\n");
  EXPECT_EQ(*conn.client.closed, CloseReason::kClosed);
  EXPECT_EQ(shard.tls_stls_started, 1u);
  EXPECT_EQ(conn.client.events[0], "receive:STLS\r\n");
  EXPECT_EQ(conn.client.events[1], "deadline");
  EXPECT_EQ(conn.client.events[2], "tls_started");
  EXPECT_EQ(conn.client.events[3], "receive:CAPA\r\n");
}

// Under the engine a file is sealed from a mapping: a range the file does not hold is refused
// before the mapping is touched (past the end of a file that would be SIGBUS).
TEST(RingTransportTlsTest, FileRangeBeyondTheFileIsRefusedBeforeMapping) {
  Shard shard(/*with_tls=*/true);
  TempFile file("short body\r\n");
  Connection conn(shard, /*implicit_tls=*/true);
  conn.client.on_tls_started = [&] {
    conn.client.Do([&](Transport& t) {
      t.SendFile({file.fd, 0, 1 * kMiB});
      t.Flush();
    });
  };
  std::thread peer([&] {
    TlsPeer tls(conn.peer_fd);
    if (tls.Connect()) {
      std::string ignored;
      tls.ReadToCloseNotify(&ignored);
    }
  });
  conn.Start();
  EXPECT_TRUE(conn.RunUntilClosed());
  peer.join();
  EXPECT_EQ(*conn.client.closed, CloseReason::kResourceFailed);
  EXPECT_EQ(shard.send_stats.streams_failed, 1u);
  EXPECT_EQ(shard.tls_body_bytes, 0u);
}

// Bytes that are not TLS on the pop3s port: the handshake fails, the engine's alert (if any)
// goes out, then FIN; kTlsFailed, counted.
TEST(RingTransportTlsTest, HandshakeFailureSendsTheAlertThenCloses) {
  Shard shard(/*with_tls=*/true);
  Connection conn(shard, /*implicit_tls=*/true);
  conn.Start();
  ASSERT_TRUE(WriteAll(conn.peer_fd, "GET / HTTP/1.0\r\n\r\n"));
  ASSERT_TRUE(conn.RunUntilClosed());
  EXPECT_EQ(*conn.client.closed, CloseReason::kTlsFailed);
  const ReadResult got = ReadToEnd(conn.peer_fd);
  EXPECT_EQ(got.error, 0) << "expected a FIN after the alert, not a reset";
  if (!got.data.empty()) {
    EXPECT_EQ(got.data[0], '\x15') << "not an alert record";
  }
  EXPECT_EQ(shard.tls_counters.handshake_errors, 1u);
  EXPECT_EQ(conn.client.events.back(), "closed:tls_failed");
}

// A handshake that never finishes is bounded by the adapter's deadline.
TEST(RingTransportTlsTest, SilentPeerInHandshakeMeetsTheDeadline) {
  Shard shard(/*with_tls=*/true);
  Connection conn(shard, /*implicit_tls=*/true);
  conn.client.on_deadline = [&] { conn.client.Do([](Transport& t) { t.Abort(); }); };
  conn.Start();
  conn.client.Do([&](Transport& t) {
    t.Send("+OK never: the handshake does not finish\r\n");
    t.Flush();
    t.SetDeadline(t.NowNs() + 100 * kMs);
  });
  ASSERT_TRUE(conn.RunUntilClosed());
  EXPECT_EQ(conn.client.events, (std::vector<std::string>{"deadline", "closed:aborted"}));
  EXPECT_EQ(shard.tls_counters.sessions, 1u);
  EXPECT_EQ(shard.tls_counters.handshakes_completed, 0u);
}

// The peer hangs up in mid-handshake: nothing can be answered; the connection ends.
TEST(RingTransportTlsTest, FinInMidHandshakeEndsTheConnection) {
  Shard shard(/*with_tls=*/true);
  Connection conn(shard, /*implicit_tls=*/true);
  conn.Start();
  shutdown(conn.peer_fd, SHUT_WR);
  ASSERT_TRUE(conn.RunUntilClosed());
  EXPECT_EQ(*conn.client.closed, CloseReason::kPeerReset);
  EXPECT_FALSE(conn.client.peer_finished);
}

// The TLS error log: at most kLinesPerSecond lines a second; the next line says how many were
// held back.
TEST(TlsErrorLogLimiterTest, AdmitsABoundedNumberPerSecond) {
  TlsErrorLogLimiter limiter;
  constexpr uint64_t kS = 1'000'000'000;
  uint64_t suppressed = 99;
  for (uint32_t i = 0; i < TlsErrorLogLimiter::kLinesPerSecond; ++i) {
    ASSERT_TRUE(limiter.Admit(5 * kS + i, &suppressed));
    EXPECT_EQ(suppressed, 0u);
  }
  EXPECT_FALSE(limiter.Admit(5 * kS + 500, &suppressed));
  EXPECT_FALSE(limiter.Admit(5 * kS + 600, &suppressed));
  ASSERT_TRUE(limiter.Admit(6 * kS, &suppressed));
  EXPECT_EQ(suppressed, 2u);
}

}  // namespace
}  // namespace posthaste::server::transport
