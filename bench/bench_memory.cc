// bench_memory: the W1–W5 allocator benchmarks with Google Benchmark's own
// command line (--benchmark_filter, --benchmark_format=json,
// --benchmark_repetitions, ...). `grove bench memory` runs the same
// benchmarks and adds the ratio table.
#include <benchmark/benchmark.h>

#include "workloads.h"

int main(int argc, char** argv) {
  grove::bench::RegisterMemoryBenchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
