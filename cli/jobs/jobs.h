// The jobs `grove job …` runs, as functions (the CLI prints them; the
// workers benchmark runs the scan too). Each runs a leader in the calling
// process with workers in the chosen launch mode.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "grove/workers/parallel.h"

namespace grove::jobs {

/// Registers the jobs' worker entries. Call once at start-up, before a
/// worker pool starts.
void RegisterJobEntries();
void RegisterScanEntry();
void RegisterNoopEntry();
void RegisterDsaStressEntry();

// --- scan ---------------------------------------------------------------------------------------
// N int64 values v(i) = i, i = 1…N, generated in parallel into a DSA array,
// then scanned in parallel (blocks claimed as a parallel seq scan does) for
// count, sum, min and max of the values with v % modulus < threshold;
// partial aggregates come back through tuple queues and are checked
// against the closed form.

struct ScanOptions {
  std::uint64_t rows = 10'000'000;
  int workers = 2;
  ParallelLaunchMode mode = ParallelLaunchMode::kProcess;
  std::uint64_t modulus = 10;
  std::uint64_t threshold = 3;
  std::uint64_t rows_per_block = 8192;
  bool leader_participates = true;
  /// Called from the leader now and then with rows scanned so far (may be empty).
  std::function<void(std::uint64_t scanned, std::uint64_t total)> progress;
};

struct ScanAggregate {
  std::uint64_t count = 0;
  unsigned __int128 sum = 0;
  std::int64_t min = INT64_MAX;
  std::int64_t max = INT64_MIN;
};

struct ScanParticipant {
  int worker;  ///< −1: the leader
  std::uint64_t rows_generated;
  std::uint64_t rows_scanned;
  double scan_seconds;  ///< its own time scanning
};

struct ScanResult {
  int workers_launched = 0;
  double launch_seconds = 0;    ///< LaunchParallelWorkers + waiting for attach
  double generate_seconds = 0;  ///< from launch to the array complete
  double scan_seconds = 0;      ///< from the array complete to every partial aggregate in
  double total_seconds = 0;
  ScanAggregate got;
  ScanAggregate expected;
  bool correct = false;
  std::vector<ScanParticipant> participants;
};

ScanResult RunScan(const ScanOptions& options);
/// The closed form of the aggregate over v(i) = i, i = 1…rows.
ScanAggregate ExpectedScan(std::uint64_t rows, std::uint64_t modulus, std::uint64_t threshold);
std::string FormatU128(unsigned __int128 v);

// --- noop: launch latency ----------------------------------------------------------------------

struct NoopResult {
  std::vector<double> round_seconds;  ///< create, launch, attach, finish, destroy
  int workers_launched = 0;           ///< in the last round
};
NoopResult RunNoop(int workers, ParallelLaunchMode mode, int rounds);

// --- dsa-stress ---------------------------------------------------------------------------------

struct DsaStressOptions {
  int workers = 4;
  ParallelLaunchMode mode = ParallelLaunchMode::kProcess;
  double seconds = 2.0;
  std::uint64_t max_size = 16384;  ///< object sizes 1…max_size, a few larger
};
struct DsaStressResult {
  int workers_launched = 0;
  std::uint64_t operations = 0;      ///< allocations + frees, all workers
  std::uint64_t verified_bytes = 0;
  std::size_t initial_size = 0;      ///< dsa_get_total_size at creation
  std::size_t peak_size = 0;
  std::size_t final_size = 0;        ///< after everything was freed and dsa_trim
  double seconds = 0;
  bool ok = false;
  std::string failure;
};
DsaStressResult RunDsaStress(const DsaStressOptions& options);

}  // namespace grove::jobs
