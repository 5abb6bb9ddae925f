// SPDX-License-Identifier: MIT
// Shared helpers for the checkpoint/restore self-checking workloads.
// Everything is static inline so each workload stays a single .c file.
#ifndef WL_STATE_H
#define WL_STATE_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WL_TICK_NS (100L * 1000 * 1000)

struct wl_state {
  const char *name;
  char path[PATH_MAX];
  char tmp[PATH_MAX + 8];
  uint64_t started; /* CLOCK_REALTIME ns at program start */
  uint64_t count;
  uint64_t checks;
  char extra[512]; /* workload-specific "key=value\n" lines */
};

static inline uint64_t wl_now_ns(clockid_t clk) {
  struct timespec ts;

  clock_gettime(clk, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Resume with the remaining time after EINTR (e.g. ptrace/restore interruptions). */
static inline void wl_sleep_ns(long ns) {
  struct timespec req = {ns / 1000000000L, ns % 1000000000L}, rem;

  while (nanosleep(&req, &rem) != 0 && errno == EINTR) req = rem;
}

static inline uint64_t wl_splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

static inline uint64_t wl_pattern(uint64_t i, uint64_t seed) { return wl_splitmix64(i ^ seed); }

static inline void wl_fill(uint64_t *p, size_t nwords, uint64_t seed) {
  for (size_t i = 0; i < nwords; i++) p[i] = wl_pattern(i, seed);
}

/* Returns the first index in [from, to) that differs from the pattern, or `to`. */
static inline size_t wl_check(const uint64_t *p, size_t from, size_t to, uint64_t seed) {
  for (size_t i = from; i < to; i++)
    if (p[i] != wl_pattern(i, seed)) return i;
  return to;
}

/* Order-dependent, so swapped pages are caught too. */
static inline uint64_t wl_checksum_step(uint64_t h, uint64_t w) { return wl_splitmix64(h ^ w); }

static inline void wl_init(struct wl_state *s, const char *name, const char *path) {
  memset(s, 0, sizeof(*s));
  s->name = name;
  s->started = wl_now_ns(CLOCK_REALTIME);
  /* Absolute, because the daemon chdir()s to / before its first write. */
  if (path[0] == '/') {
    snprintf(s->path, sizeof(s->path), "%s", path);
  } else {
    char cwd[PATH_MAX];

    if (!getcwd(cwd, sizeof(cwd))) {
      fprintf(stderr, "%s: getcwd: %s\n", name, strerror(errno));
      exit(1);
    }
    if ((size_t)snprintf(s->path, sizeof(s->path), "%s/%s", cwd, path) >= sizeof(s->path)) {
      fprintf(stderr, "%s: state path too long\n", name);
      exit(1);
    }
  }
  snprintf(s->tmp, sizeof(s->tmp), "%s.tmp", s->path);
}

static inline void wl_set_extra(struct wl_state *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void wl_set_extra(struct wl_state *s, const char *fmt, ...) {
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(s->extra, sizeof(s->extra), fmt, ap);
  va_end(ap);
}

/*
 * open/write/close/rename every time: no descriptor stays open between
 * writes, so a checkpoint never has to carry the state file along.
 */
static inline int wl_write_raw(const struct wl_state *s, const char *status, const char *reason) {
  char buf[2048];
  int n, fd, ret = 0;

  n = snprintf(buf, sizeof(buf),
               "status=%s\n%s%s%scount=%" PRIu64 "\nstarted=%" PRIu64 "\npid=%ld\nchecks=%" PRIu64 "\n%s", status,
               reason ? "reason=" : "", reason ? reason : "", reason ? "\n" : "", s->count, s->started, (long)getpid(),
               s->checks, s->extra);
  if (n < 0 || (size_t)n >= sizeof(buf)) n = (int)strlen(buf);

  fd = open(s->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  for (int off = 0; off < n;) {
    ssize_t w = write(fd, buf + off, (size_t)(n - off));

    if (w < 0) {
      if (errno == EINTR) continue;
      ret = -1;
      break;
    }
    off += (int)w;
  }
  if (close(fd) != 0) ret = -1;
  if (ret == 0 && rename(s->tmp, s->path) != 0) ret = -1;
  return ret;
}

static inline int wl_write_ok(const struct wl_state *s) { return wl_write_raw(s, "ok", NULL); }

static inline _Noreturn void wl_fail(const struct wl_state *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline _Noreturn void wl_fail(const struct wl_state *s, const char *fmt, ...) {
  char reason[512];
  va_list ap;

  va_start(ap, fmt);
  vsnprintf(reason, sizeof(reason), fmt, ap);
  va_end(ap);
  /* One line per key: keep the file parseable whatever the reason says. */
  for (char *c = reason; *c; c++)
    if (*c == '\n' || *c == '\r') *c = ' ';
  wl_write_raw(s, "fail", reason);
  fprintf(stderr, "%s: FAIL pid=%ld: %s\n", s->name, (long)getpid(), reason);
  exit(1);
}

/* Flush at once: stdout is a log file (fully buffered) and we may fork next. */
static inline void wl_announce(const struct wl_state *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void wl_announce(const struct wl_state *s, const char *fmt, ...) {
  va_list ap;

  printf("%s: started ", s->name);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  fflush(stdout);
}

static inline unsigned long wl_parse_ulong(const char *name, const char *what, const char *arg, unsigned long min,
                                           unsigned long max) {
  char *end;
  unsigned long v;

  errno = 0;
  v = strtoul(arg, &end, 10);
  if (errno || end == arg || *end || arg[0] == '-' || v < min || v > max) {
    fprintf(stderr, "%s: bad %s '%s' (want %lu..%lu)\n", name, what, arg, min, max);
    exit(2);
  }
  return v;
}

/* Reads exactly one number; EINTR-safe (ptrace and restore interrupt reads). 1: read,
 * 0: EOF, -1: error. */
static inline int wl_read_u64(int fd, uint64_t *v) {
  size_t got = 0;

  while (got < sizeof(*v)) {
    ssize_t n = read(fd, (char *)v + got, sizeof(*v) - got);

    if (n == 0) return 0;
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    got += (size_t)n;
  }
  return 1;
}

/* Writes one number whole; 0 or -1. */
static inline int wl_write_u64(int fd, uint64_t v) {
  size_t done = 0;

  while (done < sizeof(v)) {
    ssize_t n = write(fd, (char *)&v + done, sizeof(v) - done);

    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    done += (size_t)n;
  }
  return 0;
}

#endif
