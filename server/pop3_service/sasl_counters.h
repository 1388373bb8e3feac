// What the POP3 service counts of SASL exchanges beyond PLAIN and LOGIN on one shard: logins by
// mechanism, and failures by mechanism and reason (server/auth/sasl_exchange.h's SaslFailure).
// A block nested in ShardStats (server/pop3_service/pop3_counters.h), exported through the
// rows below as posthaste_auth_successes_total{mechanism} and
// posthaste_auth_failures_total{mechanism,reason}.
//
// The two X-macro lists spell the label values; their order is the enums' order, and
// server/pop3_service/sasl_counters_test.cc checks that they agree with SaslMechanismName and
// SaslFailureName.
//
// Threading: written only by its shard's thread (Pop3ShardBackend).
#ifndef POSTHASTE_SERVER_POP3_SERVICE_SASL_COUNTERS_H_
#define POSTHASTE_SERVER_POP3_SERVICE_SASL_COUNTERS_H_

#include <cstdint>

#include "server/auth/sasl_exchange.h"

namespace posthaste::server {

// X(index, label value) per SaslMechanism.
#define PH_SASL_MECHANISMS(X)                                                         \
  X(0, "PLAIN")                                                                       \
  X(1, "LOGIN")                                                                       \
  X(2, "CRAM-MD5") X(3, "SCRAM-SHA-1") X(4, "SCRAM-SHA-1-PLUS") X(5, "SCRAM-SHA-256") \
      X(6, "SCRAM-SHA-256-PLUS") X(7, "OAUTHBEARER") X(8, "XOAUTH2") X(9, "EXTERNAL")

// X(mechanism index, mechanism label, index, label value) per SaslFailure.
#define PH_SASL_FAILURES(X, m, mname)                                     \
  X(m, mname, 0, "malformed")                                             \
  X(m, mname, 1, "cancelled")                                             \
  X(m, mname, 2, "unknown_user") X(m, mname, 3, "bad_credentials")        \
      X(m, mname, 4, "channel_binding") X(m, mname, 5, "authz_refused")   \
          X(m, mname, 6, "token_invalid") X(m, mname, 7, "token_expired") \
              X(m, mname, 8, "not_allowed") X(m, mname, 9, "temp_failure")

struct SaslCounters {
  uint64_t successes[auth::kSaslMechanismCount] = {};
  uint64_t failures[auth::kSaslMechanismCount][auth::kSaslFailureCount] = {};

  void CountSuccess(auth::SaslMechanism mechanism) { ++successes[static_cast<int>(mechanism)]; }
  void CountFailure(auth::SaslMechanism mechanism, auth::SaslFailure failure) {
    ++failures[static_cast<int>(mechanism)][static_cast<int>(failure)];
  }
};

// Rows of a block `Block` whose member `sasl` is a SaslCounters (metrics/counter_table.h).
#define PH_SASL_SUCCESS_ROW(Block, m, mname)                                           \
  PH_COUNTER_ROW(Block, sasl.successes[m], kCounter, "posthaste_auth_successes_total", \
                 "mechanism=" mname, "Logins by SASL mechanism (beyond PLAIN and LOGIN).")
#define PH_SASL_FAILURE_ROW(Block, m, mname, f, fname)                                  \
  PH_COUNTER_ROW(Block, sasl.failures[m][f], kCounter, "posthaste_auth_failures_total", \
                 "mechanism=" mname ",reason=" fname,                                   \
                 "Failed SASL exchanges (beyond PLAIN and LOGIN) by mechanism and reason.")

}  // namespace posthaste::server

#endif  // POSTHASTE_SERVER_POP3_SERVICE_SASL_COUNTERS_H_
