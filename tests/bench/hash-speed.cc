// SPDX-License-Identifier: MIT
// Benchmark (a report, not a test): hash a 256 MiB random buffer as 4 KiB chunks, one digest
// per chunk as the deduplicating store does, and print MiB/s (median of 5 runs) as a markdown
// table on stdout. Before timing, implementations of the same function must agree on chunk 0.
//   mkdir -p build/bench && g++ -std=c++20 -O2 -Wall -Wextra tests/bench/hash-speed.cc
//     -o build/bench/hash-speed $(pkg-config --cflags --libs libcrypto libsodium) -lb2 -lxxhash
#include <blake2.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sodium.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr size_t kBufferBytes = size_t{256} << 20;
constexpr size_t kChunkBytes = 4096;
constexpr int kRuns = 5;

/// Hashes one kChunkBytes chunk into out (64 bytes of room).
using ChunkFn = std::function<void(const uint8_t* chunk, uint8_t* out)>;

struct Candidate {
  std::string name;
  int bits;
  bool cryptographic;
  int same_as;                    // rows with the same non-zero value compute the same function
  std::function<ChunkFn()> make;  // once per thread, so per-thread state is not shared
  double mib_s = 0;
};

bool uses_openmp(const Candidate& c) { return c.name.find("OpenMP") != std::string::npos; }

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "hash-speed: error: %s\n", what.c_str());
  std::exit(1);
}

const EVP_MD* fetch(const char* name) {
  EVP_MD* md = EVP_MD_fetch(nullptr, name, nullptr);  // kept for the life of the program
  if (!md) fail(std::string("fetching digest '") + name + "'");
  return md;
}

// One context per thread, re-initialised per chunk with the already fetched EVP_MD: no
// context allocation and no name lookup per chunk.
std::function<ChunkFn()> evp_reused(const EVP_MD* md) {
  return [md] {
    std::shared_ptr<EVP_MD_CTX> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    return [md, ctx](const uint8_t* in, uint8_t* out) {
      if (!EVP_DigestInit_ex2(ctx.get(), md, nullptr) || !EVP_DigestUpdate(ctx.get(), in, kChunkBytes) ||
          !EVP_DigestFinal_ex(ctx.get(), out, nullptr))
        fail("EVP digest of a chunk");
    };
  };
}

// EVP_Digest allocates, initialises and frees a context on every call.
std::function<ChunkFn()> evp_digest(const EVP_MD* md) {
  return [md] {
    return [md](const uint8_t* in, uint8_t* out) {
      if (!EVP_Digest(in, kChunkBytes, out, nullptr, md, nullptr)) fail("EVP_Digest of a chunk");
    };
  };
}

template <typename F>
std::function<ChunkFn()> stateless(F f) {
  return [f] { return ChunkFn(f); };
}

int busy_runs = 0;  // runs whose wall time exceeded their CPU time: other processes ran

double seconds(const Candidate& c, const std::vector<uint8_t>& buf, unsigned threads) {
  auto work = [&](size_t first, size_t last) {
    ChunkFn fn = c.make();
    uint8_t out[64];
    for (size_t off = first; off < last; off += kChunkBytes) fn(buf.data() + off, out);
  };
  std::clock_t cpu_start = std::clock();
  auto start = std::chrono::steady_clock::now();
  if (threads == 1) {
    work(0, buf.size());
  } else {
    std::vector<std::jthread> pool;
    size_t share = buf.size() / threads;
    for (unsigned t = 0; t < threads; ++t)
      pool.emplace_back(work, t * share, t + 1 == threads ? buf.size() : (t + 1) * share);
  }
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  double cpu = double(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  if (!uses_openmp(c) && wall > 1.1 * cpu / threads) ++busy_runs;
  return wall;
}

// Rounds go through every candidate in turn, so a noisy neighbour or clock drift during one
// round hits all of them alike rather than one whole row.
std::vector<double> median_mib_s(const std::vector<const Candidate*>& cs, const std::vector<uint8_t>& buf,
                                 unsigned threads) {
  std::vector<std::vector<double>> s(cs.size());
  for (int r = 0; r < kRuns; ++r)
    for (size_t i = 0; i < cs.size(); ++i) s[i].push_back(seconds(*cs[i], buf, threads));
  std::vector<double> mib_s;
  for (auto& v : s) {
    std::sort(v.begin(), v.end());
    mib_s.push_back(double(kBufferBytes >> 20) / v[kRuns / 2]);
  }
  return mib_s;
}

void row(const std::string& name, const Candidate& c, double mib_s, double base) {
  std::printf("| %s | %d | %.0f | %.2f | %s |\n", name.c_str(), c.bits, mib_s, mib_s / base,
              c.cryptographic ? "yes" : "no");
}

}  // namespace

