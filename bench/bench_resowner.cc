// bench_resowner: Remember+Forget of N resources in grove's resource owner
// beside std::unordered_set and std::vector, with Google Benchmark's own
// command line (--benchmark_filter, --benchmark_format=json,
// --benchmark_repetitions, ...).
#include <benchmark/benchmark.h>

#include "resowner_workloads.h"

int main(int argc, char** argv) {
  grove::bench::RegisterResownerBenchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
