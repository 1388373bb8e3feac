// TcpBytesAcked: how many bytes the peer has acknowledged on a TCP socket (TCP_INFO's
// tcpi_bytes_acked, Linux 4.1+), used to tell a slow reader from a stalled one. Kept apart
// because <linux/tcp.h> (which has the field) clashes with glibc's <netinet/tcp.h>.
// Threading: any thread; one non-blocking getsockopt.
#ifndef POSTHASTE_SERVER_TCP_PROGRESS_H_
#define POSTHASTE_SERVER_TCP_PROGRESS_H_

#include <cstdint>
#include <optional>

namespace posthaste::server {

std::optional<uint64_t> TcpBytesAcked(int fd);

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_TCP_PROGRESS_H_