int main() {
  if (sodium_init() < 0) fail("initialising libsodium");
  std::vector<uint8_t> buf(kBufferBytes);
  std::mt19937_64 rng(42);
  for (size_t i = 0; i < buf.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(buf.data() + i, &v, 8);
  }

  const EVP_MD* sha256 = fetch("SHA2-256");
  const EVP_MD* b2b = fetch("BLAKE2B-512");
  const EVP_MD* b2s = fetch("BLAKE2S-256");
  std::vector<Candidate> cands = {
      {"OpenSSL EVP SHA-256, reused ctx", 256, true, 1, evp_reused(sha256)},
      {"OpenSSL EVP SHA-256, EVP_Digest", 256, true, 1, evp_digest(sha256)},
      {"OpenSSL SHA256() one-shot", 256, true, 1,
       stateless([](const uint8_t* in, uint8_t* out) { SHA256(in, kChunkBytes, out); })},
      {"OpenSSL EVP SHA-512/256", 256, true, 0, evp_reused(fetch("SHA2-512/256"))},
      {"OpenSSL EVP SHA-512", 512, true, 0, evp_reused(fetch("SHA2-512"))},
      {"OpenSSL EVP SHA3-256", 256, true, 0, evp_reused(fetch("SHA3-256"))},
      {"OpenSSL EVP BLAKE2s-256", 256, true, 2, evp_reused(b2s)},
      {"OpenSSL EVP BLAKE2b-512", 512, true, 3, evp_reused(b2b)},
      {"libb2 blake2s-256", 256, true, 2,
       stateless([](const uint8_t* in, uint8_t* out) { blake2s(out, in, nullptr, 32, kChunkBytes, 0); })},
      {"libb2 blake2b-512", 512, true, 3,
       stateless([](const uint8_t* in, uint8_t* out) { blake2b(out, in, nullptr, 64, kChunkBytes, 0); })},
      {"libb2 blake2b-256", 256, true, 4,
       stateless([](const uint8_t* in, uint8_t* out) { blake2b(out, in, nullptr, 32, kChunkBytes, 0); })},
      {"libb2 blake2sp-256 (OpenMP)", 256, true, 0,
       stateless([](const uint8_t* in, uint8_t* out) { blake2sp(out, in, nullptr, 32, kChunkBytes, 0); })},
      {"libb2 blake2bp-512 (OpenMP)", 512, true, 0,
       stateless([](const uint8_t* in, uint8_t* out) { blake2bp(out, in, nullptr, 64, kChunkBytes, 0); })},
      {"libsodium crypto_generichash BLAKE2b-256", 256, true, 4,
       stateless([](const uint8_t* in, uint8_t* out) { crypto_generichash(out, 32, in, kChunkBytes, nullptr, 0); })},
      {"xxHash XXH3-128 (speed reference)", 128, false, 0, stateless([](const uint8_t* in, uint8_t* out) {
         XXH128_canonicalFromHash(reinterpret_cast<XXH128_canonical_t*>(out), XXH3_128bits(in, kChunkBytes));
       })},
  };

  for (size_t i = 0; i < cands.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (!cands[i].same_as || cands[i].same_as != cands[j].same_as) continue;
      uint8_t a[64], b[64];
      cands[i].make()(buf.data(), a);
      cands[j].make()(buf.data(), b);
      if (std::memcmp(a, b, size_t(cands[i].bits / 8)) != 0)
        fail("'" + cands[i].name + "' and '" + cands[j].name + "' disagree on chunk 0");
    }
  }

  std::fprintf(stderr, "hash-speed: %s, libsodium %s, xxHash %u, %zu MiB in %zu-byte chunks\n",
               OpenSSL_version(OPENSSL_VERSION), sodium_version_string(), XXH_versionNumber(), kBufferBytes >> 20,
               kChunkBytes);
  std::printf("| algorithm | digest bits | MiB/s | vs SHA-256 | cryptographic |\n");
  std::printf("| --- | ---: | ---: | ---: | --- |\n");
  std::vector<const Candidate*> all;
  for (const auto& c : cands) all.push_back(&c);
  std::vector<double> mib_s = median_mib_s(all, buf, 1);
  for (size_t i = 0; i < cands.size(); ++i) cands[i].mib_s = mib_s[i];
  for (const auto& c : cands) row(c.name, c, c.mib_s, cands[0].mib_s);

  // Two threads for the SHA-256 baseline, and for the fastest other cryptographic row that is
  // not itself multi-threaded if it beats the baseline by more than noise.
  const Candidate* base = &cands[0];
  const Candidate* best = base;
  for (const auto& c : cands)
    if (c.cryptographic && c.same_as != base->same_as && !uses_openmp(c) && c.mib_s > 1.1 * best->mib_s) best = &c;
  std::vector<const Candidate*> two = {base};
  if (best != base) two.push_back(best);
  mib_s = median_mib_s(two, buf, 2);
  for (size_t i = 0; i < two.size(); ++i) row(two[i]->name + ", 2 threads", *two[i], mib_s[i], base->mib_s);
  if (busy_runs)
    std::fprintf(stderr,
                 "hash-speed: warning: %d runs lost over 10%% of their time to other "
                 "processes; MiB/s are low\n",
                 busy_runs);
  return 0;
}
