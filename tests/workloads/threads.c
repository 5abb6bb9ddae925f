// SPDX-License-Identifier: MIT
// threads STATE NTHREADS: every thread must come back from restore, keep its
// buffer intact and keep making progress.
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>

#include "state.h"

#define BUF_WORDS ((1UL << 20) / sizeof(uint64_t))
#define SLICES 16
#define SLICE_WORDS (BUF_WORDS / SLICES)
#define STALL_TICKS 50

struct worker {
  pthread_t thread;
  unsigned idx;
  uint64_t seed;
  uint64_t *buf;
  _Atomic uint64_t counter; /* loop iterations */
  _Atomic uint64_t passes;  /* complete verifications of buf */
  uint64_t last_seen;       /* main thread only */
  unsigned unchanged;       /* main thread only */
} __attribute__((aligned(64)));

static atomic_int failed;
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static char fail_reason[256];

static void set_failure(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_failure(const char *fmt, ...) {
  va_list ap;

  pthread_mutex_lock(&fail_lock);
  if (!atomic_load(&failed)) { /* the first failure is the interesting one */
    va_start(ap, fmt);
    vsnprintf(fail_reason, sizeof(fail_reason), fmt, ap);
    va_end(ap);
    atomic_store(&failed, 1);
  }
  pthread_mutex_unlock(&fail_lock);
}

static void *worker_main(void *arg) {
  struct worker *w = arg;

  for (uint64_t it = 0;; it++) {
    size_t from = (size_t)(it % SLICES) * SLICE_WORDS, to = from + SLICE_WORDS;
    size_t bad = wl_check(w->buf, from, to, w->seed);

    if (bad != to) {
      set_failure("thread %u word %zu: expected %016" PRIx64 " got %016" PRIx64, w->idx, bad, wl_pattern(bad, w->seed),
                  w->buf[bad]);
      return NULL;
    }
    if (it % SLICES == SLICES - 1) atomic_fetch_add(&w->passes, 1);
    atomic_fetch_add(&w->counter, 1);
    wl_sleep_ns(10L * 1000 * 1000);
  }
}

static int count_tasks(void) {
  DIR *d = opendir("/proc/self/task");
  struct dirent *e;
  int n = 0;

  if (!d) return -1;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

int main(int argc, char **argv) {
  struct wl_state s;
  struct worker *workers;
  unsigned nthreads;

  if (argc != 3) {
    fprintf(stderr, "usage: %s STATE NTHREADS\n", argv[0]);
    return 2;
  }
  wl_init(&s, "threads", argv[1]);
  nthreads = (unsigned)wl_parse_ulong(s.name, "NTHREADS", argv[2], 1, 1024);

  workers = aligned_alloc(64, nthreads * sizeof(*workers));
  if (!workers) {
    fprintf(stderr, "threads: out of memory\n");
    return 1;
  }
  memset(workers, 0, nthreads * sizeof(*workers));
  for (unsigned k = 0; k < nthreads; k++) {
    struct worker *w = &workers[k];

    w->idx = k;
    w->seed = wl_splitmix64(s.started + k);
    w->buf = malloc(BUF_WORDS * sizeof(uint64_t));
    if (!w->buf) {
      fprintf(stderr, "threads: out of memory\n");
      return 1;
    }
    wl_fill(w->buf, BUF_WORDS, w->seed);
  }
  for (unsigned k = 0; k < nthreads; k++) {
    int err = pthread_create(&workers[k].thread, NULL, worker_main, &workers[k]);

    if (err) {
      fprintf(stderr, "threads: pthread_create: %s\n", strerror(err));
      return 1;
    }
  }
  wl_announce(&s, "pid=%ld threads=%u", (long)getpid(), nthreads);

  for (;;) {
    uint64_t min_count = UINT64_MAX, min_passes = UINT64_MAX;
    int tids = count_tasks();

    wl_set_extra(&s, "threads=%u\ntids=%d\n", nthreads, tids);
    if (atomic_load(&failed)) {
      char reason[sizeof(fail_reason)];

      pthread_mutex_lock(&fail_lock);
      memcpy(reason, fail_reason, sizeof(reason));
      pthread_mutex_unlock(&fail_lock);
      wl_fail(&s, "%s", reason);
    }
    /* A thread lost on restore shows here at once, before the stall check. */
    if (tids != (int)nthreads + 1) wl_fail(&s, "expected %u tasks in /proc/self/task, found %d", nthreads + 1, tids);
    for (unsigned k = 0; k < nthreads; k++) {
      struct worker *w = &workers[k];
      uint64_t c = atomic_load(&w->counter), p = atomic_load(&w->passes);

      /* Counted in ticks, not time: a frozen or restored process is not stalled. */
      if (c == w->last_seen) {
        if (++w->unchanged >= STALL_TICKS) wl_fail(&s, "thread %u stalled", k);
      } else {
        w->last_seen = c;
        w->unchanged = 0;
      }
      if (c < min_count) min_count = c;
      if (p < min_passes) min_passes = p;
    }
    s.count = min_count;
    s.checks = min_passes;
    wl_write_ok(&s);
    wl_sleep_ns(WL_TICK_NS);
  }
}
