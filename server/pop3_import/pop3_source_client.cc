#include "server/pop3_import/pop3_source_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/strings.h"

namespace posthaste::server::pop3_import {
namespace {

constexpr size_t kReadChunkBytes = 64 * 1024;
// The system's CA bundle (Debian's ca-certificates), when --ca_file is not given and
// BoringSSL's compiled-in default path has none.
constexpr const char* kSystemCaFile = "/etc/ssl/certs/ca-certificates.crt";

std::string SslErrorText() {
  const uint32_t code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no details";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

bool IsLoopback(const sockaddr* address) {
  if (address->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(address);
    return (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
  }
  if (address->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(address);
    return IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
  }
  return false;
}

bool IsIpLiteral(const std::string& host) {
  in6_addr v6;
  in_addr v4;
  return inet_pton(AF_INET, host.c_str(), &v4) == 1 || inet_pton(AF_INET6, host.c_str(), &v6) == 1;
}

}  // namespace

absl::StatusOr<SourceTls> ParseSourceTls(std::string_view name) {
  if (name == "stls") return SourceTls::kStls;
  if (name == "implicit") return SourceTls::kImplicit;
  if (name == "none") return SourceTls::kNone;
  return absl::InvalidArgumentError(
      absl::StrCat("--tls must be stls, implicit or none, not \"", AbslView(name), "\""));
}

absl::Status ParseHostPort(std::string_view from, SourceOptions* options) {
  std::string_view host;
  std::string_view port;
  if (!from.empty() && from[0] == '[') {
    const size_t close = from.find("]:");
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError("--from must be HOST:PORT or [IPV6]:PORT");
    }
    host = from.substr(1, close - 1);
    port = from.substr(close + 2);
  } else {
    const size_t colon = from.rfind(':');
    if (colon == std::string_view::npos || from.find(':') != colon) {
      return absl::InvalidArgumentError("--from must be HOST:PORT or [IPV6]:PORT");
    }
    host = from.substr(0, colon);
    port = from.substr(colon + 1);
  }
  uint32_t number = 0;
  if (host.empty() || !absl::SimpleAtoi(AbslView(port), &number) || number == 0 || number > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--from must be HOST:PORT with a port 1-65535, not \"", AbslView(from), "\""));
  }
  options->host = std::string(host);
  options->port = static_cast<uint16_t>(number);
  return absl::OkStatus();
}

std::string Pop3SourceClient::Source() const {
  return absl::StrCat("source ", options_.host, ":", options_.port);
}

absl::StatusOr<std::unique_ptr<Pop3SourceClient>> Pop3SourceClient::Connect(
    const SourceOptions& options) {
  std::unique_ptr<Pop3SourceClient> client(new Pop3SourceClient(options));
  const absl::Time deadline = absl::Now() + options.connect_timeout;
  PH_RETURN_IF_ERROR(client->OpenSocket(deadline));
  if (options.tls == SourceTls::kImplicit) PH_RETURN_IF_ERROR(client->StartTls(deadline));
  PH_ASSIGN_OR_RETURN(Pop3Reply greeting, client->ReadReply(ReplyShape::kSingleLine, 0, deadline));
  if (!greeting.ok) {
    return absl::UnavailableError(
        absl::StrCat(client->Source(), " refused the connection: ", greeting.text));
  }
  if (options.tls == SourceTls::kStls) {
    PH_ASSIGN_OR_RETURN(Pop3Reply stls, client->Command("STLS", ReplyShape::kSingleLine));
    if (!stls.ok) {
      return absl::FailedPreconditionError(absl::StrCat(
          client->Source(), " refused STLS (", stls.text,
          "); use --tls=implicit for a TLS port, or --tls=none for a loopback source"));
    }
    if (!client->unread_.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(client->Source(), " sent bytes after its STLS answer"));
    }
    PH_RETURN_IF_ERROR(client->StartTls(absl::Now() + options.connect_timeout));
  }
  return client;
}

Pop3SourceClient::~Pop3SourceClient() {
  ssl_.reset();
  if (fd_ >= 0) close(fd_);
}

absl::Status Pop3SourceClient::OpenSocket(absl::Time deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = absl::StrCat(options_.port);
  const int rc = getaddrinfo(options_.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve ", options_.host, ": ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> addresses(found, freeaddrinfo);
  if (options_.tls == SourceTls::kNone) {
    for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
      if (!IsLoopback(a->ai_addr)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--tls=none is allowed only for a loopback source (the password would cross the "
            "network in clear), and ",
            options_.host, " is not one: use --tls=stls or --tls=implicit"));
      }
    }
  }
  std::string last_error = "no address";
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd =
        socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last_error = strerror(errno);
      continue;
    }
    fd_ = fd;
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last_error = strerror(errno);
    } else if (absl::Status waited = Wait(/*for_write=*/true, deadline); !waited.ok()) {
      last_error = std::string(waited.message());
    } else {
      int error = 0;
      socklen_t length = sizeof(error);
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
      if (error == 0) return absl::OkStatus();
      last_error = strerror(error);
    }
    close(fd);
    fd_ = -1;
  }
  return absl::UnavailableError(absl::StrCat("cannot connect to ", Source(), ": ", last_error));
}

