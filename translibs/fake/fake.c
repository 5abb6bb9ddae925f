/* SPDX-License-Identifier: MIT */
/*
 * Fake translibs that exercise gcp's loader; written in C to show that the ABI needs
 * nothing of gcp's C++. One source, built several ways:
 *   -DFAKE_ABI_MAJOR=N       claims ABI major N (wrong-abi.so: 99, old-abi.so: 0)
 *   -DFAKE_FAILING_PROBE     probe answers UNSUPPORTED with a reason (failing-probe.so)
 *   -DFAKE_SHORT_TABLE       struct_size too small for this ABI (short-table.so)
 * Without options it is a working translib whose checkpoint echoes its request, with
 * the request's "needs" as the "options" it used (echo.so); its checkpoint fails when
 * FAKE_TRANSLIB_FAIL=checkpoint is in the environment and its restart when
 * FAKE_TRANSLIB_FAIL=restart, for tests of the abort paths; with
 * FAKE_TRANSLIB_REQUESTS=FILE every call appends "<call> <request>" to FILE as one line,
 * for tests of what the host asks. It builds against the
 * installed translib.h alone (pkg-config gcp-translib).
 */
#include "gcp/translib.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FAKE_ABI_MAJOR
#define FAKE_ABI_MAJOR GCP_TRANSLIB_ABI_MAJOR
#endif
#ifndef FAKE_NAME
#define FAKE_NAME "echo"
#endif

static char *dup_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *out = malloc(n);
  if (out) memcpy(out, s, n);
  return out;
}

static void note(const char *call, const char *request) {
  const char *file = getenv("FAKE_TRANSLIB_REQUESTS");
  FILE *f = file && *file ? fopen(file, "ae") : NULL;
  if (!f) return;
  fprintf(f, "%s %s\n", call, request);
  fclose(f);
}

static int failing(const char *call) {
  const char *fail = getenv("FAKE_TRANSLIB_FAIL");
  return fail && strcmp(fail, call) == 0;
}

/* The request with "options" added: the array of its "needs" (the host writes JSON
 * without spaces, and a need holds no ']'), or [] when it has none. */
static char *with_options(const char *request) {
  const char *needs = strstr(request, "\"needs\":[");
  const char *open = needs ? strchr(needs, '[') : NULL;
  const char *close = open ? strchr(open, ']') : NULL;
  const char *end = strrchr(request, '}');
  if (!end) return dup_string(request);
  size_t head = (size_t)(end - request);
  size_t list = close ? (size_t)(close - open) + 1 : 2;
  char *out = malloc(head + list + sizeof ",\"options\":}");
  if (!out) return NULL;
  sprintf(out, "%.*s%s\"options\":%.*s}", (int)head, request, head > 1 ? "," : "", (int)list, close ? open : "[]");
  return out;
}

static gcp_translib_status checkpoint(const char *request, char **result, char **error) {
  note("checkpoint", request);
  if (failing("checkpoint")) {
    *result = NULL;
    *error = dup_string("the fake checkpointer was told to fail");
    return GCP_TRANSLIB_ERROR;
  }
  *error = NULL;
  *result = with_options(request);
  return GCP_TRANSLIB_OK;
}

static gcp_translib_status restart(const char *request, char **result, char **error) {
  note("restart", request);
  if (failing("restart")) {
    *result = NULL;
    *error = dup_string("the fake checkpointer was told to fail");
    return GCP_TRANSLIB_ERROR;
  }
  *error = NULL;
  (void)request;
  *result = dup_string("{\"pid\":1}");
  return GCP_TRANSLIB_OK;
}

static gcp_translib_status probe(const char *request, char **result, char **error) {
  (void)request;
  *result = NULL;
#ifdef FAKE_FAILING_PROBE
  *error = dup_string("the fake checkpointer is not installed on this node\nhint: install fake-checkpointer");
  return GCP_TRANSLIB_UNSUPPORTED;
#else
  *error = NULL;
  *result = dup_string("{\"checkpointer\":\"fake\",\"version\":\"1.0\",\"path\":\"/nowhere\"}");
  return GCP_TRANSLIB_OK;
#endif
}

static void free_string(char *s) { free(s); }

static const gcp_translib_descriptor descriptor = {
    FAKE_ABI_MAJOR,
    GCP_TRANSLIB_ABI_MINOR,
#ifdef FAKE_SHORT_TABLE
    (uint32_t)offsetof(gcp_translib_descriptor, probe),
#else
    sizeof(gcp_translib_descriptor),
#endif
    "checkpointer/" FAKE_NAME,
    FAKE_NAME,
    "0.0.1",
    GCP_CAP_PROCESS_TREE,
    probe,
    checkpoint,
    restart,
    free_string,
    NULL, /* check: a fake checks no node */
};

__attribute__((visibility("default"))) const gcp_translib_descriptor *gcp_translib_open(const gcp_translib_host *host) {
  (void)host;
  return &descriptor;
}
