// SPDX-License-Identifier: MIT
// An application that listens for gcp's callbacks (gcp/callbacks.h) and appends every
// event it gets to LOG as "EVENT SEQ JOB UNIT". MODE says how it answers pre-checkpoint:
//   ok          answer ok (handlers registered per event)
//   error:TEXT  answer with the error TEXT
//   hang        take the event (gcp_callbacks_next) and never answer it, while going
//               on with its work and answering the events after it (abort) ok
// Usage: callback-app STATE LOG MODE
#include "gcp/callbacks.h"
#include "state.h"

#include <poll.h>

static struct wl_state st;
static const char *log_path;
static const char *mode;

static void log_event(const struct gcp_event_info *ev) {
  char line[256];
  int n = snprintf(line, sizeof(line), "%s %llu %s %s\n", ev->name, ev->seq, ev->job, ev->unit);
  int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

  if (fd < 0 || write(fd, line, (size_t)n) != n) wl_fail(&st, "appending to %s: %s", log_path, strerror(errno));
  close(fd);
}

static int on_event(const struct gcp_event_info *ev, char *message, size_t size, void *arg) {
  (void)arg;
  log_event(ev);
  if (ev->event == GCP_EVENT_PRE_CHECKPOINT && strncmp(mode, "error:", 6) == 0) {
    snprintf(message, size, "%s", mode + 6);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  struct gcp_callbacks cb;
  int hung = -1;

  if (argc != 4) {
    fprintf(stderr, "usage: callback-app STATE LOG ok|error:TEXT|hang\n");
    return 2;
  }
  wl_init(&st, "callback-app", argv[1]);
  log_path = argv[2];
  mode = argv[3];
  if (gcp_callbacks_open(&cb) != 1) wl_fail(&st, "listening on $GCP_CALLBACK_SOCKET: %s", strerror(errno));
  for (int e = 0; e < GCP_EVENT_COUNT; e++) gcp_callbacks_on(&cb, (enum gcp_event)e, on_event, NULL);
  wl_announce(&st, "pid=%ld socket=%s", (long)getpid(), cb.path);
  wl_write_ok(&st);
  for (;;) {
    uint64_t tick_end = wl_now_ns(CLOCK_MONOTONIC) + WL_TICK_NS;
    int64_t left;

    /* Work in ticks; between them, wait for gcp's events. */
    while ((left = (int64_t)(tick_end - wl_now_ns(CLOCK_MONOTONIC))) > 0) {
      if (strcmp(mode, "hang") == 0) {
        struct gcp_event_info ev;

        if (gcp_callbacks_next(&cb, &ev, (int)(left / 1000000) + 1) == 1) {
          log_event(&ev);
          if (ev.event == GCP_EVENT_ABORT && hung >= 0) {
            close(hung);
            hung = -1;
          }
          if (ev.event == GCP_EVENT_PRE_CHECKPOINT && hung < 0) {
            hung = cb.conn; /* never answered: gcp gives up at the deadline */
            cb.conn = -1;
          } else {
            gcp_callbacks_reply(&cb, 0, NULL);
          }
        }
      } else if (gcp_callbacks_dispatch(&cb, (int)(left / 1000000) + 1) < 0) {
        wl_fail(&st, "taking a gcp event: %s", strerror(errno));
      }
    }
    st.count++;
    wl_write_ok(&st);
  }
}
