#include "server/auth/ldap_counters.h"

#include <cstdint>

namespace posthaste::auth {
namespace {

// The block is its rows' members, nothing else: a member added outside the X-macro would have
// no row.
#define PH_COUNT_ROW(...) +1
static_assert(sizeof(LdapStats) == (0 PH_LDAP_ROWS(PH_COUNT_ROW)) * sizeof(uint64_t));
#undef PH_COUNT_ROW

#define PH_LDAP_ROW(...) PH_COUNTER_ROW(LdapStats, __VA_ARGS__)
constexpr metrics::CounterRow kLdapRows[] = {PH_LDAP_ROWS(PH_LDAP_ROW)};
#undef PH_LDAP_ROW

}  // namespace

const metrics::CounterTable& LdapCounterTable() {
  static const metrics::CounterTable table = PH_COUNTER_TABLE(LdapStats, kLdapRows);
  return table;
}

}  // namespace posthaste::auth
