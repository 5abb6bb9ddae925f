// SPDX-License-Identifier: MIT
// cow STATE MIB: MIB MiB of private anonymous memory that a parent fills and then shares
// copy-on-write with two children (fork). Every tick each process checks the pattern;
// the first child also rewrites one page of its own copy with a pattern of its own, which
// the parent and the second child must never see (copy-on-write kept both ways). A child
// that finds its copy wrong signals the parent (SIGUSR1), which records the failure. The
// memory stays shared only if a restart keeps it so: compare the processes' PSS.
// count = the parent's ticks.
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#include "state.h"

#define PAGE_WORDS (4096 / sizeof(uint64_t))
#define SEED 0xc0ffeeULL
#define OWN_SEED 0xbadc0deULL

static volatile sig_atomic_t child_failed;

static void on_usr1(int sig) {
  (void)sig;
  child_failed = 1;
}

/* The first child owns page 0 (its own pattern); everyone else sees the parent's. */
static void child_loop(uint64_t *mem, size_t words, int own_page, pid_t parent) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(1);
  if (own_page) wl_fill(mem, PAGE_WORDS, OWN_SEED);
  for (;;) {
    size_t from = own_page ? PAGE_WORDS : 0;
    if ((own_page && wl_check(mem, 0, PAGE_WORDS, OWN_SEED) != PAGE_WORDS) ||
        wl_check(mem, from, words, SEED) != words) {
      kill(parent, SIGUSR1);
      _exit(1);
    }
    wl_sleep_ns(WL_TICK_NS);
  }
}

int main(int argc, char **argv) {
  struct wl_state s;

  if (argc != 3) {
    fprintf(stderr, "usage: cow STATE MIB\n");
    return 2;
  }
  wl_init(&s, "cow", argv[1]);
  size_t mib = wl_parse_ulong("cow", "MiB", argv[2], 1, 4096);
  size_t words = (mib << 20) / sizeof(uint64_t);
  uint64_t *mem = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) wl_fail(&s, "mmap %zu MiB: %s", mib, strerror(errno));
  wl_fill(mem, words, SEED);
  signal(SIGUSR1, on_usr1);
  pid_t parent = getpid(), children[2];
  for (int i = 0; i < 2; i++) {
    children[i] = fork();
    if (children[i] < 0) wl_fail(&s, "fork: %s", strerror(errno));
    if (children[i] == 0) child_loop(mem, words, i == 0, parent);
  }
  wl_set_extra(&s, "mib=%zu\nchild1=%ld\nchild2=%ld\n", mib, (long)children[0], (long)children[1]);
  wl_announce(&s, "pid=%ld %zu MiB shared with children %ld and %ld", (long)parent, mib, (long)children[0],
              (long)children[1]);
  for (;;) {
    if (child_failed) wl_fail(&s, "a child found its copy-on-write memory wrong");
    if (wl_check(mem, 0, words, SEED) != words) wl_fail(&s, "the parent's memory changed");
    s.count++;
    s.checks++;
    wl_write_ok(&s);
    wl_sleep_ns(WL_TICK_NS);
  }
}
