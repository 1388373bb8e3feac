// HttpServer: one hardened HTTP/1.1 listener for the operations endpoints of `posthaste serve`
// (metrics and health on --metrics_listen, the JSON admin API on --admin_listen). It replaces
// civetweb, whose two threads two idle half-sent requests could hold for 30 s each.
//
// Shape: one event-loop thread (epoll, non-blocking sockets) owns the listener and every
// connection; it parses requests (server/http/request_parser.h), enforces every limit and
// deadline, answers cheap routes itself (health probes never wait behind a worker) and hands
// the others to a small pool of worker threads through a bounded queue (503 when full).
//
// One request per connection: every response says `Connection: close` (as civetweb did for
// these endpoints), so there is no idle keep-alive state for a client to hold; after the
// response the server shuts down its sending side and discards what the client still sends
// for at most kLingerMs (so a client that sent a body we refused still reads our answer).
//
// Limits (HttpServerOptions), each with its own answer and counter:
//   - header deadline, absolute from accept (a client trickling a byte at a time gains
//     nothing): 408 and close; body deadline from the end of the head: 408; write deadline
//     for the response: the connection is aborted;
//   - request line / head size / field count / body size: 414 / 431 / 431 / 413 (see
//     request_parser.h for everything else refused with 400, 417, 501, 505);
//   - connections per client IP (exact address) and in total: a connection over the per-IP
//     limit gets 503 and is closed at once; when the listener is full, the connection that has
//     been waiting longest for its request head (if at least kEvictAfterMs) is closed to make
//     room, otherwise the new one gets 503;
//   - worker queue: 503 with Retry-After when full;
//   - head check (HttpServerOptions::head_check): a request the listener's owner refuses from
//     its head alone (no credentials, a method or path that takes no such body) is answered
//     before a byte of its body is read, so only requests that pass may send a body at all.
//
// Threading: Start and the destructor from one owning thread. Handlers run on the event-loop
// thread (RunOn::kEventLoop: must not block) or on a worker (RunOn::kWorker: may block, must
// be thread-safe; several run at once). stats() may be read from any thread.
// Ownership: the server owns its sockets and threads; whatever the handlers capture must
// outlive the server. The destructor closes every connection and joins all threads; a handler
// still running on a worker is waited for, queued ones are dropped.
#ifndef POSTHASTE_SERVER_HTTP_HTTP_SERVER_H_
#define POSTHASTE_SERVER_HTTP_HTTP_SERVER_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "base/counter_fields.h"
#include "server/http/http_message.h"
#include "server/http/request_parser.h"

namespace posthaste::http {

enum class RunOn { kEventLoop, kWorker };

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpRoute {
  std::string path;     // matched against the raw path (before '?')
  bool prefix = false;  // false: the path must equal `path`; true: start with it
  RunOn run_on = RunOn::kWorker;
  HttpHandler handler;
};

struct HttpServerOptions {
  static constexpr uint32_t kTimeoutMsMax = 3'600'000;
  static constexpr uint32_t kConnectionsMax = 100'000;
  static constexpr uint32_t kWorkersMax = 64;

  std::string name = "http";  // in logs and thread names ("metrics", "admin_api")
  std::string host = "127.0.0.1";
  uint16_t port = 0;              // 0: the kernel picks
  std::vector<HttpRoute> routes;  // first match wins; no match: 404
  // Formats the answers the server makes itself (404 without a route, 4xx from the parser,
  // 408, 503). Null: text/plain "<message>\n".
  std::function<HttpResponse(int status, std::string_view message)> error_response;
  // Runs on the event loop once a request head is parsed, before its body is read (and before
  // "100 Continue"): a response refuses the request with it, unread body and all. Null, or
  // nullopt: the request goes on. Must be cheap and must not block.
  std::function<std::optional<HttpResponse>(const HttpRequest& head)> head_check;
  RequestLimits limits;
  uint32_t header_timeout_ms = 5'000;    // accept -> end of the request head
  uint32_t body_timeout_ms = 10'000;     // end of the head -> end of the body
  uint32_t write_timeout_ms = 10'000;    // response ready -> all of it sent
  uint32_t connections_max = 256;        // open connections on this listener, 1..
  uint32_t connections_per_ip_max = 16;  // from one client address; 0: no per-IP limit
  uint32_t workers = 2;                  // 1..kWorkersMax
  uint32_t worker_queue_max = 16;        // requests waiting for a worker
};

// Status codes counted one by one; the last slot counts every other code.
inline constexpr std::array<int, 18> kCountedStatuses = {
    200, 201, 204, 400, 401, 404, 405, 408, 409, 411, 413, 414, 417, 431, 500, 501, 503, 505};

// X(member, what it counts); the server exports them per listener (server/admin/admin_http.cc).
#define PH_HTTP_SERVER_STATS(X)                                                 \
  X(connections_accepted, "connections accepted")                               \
  X(connections_open, "connections open (goes down as they close)")             \
  X(refused_per_ip, "503 + close: over connections_per_ip_max")                 \
  X(refused_full, "503 + close: full, nobody to evict")                         \
  X(refused_descriptors, "503 + close: on the reserve descriptor at the limit") \
  X(evicted, "closed to make room (slowest head first)")                        \
  X(header_timeouts, "408: the head did not arrive by header_timeout_ms")       \
  X(body_timeouts, "408: the body did not arrive by body_timeout_ms")           \
  X(write_timeouts, "aborted: the response was not taken in time")              \
  X(worker_queue_full, "503: every worker busy and the queue full")
struct HttpServerStats {
  PH_HTTP_SERVER_STATS(PH_ATOMIC_COUNTER_MEMBER)
  std::array<std::atomic<uint64_t>, kCountedStatuses.size() + 1> responses{};  // by status
  static size_t StatusSlot(int status);
};

class HttpServer {
 public:
  // Time an answered connection keeps reading (and discarding) before it is closed.
  static constexpr uint32_t kLingerMs = 1'000;
  // A connection still waiting for its head is evicted for a new one only after this long.
  static constexpr uint32_t kEvictAfterMs = 1'000;

  // Binds options.host:port and starts the threads. InvalidArgument for bad options,
  // Unavailable (or the errno's code) when it cannot bind.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const;
  const HttpServerStats& stats() const;

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace posthaste::http

#endif  // POSTHASTE_SERVER_HTTP_HTTP_SERVER_H_
