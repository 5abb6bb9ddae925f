/* SPDX-License-Identifier: MIT */
/*
 * gcp application callbacks, the client side: header-only C (C99 or newer, also
 * usable from C++), nothing to link. See gcp-callbacks(7).
 *
 * gcp-isolate sets GCP_CALLBACK_SOCKET in a unit's environment. An application
 * that wants to hear about checkpoints listens there (gcp_callbacks_open), and gcp
 * connects once per event, sends one request line and reads one answer line:
 *
 *   gcp-checkpoint:  pre-checkpoint --> (freeze, dump, thaw) --> post-checkpoint
 *                         |  error or missed deadline
 *                         +--> abort (nothing was dumped; resume)
 *   gcp-restart:     (restore) --> post-restart
 *
 * Either register a handler per event and call gcp_callbacks_dispatch when the
 * descriptor of gcp_callbacks_fd is readable (or in a thread of its own), or take
 * events one by one with gcp_callbacks_next and answer each with gcp_callbacks_reply.
 * An event without a handler, and one this header does not know, is answered ok.
 *
 *   struct gcp_callbacks cb;
 *   if (gcp_callbacks_open(&cb) < 0) perror("gcp callbacks");
 *   gcp_callbacks_on(&cb, GCP_EVENT_PRE_CHECKPOINT, drain, &app);
 *   gcp_callbacks_on(&cb, GCP_EVENT_POST_RESTART, reconnect, &app);
 *   ... poll() on gcp_callbacks_fd(&cb) with the other descriptors;
 *       when it is readable: gcp_callbacks_dispatch(&cb, 0);
 *
 * The listening socket is part of the checkpoint: CRIU restores it at the same path,
 * so nothing has to be done after a restart to keep receiving events.
 */
#ifndef GCP_CALLBACKS_H
#define GCP_CALLBACKS_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The protocol this header speaks; a request of another major version is refused. */
#define GCP_CALLBACKS_PROTOCOL "callbacks/v1"
/** The environment variable that holds the socket path. */
#define GCP_CALLBACK_SOCKET_ENV "GCP_CALLBACK_SOCKET"
/** Longest request or answer line, newline included. */
#define GCP_CALLBACKS_LINE_MAX 4096
/** Room for an error message in an answer. */
#define GCP_CALLBACKS_MESSAGE_MAX 512

/** The events gcp sends, in the order of gcp-callbacks(7). */
enum gcp_event {
  GCP_EVENT_PRE_CHECKPOINT = 0, /**< drain and quiesce; answer ok when ready to be dumped */
  GCP_EVENT_POST_CHECKPOINT,    /**< the dump is done and the unit thawed: resume */
  GCP_EVENT_POST_RESTART,       /**< restored from a checkpoint: reconnect, reopen */
  GCP_EVENT_ABORT,              /**< the checkpoint after pre-checkpoint failed: resume */
  GCP_EVENT_UNKNOWN,            /**< an event of a newer gcp; answered ok */
  GCP_EVENT_COUNT
};

/** One request of gcp. */
struct gcp_event_info {
  enum gcp_event event;   /**< which event */
  char name[32];          /**< its name as sent, e.g. "pre-checkpoint" */
  char job[72];           /**< the job */
  char unit[72];          /**< the unit */
  unsigned long long seq; /**< the checkpoint sequence it is about */
  long deadline_ms;       /**< gcp gives up this many ms after connecting */
};

/**
 * A handler: returns 0 for ok, anything else for an error, with a one-line reason
 * written into `message` (at most `size` bytes) that gcp shows in its error line.
 */
typedef int (*gcp_callback_fn)(const struct gcp_event_info *event, char *message, size_t size, void *arg);

/** A listening endpoint with its handlers; fill with gcp_callbacks_open. */
struct gcp_callbacks {
  int fd;   /**< the listening socket, -1 when not running under gcp */
  int conn; /**< the connection of the event taken by gcp_callbacks_next, else -1 */
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /**< the socket path */
  gcp_callback_fn handlers[GCP_EVENT_COUNT];              /**< per event, may be NULL */
  void *args[GCP_EVENT_COUNT];                            /**< passed to each handler */
};

