// Pop3SourceClient: a blocking POP3 client for reading a mailbox from another server
// (`posthaste import pop3`). It connects (trying each address of the host), secures the
// connection (STLS or implicit TLS through BoringSSL, the certificate verified against a CA file
// or the system store and the host name checked), logs in with USER/PASS and sends commands
// one at a time, each read through Pop3ReplyParser.
//
// Every wait has a deadline: each command as a whole (`command_timeout`) and each read or
// write (`io_timeout`, so a stalled source is noticed before the command's deadline). The
// socket is non-blocking and waits are poll()s, so a source sending half a TLS record and
// stopping cannot hang the client.
//
// Errors: Unavailable (cannot connect, connection lost), DeadlineExceeded (a timeout),
// PermissionDenied (login refused, certificate not trusted), FailedPrecondition (the source
// refused STLS), InvalidArgument (the source broke the protocol or a limit), each with a text
// naming the source.
//
// Threading: one client per thread; it blocks (the CLI or an admin socket worker, never a
// reactor thread). The destructor closes the connection without QUIT.
#ifndef POSTHASTE_SERVER_POP3_IMPORT_POP3_SOURCE_CLIENT_H_
#define POSTHASTE_SERVER_POP3_IMPORT_POP3_SOURCE_CLIENT_H_

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/pop3_import/pop3_reply_parser.h"

namespace posthaste::server::pop3_import {

enum class SourceTls : uint8_t {
  kStls,      // plain connection, then STLS (RFC 2595) before anything else
  kImplicit,  // TLS from the first byte (port 995 style)
  kNone,      // no TLS: only for a loopback source (the password would cross in clear)
};

// "stls", "implicit", "none"; InvalidArgument otherwise.
absl::StatusOr<SourceTls> ParseSourceTls(std::string_view name);

struct SourceOptions {
  std::string host;  // a DNS name (checked against the certificate) or an IP address
  uint16_t port = 0;
  SourceTls tls = SourceTls::kStls;
  std::string ca_file;  // PEM CA certificates; empty: the system store
  absl::Duration connect_timeout = absl::Seconds(30);
  absl::Duration io_timeout = absl::Seconds(60);
  absl::Duration command_timeout = absl::Minutes(10);
  uint64_t listing_bytes_max = uint64_t{64} << 20;  // UIDL and LIST bodies
};

// "HOST:PORT" or "[V6]:PORT" into options.host and options.port.
absl::Status ParseHostPort(std::string_view from, SourceOptions* options);

class Pop3SourceClient {
 public:
  // Connects, reads the greeting and secures the connection as options.tls says. A kNone
  // connection to an address that is not loopback is refused (InvalidArgument) before any
  // byte is sent.
  static absl::StatusOr<std::unique_ptr<Pop3SourceClient>> Connect(const SourceOptions& options);
  ~Pop3SourceClient();

  // USER then PASS. PermissionDenied with the source's text when refused.
  absl::Status Login(std::string_view user, std::string_view password);

  // Sends `command` (no CRLF) and reads its reply, a body of at most body_bytes_max octets.
  // A "-ERR" is a reply (ok == false), not an error.
  absl::StatusOr<Pop3Reply> Command(std::string_view command, ReplyShape shape,
                                    uint64_t body_bytes_max = 0);

  // The listings, parsed (ParseUidlListing, ParseListListing).
  absl::StatusOr<std::vector<UidlEntry>> Uidl();
  absl::StatusOr<std::vector<ListEntry>> List();

  // QUIT, best effort (nothing was marked deleted, so nothing depends on it).
  void Quit();

  const SourceOptions& options() const { return options_; }

 private:
  explicit Pop3SourceClient(const SourceOptions& options) : options_(options) {}

  absl::Status OpenSocket(absl::Time deadline);
  absl::Status StartTls(absl::Time deadline);
  absl::Status WriteAll(std::string_view data, absl::Time deadline);
  // Reads some bytes into `buffer`; 0 means the source closed the connection.
  absl::StatusOr<size_t> ReadSome(char* buffer, size_t size, absl::Time deadline);
  // Waits until the socket is readable (or writable), until min(deadline, now + io_timeout).
  absl::Status Wait(bool for_write, absl::Time deadline);
  absl::StatusOr<Pop3Reply> ReadReply(ReplyShape shape, uint64_t body_bytes_max,
                                      absl::Time deadline);
  std::string Source() const;

  SourceOptions options_;
  int fd_ = -1;
  bssl::UniquePtr<SSL_CTX> ctx_;
  bssl::UniquePtr<SSL> ssl_;
  Pop3ReplyParser parser_;
  std::string unread_;  // bytes received past the last reply
};

}  // namespace posthaste::server::pop3_import

#endif  // POSTHASTE_SERVER_POP3_IMPORT_POP3_SOURCE_CLIENT_H_
