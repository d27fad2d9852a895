// bench_dsa: the dynamic shared area's benchmarks (W1, W2, W4, W5, W6 of
// BENCH.md) beside glibc malloc and Boost.Interprocess, with Google
// Benchmark's own command line. `grove bench dsa` runs the same benchmarks
// and adds the ratio table.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <memory>
#include <string>

#include "dsa_workloads.h"
#include "plain_name_reporter.h"


int main(int argc, char** argv) {
  grove::bench::RegisterDsaBenchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  // W6 is timed by hand; keep BENCH.md's names (no "/manual_time") on the
  // console and in --benchmark_out.
  std::unique_ptr<benchmark::BenchmarkReporter> display(benchmark::CreateDefaultDisplayReporter());
  if (!grove::bench::RunSpecifiedBenchmarksWithPlainNames(display.get(), "bench_dsa")) return 1;
  benchmark::Shutdown();
  return 0;
}
