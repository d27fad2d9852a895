// The resource owner benchmark (RO_lifo, RO_random): its inputs and its
// Google Benchmark registrations.
//
// One iteration remembers N distinct resources, then forgets all of them,
// in LIFO order (reverse of insertion) or in a fixed random order. grove's
// resource owner (Enlarge + Remember, then Forget) runs beside the same
// bookkeeping in a std::unordered_set<Datum> and in a std::vector<Datum>.
//
// The input generators are inline so that tests can check them without
// linking Google Benchmark or grove's resowner.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "workloads.h"

namespace grove::bench {

/// The resource counts N each order is run with.
inline constexpr std::array<std::size_t, 4> kResownerCounts = {1, 16, 1000, 100000};

/// LIFO forget order: indexes n-1, n-2, ..., 0.
inline std::vector<uint32_t> ResownerLifoOrder(std::size_t n) {
  std::vector<uint32_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = static_cast<uint32_t>(n - 1 - i);
  return order;
}

/// Random forget order: Fisher–Yates on 0..n-1 from its own
/// SplitMix64(kWorkloadSeed), as W2Perm draws its permutation. Depends only
/// on n.
inline std::vector<uint32_t> ResownerRandomOrder(std::size_t n) {
  std::vector<uint32_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = static_cast<uint32_t>(i);
  SplitMix64 rng(kWorkloadSeed);
  for (std::size_t i = n; i-- > 1;) {
    const std::size_t j = rng.next() % (i + 1);
    std::swap(order[i], order[j]);
  }
  return order;
}

/// Registers RO_lifo and RO_random × {resowner, unordered_set, vector} ×
/// N ∈ kResownerCounts with Google Benchmark, named
/// "RO_<order>/<implementation>/N:<n>", e.g. "RO_lifo/resowner/N:16".
/// Call once, before benchmark::RunSpecifiedBenchmarks; a second call does
/// nothing.
void RegisterResownerBenchmarks();

}  // namespace grove::bench
