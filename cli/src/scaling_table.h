// The W6 part of `grove bench dsa`: throughput of P processes sharing one
// allocator, per process count, with the scaling targets.
#pragma once

#include <cstdio>
#include <vector>

#include "dsa_targets.h"
#include "ratio_table.h"
#include "recording_reporter.h"

namespace grove::cli {

/// Prints, for `target.workload` ("W6_shared/<impl>/P:<n>" results), one
/// row per process count: Mops/s of grove's implementation `grove` and of
/// `peer` and `other_peer`, grove's ratio to `peer` and to its own figure at
/// P:1, and at P = target.processes the two targets with pass/MISS. Returns
/// how those targets fared (nothing printed, empty tally, if no result
/// belongs to the workload).
TargetTally PrintScalingTable(const std::vector<bench::BenchResult>& results,
                              const bench::SharedScalingTarget& target, const char* grove, const char* peer,
                              const char* other_peer, std::FILE* out);

}  // namespace grove::cli
