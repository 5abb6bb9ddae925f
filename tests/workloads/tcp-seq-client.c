// SPDX-License-Identifier: MIT
// The example application of gcp-callbacks(7): it keeps a TCP connection to a server
// outside its unit and sends "seq N" lines, N = 1, 2, 3, ... (one every 20 ms). Around
// a checkpoint it drains and closes the connection (pre-checkpoint: shutdown, read to
// the server's EOF, close), so that no TCP connection is open when CRIU dumps it, and
// reconnects afterwards (post-checkpoint, abort, post-restart). On every connect it
// says "hello N" (its next number) and the server answers "ack M" (the next number it
// expects): after a restart from an older checkpoint M > N, and the client goes on at
// M; the numbers it had sent after that checkpoint are not sent twice.
// Usage: tcp-seq-client STATE PORT. STATE has next=, connects=, skipped=, connected=.
#include "gcp/callbacks.h"
#include "state.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>

static struct wl_state st;
static int port, conn = -1, paused;
static unsigned long long next_seq = 1, connects, skipped;

static void save(void) {
  wl_set_extra(&st, "next=%llu\nconnects=%llu\nskipped=%llu\nconnected=%d\n", next_seq, connects, skipped, conn >= 0);
  wl_write_ok(&st);
}

static int read_line(int fd, char *buf, size_t size) {
  size_t got = 0;

  while (got + 1 < size) {
    ssize_t n = recv(fd, buf + got, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    if (buf[got++] == '\n') break;
  }
  buf[got] = '\0';
  return 0;
}

/* Connects and says hello; 0 or -1 with the reason in `why`. */
static int reconnect(char *why, size_t size) {
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  struct timeval tv = {5, 0};
  char line[64];
  unsigned long long ack;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
    snprintf(why, size, "connecting to 127.0.0.1:%d: %s", port, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  dprintf(fd, "hello %llu\n", next_seq);
  if (read_line(fd, line, sizeof(line)) != 0 || sscanf(line, "ack %llu", &ack) != 1) {
    snprintf(why, size, "no ack from 127.0.0.1:%d", port);
    close(fd);
    return -1;
  }
  if (ack > next_seq) {
    skipped += ack - next_seq;
    next_seq = ack;
  }
  conn = fd;
  connects++;
  save();
  return 0;
}

/* Everything sent is read by the server once it closes its side after our EOF. */
static int drain(char *why, size_t size) {
  char buf[256];
  ssize_t n;

  if (conn < 0) return 0;
  shutdown(conn, SHUT_WR);
  while ((n = recv(conn, buf, sizeof(buf), 0)) > 0 || (n < 0 && errno == EINTR)) {
  }
  if (n < 0) snprintf(why, size, "draining the connection: %s", strerror(errno));
  close(conn);
  conn = -1;
  save();
  return n < 0 ? -1 : 0;
}

static int on_event(const struct gcp_event_info *ev, char *message, size_t size, void *arg) {
  (void)arg;
  switch (ev->event) {
    case GCP_EVENT_PRE_CHECKPOINT:
      paused = 1;
      return drain(message, size);
    case GCP_EVENT_POST_CHECKPOINT:
    case GCP_EVENT_ABORT:
    case GCP_EVENT_POST_RESTART:
      paused = 0;
      return conn >= 0 ? 0 : reconnect(message, size);
    default:
      return 0;
  }
}

int main(int argc, char **argv) {
  struct gcp_callbacks cb;
  char why[256];

  if (argc != 3) {
    fprintf(stderr, "usage: tcp-seq-client STATE PORT\n");
    return 2;
  }
  wl_init(&st, "tcp-seq-client", argv[1]);
  port = (int)wl_parse_ulong("tcp-seq-client", "port", argv[2], 1, 65535);
  if (gcp_callbacks_open(&cb) < 0) wl_fail(&st, "listening for gcp's callbacks: %s", strerror(errno));
  gcp_callbacks_on(&cb, GCP_EVENT_PRE_CHECKPOINT, on_event, NULL);
  gcp_callbacks_on(&cb, GCP_EVENT_POST_CHECKPOINT, on_event, NULL);
  gcp_callbacks_on(&cb, GCP_EVENT_ABORT, on_event, NULL);
  gcp_callbacks_on(&cb, GCP_EVENT_POST_RESTART, on_event, NULL);
  if (reconnect(why, sizeof(why)) != 0) wl_fail(&st, "%s", why);
  wl_announce(&st, "pid=%ld", (long)getpid());
  for (;;) {
    /* Events between messages; a message every 20 ms while connected. */
    if (gcp_callbacks_dispatch(&cb, 20) < 0) wl_fail(&st, "taking a gcp event: %s", strerror(errno));
    if (paused) continue;
    if (conn < 0 && reconnect(why, sizeof(why)) != 0) continue; /* the server may be back later */
    char line[40];
    int n = snprintf(line, sizeof(line), "seq %llu\n", next_seq);
    if (send(conn, line, (size_t)n, MSG_NOSIGNAL) != n) wl_fail(&st, "sending seq %llu: %s", next_seq, strerror(errno));
    next_seq++;
    st.count++;
    if (st.count % 5 == 0) save();
  }
}
