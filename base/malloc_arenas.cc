#include "base/malloc_arenas.h"

#include <malloc.h>

#include <algorithm>
#include <cstdlib>

namespace posthaste {

int LimitMallocArenas(int arenas) {
  if (const char* env = std::getenv("MALLOC_ARENA_MAX"); env != nullptr && *env != '\0') {
    return std::atoi(env);
  }
  arenas = std::max(arenas, 1);
  return mallopt(M_ARENA_MAX, arenas) == 1 ? arenas : 0;
}

}  // namespace posthaste
