// Parallel contexts, the basics in all three launch modes: workers run the
// entry with their numbers and see the caller's TOC keys; a worker's ERROR,
// WARNING and NOTICE reach the leader with "parallel worker N" in the
// context; a worker that dies is reported as lost, never waited on.
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <string>
#include <vector>

#include "parallel_test_support.h"
#include "grove/workers/parallel.h"

namespace grove::test {
namespace {

constexpr std::uint64_t kKeyCounters = PARALLEL_KEY_FIRST_USER;

struct Counters {
  std::atomic<std::uint64_t> runs;
  std::atomic<std::uint64_t> worker_bits;
  std::atomic<std::uint32_t> mode_ok;
};

void CountingEntry(dsm_segment*, shm_toc* toc) {
  auto* c = static_cast<Counters*>(shm_toc_lookup(toc, kKeyCounters, false));
  c->runs.fetch_add(1);
  c->worker_bits.fetch_or(std::uint64_t{1} << ParallelWorkerNumber());
  if (IsParallelWorker()) c->mode_ok.fetch_add(1);
}

void FailingEntry(dsm_segment*, shm_toc*) {
  ereport(NOTICE, errmsg("notice from worker %d", ParallelWorkerNumber()));
  ereport(WARNING, errmsg("warning from worker %d", ParallelWorkerNumber()));
  if (ParallelWorkerNumber() == 1) ereport(ERROR, errcode(ERRCODE_DATA_CORRUPTED), errmsg("worker one fails"));
}

void DyingEntry(dsm_segment*, shm_toc*) {
  if (ParallelWorkerNumber() == 0) raise(SIGKILL);
}

const bool registered = [] {
  RegisterParallelEntry("test.count", &CountingEntry);
  RegisterParallelEntry("test.fail", &FailingEntry);
  RegisterParallelEntry("test.die", &DyingEntry);
  return true;
}();

class ParallelBasicTest : public ParallelModeTest {};

TEST_P(ParallelBasicTest, WorkersRunTheEntryOnceEach) {
  ParallelContext* pcxt = CreateParallelContext("test.count", 3, GetParam());
  Counters* c = InitializeParallelDSMWithState<Counters>(pcxt, kKeyCounters);
  LaunchParallelWorkers(pcxt);
  EXPECT_EQ(pcxt->nworkers_launched, 3);
  WaitForParallelWorkersToAttach(pcxt);
  WaitForParallelWorkersToFinish(pcxt);
  EXPECT_EQ(c->runs.load(), 3u);
  EXPECT_EQ(c->worker_bits.load(), 0b111u);
  EXPECT_EQ(c->mode_ok.load(), 3u);
  // Another round on the same segment.
  ReinitializeParallelDSM(pcxt);
  c->runs.store(0);
  LaunchParallelWorkers(pcxt);
  WaitForParallelWorkersToFinish(pcxt);
  EXPECT_EQ(c->runs.load(), static_cast<std::uint64_t>(pcxt->nworkers_launched));
  DestroyParallelContext(pcxt);
  EXPECT_FALSE(IsParallelWorker());
}

TEST_P(ParallelBasicTest, WorkerErrorIsReraisedWithContext) {
  std::vector<ErrorData> messages;
  ScopedMessageSink sink([&](const ErrorData& d) { messages.push_back(d); });
  ParallelContext* pcxt = CreateParallelContext("test.fail", 2, GetParam());
  InitializeParallelDSM(pcxt);
  LaunchParallelWorkers(pcxt);
  try {
    WaitForParallelWorkersToFinish(pcxt);
    ADD_FAILURE() << "worker 1's ERROR must be re-raised";
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "worker one fails");
    EXPECT_EQ(e.sqlstate(), ERRCODE_DATA_CORRUPTED);
    ASSERT_FALSE(e.data().context.empty());
    EXPECT_EQ(e.data().context.back(), "parallel worker 1");
  }
  DestroyParallelContext(pcxt);
  bool saw_warning = false;
  for (const ErrorData& d : messages)
    if (d.elevel == WARNING && d.message.find("warning from worker") == 0 && !d.context.empty() &&
        d.context.back().find("parallel worker") == 0)
      saw_warning = true;
  EXPECT_TRUE(saw_warning);
}

TEST_P(ParallelBasicTest, KilledWorkerIsLost) {
  if (GetParam() == ParallelLaunchMode::kThread) GTEST_SKIP() << "a thread cannot be killed alone";
  ParallelContext* pcxt = CreateParallelContext("test.die", 2, GetParam());
  InitializeParallelDSM(pcxt);
  LaunchParallelWorkers(pcxt);
  try {
    WaitForParallelWorkersToFinish(pcxt);
    ADD_FAILURE() << "a killed worker must fail the wait";
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "lost connection to parallel worker") << e.Format();
  }
  DestroyParallelContext(pcxt);
}

INSTANTIATE_TEST_SUITE_P(Modes, ParallelBasicTest, AllLaunchModes(), LaunchModeName);

}  // namespace
}  // namespace grove::test
