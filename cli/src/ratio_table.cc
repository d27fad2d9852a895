#include "ratio_table.h"

#include <algorithm>
#include <optional>
#include <string>

#include "targets.h"

namespace grove::cli {

namespace {

using bench::BenchResult;

bool Measured(const BenchResult* result) {
  return result != nullptr && !result->error && result->ns_per_item_median > 0;
}

const BenchResult* Find(const std::vector<BenchResult>& results, const std::string& workload,
                        const char* implementation) {
  for (const auto& result : results) {
    if (result.workload == workload && result.implementation == implementation) return &result;
  }
  return nullptr;
}

std::string FormatNs(double ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, ns < 100 ? "%.2f" : "%.1f", ns);
  return buf;
}

std::string FormatRatio(const BenchResult& row, const BenchResult* peer) {
  if (!Measured(&row) || !Measured(peer)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", row.ns_per_item_median / peer->ns_per_item_median);
  return buf;
}

constexpr const char* kRowFormat = "%-12s %-11s %9s %8s %8s %9s %9s  %s\n";

}  // namespace

TargetTally PrintRatioTable(const std::vector<BenchResult>& results, std::FILE* out) {
  TargetTally tally;
  std::size_t repetitions = 0;
  std::vector<std::string> workloads;
  for (const auto& result : results) {
    repetitions = std::max(repetitions, result.ns_per_item.size());
    if (std::find(workloads.begin(), workloads.end(), result.workload) == workloads.end()) {
      workloads.push_back(result.workload);
    }
  }

  std::fprintf(out,
               "\nns/item: median of %zu repetition(s), CPU time per item (lower is better).\n"
               "vs malloc, vs tbb: the row's median / that peer's median in this run; "
               "target: the issue's bound on grove's vs malloc.\n\n",
               repetitions);
  std::fprintf(out, kRowFormat, "workload", "allocator", "ns/item", "min", "max", "vs malloc", "vs tbb",
               "target");
  std::fprintf(out, kRowFormat, "------------", "-----------", "---------", "--------", "--------", "---------",
               "---------", "-------------");

  for (const auto& workload : workloads) {
    const BenchResult* malloc_result = Find(results, workload, "malloc");
    const BenchResult* tbb_result = Find(results, workload, "tbb");
    // grove's rows first (those are the ones with targets), then the peers.
    std::vector<const BenchResult*> rows;
    for (const bool grove : {true, false}) {
      for (const auto& result : results) {
        if (result.workload == workload && bench::IsGroveImplementation(result.implementation) == grove) {
          rows.push_back(&result);
        }
      }
    }
    bool first = true;
    for (const BenchResult* row : rows) {
      std::string target_text;
      if (const std::optional<double> target = bench::FindMallocRatioTarget(row->workload, row->implementation)) {
        char buf[64];
        if (!Measured(row) || !Measured(malloc_result)) {
          std::snprintf(buf, sizeof buf, "<= %.2f  ?", *target);
          ++tally.unmeasured;
        } else if (row->ns_per_item_median / malloc_result->ns_per_item_median <= *target) {
          std::snprintf(buf, sizeof buf, "<= %.2f  pass", *target);
          ++tally.pass;
        } else {
          std::snprintf(buf, sizeof buf, "<= %.2f  MISS", *target);
          ++tally.miss;
        }
        target_text = buf;
      }
      const bool measured = Measured(row);
      std::fprintf(out, kRowFormat, first ? row->workload.c_str() : "", row->implementation.c_str(),
                   row->error ? "error" : measured ? FormatNs(row->ns_per_item_median).c_str() : "-",
                   measured ? FormatNs(row->ns_per_item_min).c_str() : "",
                   measured ? FormatNs(row->ns_per_item_max).c_str() : "",
                   FormatRatio(*row, malloc_result).c_str(), FormatRatio(*row, tbb_result).c_str(),
                   target_text.c_str());
      first = false;
    }
  }

  std::fprintf(out, "\ntargets: %d pass, %d miss", tally.pass, tally.miss);
  if (tally.unmeasured > 0) std::fprintf(out, ", %d unmeasured (?: no figure for it or for malloc)", tally.unmeasured);
  const int shown = tally.pass + tally.miss + tally.unmeasured;
  if (shown < static_cast<int>(bench::kMallocRatioTargets.size())) {
    std::fprintf(out, "; %d of the %zu targets in this run", shown, bench::kMallocRatioTargets.size());
  }
  std::fputc('\n', out);

  for (const auto& result : results) {
    if (result.error) std::fprintf(out, "error in %s: %s\n", result.name.c_str(), result.error_message.c_str());
  }
  return tally;
}

}  // namespace grove::cli
