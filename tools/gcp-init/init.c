/* SPDX-License-Identifier: MIT */
/*
 * gcp-init: PID 1 of a unit's PID namespace. Becomes the unit's user (--uid, --gid,
 * --groups: a user's job runs as that user, gcp-init included), runs the unit's command, forwards
 * termination signals to it, reaps every orphan (so programs that daemonize stay in
 * the unit) and exits, with the command's status, when no process is left.
 *
 * It is plain C and links nothing of gcp on purpose: its binary is part of every
 * checkpoint image, and CRIU restores only onto the same file, so it must stay small
 * and rarely change.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile pid_t main_pid = -1;

/* To the command while it runs; after it, to whatever it left behind (daemons). */
static void forward(int sig) {
  if (main_pid > 0) {
    kill(main_pid, sig);
  } else if (getpid() == 1) {
    kill(-1, sig);
  }
}

static void usage(void) {
  fprintf(stderr, "usage: gcp-init [--report-fd=N] [--uid=UID --gid=GID [--groups=GID,...]] -- COMMAND [ARG...]\n");
  exit(2);
}

/* A decimal id; -1 for anything else. */
static long parse_id(const char *text) {
  char *end = NULL;
  errno = 0;
  unsigned long v = strtoul(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v >= 0xffffffffUL || text[0] == '-') return -1;
  return (long)v;
}

/* Reports why it cannot run the command (to the launcher, through the report fd) and ends. */
static void fail(int report_fd, const char *what) {
  int err = errno;
  if (report_fd >= 0) dprintf(report_fd, "%s: %s", what, strerror(err));
  fprintf(stderr, "gcp-init: %s: %s\n", what, strerror(err));
  exit(127);
}

/* Groups first, then the group, then the user: each later step takes the right to do the
 * earlier ones away. All three ids (real, effective, saved) change, so nothing of root's
 * is left to take back, and capabilities go with uid 0. */
static void become(long uid, long gid, const char *groups, int report_fd) {
  gid_t list[256];
  size_t n = 0;
  if (groups && *groups) {
    char copy[4096];
    if (strlen(groups) >= sizeof copy) usage();
    strcpy(copy, groups);
    for (char *save = NULL, *g = strtok_r(copy, ",", &save); g; g = strtok_r(NULL, ",", &save)) {
      long id = parse_id(g);
      if (id < 0 || n == sizeof list / sizeof list[0]) usage();
      list[n++] = (gid_t)id;
    }
  }
  if (setgroups(n, list) != 0) fail(report_fd, "setting the unit's groups");
  if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) != 0) fail(report_fd, "changing to the unit's group");
  if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) != 0) fail(report_fd, "changing to the unit's user");
}

int main(int argc, char **argv) {
  int report_fd = -1;
  long uid = -1, gid = -1;
  const char *groups = NULL;
  int i = 1;
  for (; i < argc; ++i) {
    if (strncmp(argv[i], "--report-fd=", 12) == 0) {
      report_fd = atoi(argv[i] + 12);
    } else if (strncmp(argv[i], "--uid=", 6) == 0) {
      if ((uid = parse_id(argv[i] + 6)) < 0) usage();
    } else if (strncmp(argv[i], "--gid=", 6) == 0) {
      if ((gid = parse_id(argv[i] + 6)) < 0) usage();
    } else if (strncmp(argv[i], "--groups=", 9) == 0) {
      groups = argv[i] + 9;
    } else if (strcmp(argv[i], "--") == 0) {
      ++i;
      break;
    } else {
      usage();
    }
  }
  if (i >= argc || (uid < 0) != (gid < 0) || (groups && uid < 0)) usage();
  char **command = argv + i;
  if (uid >= 0) become(uid, gid, groups, report_fd);

  /* Outside a PID namespace (tests, debugging) orphans still come to us. */
  if (getpid() != 1) prctl(PR_SET_CHILD_SUBREAPER, 1);

  int exec_pipe[2];
  if (pipe2(exec_pipe, O_CLOEXEC) != 0) {
    perror("gcp-init: pipe");
    return 127;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = forward;
  sa.sa_flags = SA_RESTART;
  int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCONT};
  for (size_t k = 0; k < sizeof forwarded / sizeof forwarded[0]; ++k) sigaction(forwarded[k], &sa, NULL);

  pid_t pid = fork();
  if (pid < 0) {
    perror("gcp-init: fork");
    return 127;
  }
  if (pid == 0) {
    for (size_t k = 0; k < sizeof forwarded / sizeof forwarded[0]; ++k) signal(forwarded[k], SIG_DFL);
    if (report_fd >= 0) close(report_fd);
    close(exec_pipe[0]);
    execvp(command[0], command);
    int err = errno;
    (void)!write(exec_pipe[1], &err, sizeof err);
    _exit(127);
  }
  main_pid = pid;
  close(exec_pipe[1]);
  int err = 0;
  ssize_t n;
  do {
    n = read(exec_pipe[0], &err, sizeof err);
  } while (n < 0 && errno == EINTR);
  close(exec_pipe[0]);
  if (n == (ssize_t)sizeof err) {
    if (report_fd >= 0) dprintf(report_fd, "cannot run '%s': %s", command[0], strerror(err));
    fprintf(stderr, "gcp-init: cannot run '%s': %s\n", command[0], strerror(err));
    return 127;
  }
  if (report_fd >= 0) close(report_fd);

  int main_status = 0;
  for (;;) {
    int status;
    pid_t done = wait(&status);
    if (done < 0) {
      if (errno == EINTR) continue;
      break; /* ECHILD: nobody left */
    }
    if (done == main_pid) {
      main_status = status;
      main_pid = -1;
    }
  }
  if (WIFSIGNALED(main_status)) {
    fprintf(stderr, "gcp-init: the unit's command was killed by signal %d\n", WTERMSIG(main_status));
    return 128 + WTERMSIG(main_status);
  }
  /* gcp-restart --if-failed reads this line: a unit whose command ended by itself with
     status 0 has finished, it did not fail (common/src/autopilot.cc spells it too). */
  fprintf(stderr, "gcp-init: the unit's command exited with status %d\n", WEXITSTATUS(main_status));
  return WEXITSTATUS(main_status);
}
