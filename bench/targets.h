// The performance targets: each grove allocator's median ns/item as
// a ratio to glibc malloc's in the same run, at most this much.
#pragma once

#include <array>
#include <optional>
#include <string_view>

namespace grove::bench {

struct MallocRatioTarget {
  std::string_view workload;
  std::string_view implementation;
  double max_ratio;
};

inline constexpr std::array<MallocRatioTarget, 12> kMallocRatioTargets = {{
    {"W1_pair64", "aset", 0.50},
    {"W2_batch512", "aset", 0.25},
    {"W3_arena512", "aset", 0.15},
    {"W4_fifo", "aset", 0.50},
    {"W5_slab96", "aset", 0.75},
    {"W1_pair64", "generation", 0.50},
    {"W2_batch512", "generation", 0.18},
    {"W3_arena512", "generation", 0.15},
    {"W4_fifo", "generation", 0.40},
    {"W1_pair64", "slab", 0.45},
    {"W5_slab96", "slab", 0.50},
    {"W3_arena512", "bump", 0.06},
}};

/// The target for `<workload>/<implementation>`, if the issue sets one.
inline std::optional<double> FindMallocRatioTarget(std::string_view workload, std::string_view implementation) {
  for (const auto& target : kMallocRatioTargets) {
    if (target.workload == workload && target.implementation == implementation) return target.max_ratio;
  }
  return std::nullopt;
}

/// grove's context types, as they appear in benchmark names.
inline bool IsGroveImplementation(std::string_view implementation) {
  return implementation == "aset" || implementation == "generation" || implementation == "slab" ||
         implementation == "bump";
}

}  // namespace grove::bench
