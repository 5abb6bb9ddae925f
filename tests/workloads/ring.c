// SPDX-License-Identifier: MIT
// ring STATE PORT NEXT_ADDR NEXT_PORT: one member of a ring of processes on several
// nodes. It listens on PORT, connects to the next member at NEXT_ADDR:NEXT_PORT, and
// sends it the numbers 1, 2, 3, ... (about 500 a second), while it checks that what
// the previous member sends is exactly 1, 2, 3, ... So a byte lost or repeated on any
// connection of the ring across a checkpoint, a restart or a migration is a failure.
// STATE: count = last number received, sent = last number sent.
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "state.h"

static int listen_on(struct wl_state *s, unsigned port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};

  if (fd < 0) wl_fail(s, "socket: %s", strerror(errno));
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0) wl_fail(s, "bind %u: %s", port, strerror(errno));
  if (listen(fd, 1) != 0) wl_fail(s, "listen: %s", strerror(errno));
  return fd;
}

static int connect_to(struct wl_state *s, const char *addr, unsigned port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};

  if (inet_pton(AF_INET, addr, &a.sin_addr) != 1) wl_fail(s, "not an IPv4 address: %s", addr);
  for (int tries = 0; tries < 600; tries++) { /* the next member may start later: 30 s */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) wl_fail(s, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) return fd;
    close(fd);
    wl_sleep_ns(50L * 1000 * 1000);
  }
  wl_fail(s, "connect to %s:%u: %s", addr, port, strerror(errno));
}

int main(int argc, char **argv) {
  struct wl_state s;
  uint64_t sent = 0, received = 0, last_write, last_send;
  unsigned char in[4096], out[8];
  size_t in_len = 0, out_len = 0, out_off = 0;

  if (argc != 5) {
    fprintf(stderr, "usage: ring STATE PORT NEXT_ADDR NEXT_PORT\n");
    return 2;
  }
  wl_init(&s, "ring", argv[1]);
  unsigned port = (unsigned)wl_parse_ulong("ring", "port", argv[2], 1, 65535);
  unsigned next_port = (unsigned)wl_parse_ulong("ring", "next port", argv[4], 1, 65535);
  int lfd = listen_on(&s, port);
  wl_set_extra(&s, "sent=0\n");
  wl_write_ok(&s);
  int next = connect_to(&s, argv[3], next_port);
  int prev = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

  if (prev < 0) wl_fail(&s, "accept: %s", strerror(errno));
  close(lfd);
  fcntl(next, F_SETFL, O_NONBLOCK);
  fcntl(prev, F_SETFL, O_NONBLOCK);
  wl_announce(&s, "pid=%ld ring member on port %u, next %s:%u", (long)getpid(), port, argv[3], next_port);
  last_write = last_send = wl_now_ns(CLOCK_MONOTONIC);
  for (;;) {
    uint64_t now = wl_now_ns(CLOCK_MONOTONIC);
    struct pollfd p[2] = {{prev, POLLIN, 0}, {next, 0, 0}};

    if (out_len == 0 && now - last_send >= 2L * 1000 * 1000) { /* the next number is due */
      ++sent;
      memcpy(out, &sent, sizeof(sent));
      out_len = sizeof(sent);
      out_off = 0;
      last_send = now;
    }
    if (out_len) p[1].events = POLLOUT;
    if (poll(p, 2, 2) < 0 && errno != EINTR) wl_fail(&s, "poll: %s", strerror(errno));
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t n = read(prev, in + in_len, sizeof(in) - in_len);

      if (n == 0) wl_fail(&s, "the previous member closed the connection after %" PRIu64, received);
      if (n < 0 && errno != EINTR && errno != EAGAIN) wl_fail(&s, "read: %s", strerror(errno));
      if (n > 0) in_len += (size_t)n;
      size_t at = 0;
      for (; at + sizeof(uint64_t) <= in_len; at += sizeof(uint64_t)) {
        uint64_t v;

        memcpy(&v, in + at, sizeof(v));
        if (v != received + 1)
          wl_fail(&s, "expected %" PRIu64 " from the previous member, got %" PRIu64, received + 1, v);
        received = v;
      }
      memmove(in, in + at, in_len - at);
      in_len -= at;
    }
    if (out_len && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t n = write(next, out + out_off, out_len - out_off);

      if (n < 0 && errno != EINTR && errno != EAGAIN) wl_fail(&s, "write: %s", strerror(errno));
      if (n > 0) out_off += (size_t)n;
      if (out_off == out_len) out_len = 0;
    }
    now = wl_now_ns(CLOCK_MONOTONIC);
    if (now - last_write >= (uint64_t)WL_TICK_NS || now < last_write) {
      s.count = received;
      s.checks++;
      wl_set_extra(&s, "sent=%" PRIu64 "\n", sent);
      wl_write_ok(&s);
      last_write = now;
    }
  }
}
