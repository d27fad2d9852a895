// The allocator workloads of ../shared/BENCH.md: their inputs and their
// Google Benchmark registrations.
//
// The input generators are inline so that tests can check the BENCH.md
// fingerprints without linking Google Benchmark or TBB. Each generator starts
// its own SplitMix64 seeded 42, as BENCH.md requires: changing the order in
// which workloads are built must not change any workload's input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace grove::bench {

/// splitmix64 exactly as BENCH.md (all arithmetic mod 2^64).
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

 private:
  uint64_t state_;
};

inline constexpr uint64_t kWorkloadSeed = 42;
inline constexpr std::size_t kBatchCount = 10000;     ///< W2/W3 chunks per round
inline constexpr std::size_t kFifoRingSize = 4096;    ///< W4 ring entries
inline constexpr std::size_t kFifoLive = 1000;        ///< W4 live chunks
inline constexpr std::size_t kSlabRingSize = 65536;   ///< W5 ring entries
inline constexpr std::size_t kSlabSlots = 10000;      ///< W5 slots
inline constexpr std::size_t kSharedRingSize = 65536; ///< W6 ring entries

namespace detail {

inline std::vector<uint32_t> DrawBatchSizes(SplitMix64& rng) {
  std::vector<uint32_t> sizes(kBatchCount);
  for (auto& size : sizes) size = static_cast<uint32_t>(8 + rng.next() % 505);
  return sizes;
}

}  // namespace detail

/// W2/W3 sizes: 8 + next() % 505, 10,000 of them.
inline std::vector<uint32_t> W2Sizes() {
  SplitMix64 rng(kWorkloadSeed);
  return detail::DrawBatchSizes(rng);
}

/// W2 free order: Fisher–Yates on 0..9999, drawn after the sizes from the
/// same generator (so the sizes are drawn again here to advance it).
inline std::vector<uint32_t> W2Perm() {
  SplitMix64 rng(kWorkloadSeed);
  (void)detail::DrawBatchSizes(rng);
  std::vector<uint32_t> perm(kBatchCount);
  for (std::size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<uint32_t>(i);
  for (std::size_t i = perm.size() - 1; i >= 1; --i) {
    const std::size_t j = rng.next() % (i + 1);
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

/// W3 uses W2's sizes.
inline std::vector<uint32_t> W3Sizes() { return W2Sizes(); }

/// W4 sizes: 16 + next() % 241, 4,096 entries.
inline std::vector<uint32_t> W4Ring() {
  SplitMix64 rng(kWorkloadSeed);
  std::vector<uint32_t> ring(kFifoRingSize);
  for (auto& size : ring) size = static_cast<uint32_t>(16 + rng.next() % 241);
  return ring;
}

/// W5 slot numbers: next() % 10000, 65,536 entries.
inline std::vector<uint32_t> W5Ring() {
  SplitMix64 rng(kWorkloadSeed);
  std::vector<uint32_t> ring(kSlabRingSize);
  for (auto& slot : ring) slot = static_cast<uint32_t>(rng.next() % kSlabSlots);
  return ring;
}

/// W6 (slot, size) pairs, slot drawn first: next() % 1000, 16 + next() % 1009.
inline std::vector<std::pair<uint32_t, uint32_t>> W6Ring() {
  SplitMix64 rng(kWorkloadSeed);
  std::vector<std::pair<uint32_t, uint32_t>> ring(kSharedRingSize);
  for (auto& [slot, size] : ring) {
    slot = static_cast<uint32_t>(rng.next() % 1000);
    size = static_cast<uint32_t>(16 + rng.next() % 1009);
  }
  return ring;
}

/// Registers W1–W5 for grove's contexts (aset, generation, slab, bump) and
/// the peers (malloc, tbb, pmr_pool, pmr_mono) with Google Benchmark, named
/// "<workload>/<implementation>", e.g. "W1_pair64/aset". Call once, before
/// benchmark::RunSpecifiedBenchmarks.
void RegisterMemoryBenchmarks();

/// Whether grove was built with memory checking (sentinels, clobbering):
/// figures from such a build say nothing about release performance.
bool GroveMemoryCheckingBuild();

}  // namespace grove::bench
