// The table `grove bench memory` and `grove bench dsa` end with: each grove
// implementation's median ns/item, its ratio to two peers from the same run,
// and the target (on the ratio to the first peer) with pass/miss;
// the peers' figures below for reference.
#pragma once

#include <cstdio>
#include <span>
#include <string_view>
#include <vector>

#include "recording_reporter.h"
#include "targets.h"

namespace grove::cli {

struct TargetTally {
  int pass = 0;
  int miss = 0;
  int unmeasured = 0;  ///< a target whose benchmark or baseline did not run

  TargetTally& operator+=(const TargetTally& other) {
    pass += other.pass;
    miss += other.miss;
    unmeasured += other.unmeasured;
    return *this;
  }
};

/// What a ratio table compares. The defaults are `grove bench memory`'s.
struct RatioTableSpec {
  /// The two peers with a ratio column; targets bound the ratio to `baseline`.
  std::string_view baseline = "malloc";
  std::string_view other_peer = "tbb";
  /// The targets, as ratios of medians to `baseline`: at most max_ratio.
  std::span<const bench::MallocRatioTarget> targets = bench::kMallocRatioTargets;
  /// grove's implementations (listed first in each workload).
  bool (*is_grove)(std::string_view implementation) = bench::IsGroveImplementation;
};

/// Prints the table (`grove bench memory`'s) to `out`, then the summary of
/// the targets and any errors, and returns how the targets fared.
TargetTally PrintRatioTable(const std::vector<bench::BenchResult>& results, std::FILE* out);

/// The table alone, as `spec` says; the caller ends with PrintTargetSummary.
TargetTally PrintRatioRows(const std::vector<bench::BenchResult>& results, const RatioTableSpec& spec,
                           std::FILE* out);

/// "targets: P pass, M miss ..." (out of `targets_total` the issue sets)
/// and a line per benchmark that raised an error.
void PrintTargetSummary(const TargetTally& tally, std::size_t targets_total,
                        const std::vector<bench::BenchResult>& results, std::FILE* out);

}  // namespace grove::cli
