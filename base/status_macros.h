// Status propagation macros shaped like abseil's ABSL_RETURN_IF_ERROR / ABSL_ASSIGN_OR_RETURN,
// which Debian's abseil 20220623 does not ship. When abseil is upgraded, these become a rename.
// Thread-safe: pure macros.
#ifndef POSTHASTE_BASE_STATUS_MACROS_H_
#define POSTHASTE_BASE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define PH_STATUS_CONCAT_INNER_(a, b) a##b
#define PH_STATUS_CONCAT_(a, b) PH_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status); returns it from the enclosing function if not OK.
#define PH_RETURN_IF_ERROR(expr)                                  \
  do {                                                            \
    ::absl::Status ph_status_ = (expr);                           \
    if (ABSL_PREDICT_FALSE(!ph_status_.ok())) return ph_status_;  \
  } while (0)

// `PH_ASSIGN_OR_RETURN(auto x, Foo());` evaluates Foo() (an absl::StatusOr<T>); on error
// returns its status, otherwise moves the value into the declaration or lvalue on the left.
#define PH_ASSIGN_OR_RETURN(lhs, expr) \
  PH_ASSIGN_OR_RETURN_IMPL_(PH_STATUS_CONCAT_(ph_statusor_, __LINE__), lhs, expr)

#define PH_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)              \
  auto statusor = (expr);                                           \
  if (ABSL_PREDICT_FALSE(!statusor.ok())) return statusor.status(); \
  lhs = std::move(statusor).value()

#endif  // POSTHASTE_BASE_STATUS_MACROS_H_
