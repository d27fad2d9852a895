// A reporter that forwards to another with each run's time-type suffix
// dropped from its name. Google Benchmark appends "/manual_time" to the name
// of a benchmark that uses UseManualTime(); W6 is timed by hand, and BENCH.md
// names it "W6_shared/dsa/P:2" so that scripts can pair it with its peers.
#pragma once

#include <benchmark/benchmark.h>

#include <vector>

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
    for (Run& run : renamed) run.run_name.time_type.clear();
    inner_->ReportRuns(renamed);
  }

  void Finalize() override { inner_->Finalize(); }

 private:
  benchmark::BenchmarkReporter* inner_;
};

}  // namespace grove::bench
