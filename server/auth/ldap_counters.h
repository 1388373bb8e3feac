// How /metrics names the LDAP passdb's counters (auth::LdapStats, server/auth/ldap_passdb.h):
// one X-macro row per counter, X(member, kind, metric name, labels, help), as
// server/counters.h does for the reactor's blocks (kinds and rules in metrics/counter_table.h).
// serve exports one block per configured tenant with the label tenant=<domain> (a bounded set:
// the domains of --ldap_config). Every member has a row (server/counters_test.cc checks it).
//
// Threading: the blocks are atomics; the scraper loads them.
#ifndef POSTHASTE_SERVER_AUTH_LDAP_COUNTERS_H_
#define POSTHASTE_SERVER_AUTH_LDAP_COUNTERS_H_

#include "metrics/counter_table.h"
#include "server/auth/ldap_passdb.h"

namespace posthaste::auth {

#define PH_LDAP_ROWS(X)                                                                            \
  X(requests_ok, kCounter, "posthaste_ldap_requests_total", "result=ok",                           \
    "Logins checked against a tenant's LDAP directory, by result.")                                \
  X(requests_bad_credentials, kCounter, "posthaste_ldap_requests_total", "result=bad_credentials", \
    "")                                                                                            \
  X(requests_unavailable, kCounter, "posthaste_ldap_requests_total", "result=unavailable", "")     \
  X(breaker_refused, kCounter, "posthaste_ldap_requests_total", "result=breaker_open", "")         \
  X(breaker_opened, kCounter, "posthaste_ldap_breaker_opened_total", "",                           \
    "Times a tenant's circuit breaker opened (the directory failed breaker_failures_max times "    \
    "in a row).")                                                                                  \
  X(pool_wait_timeouts, kCounter, "posthaste_ldap_pool_wait_timeouts_total", "",                   \
    "Logins that found no free LDAP connection within pool_wait_timeout_ms.")                      \
  X(connections_opened, kCounter, "posthaste_ldap_connections_opened_total", "",                   \
    "LDAP connections made.")                                                                      \
  X(negative_cache_hits, kCounter, "posthaste_ldap_cache_hits_total", "cache=negative",            \
    "Directory logins answered from memory: successes from the auth cache, wrong passwords "       \
    "from the negative cache.")                                                                    \
  X(positive_cache_hits, kCounter, "posthaste_ldap_cache_hits_total", "cache=positive", "")        \
  X(connections_open, kGauge, "posthaste_ldap_connections", "state=open",                          \
    "LDAP connections: open (idle and lent), and lent out to a login now.")                        \
  X(connections_in_use, kGauge, "posthaste_ldap_connections", "state=in_use", "")                  \
  X(breaker_state, kGauge, "posthaste_ldap_breaker_state", "",                                     \
    "A tenant's circuit breaker: 0 closed, 1 open (logins fail at once), 2 half-open.")

const metrics::CounterTable& LdapCounterTable();

}  // namespace posthaste::auth

#endif  // POSTHASTE_SERVER_AUTH_LDAP_COUNTERS_H_
