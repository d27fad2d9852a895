// `grove job scan | noop | dsa-stress`: leader/worker jobs on the runtime
// (cli/jobs/jobs.h), printed as text or JSON. Ctrl-C cancels: the leader's
// waits raise the cancel and the workers are stopped.
#include <algorithm>
#include <cstdio>
#include <string>
#include <sys/statvfs.h>
#include <unistd.h>

#include "commands.h"
#include "grove/base/interrupts.h"
#include "grove/contexts/memutils.h"
#include "jobs.h"

namespace grove::cli {

namespace {

struct JobOptions {
  std::uint64_t rows = 10'000'000;
  bool rows_given = false;
  int workers = 2;
  std::string mode = "process";
  int rounds = 100;
  double seconds = 2.0;
  std::uint64_t max_size = 16384;
  bool json = false;
  bool no_leader = false;
};

ParallelLaunchMode ModeOf(const std::string& text) {
  ParallelLaunchMode mode;
  if (!ParseParallelLaunchMode(text.c_str(), &mode))
    ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("unknown launch mode \"%s\"", text.c_str()),
            errhint("Use process, pool or thread."));
  return mode;
}

void Prepare(const JobOptions& o) {
  MemoryContextInit();
  jobs::RegisterJobEntries();
  InstallCancelSignalHandler();
  // The workers asked for are what the user wants: lift the default limit.
  if (o.workers > MaxParallelWorkers()) SetMaxParallelWorkers(std::min(o.workers, 1024));
}

// The default scan must run where /dev/shm is small (64 MiB in many
// containers): without --rows, it takes at most half of what is free.
std::uint64_t DefaultRowsThatFit(std::uint64_t rows) {
  struct statvfs st;
  if (statvfs("/dev/shm", &st) != 0) return rows;
  const std::uint64_t free_bytes = static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
  const std::uint64_t fit = free_bytes / 2 / sizeof(std::int64_t);
  if (fit >= rows) return rows;
  const std::uint64_t reduced = std::max<std::uint64_t>(fit / 100000 * 100000, 100000);
  std::fprintf(stderr, "note: /dev/shm has %llu MiB free; scanning %llu rows instead of %llu (use --rows)\n",
               static_cast<unsigned long long>(free_bytes >> 20), static_cast<unsigned long long>(reduced),
               static_cast<unsigned long long>(rows));
  return reduced;
}

int RunScanJob(const JobOptions& o) {
  Prepare(o);
  jobs::ScanOptions so;
  so.rows = o.rows_given ? o.rows : DefaultRowsThatFit(o.rows);
  so.workers = o.workers;
  so.mode = ModeOf(o.mode);
  so.leader_participates = !o.no_leader;
  const bool tty = isatty(STDERR_FILENO) && !o.json;
  if (tty)
    so.progress = [](std::uint64_t scanned, std::uint64_t total) {
      std::fprintf(stderr, "\rscanned %llu of %llu rows (%.0f%%)", static_cast<unsigned long long>(scanned),
                   static_cast<unsigned long long>(total), total ? 100.0 * scanned / total : 100.0);
    };
  const jobs::ScanResult r = jobs::RunScan(so);
  if (tty) std::fputs("\r\033[K", stderr);
  const double rows_per_s = r.scan_seconds > 0 ? so.rows / r.scan_seconds : 0;
  if (o.json) {
    std::printf("{\"job\":\"scan\",\"rows\":%llu,\"mode\":\"%s\",\"workers_requested\":%d,\"workers_launched\":%d,"
                "\"launch_seconds\":%.6f,\"generate_seconds\":%.6f,\"scan_seconds\":%.6f,\"total_seconds\":%.6f,"
                "\"rows_per_second\":%.0f,\"count\":%llu,\"sum\":\"%s\",\"min\":%lld,\"max\":%lld,\"correct\":%s,"
                "\"participants\":[",
                static_cast<unsigned long long>(so.rows), o.mode.c_str(), o.workers, r.workers_launched,
                r.launch_seconds, r.generate_seconds, r.scan_seconds, r.total_seconds, rows_per_s,
                static_cast<unsigned long long>(r.got.count), jobs::FormatU128(r.got.sum).c_str(),
                static_cast<long long>(r.got.min), static_cast<long long>(r.got.max), r.correct ? "true" : "false");
    for (std::size_t k = 0; k < r.participants.size(); ++k) {
      const jobs::ScanParticipant& p = r.participants[k];
      std::printf("%s{\"worker\":%d,\"rows_generated\":%llu,\"rows_scanned\":%llu,\"rows_per_second\":%.0f}",
                  k ? "," : "", p.worker, static_cast<unsigned long long>(p.rows_generated),
                  static_cast<unsigned long long>(p.rows_scanned),
                  p.scan_seconds > 0 ? p.rows_scanned / p.scan_seconds : 0.0);
    }
    std::printf("]}\n");
  } else {
    std::printf("scan: %llu rows, %s mode, %d of %d workers launched%s\n", static_cast<unsigned long long>(so.rows),
                o.mode.c_str(), r.workers_launched, o.workers, o.no_leader ? "" : " + the leader");
    std::printf("  launch   %10.3f ms\n  generate %10.3f ms\n  scan     %10.3f ms  (%.1f M rows/s)\n",
                r.launch_seconds * 1e3, r.generate_seconds * 1e3, r.scan_seconds * 1e3, rows_per_s / 1e6);
    for (const jobs::ScanParticipant& p : r.participants) {
      const std::string who = p.worker < 0 ? "leader" : "worker " + std::to_string(p.worker);
      std::printf("  %-9s generated %llu, scanned %llu rows (%.1f M rows/s)\n", who.c_str(),
                  static_cast<unsigned long long>(p.rows_generated), static_cast<unsigned long long>(p.rows_scanned),
                  p.scan_seconds > 0 ? p.rows_scanned / p.scan_seconds / 1e6 : 0.0);
    }
    std::printf("  count %llu, sum %s, min %lld, max %lld: %s\n", static_cast<unsigned long long>(r.got.count),
                jobs::FormatU128(r.got.sum).c_str(), static_cast<long long>(r.got.min),
                static_cast<long long>(r.got.max),
                r.correct ? "matches the closed form" : "DOES NOT match the closed form");
    if (!r.correct)
      std::printf("  expected count %llu, sum %s, min %lld, max %lld\n",
                  static_cast<unsigned long long>(r.expected.count), jobs::FormatU128(r.expected.sum).c_str(),
                  static_cast<long long>(r.expected.min), static_cast<long long>(r.expected.max));
  }
  ShutdownParallelWorkerPool();
  return r.correct ? 0 : 1;
}

int RunNoopJob(const JobOptions& o) {
  Prepare(o);
  const jobs::NoopResult r = jobs::RunNoop(o.workers, ModeOf(o.mode), o.rounds);
  std::vector<double> t = r.round_seconds;
  std::sort(t.begin(), t.end());
  const double median = t[t.size() / 2] * 1e6, min = t.front() * 1e6;
  if (o.json)
    std::printf("{\"job\":\"noop\",\"mode\":\"%s\",\"workers_requested\":%d,\"workers_launched\":%d,\"rounds\":%d,"
                "\"median_us\":%.1f,\"min_us\":%.1f}\n",
                o.mode.c_str(), o.workers, r.workers_launched, o.rounds, median, min);
  else
    std::printf("noop: %s mode, %d of %d workers, %d rounds: median %.1f us, min %.1f us per round\n", o.mode.c_str(),
                r.workers_launched, o.workers, o.rounds, median, min);
  ShutdownParallelWorkerPool();
  return 0;
}

int RunDsaStressJob(const JobOptions& o) {
  Prepare(o);
  jobs::DsaStressOptions so;
  so.workers = o.workers;
  so.mode = ModeOf(o.mode);
  so.seconds = o.seconds;
  so.max_size = o.max_size;
  const jobs::DsaStressResult r = jobs::RunDsaStress(so);
  const double ops_per_s = r.seconds > 0 ? r.operations / r.seconds : 0;
  if (o.json)
    std::printf("{\"job\":\"dsa-stress\",\"mode\":\"%s\",\"workers_launched\":%d,\"seconds\":%.3f,\"operations\":%llu,"
                "\"ops_per_second\":%.0f,\"verified_bytes\":%llu,\"initial_size\":%zu,\"peak_size\":%zu,"
                "\"final_size\":%zu,\"ok\":%s}\n",
                o.mode.c_str(), r.workers_launched, r.seconds, static_cast<unsigned long long>(r.operations),
                ops_per_s, static_cast<unsigned long long>(r.verified_bytes), r.initial_size, r.peak_size,
                r.final_size, r.ok ? "true" : "false");
  else
    std::printf("dsa-stress: %d workers (%s), %.2f s, %llu allocations and frees (%.2f M/s), %.1f MB verified;\n"
                "  area %zu bytes at start, %zu at peak, %zu after dsa_trim: %s\n",
                r.workers_launched, o.mode.c_str(), r.seconds, static_cast<unsigned long long>(r.operations),
                ops_per_s / 1e6, r.verified_bytes / 1e6, r.initial_size, r.peak_size, r.final_size,
                r.ok ? "ok" : r.failure.c_str());
  ShutdownParallelWorkerPool();
  return r.ok ? 0 : 1;
}

}  // namespace

