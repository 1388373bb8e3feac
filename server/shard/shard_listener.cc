#include "server/shard/shard_listener.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <utility>

namespace posthaste::server {

void ShardListener::Start(ServiceShard& shard, std::string_view labels,
                          absl::AnyInvocable<void(int fd)> on_accept, std::string refusal_line) {
  if (fd_ < 0) return;
  on_accept_ = std::move(on_accept);
  acceptor_ = std::make_unique<reactor::Acceptor>(
      shard.ring(), fd_, [this](int fd) { OnAccept(fd); }, std::move(refusal_line));
  shard.AddAcceptorCounters(acceptor_->stats(), labels);
  acceptor_->Start();
  accepting_ = true;
}

void ShardListener::Stop() {
  if (!accepting_) return;
  accepting_ = false;
  acceptor_->Stop();
  Close();
}

void ShardListener::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void ShardListener::OnAccept(int fd) {
  // A completion already queued when Stop() cancelled the accept.
  if (!accepting_) {
    close(fd);
    return;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  on_accept_(fd);
}

}  // namespace posthaste::server
