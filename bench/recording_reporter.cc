#include "recording_reporter.h"

#include <algorithm>

namespace grove::bench {

namespace {

// Items per iteration recovered from the rate: rate * cpu seconds / iterations.
// Dividing the wall-clock time per iteration by it gives wall ns per item.
double RealNsPerItem(const benchmark::BenchmarkReporter::Run& run) {
  const auto it = run.counters.find("items_per_second");
  if (it == run.counters.end() || it->second.value <= 0 || run.iterations <= 0) return 0;
  const double items = it->second.value * run.cpu_accumulated_time;
  if (items <= 0) return 0;
  return run.real_accumulated_time * 1e9 / items;
}

}  // namespace

// items_per_second is a rate over CPU time (Google Benchmark's default), so
// 1e9 / rate is CPU nanoseconds per item.
double NsPerItem(const benchmark::BenchmarkReporter::Run& run) {
  const auto it = run.counters.find("items_per_second");
  if (it == run.counters.end() || it->second.value <= 0) return 0;
  return 1e9 / it->second.value;
}

double Median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const std::size_t mid = values.size() / 2;
  return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
}

bool RecordingReporter::ReportContext(const Context& context) {
  return display_ == nullptr || display_->ReportContext(context);
}

std::size_t RecordingReporter::IndexFor(const std::string& name) {
  for (std::size_t i = 0; i < results_.size(); ++i) {
    if (results_[i].name == name) return i;
  }
  BenchResult& result = results_.emplace_back();
  result.name = name;
  const auto slash = name.find('/');
  result.workload = name.substr(0, slash);
  result.implementation = slash == std::string::npos ? std::string() : name.substr(slash + 1);
  return results_.size() - 1;
}

void RecordingReporter::ReportRuns(const std::vector<Run>& runs) {
  if (display_ != nullptr) display_->ReportRuns(runs);
  std::vector<std::size_t> touched;
  for (const Run& run : runs) {
    const std::size_t index = IndexFor(run.run_name.str());
    if (std::find(touched.begin(), touched.end(), index) == touched.end()) touched.push_back(index);
    BenchResult& result = results_[index];
    if (run.error_occurred) {
      result.error = true;
      result.error_message = run.error_message;
    } else if (run.run_type == Run::RT_Aggregate) {
      if (run.aggregate_name == "median") result.aggregate_ns_per_item_median = NsPerItem(run);
    } else {
      result.ns_per_item.push_back(NsPerItem(run));
      result.real_ns_per_item.push_back(RealNsPerItem(run));
      result.iterations = run.iterations;
    }
  }
  for (const std::size_t index : touched) {
    BenchResult& result = results_[index];
    // Our own median rather than Google Benchmark's aggregate, so that a
    // single repetition (which gets no aggregates) still has one.
    if (!result.ns_per_item.empty()) {
      const auto [min, max] = std::minmax_element(result.ns_per_item.begin(), result.ns_per_item.end());
      result.ns_per_item_median = Median(result.ns_per_item);
      result.ns_per_item_min = *min;
      result.ns_per_item_max = *max;
      result.real_ns_per_item_median = Median(result.real_ns_per_item);
    }
  }
}

void RecordingReporter::Finalize() {
  if (display_ != nullptr) display_->Finalize();
}

}  // namespace grove::bench
