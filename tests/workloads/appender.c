// SPDX-License-Identifier: MIT
// appender STATE OUT SNAP: appends its count to OUT (one line per tick, through one
// O_WRONLY|O_APPEND descriptor, as an HPC job writes its output), and writes SNAP the
// way many programs save state: SNAP.tmp is opened and written at the start of each
// cycle of 150 ticks, held open for 100 ticks (long enough for a checkpoint started
// on a busy machine to find it open), then closed and renamed over SNAP. A
// checkpoint in the first half of a cycle has SNAP.tmp open; the rename after it takes
// that path away. The state file has count, and snap= the count SNAP.tmp was opened at.
#include "state.h"

#define CYCLE 150 /* ticks */
#define HOLD 100

int main(int argc, char **argv) {
  struct wl_state s;
  char tmp[PATH_MAX + 8];
  int out, snap = -1;
  uint64_t snap_at = 0;

  if (argc != 4) {
    fprintf(stderr, "usage: %s STATE OUT SNAP\n", argv[0]);
    return 2;
  }
  wl_init(&s, "appender", argv[1]);
  snprintf(tmp, sizeof(tmp), "%s.tmp", argv[3]);
  out = open(argv[2], O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) wl_fail(&s, "opening %s: %s", argv[2], strerror(errno));
  wl_announce(&s, "pid=%ld", (long)getpid());
  wl_write_ok(&s);

  for (;;) {
    wl_sleep_ns(WL_TICK_NS);
    s.count++;
    if (dprintf(out, "%" PRIu64 "\n", s.count) < 0) wl_fail(&s, "appending to %s: %s", argv[2], strerror(errno));
    if (s.count % CYCLE == 1) {
      snap = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (snap < 0) wl_fail(&s, "opening %s: %s", tmp, strerror(errno));
      snap_at = s.count;
      if (dprintf(snap, "count=%" PRIu64 "\n", s.count) < 0) wl_fail(&s, "writing %s: %s", tmp, strerror(errno));
    } else if (s.count % CYCLE == 1 + HOLD && snap >= 0) {
      if (close(snap) != 0) wl_fail(&s, "closing %s: %s", tmp, strerror(errno));
      snap = -1;
      if (rename(tmp, argv[3]) != 0) wl_fail(&s, "renaming %s: %s", tmp, strerror(errno));
    }
    wl_set_extra(&s, "snap=%" PRIu64 "\nsnapOpen=%d\n", snap_at, snap >= 0);
    wl_write_ok(&s);
  }
}
