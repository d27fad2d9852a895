// The noop job: launch latency. Each round creates a parallel context,
// launches workers whose entry returns at once, waits for them and
// destroys the context (BENCH.md's L1).
#include <chrono>

#include "grove/base/error.h"
#include "jobs.h"

namespace grove::jobs {

namespace {
void NoopWorkerMain(dsm_segment*, shm_toc*) {}
}  // namespace

void RegisterNoopEntry() { RegisterParallelEntry("grove.job.noop", &NoopWorkerMain); }

NoopResult RunNoop(int workers, ParallelLaunchMode mode, int rounds) {
  if (rounds <= 0) ereport(ERROR, errcode(ERRCODE_INVALID_PARAMETER_VALUE), errmsg("rounds must be positive"));
  NoopResult result;
  for (int r = 0; r < rounds; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    ParallelContext* pcxt = CreateParallelContext("grove.job.noop", workers, mode);
    try {
      InitializeParallelDSM(pcxt);
      LaunchParallelWorkers(pcxt);
      WaitForParallelWorkersToAttach(pcxt);
      WaitForParallelWorkersToFinish(pcxt);
    } catch (...) {
      DestroyParallelContext(pcxt);
      throw;
    }
    result.workers_launched = pcxt->nworkers_launched;
    DestroyParallelContext(pcxt);
    result.round_seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return result;
}

}  // namespace grove::jobs
