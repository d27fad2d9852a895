// The dynamic shared area's benchmarks (../shared/BENCH.md): W1, W2, W4, W5
// in one process and W6 shared by P forked processes, against the DSA
// (dsa_allocate, a byte written through dsa_get_address, dsa_free), glibc
// malloc and Boost.Interprocess managed_shared_memory. The inputs come from
// workloads.h.
#pragma once

#include <array>
#include <cstddef>

namespace grove::bench {

/// W6: operations per worker process, and each worker's slots.
inline constexpr std::size_t kSharedOpsPerWorker = 2000000;
inline constexpr std::size_t kSharedSlots = 1000;
/// W6: the Boost segment BENCH.md prescribes.
inline constexpr std::size_t kSharedBoostSegmentSize = std::size_t{512} << 20;
/// W6: the process counts registered (P:1, P:2, P:4).
inline constexpr std::array<int, 3> kSharedProcessCounts = {1, 2, 4};

/// Registers, grouped by workload, "W1_pair64/dsa", "W1_pair64/malloc",
/// "W1_pair64/boost_ipc", the same for W2_batch512, W4_fifo and W5_slab96,
/// then "W6_shared/<dsa|boost_ipc|malloc>/P:<n>" for each process count.
/// Call once, before benchmark::RunSpecifiedBenchmarks (a second call does
/// nothing).
void RegisterDsaBenchmarks();

}  // namespace grove::bench
