// SPDX-License-Identifier: MIT
// counter STATE MIB: patterned anonymous memory that must survive restore intact.
#include <sys/mman.h>

#include "state.h"

#define PAGE_WORDS (4096 / sizeof(uint64_t))

int main(int argc, char **argv) {
  struct wl_state s;
  unsigned long mib;
  size_t nwords, npages;
  uint64_t *mem, seed, checksum = 0;

  if (argc != 3) {
    fprintf(stderr, "usage: %s STATE MIB\n", argv[0]);
    return 2;
  }
  wl_init(&s, "counter", argv[1]);
  mib = wl_parse_ulong(s.name, "MIB", argv[2], 1, 1UL << 20);

  nwords = mib * (1024 * 1024 / sizeof(uint64_t));
  npages = nwords / PAGE_WORDS;
  mem = mmap(NULL, nwords * sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    fprintf(stderr, "counter: mmap %lu MiB: %s\n", mib, strerror(errno));
    return 1;
  }
  /* Tied to `started`, so a restore into a different run's image is caught. */
  seed = wl_splitmix64(s.started);
  for (size_t i = 0; i < nwords; i++) {
    mem[i] = wl_pattern(i, seed);
    checksum = wl_checksum_step(checksum, mem[i]);
  }
  wl_set_extra(&s, "mib=%lu\nchecksum=%016" PRIx64 "\n", mib, checksum);
  wl_announce(&s, "pid=%ld mib=%lu", (long)getpid(), mib);
  wl_write_ok(&s);

  for (;;) {
    wl_sleep_ns(WL_TICK_NS);
    s.count++;

    size_t page = (size_t)(s.count % npages), from = page * PAGE_WORDS;
    size_t bad = wl_check(mem, from, from + PAGE_WORDS, seed);

    if (bad != from + PAGE_WORDS)
      wl_fail(&s, "word %zu: expected %016" PRIx64 " got %016" PRIx64, bad, wl_pattern(bad, seed), mem[bad]);

    if (s.count % 10 == 0) {
      uint64_t sum = 0;

      for (size_t i = 0; i < nwords; i++) {
        uint64_t want = wl_pattern(i, seed);

        if (mem[i] != want) wl_fail(&s, "word %zu: expected %016" PRIx64 " got %016" PRIx64, i, want, mem[i]);
        sum = wl_checksum_step(sum, mem[i]);
      }
      if (sum != checksum) wl_fail(&s, "checksum: expected %016" PRIx64 " got %016" PRIx64, checksum, sum);
      s.checks++;
    }
    wl_write_ok(&s);
  }
}
