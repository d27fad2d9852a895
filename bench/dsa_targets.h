// The DSA issue's performance targets, read by `grove bench dsa`.
#pragma once

#include <array>
#include <cstddef>
#include <string_view>

#include "targets.h"

namespace grove::bench {

/// W1, W2, W4, W5: the DSA's median ns/item as a ratio to glibc malloc's in
/// the same run, at most this much.
inline constexpr std::array<MallocRatioTarget, 4> kDsaMallocRatioTargets = {{
    {"W1_pair64", "dsa", 2.0},
    {"W2_batch512", "dsa", 0.5},
    {"W4_fifo", "dsa", 1.3},
    {"W5_slab96", "dsa", 1.2},
}};

/// W6 shared: at `processes`, the DSA's Mops/s is at least `min_vs_boost`
/// times Boost.Interprocess's and at least `min_vs_one_process` times the
/// DSA's own at P = 1 (it scales), both from the same run.
struct SharedScalingTarget {
  std::string_view workload;
  int processes;
  double min_vs_boost;
  double min_vs_one_process;
};
inline constexpr SharedScalingTarget kDsaSharedTarget = {"W6_shared", 2, 20.0, 1.5};

/// All of the DSA targets: the ratios above and W6's two.
inline constexpr std::size_t kDsaTargetCount = kDsaMallocRatioTargets.size() + 2;

inline bool IsDsaImplementation(std::string_view implementation) { return implementation == "dsa"; }

}  // namespace grove::bench
