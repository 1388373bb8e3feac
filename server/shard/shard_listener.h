// ShardListener: one shard's share of a SO_REUSEPORT listening socket and its multishot
// accept, shared by the POP3, POP3S and LMTP listeners. It owns the fd from the moment the main
// thread hands it over; accepted sockets get TCP_NODELAY (replies are small and must not wait
// for Nagle) before they reach the protocol's handler.
//
// Threading: set_fd()/Close() on the main thread before the reactor starts; everything else on
// the shard's thread. Not movable: the acceptor's callback points at this object.
#ifndef POSTHASTE_SERVER_SHARD_SHARD_LISTENER_H_
#define POSTHASTE_SERVER_SHARD_SHARD_LISTENER_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/functional/any_invocable.h"
#include "server/reactor/net.h"
#include "server/reactor/ring.h"
#include "server/shard/service_shard.h"

namespace posthaste::server {

class ShardListener {
 public:
  ShardListener() = default;
  ShardListener(const ShardListener&) = delete;
  ShardListener& operator=(const ShardListener&) = delete;

  void set_fd(int fd) { fd_ = fd; }

  // Starts accepting on `shard`'s ring and registers the acceptor's counters there with
  // `labels` ("listener=pop3", a literal); `on_accept` then owns each new connection's fd.
  // `refusal_line` (CRLF included, or empty to close without a word, e.g. before a TLS
  // handshake) answers connections refused at the descriptor limit (reactor::Acceptor).
  // No-op without an fd.
  void Start(ServiceShard& shard, std::string_view labels,
             absl::AnyInvocable<void(int fd)> on_accept, std::string refusal_line = {});
  bool accepting() const { return accepting_; }
  // Stops accepting and closes the socket: with SO_REUSEPORT, connections queued on this
  // shard's socket would otherwise wait forever. Idempotent.
  void Stop();
  // Closes the socket without having started (start-up failed).
  void Close();
  // Frees the acceptor once its last completion arrived (the shard's OnDrained hook).
  void Release() { acceptor_.reset(); }

 private:
  void OnAccept(int fd);

  int fd_ = -1;
  bool accepting_ = false;
  std::unique_ptr<reactor::Acceptor> acceptor_;
  absl::AnyInvocable<void(int fd)> on_accept_;
};

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_SHARD_SHARD_LISTENER_H_