/** Event name <-> enum, for messages and logs. */
static inline const char *gcp_event_name(enum gcp_event event) {
  static const char *const names[] = {"pre-checkpoint", "post-checkpoint", "post-restart", "abort", "unknown"};
  return (unsigned)event < GCP_EVENT_COUNT ? names[event] : "unknown";
}

/**
 * Listens on $GCP_CALLBACK_SOCKET. Returns 1 when listening, 0 when the variable is
 * not set (not running under gcp: nothing to do, and every other call is harmless),
 * -1 with errno set when the socket cannot be made.
 */
static inline int gcp_callbacks_open(struct gcp_callbacks *cb) {
  const char *path = getenv(GCP_CALLBACK_SOCKET_ENV);
  struct sockaddr_un addr;
  int fd, err;

  memset(cb, 0, sizeof(*cb));
  cb->fd = cb->conn = -1;
  if (!path || !*path) return 0;
  if (strlen(path) >= sizeof(addr.sun_path)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path, strlen(path));
  snprintf(cb->path, sizeof(cb->path), "%s", path);
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  /* A file left by an earlier run of the unit is stale: nobody listens on it. */
  unlink(path);
  if (bind(fd, (const struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 8) != 0) {
    err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  cb->fd = fd;
  return 1;
}

/** Registers `fn` (NULL: answer ok) for one event. */
static inline void gcp_callbacks_on(struct gcp_callbacks *cb, enum gcp_event event, gcp_callback_fn fn, void *arg) {
  if ((unsigned)event >= GCP_EVENT_COUNT) return;
  cb->handlers[event] = fn;
  cb->args[event] = arg;
}

/** The descriptor to poll for POLLIN; -1 when not running under gcp. */
static inline int gcp_callbacks_fd(const struct gcp_callbacks *cb) { return cb->fd; }

/* Internal: the string or number value of "key" in a flat JSON object of gcp's. */
static inline int gcp_callbacks_field_(const char *line, const char *key, char *out, size_t size) {
  char pattern[40];
  const char *p, *end;
  size_t n;

  snprintf(pattern, sizeof(pattern), "\"%s\":", key);
  p = strstr(line, pattern);
  if (!p) return -1;
  p += strlen(pattern);
  while (*p == ' ') p++;
  if (*p == '"') {
    end = strchr(++p, '"');
  } else {
    end = p + strspn(p, "0123456789-");
  }
  if (!end || end == p) return -1;
  n = (size_t)(end - p);
  if (n >= size) return -1;
  memcpy(out, p, n);
  out[n] = '\0';
  return 0;
}

/*
 * Internal: sends one answer line and closes the connection (gcp waits for that
 * close, so that nothing of it is left in the unit when it is frozen).
 */
static inline void gcp_callbacks_answer_(int conn, int failed, const char *message) {
  char line[GCP_CALLBACKS_LINE_MAX];
  size_t n = 0;
  const char *m;

  if (!failed) {
    n = (size_t)snprintf(line, sizeof(line), "{\"status\":\"ok\"}\n");
  } else {
    n = (size_t)snprintf(line, sizeof(line), "{\"status\":\"error\",\"message\":\"");
    for (m = message && *message ? message : "the application reported an error";
         *m && n + 8 < GCP_CALLBACKS_MESSAGE_MAX + 40; m++) {
      unsigned char c = (unsigned char)*m;
      if (c == '"' || c == '\\') {
        line[n++] = '\\';
        line[n++] = (char)c;
      } else {
        line[n++] = c < 0x20 ? ' ' : (char)c;
      }
    }
    n += (size_t)snprintf(line + n, sizeof(line) - n, "\"}\n");
  }
  for (size_t off = 0; off < n;) {
    ssize_t w = send(conn, line + off, n - off, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    off += (size_t)w;
  }
  close(conn);
}

/**
 * Waits up to timeout_ms (0: not at all, -1: for ever) for gcp's next request and
 * reads it into `event`. Returns 1 with the connection kept for gcp_callbacks_reply,
 * 0 when none came, -1 with errno set on an error. A request of another protocol
 * version is answered with an error here and reported as 0.
 */
static inline int gcp_callbacks_next(struct gcp_callbacks *cb, struct gcp_event_info *event, int timeout_ms) {
  char line[GCP_CALLBACKS_LINE_MAX], value[80];
  struct pollfd pfd;
  struct timeval tv = {5, 0};
  size_t got = 0;
  int conn, rc, e;

  if (cb->fd < 0) return 0;
  value[0] = '\0';
  pfd.fd = cb->fd;
  pfd.events = POLLIN;
  pfd.revents = 0;
  do {
    rc = poll(&pfd, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  if (rc <= 0) return rc;
  conn = accept(cb->fd, NULL, NULL);
  if (conn < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
  (void)fcntl(conn, F_SETFD, FD_CLOEXEC);
  (void)fcntl(conn, F_SETFL, fcntl(conn, F_GETFL) & ~O_NONBLOCK);
  /* A peer that connects and says nothing must not hang the application. */
  setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  while (got + 1 < sizeof(line) && (got == 0 || line[got - 1] != '\n')) {
    ssize_t n = recv(conn, line + got, sizeof(line) - 1 - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  line[got] = '\0';
  memset(event, 0, sizeof(*event));
  if (got == 0 || line[got - 1] != '\n') {
    close(conn);
    return 0;
  }
  if (gcp_callbacks_field_(line, "gcp", value, sizeof(value)) != 0 || strncmp(value, "callbacks/v1", 12) != 0 ||
      (value[12] != '\0' && value[12] != '.')) {
    char why[160];
    snprintf(why, sizeof(why), "protocol '%.60s' is not supported (this client speaks %s)", value,
             GCP_CALLBACKS_PROTOCOL);
    gcp_callbacks_answer_(conn, 1, why);
    return 0;
  }
  if (gcp_callbacks_field_(line, "event", event->name, sizeof(event->name)) != 0) {
    snprintf(event->name, sizeof(event->name), "unknown");
  }
  event->event = GCP_EVENT_UNKNOWN;
  for (e = 0; e < GCP_EVENT_UNKNOWN; e++) {
    if (strcmp(event->name, gcp_event_name((enum gcp_event)e)) == 0) event->event = (enum gcp_event)e;
  }
  (void)gcp_callbacks_field_(line, "job", event->job, sizeof(event->job));
  (void)gcp_callbacks_field_(line, "unit", event->unit, sizeof(event->unit));
  if (gcp_callbacks_field_(line, "seq", value, sizeof(value)) == 0) event->seq = strtoull(value, NULL, 10);
  if (gcp_callbacks_field_(line, "deadlineMs", value, sizeof(value)) == 0) event->deadline_ms = strtol(value, NULL, 10);
  cb->conn = conn;
  return 1;
}

/**
 * Answers the event taken by gcp_callbacks_next: ok when `failed` is 0, else an
 * error with `message` (one line; NULL gives a generic one). Closes the connection.
 */
static inline void gcp_callbacks_reply(struct gcp_callbacks *cb, int failed, const char *message) {
  if (cb->conn < 0) return;
  gcp_callbacks_answer_(cb->conn, failed, message);
  cb->conn = -1;
}

/**
 * Takes one request (waiting up to timeout_ms, as gcp_callbacks_next), runs its
 * handler and answers. Returns 1 when an event was handled, 0 when none came, -1 on
 * an error.
 */
static inline int gcp_callbacks_dispatch(struct gcp_callbacks *cb, int timeout_ms) {
  struct gcp_event_info event;
  char message[GCP_CALLBACKS_MESSAGE_MAX];
  int rc = gcp_callbacks_next(cb, &event, timeout_ms), failed = 0;

  if (rc <= 0) return rc;
  message[0] = '\0';
  if (cb->handlers[event.event]) {
    failed = cb->handlers[event.event](&event, message, sizeof(message), cb->args[event.event]);
  }
  gcp_callbacks_reply(cb, failed, message);
  return 1;
}

/** Stops listening and removes the socket file. */
static inline void gcp_callbacks_close(struct gcp_callbacks *cb) {
  if (cb->conn >= 0) close(cb->conn);
  if (cb->fd >= 0) {
    close(cb->fd);
    unlink(cb->path);
  }
  cb->fd = cb->conn = -1;
}

#ifdef __cplusplus
}
#endif

#endif /* GCP_CALLBACKS_H */
