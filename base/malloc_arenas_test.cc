#include "base/malloc_arenas.h"

#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <barrier>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace posthaste {
namespace {

constexpr int kThreads = 8;

// The arenas glibc has made: malloc_info lists one <heap nr="..."> per arena.
int ArenaCount() {
  char* text = nullptr;
  size_t size = 0;
  FILE* out = open_memstream(&text, &size);
  malloc_info(0, out);
  fclose(out);
  int count = 0;
  for (std::string_view rest(text, size); rest.find("<heap nr=") != std::string_view::npos;) {
    rest.remove_prefix(rest.find("<heap nr=") + 1);
    ++count;
  }
  free(text);
  return count;
}

// In a child process (a cap cannot be lifted): optionally caps the arenas, then runs kThreads
// threads that each allocate while all are alive, and exits with the number of arenas.
int ArenasAfterThreadsInChild(int cap) {
  pid_t pid = fork();
  if (pid == 0) {
    if (cap > 0 && LimitMallocArenas(cap) != cap) _exit(100);
    std::barrier all_allocated(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        std::vector<void*> blocks;
        for (int i = 0; i < 1000; ++i) blocks.push_back(malloc(200));
        all_allocated.arrive_and_wait();
        for (void* b : blocks) free(b);
      });
    }
    for (std::thread& t : threads) t.join();
    _exit(ArenaCount());
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(MallocArenas, ThreadsShareTheCappedArenas) {
  unsetenv("MALLOC_ARENA_MAX");
  EXPECT_LE(ArenasAfterThreadsInChild(2), 2);
}

TEST(MallocArenas, WithoutTheCapEachThreadTakesItsOwn) {
  // What the cap prevents (and what shows the count above is real): glibc gives each new
  // thread its own arena while there are fewer than 8 per core.
  unsetenv("MALLOC_ARENA_MAX");
  EXPECT_GT(ArenasAfterThreadsInChild(0), 2);
}

TEST(MallocArenas, TheEnvironmentWins) {
  setenv("MALLOC_ARENA_MAX", "3", 1);
  EXPECT_EQ(LimitMallocArenas(2), 3);
  unsetenv("MALLOC_ARENA_MAX");
}

}  // namespace
}  // namespace posthaste
