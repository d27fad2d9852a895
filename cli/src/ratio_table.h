// The table `grove bench memory` ends with: each grove allocator's median
// ns/item, its ratio to malloc and to tbb from the same run, and the issue's
// target with pass/miss; the peers' figures below for reference.
#pragma once

#include <cstdio>
#include <vector>

#include "recording_reporter.h"

namespace grove::cli {

struct TargetTally {
  int pass = 0;
  int miss = 0;
  int unmeasured = 0;  ///< a target whose benchmark or malloc baseline did not run
};

/// Prints the table to `out` and returns how the targets fared.
TargetTally PrintRatioTable(const std::vector<bench::BenchResult>& results, std::FILE* out);

}  // namespace grove::cli
