// `grove bench memory`: the W1–W5 allocator benchmarks (bench/workloads.h),
// and `grove bench dsa`: the dynamic shared area's W1, W2, W4, W5, W6
// (bench/dsa_workloads.h), run in-process through Google Benchmark, each
// followed by its ratio table.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "commands.h"
#include "dsa_targets.h"
#include "dsa_workloads.h"
#include "plain_name_reporter.h"
#include "ratio_table.h"
#include "recording_reporter.h"
#include "scaling_table.h"
#include "workloads.h"

namespace grove::cli {

namespace {

struct BenchOptions {
  int repetitions = 5;
  double min_time = 0.1;
  std::string filter = ".";
  std::string json_path;
  bool console = false;
  bool list = false;
};

// Google Benchmark compiles the filter itself, but only reports a bad one as
// "no benchmark matched". Checking it here (same dialect: std::regex
// extended; a leading '-' negates) gives the user the real reason.
std::string ValidateFilter(std::string& filter) {
  const std::string pattern = !filter.empty() && filter[0] == '-' ? filter.substr(1) : filter;
  try {
    std::regex re(pattern, std::regex::extended);
  } catch (const std::regex_error& e) {
    return "invalid regular expression '" + filter + "': " + e.what();
  }
  return {};
}

// Compact progress: one line per benchmark once its repetitions are done,
// instead of Google Benchmark's line per repetition (use --console for that).
class ProgressReporter : public benchmark::BenchmarkReporter {
 public:
  bool ReportContext(const Context& context) override {
    PrintBasicContext(&GetErrorStream(), context);
    return true;
  }

