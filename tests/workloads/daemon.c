// SPDX-License-Identifier: MIT
// daemon STATE: classic double-fork daemon (new session, reparented, cwd /,
// stdio on /dev/null) holding patterned memory.
#include <dirent.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "state.h"

#define MEM_BYTES (4UL << 20)

/* Whatever the launcher leaked (pipes to it, logs) must not tie the daemon to it. */
static void close_inherited_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;

  if (!d) return;
  while ((e = readdir(d))) {
    int fd = atoi(e->d_name);

    if (e->d_name[0] != '.' && fd > STDERR_FILENO && fd != dirfd(d)) close(fd);
  }
  closedir(d);
}

static void daemonize(struct wl_state *s) {
  pid_t pid = fork();

  if (pid < 0) {
    fprintf(stderr, "daemon: fork: %s\n", strerror(errno));
    exit(1);
  }
  if (pid > 0) {
    int status = 0;

    /* Reap the short-lived intermediate: when we return, the daemon exists. */
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
      ;
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
  }
  if (setsid() < 0) {
    fprintf(stderr, "daemon: setsid: %s\n", strerror(errno));
    _exit(1);
  }
  pid = fork();
  if (pid < 0) {
    fprintf(stderr, "daemon: fork: %s\n", strerror(errno));
    _exit(1);
  }
  if (pid > 0) {
    /* The daemon's stdout is /dev/null: announce it from here. */
    wl_announce(s, "pid=%ld", (long)pid);
    _exit(0);
  }
  /* Not a session leader any more, so it can never regain a controlling tty. */
  if (chdir("/") != 0) wl_fail(s, "chdir /: %s", strerror(errno));
  close_inherited_fds();
  close(STDIN_FILENO);
  close(STDOUT_FILENO);
  close(STDERR_FILENO);
  /* Lowest free descriptors: these land on 0, 1, 2. */
  for (int i = 0; i < 3; i++)
    if (open("/dev/null", O_RDWR) != i) wl_fail(s, "cannot put /dev/null on fd %d", i);
}

int main(int argc, char **argv) {
  struct wl_state s;
  uint64_t *mem, seed;
  size_t nwords = MEM_BYTES / sizeof(uint64_t);

  if (argc != 2) {
    fprintf(stderr, "usage: %s STATE\n", argv[0]);
    return 2;
  }
  wl_init(&s, "daemon", argv[1]);
  fflush(stdout);
  daemonize(&s);

  mem = mmap(NULL, MEM_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) wl_fail(&s, "mmap: %s", strerror(errno));
  seed = wl_splitmix64(s.started);
  wl_fill(mem, nwords, seed);
  wl_set_extra(&s, "daemon=1\n");
  wl_write_ok(&s);

  for (;;) {
    wl_sleep_ns(WL_TICK_NS);
    s.count++;
    if (s.count % 10 == 0) {
      size_t bad = wl_check(mem, 0, nwords, seed);

      if (bad != nwords)
        wl_fail(&s, "word %zu: expected %016" PRIx64 " got %016" PRIx64, bad, wl_pattern(bad, seed), mem[bad]);
      s.checks++;
    }
    wl_write_ok(&s);
  }
}
