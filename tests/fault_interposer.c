/* An LD_PRELOAD interposer for tests/disk_fault_test.py: fails writes or syncs with EIO on
 * chosen files while a control file says so.
 *
 * $PH_FAULT_CONTROL names the control file. While it exists, its first line is
 * "MODE PATH_PART": MODE `write` fails pwrite/pwrite64/write/writev/pwritev and `sync` fails
 * fdatasync/fsync, on descriptors whose path (/proc/self/fd) contains PATH_PART. Without the
 * file every call goes to libc unchanged, so the fault starts and stops while the server runs.
 * Calls on descriptors that are not regular files (sockets, pipes, the terminal) are never
 * failed. Thread-safe: it keeps no state besides the libc pointers, set once. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum { kWrite = 1, kSync = 2 };

/* Reads the control file with raw syscalls (no stdio: it may be called inside write). */
static int fault_on(int fd, int kind) {
  const char* control = getenv("PH_FAULT_CONTROL");
  if (control == NULL) return 0;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
  int cfd = open(control, O_RDONLY | O_CLOEXEC);
  if (cfd < 0) return 0;
  char line[256];
  ssize_t n = read(cfd, line, sizeof line - 1);
  close(cfd);
  if (n <= 0) return 0;
  line[n] = '\0';
  char* newline = strchr(line, '\n');
  if (newline != NULL) *newline = '\0';
  char* space = strchr(line, ' ');
  if (space == NULL) return 0;
  *space = '\0';
  const int mode = strcmp(line, "write") == 0 ? kWrite : strcmp(line, "sync") == 0 ? kSync : 0;
  if (mode != kind) return 0;
  char link[64];
  char path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t len = readlink(link, path, sizeof path - 1);
  if (len <= 0) return 0;
  path[len] = '\0';
  return strstr(path, space + 1) != NULL;
}

#define NEXT(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

ssize_t write(int fd, const void* buf, size_t count) {
  static __typeof__(&write) real;
  if (real == NULL) real = NEXT(write);
  if (fault_on(fd, kWrite)) return errno = EIO, -1;
  return real(fd, buf, count);
}

ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
  static __typeof__(&pwrite) real;
  if (real == NULL) real = NEXT(pwrite);
  if (fault_on(fd, kWrite)) return errno = EIO, -1;
  return real(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void* buf, size_t count, off64_t offset) {
  static __typeof__(&pwrite64) real;
  if (real == NULL) real = NEXT(pwrite64);
  if (fault_on(fd, kWrite)) return errno = EIO, -1;
  return real(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec* iov, int iovcnt) {
  static __typeof__(&writev) real;
  if (real == NULL) real = NEXT(writev);
  if (fault_on(fd, kWrite)) return errno = EIO, -1;
  return real(fd, iov, iovcnt);
}

ssize_t pwritev(int fd, const struct iovec* iov, int iovcnt, off_t offset) {
  static __typeof__(&pwritev) real;
  if (real == NULL) real = NEXT(pwritev);
  if (fault_on(fd, kWrite)) return errno = EIO, -1;
  return real(fd, iov, iovcnt, offset);
}

int fdatasync(int fd) {
  static __typeof__(&fdatasync) real;
  if (real == NULL) real = NEXT(fdatasync);
  if (fault_on(fd, kSync)) return errno = EIO, -1;
  return real(fd);
}

int fsync(int fd) {
  static __typeof__(&fsync) real;
  if (real == NULL) real = NEXT(fsync);
  if (fault_on(fd, kSync)) return errno = EIO, -1;
  return real(fd);
}
