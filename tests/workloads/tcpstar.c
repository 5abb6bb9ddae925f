// SPDX-License-Identifier: MIT
// tcpstar STATE PORT RANKS: an MPI launcher and its ranks over loopback TCP. The
// launcher listens on 127.0.0.1:PORT (a fixed port, as launchers pick theirs), forks
// RANKS ranks that connect to it, keeps listening, and echoes the sequence numbers
// each rank sends. Each rank checks every echo, the launcher every number, so a byte
// lost or duplicated across a checkpoint and restart is a failure; a rank that dies
// or a connection that closes is one too. The launcher writes STATE (count = the
// numbers echoed to all ranks so far).
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include "state.h"

#define MAX_RANKS 16
#define BATCH 16

static _Noreturn void rank(struct wl_state *s, int id, unsigned port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  uint64_t sent = 0, echoed = 0, v;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
    wl_fail(s, "rank %d: connect: %s", id, strerror(errno));
  for (;;) {
    while (sent - echoed < BATCH) {
      if (wl_write_u64(fd, ++sent) != 0) wl_fail(s, "rank %d: write: %s", id, strerror(errno));
    }
    int r = wl_read_u64(fd, &v);

    if (r == 0) wl_fail(s, "rank %d: EOF after echo %" PRIu64, id, echoed);
    if (r < 0) wl_fail(s, "rank %d: read: %s", id, strerror(errno));
    if (v != echoed + 1) wl_fail(s, "rank %d: expected echo %" PRIu64 " got %" PRIu64, id, echoed + 1, v);
    echoed = v;
    if (echoed % BATCH == 0) wl_sleep_ns(2L * 1000 * 1000);
  }
}

int main(int argc, char **argv) {
  struct wl_state s;
  struct pollfd fds[MAX_RANKS + 1];
  uint64_t last[MAX_RANKS] = {0};
  int one = 1;

  if (argc != 4) {
    fprintf(stderr, "usage: tcpstar STATE PORT RANKS\n");
    return 2;
  }
  wl_init(&s, "tcpstar", argv[1]);
  unsigned port = (unsigned)wl_parse_ulong("tcpstar", "port", argv[2], 1, 65535);
  int ranks = (int)wl_parse_ulong("tcpstar", "ranks", argv[3], 1, MAX_RANKS);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (lfd < 0) wl_fail(&s, "socket: %s", strerror(errno));
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0) wl_fail(&s, "bind 127.0.0.1:%u: %s", port, strerror(errno));
  if (listen(lfd, MAX_RANKS) != 0) wl_fail(&s, "listen: %s", strerror(errno));
  wl_set_extra(&s, "port=%u\nranks=%d\n", port, ranks);
  pid_t launcher = getpid();
  for (int i = 0; i < ranks; i++) {
    pid_t child = fork();

    if (child < 0) wl_fail(&s, "fork: %s", strerror(errno));
    if (child == 0) {
      if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != launcher) _exit(1);
      close(lfd);
      rank(&s, i, port);
    }
  }
  for (int i = 0; i < ranks; i++) {
    int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

    if (c < 0) wl_fail(&s, "accept: %s", strerror(errno));
    fds[i].fd = c;
    fds[i].events = POLLIN;
  }
  /* The listener stays open, as a launcher's does: the restore must bind it again. */
  wl_announce(&s, "pid=%ld launcher on 127.0.0.1:%u with %d ranks", (long)getpid(), port, ranks);
  uint64_t last_write = wl_now_ns(CLOCK_MONOTONIC);
  wl_write_ok(&s);
  for (;;) {
    int n = poll(fds, (nfds_t)ranks, 1000);

    if (n < 0 && errno != EINTR) wl_fail(&s, "poll: %s", strerror(errno));
    for (int i = 0; n > 0 && i < ranks; i++) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      uint64_t v;
      int r = wl_read_u64(fds[i].fd, &v);

      if (r == 0) wl_fail(&s, "launcher: rank %d closed after %" PRIu64, i, last[i]);
      if (r < 0) wl_fail(&s, "launcher: read from rank %d: %s", i, strerror(errno));
      if (v != last[i] + 1) wl_fail(&s, "launcher: rank %d: expected %" PRIu64 " got %" PRIu64, i, last[i] + 1, v);
      last[i] = v;
      if (wl_write_u64(fds[i].fd, v) != 0) wl_fail(&s, "launcher: write to rank %d: %s", i, strerror(errno));
    }
    uint64_t now = wl_now_ns(CLOCK_MONOTONIC), total = 0;

    for (int i = 0; i < ranks; i++) total += last[i];
    s.count = total;
    if (now - last_write >= (uint64_t)WL_TICK_NS || now < last_write) {
      s.checks++;
      wl_write_ok(&s);
      last_write = now;
    }
  }
}
