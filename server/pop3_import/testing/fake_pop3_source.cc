#include "server/pop3_import/testing/fake_pop3_source.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace posthaste::server::pop3_import::testing {
namespace {

constexpr int kPollMs = 50;
constexpr int kIdleWaitsMax = 200;  // 10 s of silence ends a connection

void Check(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "fake_pop3_source: %s failed\n", what);
    std::abort();
  }
}

}  // namespace

FakePop3Source::FakePop3Source(FakeSourceOptions options) : options_(std::move(options)) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  Check(listen_fd_ >= 0, "socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  Check(bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0, "bind");
  Check(listen(listen_fd_, 8) == 0, "listen");
  socklen_t length = sizeof(address);
  getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
  port_ = ntohs(address.sin_port);
  if (options_.tls != FakeSourceOptions::Tls::kNone) {
    ctx_.reset(SSL_CTX_new(TLS_method()));
    bssl::UniquePtr<BIO> cert_bio(
        BIO_new_mem_buf(options_.cert_pem.data(), static_cast<int>(options_.cert_pem.size())));
    bssl::UniquePtr<X509> cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
    bssl::UniquePtr<BIO> key_bio(
        BIO_new_mem_buf(options_.key_pem.data(), static_cast<int>(options_.key_pem.size())));
    bssl::UniquePtr<EVP_PKEY> key(
        PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
    Check(cert && key && SSL_CTX_use_certificate(ctx_.get(), cert.get()) == 1 &&
              SSL_CTX_use_PrivateKey(ctx_.get(), key.get()) == 1,
          "test certificate");
  }
  thread_ = std::thread([this] { Serve(); });
}

FakePop3Source::~FakePop3Source() {
  stop_ = true;
  thread_.join();
  close(listen_fd_);
}

std::vector<std::string> FakePop3Source::logins() const {
  absl::MutexLock lock(&mu_);
  return logins_;
}
uint64_t FakePop3Source::retr_count() const {
  absl::MutexLock lock(&mu_);
  return retr_count_;
}
uint64_t FakePop3Source::dele_count() const {
  absl::MutexLock lock(&mu_);
  return dele_count_;
}

void FakePop3Source::Serve() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, kPollMs) <= 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    ServeConnection(fd);
    close(fd);
  }
}

void FakePop3Source::ServeConnection(int fd) {
  timeval timeout{0, kPollMs * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  bssl::UniquePtr<SSL> ssl;
  auto start_tls = [&]() {
    ssl.reset(SSL_new(ctx_.get()));
    SSL_set_fd(ssl.get(), fd);
    for (int waits = 0; waits < kIdleWaitsMax && !stop_; ++waits) {
      const int rc = SSL_accept(ssl.get());
      if (rc == 1) return true;
      if (SSL_get_error(ssl.get(), rc) != SSL_ERROR_WANT_READ &&
          SSL_get_error(ssl.get(), rc) != SSL_ERROR_SYSCALL) {
        return false;
      }
      if (SSL_get_error(ssl.get(), rc) == SSL_ERROR_SYSCALL && errno != EAGAIN) return false;
    }
    return false;
  };
  auto send_all = [&](std::string_view data) {
    while (!data.empty()) {
      const int n = ssl ? SSL_write(ssl.get(), data.data(), static_cast<int>(data.size()))
                        : static_cast<int>(send(fd, data.data(), data.size(), MSG_NOSIGNAL));
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  };
  std::string input;
  // One command line, or false when the client left, went silent or the test ends.
  auto read_line = [&](std::string* line) {
    for (int waits = 0; waits < kIdleWaitsMax && !stop_;) {
      const size_t newline = input.find("\r\n");
      if (newline != std::string::npos) {
        *line = input.substr(0, newline);
        input.erase(0, newline + 2);
        return true;
      }
      char buffer[4096];
      const int n = ssl ? SSL_read(ssl.get(), buffer, sizeof(buffer))
                        : static_cast<int>(recv(fd, buffer, sizeof(buffer), 0));
      if (n > 0) {
        input.append(buffer, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) return false;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
      ++waits;
    }
    return false;
  };

  if (options_.tls == FakeSourceOptions::Tls::kImplicit && !start_tls()) return;
  if (options_.behavior == FakeBehavior::kSilent) {
    std::string ignored;
    while (read_line(&ignored)) {
    }
    return;
  }
  if (options_.behavior == FakeBehavior::kEndlessGreeting) {
    send_all("+OK ");
    send_all(std::string(1 << 20, 'g'));
    std::string ignored;
    while (read_line(&ignored)) {
    }
    return;
  }
  if (!send_all("+OK fake source ready\r\n")) return;
  std::string user;
  bool logged_in = false;
  std::string line;
  while (read_line(&line)) {
    const std::string verb = line.substr(0, line.find(' '));
    const std::string argument =
        line.find(' ') == std::string::npos ? std::string() : line.substr(line.find(' ') + 1);
    uint64_t number = 0;
    const bool numbered =
        absl::SimpleAtoi(argument, &number) && number >= 1 && number <= options_.messages.size();
    if (verb == "STLS" && options_.tls == FakeSourceOptions::Tls::kStls && !ssl) {
      if (options_.refuse_stls) {
        send_all("-ERR not here\r\n");
        continue;
      }
      send_all("+OK begin TLS\r\n");
      if (!start_tls()) return;
    } else if (options_.tls == FakeSourceOptions::Tls::kStls && !ssl && verb != "QUIT") {
      send_all("-ERR STLS first\r\n");
    } else if (verb == "USER") {
      user = argument;
      send_all("+OK\r\n");
    } else if (verb == "PASS") {
      if (argument == options_.password && !user.empty()) {
        logged_in = true;
        absl::MutexLock lock(&mu_);
        logins_.push_back(user);
        send_all("+OK logged in\r\n");
      } else {
        send_all("-ERR [AUTH] wrong password\r\n");
      }
    } else if (!logged_in && verb != "QUIT") {
      send_all("-ERR log in first\r\n");
    } else if (verb == "UIDL" || verb == "LIST") {
      std::string listing = "+OK\r\n";
      for (size_t i = 0; i < options_.messages.size(); ++i) {
        const FakeMessage& m = options_.messages[i];
        absl::StrAppend(&listing, i + 1, " ", verb == "UIDL" ? m.uidl : absl::StrCat(m.wire.size()),
                        "\r\n");
      }
      send_all(listing + ".\r\n");
    } else if (verb == "RETR" && numbered) {
      {
        absl::MutexLock lock(&mu_);
        ++retr_count_;
      }
      const std::string& wire = options_.messages[number - 1].wire;
      if (options_.behavior == FakeBehavior::kOversizeRetr) {
        send_all("+OK\r\n");
        const std::string lines(64 * 1024, 'x');
        for (int i = 0; i < 128 && send_all(lines + "\r\n"); ++i) {
        }
        return;
      }
      if (options_.behavior == FakeBehavior::kCutInRetr && number == 2) {
        send_all("+OK\r\n" + wire.substr(0, wire.size() / 2));
        return;
      }
      send_all(absl::StrCat("+OK ", wire.size(), " octets\r\n", wire, ".\r\n"));
    } else if (verb == "DELE") {
      absl::MutexLock lock(&mu_);
      ++dele_count_;
      send_all("+OK marked\r\n");
    } else if (verb == "QUIT") {
      send_all("+OK bye\r\n");
      return;
    } else {
      send_all("-ERR unknown command\r\n");
    }
  }
}

}  // namespace posthaste::server::pop3_import::testing
