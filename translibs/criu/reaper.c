/* SPDX-License-Identifier: MIT */
/*
 * criu-reaper: runs one checkpointer command so that nothing it starts outlives it.
 *
 *   criu-reaper [--keep-on-success] [--join-cgroup FILE]... [--netns PATH] PROGRAM [ARG...]
 *
 * CRIU forks helpers of its own: while it probes the kernel at start-up (every run
 * where /run is not a tmpfs and it cannot keep its cache) some of them stop
 * themselves with SIGSTOP under its ptrace, and action scripts run as its children.
 * The translib kills CRIU when the tool that drives it dies (PR_SET_PDEATHSIG), but
 * a child that CRIU had stopped then stays stopped for ever, reparented to PID 1.
 *
 * This helper sits between the translib and CRIU as a child subreaper: whatever CRIU
 * leaves behind is reparented to it. It ends with PROGRAM's exit status (or dies of
 * PROGRAM's signal), and before it ends it kills and reaps every process left under
 * it. With --keep-on-success it leaves them alone when PROGRAM exits with status 0:
 * what `criu restore --restore-detached` leaves is the restored unit. When the tool
 * above it dies (SIGTERM through PR_SET_PDEATHSIG), or on SIGTERM, SIGINT or SIGHUP,
 * it kills PROGRAM and everything under it, reaps them, and dies of that signal.
 *
 * PROGRAM starts in each cgroup whose cgroup.procs FILE is given (a restore's unit
 * belongs to the cgroup criu runs in) and in the network namespace PATH (the unit's
 * own: gcp-translib(7), "netns"), while this helper stays in the translib's. Both are
 * opened before PROGRAM is started: a missing one fails with status 126 and a message.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* SIGKILL to every child this process has now (CRIU's leftovers are reparented here). */
static void kill_children(void) {
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
  FILE* f = fopen(path, "re");
  if (!f) return;
  int pid;
  while (fscanf(f, "%d", &pid) == 1) kill(pid, SIGKILL);
  fclose(f);
}

/* Kills and reaps until no child is left: each one killed hands its own children to
 * this subreaper, and the next round kills those. */
static void kill_everything(void) {
  for (;;) {
    kill_children();
    int status;
    if (waitpid(-1, &status, 0) < 0 && errno == ECHILD) return;
  }
}

static void die_of(int sig) {
  signal(sig, SIG_DFL);
  sigset_t only;
  sigemptyset(&only);
  sigaddset(&only, sig);
  sigprocmask(SIG_UNBLOCK, &only, NULL);
  raise(sig);
  _exit(128 + sig);
}

/* Ends like PROGRAM ended: its exit status, or death by its signal. */
static void end_as(int status) {
  if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
  die_of(WIFSIGNALED(status) ? WTERMSIG(status) : SIGKILL);
}

enum { kMaxCgroups = 16 };

/* Writes this process's pid into an open cgroup.procs: it moves there. */
static bool join_cgroup(int fd) {
  char pid[24];
  int len = snprintf(pid, sizeof pid, "%d", (int)getpid());
  return write(fd, pid, (size_t)len) == len;
}

int main(int argc, char** argv) {
  static const char usage[] =
      "usage: criu-reaper [--keep-on-success] [--join-cgroup FILE]... [--netns PATH] PROGRAM [ARG...]\n";
  bool keep_on_success = false;
  int cgroups[kMaxCgroups];
  const char* cgroup_names[kMaxCgroups];
  int ncgroups = 0, netns = -1;
  const char* netns_name = NULL;
  char** command = argv + (argc > 0);
  for (; *command && strncmp(*command, "--", 2) == 0; ++command) {
    if (strcmp(*command, "--") == 0) {
      ++command;
      break;
    }
    if (strcmp(*command, "--keep-on-success") == 0) {
      keep_on_success = true;
      continue;
    }
    bool cgroup = strcmp(*command, "--join-cgroup") == 0;
    if ((!cgroup && strcmp(*command, "--netns") != 0) || !command[1]) {
      fputs(usage, stderr);
      return 2;
    }
    const char* file = *++command;
    if (cgroup && ncgroups == kMaxCgroups) {
      fprintf(stderr, "criu-reaper: error: more than %d --join-cgroup\n", kMaxCgroups);
      return 2;
    }
    int fd = open(file, (cgroup ? O_WRONLY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) {
      fprintf(stderr, "criu-reaper: error: opening %s '%s': %s\n", cgroup ? "cgroup" : "network namespace", file,
              strerror(errno));
      return 126;
    }
    if (cgroup) {
      cgroup_names[ncgroups] = file;
      cgroups[ncgroups++] = fd;
    } else {
      if (netns >= 0) close(netns);
      netns = fd;
      netns_name = file;
    }
  }
  if (!*command) {
    fputs(usage, stderr);
    return 2;
  }
  sigset_t handled, old;
  sigemptyset(&handled);
  sigaddset(&handled, SIGCHLD);
  sigaddset(&handled, SIGTERM);
  sigaddset(&handled, SIGINT);
  sigaddset(&handled, SIGHUP);
  sigprocmask(SIG_BLOCK, &handled, &old);

  pid_t parent = getppid();
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    perror("criu-reaper: becoming a child subreaper");
    return 126;
  }
  /* The translib set SIGKILL, which would leave no time to clean up. */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) return 126; /* the tool died before this point */

  pid_t child = fork();
  if (child < 0) {
    perror("criu-reaper: fork");
    return 126;
  }
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* if this helper is killed outright */
    sigprocmask(SIG_SETMASK, &old, NULL);
    for (int i = 0; i < ncgroups; ++i) {
      if (!join_cgroup(cgroups[i])) {
        fprintf(stderr, "criu-reaper: error: joining cgroup '%s': %s\n", cgroup_names[i], strerror(errno));
        _exit(126);
      }
    }
    if (netns >= 0 && setns(netns, CLONE_NEWNET) != 0) {
      fprintf(stderr, "criu-reaper: error: entering network namespace '%s': %s\n", netns_name, strerror(errno));
      _exit(126);
    }
    execvp(command[0], command);
    fprintf(stderr, "criu-reaper: cannot run %s: %s\n", command[0], strerror(errno));
    _exit(127);
  }

  for (;;) {
    siginfo_t info;
    int sig = sigwaitinfo(&handled, &info);
    if (sig < 0) continue; /* EINTR */
    if (sig != SIGCHLD) {
      kill(child, SIGKILL);
      kill_everything();
      die_of(sig);
    }
    int status;
    pid_t got;
    while ((got = waitpid(-1, &status, WNOHANG)) > 0) {
      if (got != child) continue; /* a leftover reparented here: reaped */
      if (!(keep_on_success && WIFEXITED(status) && WEXITSTATUS(status) == 0)) kill_everything();
      end_as(status);
    }
  }
}
