// SPDX-License-Identifier: MIT
// pipeline STATE: producer -> pipe -> consumer; the pipe is kept full so a
// checkpoint always catches data in flight, and no number may be lost or duplicated.
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "state.h"

#define BURST 4096 /* numbers per producer burst (32 KiB) */
#define READ_BYTES 8192

/* Killing the parent (the tree root) must take the children with it. */
static void die_with_parent(pid_t parent) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(1);
}

static _Noreturn void producer(int wfd) {
  static uint64_t burst[BURST];
  uint64_t next = 1;

  for (;;) {
    for (size_t i = 0; i < BURST; i++) burst[i] = next++;
    /* Pipe writes may be partial (signals, ptrace interruptions): finish them. */
    for (size_t off = 0; off < sizeof(burst);) {
      ssize_t n = write(wfd, (char *)burst + off, sizeof(burst) - off);

      if (n < 0) {
        if (errno == EINTR) continue;
        _exit(1);
      }
      off += (size_t)n;
    }
    wl_sleep_ns(5L * 1000 * 1000);
  }
}

/* Reads 8 KiB per 2 ms (~4 MB/s), slower than the producer, so the pipe stays full. */
static _Noreturn void consumer(struct wl_state *s, int rfd) {
  unsigned char buf[READ_BYTES + sizeof(uint64_t)];
  size_t have = 0; /* bytes of an incomplete number carried over */
  uint64_t last_write = wl_now_ns(CLOCK_MONOTONIC), checked_at = 0;

  wl_set_extra(s, "pipe_bytes=0\n");
  wl_write_ok(s);
  for (;;) {
    struct pollfd pfd = {.fd = rfd, .events = POLLIN};

    /* Bounded wait so the state keeps being written even if the producer stalls. */
    if (poll(&pfd, 1, 100) > 0) {
      ssize_t n = read(rfd, buf + have, READ_BYTES);

      if (n == 0) wl_fail(s, "unexpected EOF after %" PRIu64, s->count);
      if (n < 0 && errno != EINTR && errno != EAGAIN) wl_fail(s, "read: %s", strerror(errno));
      if (n > 0) {
        size_t total = have + (size_t)n, off;

        for (off = 0; off + sizeof(uint64_t) <= total; off += sizeof(uint64_t)) {
          uint64_t v;

          memcpy(&v, buf + off, sizeof(v));
          if (v != s->count + 1) wl_fail(s, "expected %" PRIu64 " got %" PRIu64, s->count + 1, v);
          s->count = v;
        }
        have = total - off;
        memmove(buf, buf + off, have);
      }
      wl_sleep_ns(2L * 1000 * 1000);
    }

    uint64_t now = wl_now_ns(CLOCK_MONOTONIC);

    /* now < last_write: never trust clock continuity across restore. */
    if (now - last_write >= (uint64_t)WL_TICK_NS || now < last_write) {
      int inflight = 0;

      if (ioctl(rfd, FIONREAD, &inflight) != 0) inflight = -1;
      /* A check = a tick in which new numbers arrived and all were in sequence. */
      if (s->count != checked_at) {
        s->checks++;
        checked_at = s->count;
      }
      wl_set_extra(s, "pipe_bytes=%d\n", inflight);
      wl_write_ok(s);
      last_write = now;
    }
  }
}

static void describe(char *buf, size_t len, const char *who, pid_t pid, int status) {
  if (WIFSIGNALED(status))
    snprintf(buf, len, "%s pid %ld killed by signal %d", who, (long)pid, WTERMSIG(status));
  else
    snprintf(buf, len, "%s pid %ld exited with status %d", who, (long)pid, WEXITSTATUS(status));
}

/* Keep the consumer's own failure reason; it is more precise than ours. */
static _Noreturn void parent_fail(struct wl_state *s, const char *what) {
  char old[2048] = "", *c;
  int fd = open(s->path, O_RDONLY | O_CLOEXEC);

  if (fd >= 0) {
    ssize_t n = read(fd, old, sizeof(old) - 1);

    old[n > 0 ? n : 0] = '\0';
    close(fd);
  }
  if (strncmp(old, "status=fail\n", 12) == 0) {
    fprintf(stderr, "pipeline: FAIL pid=%ld: %s (state already says fail)\n", (long)getpid(), what);
    exit(1);
  }
  /* Carry the consumer's progress over so count/checks do not jump back. */
  if ((c = strstr(old, "\ncount="))) s->count = strtoull(c + 7, NULL, 10);
  if ((c = strstr(old, "\nchecks="))) s->checks = strtoull(c + 8, NULL, 10);
  wl_set_extra(s, "pipe_bytes=-1\n");
  wl_fail(s, "%s", what);
}

int main(int argc, char **argv) {
  struct wl_state s;
  pid_t self, prod, cons;
  int fds[2];

  if (argc != 2) {
    fprintf(stderr, "usage: %s STATE\n", argv[0]);
    return 2;
  }
  wl_init(&s, "pipeline", argv[1]);
  if (pipe(fds) != 0) {
    fprintf(stderr, "pipeline: pipe: %s\n", strerror(errno));
    return 1;
  }
  self = getpid();
  fflush(stdout);

  prod = fork();
  if (prod < 0) {
    fprintf(stderr, "pipeline: fork: %s\n", strerror(errno));
    return 1;
  }
  if (prod == 0) {
    die_with_parent(self);
    close(fds[0]);
    producer(fds[1]);
  }
  cons = fork();
  if (cons < 0) {
    fprintf(stderr, "pipeline: fork: %s\n", strerror(errno));
    kill(prod, SIGKILL);
    return 1;
  }
  if (cons == 0) {
    die_with_parent(self);
    /* Only the producer may hold the write end, or EOF would never show. */
    close(fds[1]);
    consumer(&s, fds[0]);
  }
  close(fds[0]);
  close(fds[1]);
  wl_announce(&s, "pid=%ld producer=%ld consumer=%ld", (long)self, (long)prod, (long)cons);

  for (;;) {
    int status, other_status;
    pid_t pid = waitpid(-1, &status, 0);

    if (pid < 0) {
      if (errno == EINTR) continue;
      wl_fail(&s, "waitpid: %s", strerror(errno));
    }
    if (pid != prod && pid != cons) continue;

    pid_t other = pid == prod ? cons : prod;
    char first[128], second[128] = "", what[300];

    describe(first, sizeof(first), pid == prod ? "producer" : "consumer", pid, status);
    /*
     * A dead consumer SIGPIPEs the producer and either zombie may be
     * reaped first: name the other one too if it is already gone.
     */
    if (waitpid(other, &other_status, WNOHANG) == other) {
      describe(second, sizeof(second), other == prod ? "producer" : "consumer", other, other_status);
    } else {
      /* Stop the survivor first so nobody else writes STATE while we do. */
      kill(other, SIGKILL);
      while (waitpid(other, NULL, 0) < 0 && errno == EINTR)
        ;
    }
    snprintf(what, sizeof(what), "%s%s%s", first, second[0] ? "; " : "", second);
    parent_fail(&s, what);
  }
}
