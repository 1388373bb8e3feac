// Kernel TLS (kTLS): after a userspace handshake, hand the AES-GCM traffic keys to the kernel so
// that plain send/splice/sendfile on the socket produces TLS records (and RETR keeps its
// zero-copy path). Where the kernel lacks the `tls` module, setsockopt(TCP_ULP, "tls") fails
// with ENOENT and connections stay on the userspace engine (TlsEngine::EncryptFrom).
//
// ProbeKernelTls() tries TCP_ULP once on a loopback TCP pair; call it at startup and keep the
// result. ChooseTlsDataPath() then decides per session and counts the path taken in a
// per-shard TlsPathCounters (plain integers: one shard, one writer).
//
// Threading: ProbeKernelTls and EnableKernelTls are thread-safe (no shared state); a
// TlsPathCounters belongs to one shard.
#ifndef POSTHASTE_TLS_KTLS_H_
#define POSTHASTE_TLS_KTLS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "base/counter_fields.h"
#include "tls/tls_engine.h"

namespace posthaste {

struct KtlsCapability {
  bool available = false;
  int error_number = 0;  // errno of the failed step; ENOENT: no `tls` kernel module.
  std::string reason;    // "available", or "unavailable: ENOENT (...)".
};

// Tries TCP_ULP "tls" on a connected loopback TCP socket. Never throws or aborts.
KtlsCapability ProbeKernelTls();

// Attaches the `tls` ULP to the connected TCP socket `fd` and installs TX and RX keys exported
// from `engine` (see TlsEngine::ExportKernelTlsKeys for its preconditions). On success the
// socket carries TLS records by itself and `engine` must no longer be used for records. On
// failure: Unavailable when the kernel refuses (ENOENT, EOPNOTSUPP, ...), FailedPrecondition or
// Unimplemented from the export (wrong state, CHACHA20); the socket is then unusable for kTLS
// but still carries the engine's records if TCP_ULP itself failed.
absl::Status EnableKernelTls(int fd, const TlsEngine& engine);

enum class TlsDataPath { kKernelTls, kUserspace };

// X(member, what it counts).
#define PH_TLS_PATH_COUNTERS(X)                                      \
  X(kernel_tls_sessions, "sessions whose records the kernel writes") \
  X(userspace_sessions, "sessions whose records TlsEngine seals")    \
  X(kernel_tls_errors, "kTLS was available but enabling it failed")
struct TlsPathCounters {
  PH_TLS_PATH_COUNTERS(PH_COUNTER_MEMBER)
};

// Enables kTLS on `fd` when `capability` says the kernel has it and the engine's cipher allows
// it, else keeps the userspace path. Counts the outcome. `*why`, when given, says why the
// userspace path was taken (for the session's log line).
TlsDataPath ChooseTlsDataPath(int fd, const TlsEngine& engine, const KtlsCapability& capability,
                              TlsPathCounters* counters, std::string* why = nullptr);

std::string_view TlsDataPathName(TlsDataPath path);

}  // namespace posthaste

#endif  // POSTHASTE_TLS_KTLS_H_