  void ReportRuns(const std::vector<Run>& runs) override {
    std::vector<double> ns;
    std::string name;
    std::string error;
    for (const Run& run : runs) {
      name = run.run_name.str();
      if (run.error_occurred) error = run.error_message;
      if (!run.error_occurred && run.run_type == Run::RT_Iteration) ns.push_back(bench::NsPerItem(run));
    }
    // Google Benchmark reports a benchmark's aggregates (mean, median, ...)
    // in a second call; the repetitions already got their line.
    if (ns.empty() && error.empty()) return;
    if (!error.empty()) {
      std::printf("  %-26s ERROR: %s\n", name.c_str(), error.c_str());
    } else {
      std::printf("  %-26s %9.2f ns/item  (median of %zu)\n", name.c_str(), bench::Median(ns), ns.size());
    }
    std::fflush(stdout);
  }
};

std::string FormatDouble(double value) {
  std::ostringstream out;
  out.precision(17);
  out << value;
  return out.str();
}

// A `grove bench` subcommand: its benchmarks and the table that ends it.
struct BenchSuite {
  const char* command;  ///< "grove bench memory"
  void (*register_benchmarks)();
  void (*print_table)(const std::vector<bench::BenchResult>& results, std::FILE* out);
};

// `grove bench dsa`: W1, W2, W4, W5 as ratios to malloc and boost_ipc, then
// W6 as Mops/s, one summary of both parts' targets.
void PrintDsaTables(const std::vector<bench::BenchResult>& results, std::FILE* out) {
  const std::string shared_workload(bench::kDsaSharedTarget.workload);
  std::vector<bench::BenchResult> single_process;
  for (const auto& result : results) {
    if (result.workload != shared_workload) single_process.push_back(result);
  }
  TargetTally tally;
  if (!single_process.empty()) {
    RatioTableSpec spec;
    spec.other_peer = "boost_ipc";
    spec.targets = bench::kDsaMallocRatioTargets;
    spec.is_grove = bench::IsDsaImplementation;
    tally += PrintRatioRows(single_process, spec, out);
  }
  tally += PrintScalingTable(results, bench::kDsaSharedTarget, "dsa", "boost_ipc", "malloc", out);
  PrintTargetSummary(tally, bench::kDsaTargetCount, results, out);
}

int RunBench(const BenchSuite& suite, const BenchOptions& options) {
  if (!options.json_path.empty()) {
    // Google Benchmark would exit(1) mid-run on an unwritable file; find out
    // before spending minutes on benchmarks.
    std::ofstream probe(options.json_path);
    if (!probe) {
      std::fprintf(stderr, "%s: cannot write --json file '%s'\n", suite.command, options.json_path.c_str());
      return 1;
    }
  }

  // Google Benchmark takes its settings as flags; hand them over as a
  // synthesized command line (argv[0] is only used in its messages).
  std::vector<std::string> args = {
      suite.command,
      "--benchmark_repetitions=" + std::to_string(options.repetitions),
      "--benchmark_min_time=" + FormatDouble(options.min_time),
      "--benchmark_filter=" + options.filter,
  };
  if (options.list) args.push_back("--benchmark_list_tests=true");
  if (!options.json_path.empty()) {
    args.push_back("--benchmark_out=" + options.json_path);
    args.push_back("--benchmark_out_format=json");
  }
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  int argc = static_cast<int>(args.size());

  suite.register_benchmarks();
  benchmark::Initialize(&argc, argv.data());
  if (benchmark::ReportUnrecognizedArguments(argc, argv.data())) return 2;

  if (bench::GroveMemoryCheckingBuild()) {
    std::fputs("warning: grove was built with memory checking (GROVE_MEMORY_CHECKING): "
               "its figures do not reflect release performance\n",
               stderr);
  }

  if (!options.list) {
    std::printf("%s: %d repetition(s) of >= %g s per benchmark; median ns/item as each finishes\n", suite.command,
                options.repetitions, options.min_time);
    std::fflush(stdout);
  }
  ProgressReporter progress;
  bench::RecordingReporter recorder(options.console ? benchmark::CreateDefaultDisplayReporter() : &progress);
  std::unique_ptr<benchmark::JSONReporter> json;
  if (!options.json_path.empty()) json = std::make_unique<benchmark::JSONReporter>();
  // Benchmarks timed by hand (W6) keep BENCH.md's names, without Google
  // Benchmark's "/manual_time", in the progress, the table and the JSON.
  bench::PlainNameReporter plain_recorder(&recorder);
  std::unique_ptr<bench::PlainNameReporter> plain_json;
  if (json) plain_json = std::make_unique<bench::PlainNameReporter>(json.get());
  const std::size_t matched = benchmark::RunSpecifiedBenchmarks(&plain_recorder, plain_json.get());
  benchmark::Shutdown();

  if (matched == 0) {
    std::fprintf(stderr, "%s: no benchmark matches --filter '%s'\n", suite.command, options.filter.c_str());
    return 1;
  }
  if (options.list) return 0;

  suite.print_table(recorder.results(), stdout);
  if (!options.json_path.empty()) std::printf("JSON written to %s\n", options.json_path.c_str());
  for (const auto& result : recorder.results()) {
    if (result.error) return 1;
  }
  return 0;
}

// The options every `grove bench` subcommand takes.
void AddBenchSubcommand(CLI::App* bench, const char* name, const char* description, const char* filter_example,
                        const BenchSuite& suite, CommandAction& action) {
  auto options = std::make_shared<BenchOptions>();
  CLI::App* command = bench->add_subcommand(name, description);
  command->add_option("--repetitions", options->repetitions, "Repetitions of each benchmark (1-1000); the table uses their median")
      ->check(CLI::Range(1, 1000).description(""))
      ->type_name("N")
      ->capture_default_str();
  command->add_option("--min-time", options->min_time, "Minimum seconds per repetition")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            // CLI11's PositiveNumber prints DBL_MAX in its message; say it plainly.
            char* end = nullptr;
            const double value = std::strtod(text.c_str(), &end);
            if (text.empty() || *end != '\0') return "not a number: " + text;
            return value > 0 ? std::string() : "must be greater than 0, got " + text;
          },
          "", "positive"))
      ->type_name("SECONDS")
      ->capture_default_str();
  command
      ->add_option("--filter", options->filter,
                   std::string("Run only benchmarks whose name matches this regex (e.g. '") + filter_example +
                       "'); a leading '-' excludes")
      ->check(CLI::Validator(ValidateFilter, "", "regex"))
      ->type_name("REGEX")
      ->capture_default_str();
  command->add_option("--json", options->json_path, "Also write Google Benchmark JSON to FILE")->type_name("FILE");
  command->add_flag("--console", options->console,
                    "Show Google Benchmark's console report (a line per repetition) instead of a line per benchmark");
  command->add_flag("--list", options->list, "List the benchmark names (after --filter) and exit");
  command->callback([options, suite, &action] { action = [options, suite] { return RunBench(suite, *options); }; });
}

}  // namespace

void AddBenchCommands(CLI::App& app, CommandAction& action) {
  CLI::App* bench = app.add_subcommand("bench", "Run grove's benchmarks");
  bench->require_subcommand(1);

  AddBenchSubcommand(
      bench, "memory",
      "Allocator workloads W1-W5 (BENCH.md): grove's contexts against malloc, tbb and std::pmr, "
      "then a table of each grove allocator's ratio to malloc and tbb with the issue's targets",
      "W1_pair64/(aset|malloc|tbb)",
      BenchSuite{"grove bench memory", bench::RegisterMemoryBenchmarks,
                 [](const std::vector<bench::BenchResult>& results, std::FILE* out) { PrintRatioTable(results, out); }},
      action);
  AddBenchSubcommand(
      bench, "dsa",
      "Dynamic shared area workloads W1, W2, W4, W5 and W6 (BENCH.md): the DSA against malloc and "
      "Boost.Interprocess, then a table of its ratios to both and of W6's Mops/s by process count, with the "
      "issue's targets",
      "W1_pair64/|W6_shared/dsa/P:1",
      BenchSuite{"grove bench dsa", bench::RegisterDsaBenchmarks, PrintDsaTables}, action);
}

}  // namespace grove::cli