void AddJobCommands(CLI::App& app, CommandAction& action) {
  CLI::App* job = app.add_subcommand("job", "Run a leader/worker job on the runtime");
  job->require_subcommand(1);
  auto options = std::make_shared<JobOptions>();
  auto common = [options](CLI::App* cmd) {
    cmd->add_option("--workers,-w", options->workers, "Workers to launch (the leader participates too)")
        ->check(CLI::Range(0, 1024));
    cmd->add_option("--mode,-m", options->mode, "Launch mode: process, pool or thread")
        ->check(CLI::IsMember({"process", "pool", "thread"}));
    cmd->add_flag("--json", options->json, "Print one JSON object");
  };
  CLI::App* scan = job->add_subcommand("scan", "Generate N int64 in a DSA in parallel, aggregate them in parallel, "
                                               "check against the closed form");
  scan->add_option("--rows,-n", options->rows, "Rows to generate and scan (default 10,000,000, fewer if /dev/shm is small)")
      ->check(CLI::Range(1ull, 1ull << 36))
      ->each([options](const std::string&) { options->rows_given = true; });
  scan->add_flag("--no-leader", options->no_leader, "The leader only coordinates");
  common(scan);
  scan->callback([options, &action] { action = [options] { return RunScanJob(*options); }; });

  CLI::App* noop = job->add_subcommand("noop", "Launch latency: rounds of create, launch, finish, destroy");
  noop->add_option("--rounds,-r", options->rounds, "Rounds")->check(CLI::Range(1, 1000000));
  common(noop);
  noop->callback([options, &action] { action = [options] { return RunNoopJob(*options); }; });

  CLI::App* stress = job->add_subcommand("dsa-stress", "Workers allocate, verify and free in one shared area");
  stress->add_option("--seconds,-s", options->seconds, "How long")->check(CLI::Range(0.01, 3600.0));
  stress->add_option("--max-size", options->max_size, "Largest small object")->check(CLI::Range(16ull, 1ull << 20));
  common(stress);
  stress->callback([options, &action] { action = [options] { return RunDsaStressJob(*options); }; });
}

}  // namespace grove::cli
