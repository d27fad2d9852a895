#include "ratio_table.h"

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>

#include "targets.h"

namespace grove::cli {

namespace {

using bench::BenchResult;

bool Measured(const BenchResult* result) {
  return result != nullptr && !result->error && result->ns_per_item_median > 0;
}

const BenchResult* Find(const std::vector<BenchResult>& results, const std::string& workload,
                        std::string_view implementation) {
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

// The two peer columns are as wide as their headings ("vs <peer>"), at least 9.
constexpr const char* kRowFormat = "%-12s %-11s %9s %8s %8s %*s %*s  %s\n";

std::optional<double> FindTarget(const RatioTableSpec& spec, std::string_view workload,
                                 std::string_view implementation) {
  for (const auto& target : spec.targets) {
    if (target.workload == workload && target.implementation == implementation) return target.max_ratio;
  }
  return std::nullopt;
}

}  // namespace

TargetTally PrintRatioTable(const std::vector<BenchResult>& results, std::FILE* out) {
  const RatioTableSpec spec;
  const TargetTally tally = PrintRatioRows(results, spec, out);
  PrintTargetSummary(tally, spec.targets.size(), results, out);
  return tally;
}

TargetTally PrintRatioRows(const std::vector<BenchResult>& results, const RatioTableSpec& spec, std::FILE* out) {
  TargetTally tally;
  const std::string baseline_heading = "vs " + std::string(spec.baseline);
  const std::string other_heading = "vs " + std::string(spec.other_peer);
  const int baseline_width = std::max(9, static_cast<int>(baseline_heading.size()));
  const int other_width = std::max(9, static_cast<int>(other_heading.size()));
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
               "%s, %s: the row's median / that peer's median in this run; "
               "target: the issue's bound on grove's %s.\n\n",
               repetitions, baseline_heading.c_str(), other_heading.c_str(), baseline_heading.c_str());
  std::fprintf(out, kRowFormat, "workload", "allocator", "ns/item", "min", "max", baseline_width,
               baseline_heading.c_str(), other_width, other_heading.c_str(), "target");
  std::fprintf(out, kRowFormat, "------------", "-----------", "---------", "--------", "--------", baseline_width,
               std::string(static_cast<std::size_t>(baseline_width), '-').c_str(), other_width,
               std::string(static_cast<std::size_t>(other_width), '-').c_str(), "-------------");

  for (const auto& workload : workloads) {
    const BenchResult* baseline_result = Find(results, workload, spec.baseline);
    const BenchResult* other_result = Find(results, workload, spec.other_peer);
    // grove's rows first (those are the ones with targets), then the peers.
    std::vector<const BenchResult*> rows;
    for (const bool grove : {true, false}) {
      for (const auto& result : results) {
        if (result.workload == workload && spec.is_grove(result.implementation) == grove) {
          rows.push_back(&result);
        }
      }
    }
    bool first = true;
    for (const BenchResult* row : rows) {
      std::string target_text;
      if (const std::optional<double> target = FindTarget(spec, row->workload, row->implementation)) {
        char buf[64];
        if (!Measured(row) || !Measured(baseline_result)) {
          std::snprintf(buf, sizeof buf, "<= %.2f  ?", *target);
          ++tally.unmeasured;
        } else if (row->ns_per_item_median / baseline_result->ns_per_item_median <= *target) {
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
                   baseline_width, FormatRatio(*row, baseline_result).c_str(), other_width,
                   FormatRatio(*row, other_result).c_str(), target_text.c_str());
      first = false;
    }
  }

  return tally;
}

void PrintTargetSummary(const TargetTally& tally, std::size_t targets_total, const std::vector<BenchResult>& results,
                        std::FILE* out) {
  std::fprintf(out, "\ntargets: %d pass, %d miss", tally.pass, tally.miss);
  if (tally.unmeasured > 0) {
    std::fprintf(out, ", %d unmeasured (?: no figure for it or for its baseline)", tally.unmeasured);
  }
  const int shown = tally.pass + tally.miss + tally.unmeasured;
  if (shown < static_cast<int>(targets_total)) {
    std::fprintf(out, "; %d of the %zu targets in this run", shown, targets_total);
  }
  std::fputc('\n', out);

  for (const auto& result : results) {
    if (result.error) std::fprintf(out, "error in %s: %s\n", result.name.c_str(), result.error_message.c_str());
  }
}

}  // namespace grove::cli
