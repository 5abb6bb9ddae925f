// SPDX-License-Identifier: MIT
// tcppair STATE pair | server PORT [ADDR] | client PORT [ADDR]: sequence numbers over
// one TCP connection on 127.0.0.1 (or ADDR, an IPv4 address: the server binds it, the
// client connects to it), echoed back. The side that sends (the client) checks that
// every echo is the previous one + 1; the side that echoes (the server) checks every
// number it gets. So a byte lost or duplicated in either direction across a
// checkpoint and restart is a failure. `pair` runs both in one process tree (server
// parent, client child); `server` and `client` one side each, for two units or for a
// unit and a process outside it. The STATE file is written by the client (count = last
// echo received) or, for `server`, by the server (count = last number received).
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "state.h"

#define BATCH 64 /* numbers in flight at most */

static struct in_addr addr; /* 127.0.0.1 unless ADDR is given */

static int listen_on(struct wl_state *s, unsigned port, unsigned *bound) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr = addr};
  socklen_t len = sizeof(a);

  if (fd < 0) wl_fail(s, "socket: %s", strerror(errno));
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) wl_fail(s, "bind %u: %s", port, strerror(errno));
  if (listen(fd, 1) != 0) wl_fail(s, "listen: %s", strerror(errno));
  getsockname(fd, (struct sockaddr *)&a, &len);
  *bound = ntohs(a.sin_port);
  return fd;
}

static int connect_to(struct wl_state *s, unsigned port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr = addr};

  for (int tries = 0; tries < 100; tries++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) wl_fail(s, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) return fd;
    close(fd);
    wl_sleep_ns(50L * 1000 * 1000);
  }
  wl_fail(s, "connect to %s:%u: %s", inet_ntoa(addr), port, strerror(errno));
}

static _Noreturn void serve(struct wl_state *s, int conn, int writes_state) {
  uint64_t last = 0, v, last_write = wl_now_ns(CLOCK_MONOTONIC);

  for (;;) {
    int r = wl_read_u64(conn, &v);

    if (r == 0) wl_fail(s, "server: EOF after %" PRIu64, last);
    if (r < 0) wl_fail(s, "server: read: %s", strerror(errno));
    if (v != last + 1) wl_fail(s, "server: expected %" PRIu64 " got %" PRIu64, last + 1, v);
    last = v;
    if (wl_write_u64(conn, v) != 0) wl_fail(s, "server: write: %s", strerror(errno));
    if (writes_state) {
      uint64_t now = wl_now_ns(CLOCK_MONOTONIC);

      s->count = last;
      if (now - last_write >= (uint64_t)WL_TICK_NS || now < last_write) {
        s->checks++;
        wl_write_ok(s);
        last_write = now;
      }
    }
  }
}

static _Noreturn void send_and_check(struct wl_state *s, int conn) {
  uint64_t sent = 0, echoed = 0, v, last_write = wl_now_ns(CLOCK_MONOTONIC);

  wl_write_ok(s);
  for (;;) {
    while (sent - echoed < BATCH) {
      if (wl_write_u64(conn, ++sent) != 0) wl_fail(s, "client: write: %s", strerror(errno));
    }
    int r = wl_read_u64(conn, &v);

    if (r == 0) wl_fail(s, "client: EOF after echo %" PRIu64, echoed);
    if (r < 0) wl_fail(s, "client: read: %s", strerror(errno));
    if (v != echoed + 1) wl_fail(s, "client: expected echo %" PRIu64 " got %" PRIu64, echoed + 1, v);
    echoed = v;
    s->count = echoed;
    uint64_t now = wl_now_ns(CLOCK_MONOTONIC);

    if (now - last_write >= (uint64_t)WL_TICK_NS || now < last_write) {
      s->checks++;
      wl_write_ok(s);
      last_write = now;
    }
    if (echoed % BATCH == 0) wl_sleep_ns(1L * 1000 * 1000);
  }
}

int main(int argc, char **argv) {
  struct wl_state s;
  unsigned port = 0, bound = 0;

  addr.s_addr = htonl(INADDR_LOOPBACK);
  if (argc < 3 || (strcmp(argv[2], "pair") != 0 && argc != 4 && argc != 5) ||
      (argc == 5 && inet_pton(AF_INET, argv[4], &addr) != 1)) {
    fprintf(stderr, "usage: tcppair STATE pair | server PORT [ADDR] | client PORT [ADDR]\n");
    return 2;
  }
  wl_init(&s, "tcppair", argv[1]);
  if (argc >= 4) port = (unsigned)wl_parse_ulong("tcppair", "port", argv[3], 0, 65535); /* 0: any */
  if (strcmp(argv[2], "client") == 0) {
    wl_set_extra(&s, "role=client\n");
    wl_announce(&s, "pid=%ld client of port %u", (long)getpid(), port);
    send_and_check(&s, connect_to(&s, port));
  }
  int lfd = listen_on(&s, port, &bound);

  if (strcmp(argv[2], "server") == 0) {
    wl_set_extra(&s, "role=server\nport=%u\n", bound);
    wl_write_ok(&s);
    wl_announce(&s, "pid=%ld server on port %u", (long)getpid(), bound);
    int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

    if (conn < 0) wl_fail(&s, "accept: %s", strerror(errno));
    close(lfd);
    serve(&s, conn, 1);
  }
  if (strcmp(argv[2], "pair") != 0) {
    fprintf(stderr, "tcppair: unknown mode '%s'\n", argv[2]);
    return 2;
  }
  /* pair: the child is the client and writes STATE; the parent serves it. */
  wl_set_extra(&s, "role=pair\nport=%u\n", bound);
  pid_t parent = getpid();
  pid_t child = fork();

  if (child < 0) wl_fail(&s, "fork: %s", strerror(errno));
  if (child == 0) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(1);
    close(lfd);
    send_and_check(&s, connect_to(&s, bound));
  }
  wl_announce(&s, "pid=%ld pair on port %u, client pid %ld", (long)getpid(), bound, (long)child);
  int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

  if (conn < 0) wl_fail(&s, "accept: %s", strerror(errno));
  close(lfd);
  serve(&s, conn, 0);
}
