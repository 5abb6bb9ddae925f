/* SPDX-License-Identifier: MIT */
/*
 * criu-gate: the action script through which the criu translib holds a dump at
 * CRIU's "pre-dump" action, after CRIU's own start-up (kernel feature probes, tens
 * of milliseconds) and before it touches the unit. gcp freezes the unit only then,
 * so the job is not frozen while CRIU starts.
 *
 * CRIU runs it for every action with CRTOOLS_SCRIPT_ACTION set. For "pre-dump" with
 * GCP_GATE_READY and GCP_GATE_GO set (FIFOs that gcp created and holds open): write
 * "ready\n" to the first, wait for a line on the second: "go" lets CRIU dump, anything
 * else, end of file (gcp is gone) or GCP_GATE_WAIT_SEC without a line makes CRIU
 * give up the dump before it has touched the unit. Every other action: nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int refuse(const char* why) {
  fprintf(stderr, "criu-gate: %s: the dump is abandoned\n", why);
  return 1;
}

int main(void) {
  const char* action = getenv("CRTOOLS_SCRIPT_ACTION");
  const char* ready = getenv("GCP_GATE_READY");
  const char* go = getenv("GCP_GATE_GO");
  if (!action || strcmp(action, "pre-dump") != 0 || !ready || !go) return 0;
  const char* wait_env = getenv("GCP_GATE_WAIT_SEC");
  long wait_sec = wait_env ? strtol(wait_env, NULL, 10) : 600;
  if (wait_sec <= 0) wait_sec = 600;

  /* Opened before "ready" is written, so that a "go" written at once is not missed;
   * non-blocking: gcp holds the FIFO open for writing, and if it does not, the poll
   * below ends at the deadline. */
  int go_fd = open(go, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (go_fd < 0) return refuse("cannot open the go FIFO");
  /* Non-blocking: with no reader (gcp is gone) this fails at once instead of hanging. */
  int ready_fd = open(ready, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (ready_fd < 0) return refuse("nobody waits on the ready FIFO");
  if (write(ready_fd, "ready\n", 6) != 6) return refuse("cannot write to the ready FIFO");
  close(ready_fd);

  char line[16];
  size_t have = 0;
  struct timespec now, end;
  clock_gettime(CLOCK_MONOTONIC, &end);
  end.tv_sec += wait_sec;
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    long left_ms = (end.tv_sec - now.tv_sec) * 1000 + (end.tv_nsec - now.tv_nsec) / 1000000;
    if (left_ms <= 0) return refuse("no word from gcp in time");
    struct pollfd p = {go_fd, POLLIN, 0};
    int rc = poll(&p, 1, (int)(left_ms > 1000 ? 1000 : left_ms));
    if (rc < 0 && errno != EINTR) return refuse("cannot wait on the go FIFO");
    /* Read even when poll saw nothing: once gcp's end is closed the read says end of
     * file, but poll need not wake for it (the writer was there before this open). */
    ssize_t got = read(go_fd, line + have, sizeof line - 1 - have);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (got <= 0) return refuse("gcp closed the go FIFO");
    have += (size_t)got;
    line[have] = '\0';
    char* nl = strchr(line, '\n');
    if (!nl && have < sizeof line - 1) continue;
    if (nl) *nl = '\0';
    return strcmp(line, "go") == 0 ? 0 : refuse("gcp called the dump off");
  }
}
