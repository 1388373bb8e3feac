// glibc's malloc gives threads up to 8 arenas per core, and each arena keeps what its threads
// freed for reuse. posthaste runs ~50 threads (reactors, CPU and I/O offload pools, HTTP,
// RocksDB), so the default lets resident memory climb for tens of minutes as arena after arena
// reaches its high-water mark (docs/RELIABILITY.md, "Soak"). `serve` caps the arenas instead.
#ifndef POSTHASTE_BASE_MALLOC_ARENAS_H_
#define POSTHASTE_BASE_MALLOC_ARENAS_H_

namespace posthaste {

// Caps glibc's malloc arenas at `arenas` (at least 1), unless MALLOC_ARENA_MAX is set in the
// environment: the operator's setting wins, and glibc has already applied it. Returns the cap
// in force: `arenas`, the environment's value, or 0 when neither applies (mallopt refused, as
// under a sanitizer's allocator). Call before starting threads: threads take arenas at their
// first allocation.
int LimitMallocArenas(int arenas);

}  // namespace posthaste

#endif  // POSTHASTE_BASE_MALLOC_ARENAS_H_
