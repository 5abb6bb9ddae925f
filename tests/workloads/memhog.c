// SPDX-License-Identifier: MIT
// memhog STATE MIB KIND: MIB MiB of random or compressible anonymous memory for the
// checkpoint store; SIGUSR1 rewrites a scattered 5% of it, SIGUSR2 verifies and digests it.
#include <signal.h>
#include <sys/mman.h>

#include "state.h"

#define PAGE_BYTES 4096
#define PAGE_WORDS (PAGE_BYTES / sizeof(uint64_t))
#define DIRTY_PERCENT 5

/* A compressible page is 64 such lines; they differ in the line number only. */
#define LINE_TEMPLATE "memhog: page ........ gen ........ key ................ line ..\n"
#define LINE_BYTES 64
#define LINE_PAGE_AT 13
#define LINE_GEN_AT 26
#define LINE_KEY_AT 39
#define LINE_NUM_AT 61
_Static_assert(sizeof(LINE_TEMPLATE) == LINE_BYTES + 1, "line template is not 64 bytes");

enum kind { KIND_RANDOM, KIND_COMPRESSIBLE };

static const char *const kind_names[] = {"random", "compressible"};

struct region {
  enum kind kind;
  uint64_t seed;
  size_t npages;
  uint64_t *mem;
  uint32_t *gen; /* generation of each page; checkpointed along with mem */
};

/* Counted by the handlers, acted on by the main loop. */
static volatile sig_atomic_t usr1_seen, usr2_seen;

static void on_signal(int sig) {
  if (sig == SIGUSR1)
    usr1_seen++;
  else
    usr2_seen++;
}

static void put_hex(char *dst, uint64_t v, int digits) {
  for (int i = digits - 1; i >= 0; i--, v >>= 4) dst[i] = "0123456789abcdef"[v & 15];
}

/* Everything a page holds follows from (seed, page, generation). */
static void make_page(const struct region *r, size_t page, uint64_t *dst) {
  uint32_t gen = r->gen[page];
  uint64_t key = wl_splitmix64(r->seed ^ wl_splitmix64(((uint64_t)gen << 40) ^ page));
  char line[LINE_BYTES], *out = (char *)dst;

  if (r->kind == KIND_RANDOM) {
    wl_fill(dst, PAGE_WORDS, key);
    return;
  }
  memcpy(line, LINE_TEMPLATE, LINE_BYTES);
  put_hex(line + LINE_PAGE_AT, page, 8);
  put_hex(line + LINE_GEN_AT, gen, 8);
  put_hex(line + LINE_KEY_AT, key, 16);
  for (size_t l = 0; l < PAGE_BYTES / LINE_BYTES; l++) {
    put_hex(line + LINE_NUM_AT, l, 2);
    memcpy(out + l * LINE_BYTES, line, LINE_BYTES);
  }
}

static int page_ok(const struct region *r, size_t page) {
  uint64_t want[PAGE_WORDS];

  make_page(r, page, want);
  return memcmp(r->mem + page * PAGE_WORDS, want, PAGE_BYTES) == 0;
}

/* Four independent chains, so hashing keeps up with reading. */
static uint64_t page_hash(const uint64_t *p) {
  uint64_t a = 1, b = 2, c = 3, d = 4;

  for (size_t i = 0; i < PAGE_WORDS; i += 4) {
    a = wl_checksum_step(a, p[i]);
    b = wl_checksum_step(b, p[i + 1]);
    c = wl_checksum_step(c, p[i + 2]);
    d = wl_checksum_step(d, p[i + 3]);
  }
  return wl_checksum_step(wl_checksum_step(wl_checksum_step(a, b), c), d);
}

/* Returns the first page that differs from what it should hold, or npages. */
static size_t verify(const struct region *r, uint64_t *digest) {
  size_t bad = r->npages;
  uint64_t h = 0;

  for (size_t p = 0; p < r->npages; p++) {
    if (bad == r->npages && !page_ok(r, p)) bad = p;
    h = wl_checksum_step(h, page_hash(r->mem + p * PAGE_WORDS));
  }
  *digest = h;
  return bad;
}

/* The first corruption found stays in status=: memory does not mend itself. */
static void mark_corrupt(char *status, size_t size, size_t page) {
  if (strcmp(status, "ok") != 0) return;
  snprintf(status, size, "corrupt page %zu", page);
  fprintf(stderr, "memhog: corrupt page %zu\n", page);
}

/* Generation g rewrites DIRTY_PERCENT of the pages, distinct ones, at indices drawn from g. */
static size_t dirty(struct region *r, uint32_t g) {
  size_t want = r->npages * DIRTY_PERCENT / 100, done = 0;
  uint64_t gseed = wl_splitmix64(r->seed ^ (0xd1b54a32d192ed03ULL * g));

  if (want == 0) want = 1;
  for (uint64_t k = 0; done < want; k++) {
    size_t p = (size_t)(wl_pattern(k, gseed) % r->npages);

    if (r->gen[p] == g) continue;
    r->gen[p] = g;
    make_page(r, p, r->mem + p * PAGE_WORDS);
    done++;
  }
  return done;
}