absl::Status Pop3SourceClient::StartTls(absl::Time deadline) {
  ctx_.reset(SSL_CTX_new(TLS_method()));
  if (!ctx_) return absl::InternalError("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx_.get(), TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER, nullptr);
  if (!options_.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx_.get(), options_.ca_file.c_str(), nullptr) != 1) {
      return absl::InvalidArgumentError(absl::StrCat("cannot read CA certificates from ",
                                                     options_.ca_file, ": ", SslErrorText()));
    }
  } else if (access(kSystemCaFile, R_OK) == 0) {
    if (SSL_CTX_load_verify_locations(ctx_.get(), kSystemCaFile, nullptr) != 1) {
      return absl::InternalError(
          absl::StrCat("cannot read the system CA store ", kSystemCaFile, ": ", SslErrorText()));
    }
  } else {
    SSL_CTX_set_default_verify_paths(ctx_.get());
  }
  ssl_.reset(SSL_new(ctx_.get()));
  if (!ssl_ || SSL_set_fd(ssl_.get(), fd_) != 1) {
    return absl::InternalError(absl::StrCat("SSL_new failed: ", SslErrorText()));
  }
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl_.get());
  if (IsIpLiteral(options_.host)) {
    X509_VERIFY_PARAM_set1_ip_asc(param, options_.host.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl_.get(), options_.host.c_str());
    X509_VERIFY_PARAM_set1_host(param, options_.host.data(), options_.host.size());
  }
  for (;;) {
    const int rc = SSL_connect(ssl_.get());
    if (rc == 1) return absl::OkStatus();
    const int error = SSL_get_error(ssl_.get(), rc);
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
      PH_RETURN_IF_ERROR(Wait(error == SSL_ERROR_WANT_WRITE, deadline));
      continue;
    }
    const long verify = SSL_get_verify_result(ssl_.get());
    if (verify != X509_V_OK) {
      return absl::PermissionDeniedError(
          absl::StrCat("the TLS certificate of ", Source(),
                       " is not trusted: ", X509_verify_cert_error_string(verify),
                       options_.ca_file.empty() ? " (give its CA with --ca_file)" : ""));
    }
    return absl::UnavailableError(
        absl::StrCat("TLS handshake with ", Source(), " failed: ", SslErrorText()));
  }
}

absl::Status Pop3SourceClient::Wait(bool for_write, absl::Time deadline) {
  const absl::Time now = absl::Now();
  const absl::Time until = std::min(deadline, now + options_.io_timeout);
  pollfd p{fd_, static_cast<short>(for_write ? POLLOUT : POLLIN), 0};
  for (;;) {
    const int64_t wait_ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(until - absl::Now()));
    const int rc = poll(&p, 1, static_cast<int>(std::min<int64_t>(wait_ms, 1 << 30)));
    if (rc > 0) return absl::OkStatus();
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return absl::UnavailableError(absl::StrCat("poll: ", strerror(errno)));
    return absl::DeadlineExceededError(
        absl::StrCat(Source(), " sent nothing for ", absl::FormatDuration(until - now),
                     until == deadline ? " (the command's deadline)" : ""));
  }
}

