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

// Google Benchmark's parsed --benchmark_out and --benchmark_out_format
// (exported by libbenchmark, not declared in its header).
namespace benchmark {
extern std::string FLAGS_benchmark_out;
extern std::string FLAGS_benchmark_out_format;
}  // namespace benchmark

int main(int argc, char** argv) {
  grove::bench::RegisterDsaBenchmarks();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  // W6 is timed by hand; keep BENCH.md's names (no "/manual_time") on the
  // console and in --benchmark_out. Google Benchmark still opens the file.
  std::unique_ptr<benchmark::BenchmarkReporter> display(benchmark::CreateDefaultDisplayReporter());
  grove::bench::PlainNameReporter plain_display(display.get());
  std::unique_ptr<benchmark::BenchmarkReporter> file;
  std::unique_ptr<grove::bench::PlainNameReporter> plain_file;
  if (!benchmark::FLAGS_benchmark_out.empty()) {
    const std::string& format = benchmark::FLAGS_benchmark_out_format;
    if (format == "json") {
      file = std::make_unique<benchmark::JSONReporter>();
    } else if (format == "console") {
      file = std::make_unique<benchmark::ConsoleReporter>(benchmark::ConsoleReporter::OO_None);
    } else {  // csv: deprecated by Google Benchmark
      std::fprintf(stderr, "bench_dsa: --benchmark_out_format must be json or console, not '%s'\n", format.c_str());
      return 1;
    }
    plain_file = std::make_unique<grove::bench::PlainNameReporter>(file.get());
  }
  benchmark::RunSpecifiedBenchmarks(&plain_display, plain_file.get());
  benchmark::Shutdown();
  return 0;
}
