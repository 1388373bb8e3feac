// Test helpers for //server/reactor: loopback clients, temporary files, and a bounded way to
// drive a Ring until a condition holds. Blocking calls here run on test client threads, never
// on a ring's loop. Not thread-safe unless stated; testonly.
#ifndef POSTHASTE_SERVER_REACTOR_TESTING_LOOPBACK_H_
#define POSTHASTE_SERVER_REACTOR_TESTING_LOOPBACK_H_

#include <cstdint>
#include <functional>
#include <string>

#include "server/reactor/ring.h"

namespace posthaste::reactor::testing {

// A blocking TCP client connected to 127.0.0.1:port; -1 on failure.
int ConnectLoopback(uint16_t port);
// Blocking writes/reads of exactly/at most `n` bytes. ReadAll reads until EOF or `max` bytes,
// sleeping `pause_us` between reads of up to `chunk` bytes (a slow reader when pause_us > 0).
bool WriteAll(int fd, const std::string& data);
std::string ReadExactly(int fd, size_t n);
std::string ReadAll(int fd, size_t max, size_t chunk = 65536, int pause_us = 0);

// Deterministic pseudo-random bytes.
std::string PatternBytes(size_t n, uint32_t seed);
// A file under $TEST_TMPDIR holding `data`; returns its path.
std::string WriteTempFile(const std::string& name, const std::string& data);

// Runs `ring` until `done()` or until `limit_ms` of wall time passed (a hang guard, not a
// timing assertion). A 10 ms ticker keeps the loop waking up. Returns done().
bool RunUntil(Ring& ring, const std::function<bool()>& done, int limit_ms = 30000);

}  // namespace posthaste::reactor::testing

#endif  // POSTHASTE_SERVER_REACTOR_TESTING_LOOPBACK_H_
