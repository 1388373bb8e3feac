// Invariant checks, in three strengths:
//   PH_DCHECK(cond)      debug builds only: cheap insurance on hot paths.
//   PH_CHECK(cond)       always: a broken invariant that makes going on unsafe aborts.
//   PH_BUG(cond, what)   always evaluated: logs and counts, then the caller recovers.
// Never use any of them on peer input (client bytes, files, MTA data): those are operating
// conditions and get error handling. Thread-safe.
#ifndef POSTHASTE_BASE_CHECK_H_
#define POSTHASTE_BASE_CHECK_H_

#include <cstdint>

#include "absl/base/optimization.h"

namespace posthaste {

[[noreturn]] void CheckFailed(const char* condition, const char* file, int line);
void ReportBug(const char* condition, const char* what, const char* file, int line);

// How many PH_BUG conditions fired in this process (exported as a metric).
uint64_t BugCount();

}  // namespace posthaste

#define PH_CHECK(cond)                                                \
  do {                                                                \
    if (ABSL_PREDICT_FALSE(!(cond))) {                                \
      ::posthaste::CheckFailed(#cond, __FILE__, __LINE__);            \
    }                                                                 \
  } while (0)

#ifdef NDEBUG
#define PH_DCHECK(cond) \
  do {                  \
    if (false) {        \
      (void)(cond);     \
    }                   \
  } while (0)
#else
#define PH_DCHECK(cond) PH_CHECK(cond)
#endif

// Evaluates to `cond`, so it can guard a recovery path: `if (PH_BUG(!p, "no p")) return;`.
#define PH_BUG(cond, what)                                                          \
  (ABSL_PREDICT_FALSE(cond) ? (::posthaste::ReportBug(#cond, what, __FILE__, __LINE__), true) \
                            : false)

#endif  // POSTHASTE_BASE_CHECK_H_