int main(int argc, char **argv) {
  struct wl_state s;
  struct region r;
  struct sigaction sa;
  unsigned long mib;
  size_t bytes, dirty_pages = 0;
  uint32_t dirtied = 0;
  unsigned verified = 0, usr1_done = 0, usr2_done = 0;
  uint64_t t0, fill_ms, verify_ms = 0, digest = 0;
  char status[64] = "ok", last[64] = "";

  if (argc != 4) {
    fprintf(stderr, "usage: %s STATE MIB random|compressible\n", argv[0]);
    return 2;
  }
  wl_init(&s, "memhog", argv[1]);
  mib = wl_parse_ulong(s.name, "MIB", argv[2], 1, 1UL << 20);
  if (strcmp(argv[3], "random") == 0) {
    r.kind = KIND_RANDOM;
  } else if (strcmp(argv[3], "compressible") == 0) {
    r.kind = KIND_COMPRESSIBLE;
  } else {
    fprintf(stderr, "memhog: bad KIND '%s' (want random or compressible)\n", argv[3]);
    return 2;
  }

  /* Before the first state file: a test may signal as soon as it sees one. */
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGUSR1, &sa, NULL);
  sigaction(SIGUSR2, &sa, NULL);

  r.npages = mib * (1024 * 1024 / PAGE_BYTES);
  bytes = r.npages * PAGE_BYTES;
  t0 = wl_now_ns(CLOCK_MONOTONIC);
  r.mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  r.gen = calloc(r.npages, sizeof(*r.gen));
  if (r.mem == MAP_FAILED || !r.gen) {
    fprintf(stderr, "memhog: allocating %lu MiB: %s\n", mib, strerror(errno));
    return 1;
  }
  /*
   * Faulting in 4 KiB pages one by one dominates the fill (several seconds per GiB
   * in a VM); huge pages, where the kernel allows them, and one bulk populate avoid
   * that. What a checkpoint holds is the same: CRIU dumps and the store chunks 4 KiB pages.
   */
  madvise(r.mem, bytes, MADV_HUGEPAGE);
#ifdef MADV_POPULATE_WRITE
  madvise(r.mem, bytes, MADV_POPULATE_WRITE); /* plain faults below if unsupported */
#endif
  /* Tied to `started`, so a restore into a different run's image is caught. */
  r.seed = wl_splitmix64(s.started);
  for (size_t p = 0; p < r.npages; p++) make_page(&r, p, r.mem + p * PAGE_WORDS);
  fill_ms = (wl_now_ns(CLOCK_MONOTONIC) - t0) / 1000000;

  wl_announce(&s, "pid=%ld mib=%lu kind=%s fill_ms=%" PRIu64, (long)getpid(), mib, kind_names[r.kind], fill_ms);
  for (;;) {
    sig_atomic_t usr1 = usr1_seen, usr2 = usr2_seen;

    /*
     * One generation per SIGUSR1 received; the kernel merges a SIGUSR1 sent while
     * another is still pending, so a test waits for dirtied= to move before the next.
     */
    for (; usr1_done != (unsigned)usr1; usr1_done++) dirty_pages = dirty(&r, ++dirtied);
    /* Several SIGUSR2 before we get here ask for the same thing: one verification. */
    if (usr2_done != (unsigned)usr2) {
      uint64_t v0 = wl_now_ns(CLOCK_MONOTONIC);
      size_t bad = verify(&r, &digest);

      verify_ms = (wl_now_ns(CLOCK_MONOTONIC) - v0) / 1000000;
      usr2_done = (unsigned)usr2;
      verified++;
      if (bad == r.npages)
        s.checks++;
      else
        mark_corrupt(status, sizeof(status), bad);
    }
    /* Cheap rolling check between requested verifications, one page per tick. */
    size_t page = (size_t)(s.count % r.npages);

    if (!page_ok(&r, page)) mark_corrupt(status, sizeof(status), page);

    if (verified) snprintf(last, sizeof(last), "digest=%016" PRIx64 "\nverify_ms=%" PRIu64 "\n", digest, verify_ms);
    wl_set_extra(
        &s, "mib=%lu\nkind=%s\npages=%zu\ndirtied=%" PRIu32 "\ndirty_pages=%zu\nverified=%u\nfill_ms=%" PRIu64 "\n%s",
        mib, kind_names[r.kind], r.npages, dirtied, dirty_pages, verified, fill_ms, last);
    wl_write_raw(&s, status, NULL);
    wl_sleep_ns(WL_TICK_NS);
    s.count++;
  }
}
