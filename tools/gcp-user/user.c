/* SPDX-License-Identifier: MIT */
/*
 * gcp-user: how a user who is not root checkpoints, restarts, migrates and removes the
 * user's own jobs (gcp-security(7)). Installed setuid root, mode 4750, group gcp, so
 * that only root and the members of gcp may run it. It runs one of gcp's tools as root,
 * for the user who ran it, and does nothing else:
 *
 *   gcp-user TOOL [ARG...]    TOOL: gcp-isolate, gcp-checkpoint, gcp-restart, gcp-migrate,
 *                             gcp-store or gcp-deps, found next to it (../../bin/TOOL)
 *
 * The tool gets a fixed PATH, GCP_CALLER_UID (the user's uid, which it honours only as
 * root) and nothing else of the user's environment; the user's arguments go to it as they
 * are, and it checks them (the user's own jobs only; no store, address or node part that
 * only root may use). The working directory stays the user's, where the user's unit runs
 * as the user: one the user may not enter is refused. The tools re-exec themselves through
 * it (gcp::caller::reexec_through_helper), so users never name it.
 *
 * Plain C that links nothing of gcp: the less runs setuid, the less there is to trust.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* gcp::names::kEnvCallerUid (common/include/gcp/names.h). */
#define CALLER_UID_ENV "GCP_CALLER_UID"
#define FIXED_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

enum { EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_NOT_PERMITTED = 3 };

static const char *const tools[] = {"gcp-isolate", "gcp-checkpoint", "gcp-restart",
                                    "gcp-migrate", "gcp-store",      "gcp-deps"};

/* One error line and, when there is a fix, one hint line (the tools' own format). */
static void die(int code, const char *hint, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void die(int code, const char *hint, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("gcp-user: error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  if (hint) fprintf(stderr, "gcp-user: hint: %s\n", hint);
  exit(code);
}

/* `text` with bytes that are not printable ASCII as '?', at most 60 of them: a user's
 * word in a message must not drive the terminal. */
static const char *printable(const char *text) {
  static char out[64];
  size_t n = 0;
  for (; text[n] && n < 60; ++n) out[n] = text[n] >= 0x20 && text[n] < 0x7f ? text[n] : '?';
  out[n] = '\0';
  return out;
}

/* The user chose which descriptors are open: a closed 0, 1 or 2 would be the next file
 * root opens, which the tool's output would then overwrite. */
static void standard_fds(void) {
  for (int fd = 0; fd <= 2; ++fd) {
    if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    int null = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
    if (null != fd) _exit(EXIT_FAILED);
  }
}

static void check_part(const char *path, const char *at, int last) {
  struct stat st;
  if (lstat(at, &st) != 0) die(EXIT_FAILED, NULL, "checking '%s': %s", at, strerror(errno));
  int open_to_others =
      (st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && !(S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX) && !last);
  if (st.st_uid != 0 || open_to_others || (last && !S_ISREG(st.st_mode))) {
    die(EXIT_FAILED, "root must own the tool and every directory above it, writable by root alone (make install)",
        "refusing to run '%s' as root: '%s' %s", path, at,
        st.st_uid != 0   ? "is not root's"
        : open_to_others ? "may be written by others than root"
                         : "is not a regular file");
  }
}

/* Root runs `path` (a resolved path) only if root alone can change it: it and every
 * directory above it are root's and writable by no one else (a sticky directory such as
 * /tmp on the way). */
static void check_trusted(const char *path) {
  char at[PATH_MAX];
  size_t len = strlen(path);
  if (len >= sizeof at) die(EXIT_FAILED, NULL, "the path of the tool is too long");
  check_part(path, "/", 0);
  for (size_t end = 1; end <= len; ++end) {
    if (end < len && path[end] != '/') continue;
    memcpy(at, path, end);
    at[end] = '\0';
    check_part(path, at, end == len);
  }
}

/* Signals the user ignored or blocked stay so across exec; the tool starts as if run
 * by root itself. */
static void default_signals(void) {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    signal(sig, SIG_DFL);
  }
}

int main(int argc, char **argv) {
  standard_fds();
  uid_t uid = getuid();
  if (geteuid() != 0) {
    die(EXIT_FAILED, "as root: chown root:gcp gcp-user && chmod 4750 gcp-user ('make install' does it)",
        "gcp-user runs as uid %u, not as root: it is not installed setuid root", (unsigned)geteuid());
  }
  if (uid == 0) die(EXIT_USAGE, "run the tool itself", "root runs gcp's tools directly, not through gcp-user");
  if (argc < 2)
    die(EXIT_USAGE, "the tools run it themselves: run 'gcp-isolate', 'gcp-checkpoint', ...", "no tool given");
  const char *tool = NULL;
  for (size_t i = 0; i < sizeof tools / sizeof tools[0]; ++i) {
    if (strcmp(argv[1], tools[i]) == 0) tool = tools[i];
  }
  if (!tool) {
    die(EXIT_USAGE, "gcp-user runs gcp-isolate, gcp-checkpoint, gcp-restart, gcp-migrate, gcp-store and gcp-deps",
        "'%s' is not one of gcp's tools", printable(argv[1]));
  }

  /* The tools installed with it: <prefix>/libexec/gcp/gcp-user runs <prefix>/bin/TOOL. */
  char self[PATH_MAX], wanted[PATH_MAX + 64], path[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) die(EXIT_FAILED, NULL, "finding itself (/proc/self/exe): %s", strerror(errno));
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  if (!slash) die(EXIT_FAILED, NULL, "finding itself: '%s' is not a path", self);
  *slash = '\0';
  snprintf(wanted, sizeof wanted, "%s/../../bin/%s", self, tool);
  if (!realpath(wanted, path))
    die(EXIT_FAILED, "install gcp's tools with 'make install'", "finding '%s': %s", wanted, strerror(errno));
  check_trusted(path);

  /* The user's unit runs here as the user: root does not start one where the user may
   * not be. (access() asks with the real uid and groups: the user's.) */
  if (access(".", X_OK) != 0) {
    char cwd[PATH_MAX];
    die(EXIT_NOT_PERMITTED, "cd to a directory of yours first",
        "uid %u may not enter its working directory '%s' (%s): gcp would run the unit there as uid %u", (unsigned)uid,
        getcwd(cwd, sizeof cwd) ? printable(cwd) : "?", strerror(errno), (unsigned)uid);
  }

  /* Nothing of the user's environment reaches root: no GCP_CRIU, GCP_TRANSLIB_PATH,
   * GCP_CONFIG, GCP_STORE, GCP_SCRATCH or GCP_INIT, no LD_*, no PATH. */
  char caller[32];
  snprintf(caller, sizeof caller, "%u", (unsigned)uid);
  if (clearenv() != 0 || setenv("PATH", FIXED_PATH, 1) != 0 || setenv(CALLER_UID_ENV, caller, 1) != 0) {
    die(EXIT_FAILED, NULL, "setting the tool's environment: %s", strerror(errno));
  }
  /* A umask of 0 would make what root writes with default modes writable by everyone;
   * a root core dump would land in the user's directory. */
  umask(022);
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  default_signals();

  /* Root altogether: the real and saved ids too (no way back to the user's), and no
   * group of the user's. */
  if (setgroups(0, NULL) != 0 || setresgid(0, 0, 0) != 0 || setresuid(0, 0, 0) != 0) {
    die(EXIT_FAILED, NULL, "becoming root: %s", strerror(errno));
  }
  argv[1] = (char *)tool;
  execv(path, argv + 1);
  die(EXIT_FAILED, NULL, "running '%s': %s", path, strerror(errno));
}
