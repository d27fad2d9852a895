#include "scaling_table.h"

#include <algorithm>
#include <string>

namespace grove::cli {

namespace {

using bench::BenchResult;

// "<impl>/P:<n>" -> impl and n; false for other shapes.
bool SplitProcesses(const std::string& implementation, std::string* name, int* processes) {
  const auto at = implementation.rfind("/P:");
  if (at == std::string::npos) return false;
  try {
    *processes = std::stoi(implementation.substr(at + 3));
  } catch (...) {
    return false;
  }
  *name = implementation.substr(0, at);
  return true;
}

// Mops/s from the median ns/item (W6 items are operations of all processes
// over the wall time of the run); 0 if not measured.
double Mops(const BenchResult* result) {
  if (result == nullptr || result->error || result->ns_per_item_median <= 0) return 0;
  return 1e3 / result->ns_per_item_median;
}

const BenchResult* Find(const std::vector<BenchResult>& results, const std::string& workload, const char* name,
                        int processes) {
  const std::string implementation = std::string(name) + "/P:" + std::to_string(processes);
  for (const auto& result : results) {
    if (result.workload == workload && result.implementation == implementation) return &result;
  }
  return nullptr;
}

std::string FormatMops(const BenchResult* result) {
  if (result == nullptr) return "";
  if (result->error) return "error";
  const double mops = Mops(result);
  if (mops <= 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, mops < 10 ? "%.3f" : "%.2f", mops);
  return buf;
}

std::string FormatRatio(double numerator, double denominator) {
  if (numerator <= 0 || denominator <= 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", numerator / denominator);
  return buf;
}

// ">= <bound>x <what>  pass|MISS|?", counted in `tally`.
std::string Verdict(double numerator, double denominator, double bound, const char* what, TargetTally& tally) {
  char buf[96];
  const char* verdict = "?";
  if (numerator <= 0 || denominator <= 0) {
    ++tally.unmeasured;
  } else if (numerator / denominator >= bound) {
    verdict = "pass";
    ++tally.pass;
  } else {
    verdict = "MISS";
    ++tally.miss;
  }
  std::snprintf(buf, sizeof buf, ">= %gx %s  %s", bound, what, verdict);
  return buf;
}

constexpr const char* kRowFormat = "%-12s %-5s %9s %*s %9s %*s %8s  %s\n";

}  // namespace

TargetTally PrintScalingTable(const std::vector<BenchResult>& results, const bench::SharedScalingTarget& target,
                              const char* grove, const char* peer, const char* other_peer, std::FILE* out) {
  TargetTally tally;
  const std::string workload(target.workload);
  std::vector<int> counts;
  std::size_t repetitions = 0;
  for (const auto& result : results) {
    std::string name;
    int processes = 0;
    if (result.workload != workload || !SplitProcesses(result.implementation, &name, &processes)) continue;
    if (std::find(counts.begin(), counts.end(), processes) == counts.end()) counts.push_back(processes);
    repetitions = std::max(repetitions, result.ns_per_item.size());
  }
  if (counts.empty()) return tally;
  std::sort(counts.begin(), counts.end());

  const std::string peer_heading = std::string(peer);
  const std::string ratio_heading = "vs " + std::string(peer);
  const int peer_width = std::max(9, static_cast<int>(peer_heading.size()));
  const int ratio_width = std::max(9, static_cast<int>(ratio_heading.size()));
  std::fprintf(out,
               "\n%s: Mops/s = all processes' operations / wall time from the start to the last worker's end, "
               "median of %zu repetition(s) (higher is better).\n"
               "%s: %s's Mops/s / %s's at the same P; vs P:1: / %s's own at P:1.\n\n",
               workload.c_str(), repetitions, ratio_heading.c_str(), grove, peer, grove);
  std::fprintf(out, kRowFormat, "workload", "P", grove, peer_width, peer_heading.c_str(), other_peer, ratio_width,
               ratio_heading.c_str(), "vs P:1", "target");
  std::fprintf(out, kRowFormat, "------------", "-----", "---------", peer_width,
               std::string(static_cast<std::size_t>(peer_width), '-').c_str(), "---------", ratio_width,
               std::string(static_cast<std::size_t>(ratio_width), '-').c_str(), "--------", "-------------");

  const double grove_one = Mops(Find(results, workload, grove, 1));
  bool first = true;
  for (const int processes : counts) {
    const BenchResult* grove_result = Find(results, workload, grove, processes);
    const BenchResult* peer_result = Find(results, workload, peer, processes);
    const BenchResult* other_result = Find(results, workload, other_peer, processes);
    const double grove_mops = Mops(grove_result);
    const double peer_mops = Mops(peer_result);
    std::string target_text;
    if (processes == target.processes) {
      target_text = Verdict(grove_mops, peer_mops, target.min_vs_boost, peer, tally) + ", " +
                    Verdict(grove_mops, grove_one, target.min_vs_one_process, "P:1", tally);
    }
    const std::string p = "P:" + std::to_string(processes);
    std::fprintf(out, kRowFormat, first ? workload.c_str() : "", p.c_str(), FormatMops(grove_result).c_str(),
                 peer_width, FormatMops(peer_result).c_str(), FormatMops(other_result).c_str(), ratio_width,
                 FormatRatio(grove_mops, peer_mops).c_str(),
                 processes == 1 ? "" : FormatRatio(grove_mops, grove_one).c_str(), target_text.c_str());
    first = false;
  }
  return tally;
}

}  // namespace grove::cli
