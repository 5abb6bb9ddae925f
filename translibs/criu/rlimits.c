/* SPDX-License-Identifier: MIT */
/*
 * criu-rlimits.so: preloaded into `criu dump` by the criu translib. CRIU reads the
 * resource limits of every task it dumps with syscall(SYS_prlimit64, pid, res, NULL, &lim)
 * (criu/cr-dump.c), which the kernel allows on a process of another uid only with
 * CAP_SYS_RESOURCE. Root lacks that capability in many containers and VMs, this test
 * machine among them, and there every dump of a unit that runs as a user who is not root
 * failed: "Can't get rlimit 0: Operation not permitted". The same two numbers are in
 * /proc/PID/limits, which root may read: on exactly that refusal (a read, of another
 * process, EPERM) this library answers from there. Every other call goes through as it is.
 *
 * What criu runs (iptables, its action scripts) and criu-reaper inherit it, to the same
 * effect: none of them reads another process's limits.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>

/* "unlimited" or a decimal number, as /proc/PID/limits writes them. */
static int limit_value(const char *word, rlim64_t *out) {
  if (strcmp(word, "unlimited") == 0) {
    *out = RLIM64_INFINITY;
    return 0;
  }
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(word, &end, 10);
  if (errno != 0 || end == word || *end != '\0') return -1;
  *out = (rlim64_t)v;
  return 0;
}

/* The limits of `pid` for `resource` from /proc/PID/limits: a header line, then one line
 * per resource in the kernel's order (RLIMIT_CPU first), a name of 25 columns, a space,
 * the soft and the hard limit. 0, or -1 when it cannot be read. */
static int limits_from_proc(pid_t pid, long resource, struct rlimit64 *out) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/limits", (int)pid);
  FILE *f = fopen(path, "re");
  if (!f) return -1;
  int rc = -1;
  for (long row = -1; fgets(line, sizeof line, f); ++row) {
    if (row != resource) continue;
    char soft[32], hard[32];
    if (strlen(line) > 26 && sscanf(line + 26, "%31s %31s", soft, hard) == 2 &&
        limit_value(soft, &out->rlim_cur) == 0 && limit_value(hard, &out->rlim_max) == 0) {
      rc = 0;
    }
    break;
  }
  fclose(f);
  return rc;
}

long syscall(long number, ...) {
  static long (*real)(long, ...);
  if (!real) real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
  /* As glibc's own syscall() does: six argument registers, whatever the call uses. */
  va_list ap;
  va_start(ap, number);
  long a[6];
  for (int i = 0; i < 6; ++i) a[i] = va_arg(ap, long);
  va_end(ap);
  long rc = real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
  if (rc != -1 || errno != EPERM || number != SYS_prlimit64 || a[0] <= 0 || a[2] != 0 || a[3] == 0) return rc;
  if (limits_from_proc((pid_t)a[0], a[1], (struct rlimit64 *)a[3]) == 0) return 0;
  errno = EPERM;
  return -1;
}
