// SPDX-License-Identifier: MIT
// Benchmark (a report, not a timed test): how fast 256 MiB go through a 1 MiB pipe into
// fresh memory, 1 MiB per read, as `criu restore --stream` reads its page images from
// gcp's image server; fed with write(2) or vmsplice(2), against memcpy(3) into fresh
// memory. Medians of 5, side by side in one run. Markdown on stdout.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { kMiB = 1 << 20, kTotal = 256, kRuns = 5 };

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static char* fresh(size_t bytes) {
  char* p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("pipe-speed: mmap");
    exit(1);
  }
  return p;
}

// ms per MiB for kTotal MiB from `src` through a pipe into fresh memory.
static double through_pipe(const char* src, int splice) {
  int p[2];
  if (pipe(p) != 0) {
    perror("pipe-speed: pipe");
    exit(1);
  }
  (void)fcntl(p[1], F_SETPIPE_SZ, kMiB);
  char* dst = fresh((size_t)kTotal * kMiB);
  double t0 = now();
  pid_t child = fork();
  if (child == 0) {
    close(p[0]);
    for (size_t off = 0; off < (size_t)kTotal * kMiB;) {
      ssize_t w;
      if (splice) {
        struct iovec v = {(void*)(src + off), (size_t)kTotal * kMiB - off};
        w = vmsplice(p[1], &v, 1, 0);
      } else {
        w = write(p[1], src + off, (size_t)kTotal * kMiB - off);
      }
      if (w <= 0) _exit(1);
      off += (size_t)w;
    }
    _exit(0);
  }
  close(p[1]);
  size_t got = 0;
  for (ssize_t r; got < (size_t)kTotal * kMiB; got += (size_t)r) {
    r = read(p[0], dst + got, kMiB - got % kMiB);
    if (r <= 0) break;
  }
  double t1 = now();
  int status;
  waitpid(child, &status, 0);
  close(p[0]);
  if (got != (size_t)kTotal * kMiB || memcmp(dst, src, got) != 0) {
    fprintf(stderr, "pipe-speed: the pipe delivered %zu bytes, not the source\n", got);
    exit(1);
  }
  munmap(dst, (size_t)kTotal * kMiB);
  return (t1 - t0) * 1000 / kTotal;
}

static double copy_fresh(const char* src) {
  char* dst = fresh((size_t)kTotal * kMiB);
  double t0 = now();
  memcpy(dst, src, (size_t)kTotal * kMiB);
  double t1 = now();
  munmap(dst, (size_t)kTotal * kMiB);
  return (t1 - t0) * 1000 / kTotal;
}

static int by_value(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(void) {
  char* src = fresh((size_t)kTotal * kMiB);
  for (size_t i = 0; i < (size_t)kTotal * kMiB; i += 64) src[i] = (char)(i >> 6);
  double t[3][kRuns];
  for (int r = 0; r < kRuns; ++r) {  // interleaved: every way in every round
    t[0][r] = through_pipe(src, 0);
    t[1][r] = through_pipe(src, 1);
    t[2][r] = copy_fresh(src);
  }
  const char* names[3] = {"pipe fed with write(2)", "pipe fed with vmsplice(2)", "memcpy(3), no pipe"};
  printf("# %d MiB into fresh memory, 1 MiB per read from a 1 MiB pipe (median of %d)\n\n", kTotal, kRuns);
  printf("| way | ms per MiB | x memcpy |\n|---|---|---|\n");
  qsort(t[2], kRuns, sizeof(double), by_value);
  for (int w = 0; w < 3; ++w) {
    qsort(t[w], kRuns, sizeof(double), by_value);
    printf("| %s | %.3f | %.2f |\n", names[w], t[w][kRuns / 2], t[w][kRuns / 2] / t[2][kRuns / 2]);
  }
  return 0;
}
