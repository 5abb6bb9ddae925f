// SPDX-License-Identifier: MIT
// sysvipc STATE KEY: System V IPC across a checkpoint and restart. Creates, under KEY
// and exclusively (IPC_EXCL: an object with that key that exists already is a
// failure), a 1 MiB shared memory segment attached in this process and in a child, a
// semaphore and a message queue. Every tick the parent checks the segment's pattern
// and the counter the child keeps in it, raises the semaphore by one and checks its
// value, and takes the oldest message from the queue, checks it and sends the next.
// So an object lost, emptied or replaced by a restart is a failure. count = ticks.
#include <signal.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <sys/shm.h>

#include "state.h"

#define SEG_BYTES (1UL << 20)
#define QUEUED 4

struct message {
  long type;
  char text[32];
};

union semun {
  int val;
};

int main(int argc, char **argv) {
  struct wl_state s;

  if (argc != 3) {
    fprintf(stderr, "usage: sysvipc STATE KEY\n");
    return 2;
  }
  wl_init(&s, "sysvipc", argv[1]);
  key_t key = (key_t)wl_parse_ulong("sysvipc", "key", argv[2], 1, 0x7fffffff);
  int shm = shmget(key, SEG_BYTES, IPC_CREAT | IPC_EXCL | 0600);
  if (shm < 0) wl_fail(&s, "shmget key %d: %s", (int)key, strerror(errno));
  int sem = semget(key, 1, IPC_CREAT | IPC_EXCL | 0600);
  if (sem < 0) wl_fail(&s, "semget key %d: %s", (int)key, strerror(errno));
  int msq = msgget(key, IPC_CREAT | IPC_EXCL | 0600);
  if (msq < 0) wl_fail(&s, "msgget key %d: %s", (int)key, strerror(errno));
  uint64_t *seg = shmat(shm, NULL, 0);
  if (seg == (void *)-1) wl_fail(&s, "shmat: %s", strerror(errno));
  size_t words = SEG_BYTES / sizeof(uint64_t);
  /* The last word is the child's counter; the rest a pattern of the key. */
  wl_fill(seg, words - 1, (uint64_t)key);
  seg[words - 1] = 0;
  union semun arg = {.val = 0};
  if (semctl(sem, 0, SETVAL, arg) != 0) wl_fail(&s, "semctl SETVAL: %s", strerror(errno));
  uint64_t next_sent = 0, next_received = 0;
  for (; next_sent < QUEUED; next_sent++) {
    struct message m = {.type = 1};
    snprintf(m.text, sizeof(m.text), "message %" PRIu64, next_sent);
    if (msgsnd(msq, &m, sizeof(m.text), IPC_NOWAIT) != 0) wl_fail(&s, "msgsnd: %s", strerror(errno));
  }
  wl_set_extra(&s, "key=%d\nshmid=%d\nsemid=%d\nmsqid=%d\n", (int)key, shm, sem, msq);
  pid_t parent = getpid();
  pid_t child = fork();
  if (child < 0) wl_fail(&s, "fork: %s", strerror(errno));
  if (child == 0) {
    /* The child sees the same segment (inherited attachment) and counts in it. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(1);
    for (;;) {
      __atomic_add_fetch(&seg[words - 1], 1, __ATOMIC_SEQ_CST);
      wl_sleep_ns(WL_TICK_NS / 4);
    }
  }
  wl_announce(&s, "pid=%ld key %d: shm %d, sem %d, msq %d", (long)getpid(), (int)key, shm, sem, msq);
  uint64_t child_seen = 0;
  for (;;) {
    size_t bad = wl_check(seg, 0, words - 1, (uint64_t)key);
    if (bad != words - 1) wl_fail(&s, "shared memory word %zu changed", bad);
    uint64_t c = __atomic_load_n(&seg[words - 1], __ATOMIC_SEQ_CST);
    if (c < child_seen)
      wl_fail(&s, "the child's counter in shared memory went back from %" PRIu64 " to %" PRIu64, child_seen, c);
    child_seen = c;
    struct sembuf up = {.sem_num = 0, .sem_op = 1, .sem_flg = 0};
    if (semop(sem, &up, 1) != 0) {
      if (errno == EINTR) continue;
      wl_fail(&s, "semop: %s", strerror(errno));
    }
    int v = semctl(sem, 0, GETVAL);
    if (v < 0 || (uint64_t)v != s.count + 1) wl_fail(&s, "semaphore is %d, expected %" PRIu64, v, s.count + 1);
    struct message m;
    ssize_t got;
    do {
      got = msgrcv(msq, &m, sizeof(m.text), 0, IPC_NOWAIT);
    } while (got < 0 && errno == EINTR);
    if (got < 0) wl_fail(&s, "msgrcv: %s", strerror(errno));
    char want[32];
    snprintf(want, sizeof(want), "message %" PRIu64, next_received++);
    if (strcmp(m.text, want) != 0) wl_fail(&s, "message queue gave '%.31s', expected '%s'", m.text, want);
    m.type = 1;
    snprintf(m.text, sizeof(m.text), "message %" PRIu64, next_sent++);
    if (msgsnd(msq, &m, sizeof(m.text), IPC_NOWAIT) != 0) wl_fail(&s, "msgsnd: %s", strerror(errno));
    s.count++;
    s.checks++;
    wl_write_ok(&s);
    wl_sleep_ns(WL_TICK_NS);
  }
}
