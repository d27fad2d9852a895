// A reporter that forwards to another with the suffixes Google Benchmark
// appends to a run's name dropped: "/manual_time" or "/real_time" (a
// benchmark timed by hand or in wall time) and "/iterations:N" (a fixed
// iteration count). BENCH.md names benchmarks "W6_shared/dsa/P:2",
// "L1_launch/pool/N:2", "SCAN/participants:2", so that scripts can pair
// them with their peers; the console and --benchmark_out keep those names.
// Filters (--benchmark_filter) still see the suffixes.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

// Google Benchmark's parsed flags (exported by libbenchmark, not declared in
// its header).
namespace benchmark {
extern std::string FLAGS_benchmark_format;
extern std::string FLAGS_benchmark_out;
extern std::string FLAGS_benchmark_out_format;
}  // namespace benchmark

namespace grove::bench {

class PlainNameReporter : public benchmark::BenchmarkReporter {
 public:
  /// `inner` is not owned. It writes to this reporter's streams (Google
  /// Benchmark sets them on this one, e.g. to the --benchmark_out file).
  explicit PlainNameReporter(benchmark::BenchmarkReporter* inner) : inner_(inner) {}

  bool ReportContext(const Context& context) override {
    inner_->SetOutputStream(&GetOutputStream());
    inner_->SetErrorStream(&GetErrorStream());
    return inner_->ReportContext(context);
  }

  void ReportRuns(const std::vector<Run>& runs) override {
    std::vector<Run> renamed = runs;
    for (Run& run : renamed) {
      run.run_name.time_type.clear();
      run.run_name.iterations.clear();
    }
    inner_->ReportRuns(renamed);
  }

  void Finalize() override { inner_->Finalize(); }

 private:
  benchmark::BenchmarkReporter* inner_;
};

/// Runs the registered benchmarks with plain names, on `display` and, with
/// --benchmark_out, in that file (Google Benchmark opens it). Returns false,
/// having said why on stderr, for an output format other than json or
/// console (csv is deprecated by Google Benchmark).
inline bool RunSpecifiedBenchmarksWithPlainNames(benchmark::BenchmarkReporter* display, const char* program) {
  PlainNameReporter plain_display(display);
  std::unique_ptr<benchmark::BenchmarkReporter> file;
  std::unique_ptr<PlainNameReporter> plain_file;
  if (!benchmark::FLAGS_benchmark_out.empty()) {
    const std::string& format = benchmark::FLAGS_benchmark_out_format;
    if (format == "json") {
      file = std::make_unique<benchmark::JSONReporter>();
    } else if (format == "console") {
      file = std::make_unique<benchmark::ConsoleReporter>(benchmark::ConsoleReporter::OO_None);
    } else {
      std::fprintf(stderr, "%s: --benchmark_out_format must be json or console, not '%s'\n", program, format.c_str());
      return false;
    }
    plain_file = std::make_unique<PlainNameReporter>(file.get());
  }
  benchmark::RunSpecifiedBenchmarks(&plain_display, plain_file.get());
  return true;
}

}  // namespace grove::bench
