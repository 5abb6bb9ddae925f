// SPDX-License-Identifier: MIT
// fanout READY PROCS FDS: a process tree of PROCS processes (this one and PROCS-1
// children) holding FDS descriptors between them (pipes, unix socket pairs and
// eventfds, spread evenly), for the gcp-deps benchmark. Writes READY once all are
// there; the children die with the parent.
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static void open_some(int n) {
  for (int i = 0; i < n;) {
    int p[2];

    switch (i % 3) {
      case 0:
        if (n - i >= 2 && pipe(p) == 0) {
          i += 2;
          continue;
        }
        break;
      case 1:
        if (n - i >= 2 && socketpair(AF_UNIX, SOCK_STREAM, 0, p) == 0) {
          i += 2;
          continue;
        }
        break;
    }
    if (eventfd(0, 0) < 0) {
      perror("fanout: eventfd");
      exit(1);
    }
    i++;
  }
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: fanout READY PROCS FDS\n");
    return 2;
  }
  int procs = atoi(argv[2]), fds = atoi(argv[3]);
  if (procs < 1 || fds < 0) return 2;
  struct rlimit rl = {65536, 65536};
  setrlimit(RLIMIT_NOFILE, &rl);
  pid_t parent = getpid();
  int per = fds / procs, extra = fds % procs;
  int ready[2];
  if (pipe(ready) != 0) return 1;
  for (int i = 1; i < procs; i++) {
    pid_t c = fork();
    if (c < 0) {
      perror("fanout: fork");
      return 1;
    }
    if (c == 0) {
      if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(1);
      close(ready[0]);
      open_some(per + (i < extra ? 1 : 0) - 1); /* the ready pipe's write end counts */
      close(ready[1]);
      for (;;) pause();
    }
  }
  close(ready[1]);
  char b;
  while (read(ready[0], &b, 1) > 0) {
  }
  close(ready[0]);
  open_some(per);
  FILE *f = fopen(argv[1], "w");
  if (!f) return 1;
  fprintf(f, "ready\n");
  fclose(f);
  for (;;) pause();
}
