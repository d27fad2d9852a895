// A Google Benchmark reporter that keeps the results for the caller (to
// compute ratios in-process) while forwarding everything to another
// reporter for display. Independent of the display format.
#pragma once

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace grove::bench {

/// One benchmark (all its repetitions), e.g. "W1_pair64/aset".
struct BenchResult {
  std::string name;            ///< "<workload>/<implementation>[/...]"
  std::string workload;        ///< text before the first '/'
  std::string implementation;  ///< text after it
  /// Per repetition: nanoseconds per item from items_per_second, i.e. CPU
  /// time per item, the figure scripts read from the JSON output.
  std::vector<double> ns_per_item;
  /// Per repetition: wall-clock nanoseconds per item.
  std::vector<double> real_ns_per_item;
  double ns_per_item_median = 0;
  double ns_per_item_min = 0;
  double ns_per_item_max = 0;
  double real_ns_per_item_median = 0;
  /// Google Benchmark's own "median" aggregate (present with 2+
  /// repetitions), as ns per item; 0 if absent.
  double aggregate_ns_per_item_median = 0;
  int64_t iterations = 0;  ///< of the last repetition
  bool error = false;
  std::string error_message;
};

/// CPU nanoseconds per item of one run: 1e9 / its items_per_second counter
/// (0 if the benchmark set no items).
double NsPerItem(const benchmark::BenchmarkReporter::Run& run);

/// Median of `values` (mean of the middle two for an even count); 0 if empty.
double Median(std::vector<double> values);

class RecordingReporter : public benchmark::BenchmarkReporter {
 public:
  /// `display` may be null (record only); it is not owned.
  explicit RecordingReporter(benchmark::BenchmarkReporter* display) : display_(display) {}

  bool ReportContext(const Context& context) override;
  void ReportRuns(const std::vector<Run>& runs) override;
  void Finalize() override;

  /// In the order the benchmarks ran.
  const std::vector<BenchResult>& results() const { return results_; }

 private:
  std::size_t IndexFor(const std::string& name);

  benchmark::BenchmarkReporter* display_;
  std::vector<BenchResult> results_;
};

}  // namespace grove::bench