absl::Status Pop3SourceClient::WriteAll(std::string_view data, absl::Time deadline) {
  while (!data.empty()) {
    const size_t chunk = std::min<size_t>(data.size(), 1 << 20);
    if (ssl_) {
      const int rc = SSL_write(ssl_.get(), data.data(), static_cast<int>(chunk));
      if (rc > 0) {
        data.remove_prefix(static_cast<size_t>(rc));
        continue;
      }
      const int error = SSL_get_error(ssl_.get(), rc);
      if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
        PH_RETURN_IF_ERROR(Wait(error == SSL_ERROR_WANT_WRITE, deadline));
        continue;
      }
      return absl::UnavailableError(
          absl::StrCat("writing to ", Source(), " failed: ", SslErrorText()));
    }
    const ssize_t n = send(fd_, data.data(), chunk, MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      PH_RETURN_IF_ERROR(Wait(/*for_write=*/true, deadline));
    } else {
      return absl::UnavailableError(
          absl::StrCat("writing to ", Source(), " failed: ", strerror(errno)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<size_t> Pop3SourceClient::ReadSome(char* buffer, size_t size, absl::Time deadline) {
  for (;;) {
    if (ssl_) {
      const int rc = SSL_read(ssl_.get(), buffer, static_cast<int>(size));
      if (rc > 0) return static_cast<size_t>(rc);
      const int error = SSL_get_error(ssl_.get(), rc);
      if (error == SSL_ERROR_ZERO_RETURN) return 0;
      if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
        PH_RETURN_IF_ERROR(Wait(error == SSL_ERROR_WANT_WRITE, deadline));
        continue;
      }
      if (error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) return 0;  // closed uncleanly
      return absl::UnavailableError(
          absl::StrCat("reading from ", Source(), " failed: ", SslErrorText()));
    }
    const ssize_t n = recv(fd_, buffer, size, 0);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EAGAIN || errno == EINTR) {
      PH_RETURN_IF_ERROR(Wait(/*for_write=*/false, deadline));
      continue;
    }
    return absl::UnavailableError(
        absl::StrCat("reading from ", Source(), " failed: ", strerror(errno)));
  }
}

absl::StatusOr<Pop3Reply> Pop3SourceClient::ReadReply(ReplyShape shape, uint64_t body_bytes_max,
                                                      absl::Time deadline) {
  parser_.Expect(shape, body_bytes_max);
  std::string buffer(kReadChunkBytes, '\0');
  for (;;) {
    if (!unread_.empty()) {
      size_t consumed = 0;
      const Pop3ReplyParser::Progress progress = parser_.Feed(unread_, &consumed);
      unread_.erase(0, consumed);
      if (progress == Pop3ReplyParser::Progress::kComplete) return parser_.TakeReply();
      if (progress == Pop3ReplyParser::Progress::kError) {
        return absl::InvalidArgumentError(absl::StrCat(Source(), ": ", parser_.error().message()));
      }
    }
    PH_ASSIGN_OR_RETURN(size_t n, ReadSome(buffer.data(), buffer.size(), deadline));
    if (n == 0) {
      return absl::UnavailableError(
          absl::StrCat(Source(), " closed the connection in the middle of a reply"));
    }
    unread_.assign(buffer.data(), n);
  }
}

absl::StatusOr<Pop3Reply> Pop3SourceClient::Command(std::string_view command, ReplyShape shape,
                                                    uint64_t body_bytes_max) {
  const absl::Time deadline = absl::Now() + options_.command_timeout;
  PH_RETURN_IF_ERROR(WriteAll(absl::StrCat(AbslView(command), "\r\n"), deadline));
  return ReadReply(shape, body_bytes_max, deadline);
}

absl::Status Pop3SourceClient::Login(std::string_view user, std::string_view password) {
  PH_ASSIGN_OR_RETURN(Pop3Reply reply,
                      Command(absl::StrCat("USER ", AbslView(user)), ReplyShape::kSingleLine));
  if (reply.ok) {
    PH_ASSIGN_OR_RETURN(
        reply, Command(absl::StrCat("PASS ", AbslView(password)), ReplyShape::kSingleLine));
  }
  if (!reply.ok) {
    return absl::PermissionDeniedError(
        absl::StrCat(Source(), " refused the login of ", AbslView(user), ": ", reply.text));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<UidlEntry>> Pop3SourceClient::Uidl() {
  PH_ASSIGN_OR_RETURN(Pop3Reply reply,
                      Command("UIDL", ReplyShape::kMultiLine, options_.listing_bytes_max));
  if (!reply.ok) {
    return absl::FailedPreconditionError(absl::StrCat(Source(), " refused UIDL (", reply.text,
                                                      "): without UIDLs nothing can be kept"));
  }
  absl::StatusOr<std::vector<UidlEntry>> entries = ParseUidlListing(reply.body);
  if (!entries.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Source(), " UIDL: ", entries.status().message()));
  }
  return entries;
}

absl::StatusOr<std::vector<ListEntry>> Pop3SourceClient::List() {
  PH_ASSIGN_OR_RETURN(Pop3Reply reply,
                      Command("LIST", ReplyShape::kMultiLine, options_.listing_bytes_max));
  if (!reply.ok) {
    return absl::FailedPreconditionError(absl::StrCat(Source(), " refused LIST: ", reply.text));
  }
  absl::StatusOr<std::vector<ListEntry>> entries = ParseListListing(reply.body);
  if (!entries.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Source(), " LIST: ", entries.status().message()));
  }
  return entries;
}

void Pop3SourceClient::Quit() {
  if (fd_ < 0) return;
  options_.command_timeout = std::min(options_.command_timeout, absl::Seconds(5));
  (void)Command("QUIT", ReplyShape::kSingleLine);
}

}  // namespace posthaste::server::pop3_import
