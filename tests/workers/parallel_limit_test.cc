// The process-wide worker limit (SetMaxParallelWorkers) and contexts with
// fewer workers than asked, in each launch mode: asking beyond the limit
// launches fewer, never an error, and the workers that run are numbered
// 0 … nworkers_launched−1; a context with no worker at all works (the leader
// alone); lowering nworkers_to_launch launches fewer; contexts running at
// the same time share the limit and give their share back when they finish;
// the pool never keeps more processes than the limit needs.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "parallel_test_support.h"
#include "grove/base/interrupts.h"
#include "grove/workers/parallel.h"

namespace grove::test {
namespace {

using namespace std::chrono_literals;

struct LimitState {
  std::atomic<std::uint32_t> runs;
  std::atomic<std::uint32_t> numbers;  // bit per worker number seen
  std::atomic<std::int32_t> bad_number;
  std::atomic<std::uint32_t> leader_runs;
  std::atomic<std::uint32_t> ready[kMaxWorkers];
  std::atomic<std::uint32_t> release;  // blocking entry: set by the test
};

LimitState* StateOf(shm_toc* toc) { return static_cast<LimitState*>(shm_toc_lookup(toc, kKeyState, false)); }

/// Records who ran it; the leader may run it too (ParallelWorkerNumber −1).
void CountEntry(dsm_segment*, shm_toc* toc) {
  LimitState* s = StateOf(toc);
  const int n = ParallelWorkerNumber();
  if (n == -1 && !IsParallelWorker()) {
    s->leader_runs.fetch_add(1);
    return;
  }
  if (n < 0 || n >= kMaxWorkers) {
    s->bad_number.store(n);
    return;
  }
  s->numbers.fetch_or(1u << n);
  s->runs.fetch_add(1);
}

/// Counts, then blocks until released or stopped (bounded).
void HoldEntry(dsm_segment* seg, shm_toc* toc) {
  CountEntry(seg, toc);
  LimitState* s = StateOf(toc);
  s->ready[ParallelWorkerNumber()].store(1);
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (s->release.load() == 0 && !ParallelWorkerShouldStop()) {
    CHECK_FOR_INTERRUPTS();
    if (std::chrono::steady_clock::now() > deadline) ereport(ERROR, errmsg("never released"));
    std::this_thread::sleep_for(1ms);
  }
}

const bool registered = [] {
  RegisterParallelEntry("limit.count", &CountEntry);
  RegisterParallelEntry("limit.hold", &HoldEntry);
  return true;
}();

class ParallelLimitTest : public ParallelModeTest {
 protected:
  void SetUp() override {
    DsmTest::SetUp();
    saved_max_ = MaxParallelWorkers();
  }
  void TearDown() override {
    SetMaxParallelWorkers(saved_max_);
    DsmTest::TearDown();
  }

  /// Creates and initializes a context with a LimitState (not launched).
  ParallelContext* Prepare(const char* entry, int nworkers, LimitState** state) {
    ParallelContext* pcxt = CreateParallelContext(entry, nworkers, GetParam());
    *state = InitializeParallelDSMWithState<LimitState>(pcxt, kKeyState);
    (*state)->bad_number.store(-1);
    return pcxt;
  }

  /// Launches, waits (no error allowed), checks that exactly workers
  /// 0 … launched−1 ran once each; returns how many were launched.
  int RunToEnd(ParallelContext* pcxt, LimitState* s) {
    LaunchParallelWorkers(pcxt);
    const int launched = pcxt->nworkers_launched;
    EXPECT_GE(launched, 0);
    EXPECT_LE(launched, pcxt->nworkers);
    const std::optional<Error> e = CatchError([&] {
      WaitForParallelWorkersToAttach(pcxt);
      WaitForParallelWorkersToFinish(pcxt);
    });
    EXPECT_FALSE(e.has_value()) << e->Format();
    EXPECT_EQ(s->runs.load(), static_cast<std::uint32_t>(launched));
    EXPECT_EQ(s->numbers.load(), (1u << launched) - 1) << "worker numbers seen, as bits";
    EXPECT_EQ(s->bad_number.load(), -1);
    return launched;
  }

  int saved_max_ = 8;
};

TEST_P(ParallelLimitTest, AskingBeyondTheLimitLaunchesFewerWithoutError) {
  const int pool_before = ParallelWorkerPoolSize();
  SetMaxParallelWorkers(2);
  EXPECT_EQ(MaxParallelWorkers(), 2);
  for (int round = 0; round < 3; ++round) {
    LimitState* s = nullptr;
    ParallelContext* pcxt = Prepare("limit.count", 5, &s);
    EXPECT_EQ(pcxt->nworkers, 5);
    EXPECT_EQ(RunToEnd(pcxt, s), 2) << "round " << round;
    DestroyParallelContext(pcxt);
  }
  if (GetParam() == ParallelLaunchMode::kPool) {
    EXPECT_LE(ParallelWorkerPoolSize(), std::max(pool_before, 2)) << "the pool grew beyond what the limit needs";
  }
}

TEST_P(ParallelLimitTest, LimitOfZeroLaunchesNone) {
  SetMaxParallelWorkers(0);
  LimitState* s = nullptr;
  ParallelContext* pcxt = Prepare("limit.count", 3, &s);
  EXPECT_EQ(RunToEnd(pcxt, s), 0);
  DestroyParallelContext(pcxt);
}

TEST_P(ParallelLimitTest, ContextWithoutWorkersLeavesTheLeaderAlone) {
  LimitState* s = nullptr;
  ParallelContext* pcxt = Prepare("limit.count", 0, &s);
  EXPECT_EQ(RunToEnd(pcxt, s), 0);
  // The leader does the work itself, as itself.
  EXPECT_FALSE(IsParallelWorker());
  CountEntry(pcxt->seg, pcxt->toc);
  EXPECT_EQ(s->leader_runs.load(), 1u);
  // More rounds, still alone.
  ReinitializeParallelDSM(pcxt);
  EXPECT_EQ(RunToEnd(pcxt, s), 0);
  DestroyParallelContext(pcxt);
}

TEST_P(ParallelLimitTest, LoweredNworkersToLaunchLaunchesFewer) {
  LimitState* s = nullptr;
  ParallelContext* pcxt = Prepare("limit.count", 4, &s);
  pcxt->nworkers_to_launch = 1;
  EXPECT_EQ(RunToEnd(pcxt, s), 1);
  // Raised again for the next round: all four.
  ReinitializeParallelDSM(pcxt);
  s->runs.store(0);
  s->numbers.store(0);
  pcxt->nworkers_to_launch = 4;
  EXPECT_EQ(RunToEnd(pcxt, s), 4);
  DestroyParallelContext(pcxt);
}

TEST_P(ParallelLimitTest, ContextsRunningTogetherShareTheLimit) {
  SetMaxParallelWorkers(3);
  // A holds two workers.
  LimitState* a = nullptr;
  ParallelContext* pa = Prepare("limit.hold", 2, &a);
  LaunchParallelWorkers(pa);
  ASSERT_EQ(pa->nworkers_launched, 2);
  ASSERT_TRUE(WaitUntil([&] { return a->ready[0].load() && a->ready[1].load(); }));
  // B gets what is left: one.
  LimitState* b = nullptr;
  ParallelContext* pb = Prepare("limit.count", 2, &b);
  EXPECT_EQ(RunToEnd(pb, b), 1);
  DestroyParallelContext(pb);
  // B's worker is given back, A's are not yet.
  LimitState* c = nullptr;
  ParallelContext* pc = Prepare("limit.count", 3, &c);
  EXPECT_EQ(RunToEnd(pc, c), 1);
  DestroyParallelContext(pc);
  // A ends: all three are free again.
  a->release.store(1);
  EXPECT_FALSE(CatchError([&] { WaitForParallelWorkersToFinish(pa); }).has_value());
  EXPECT_EQ(a->runs.load(), 2u);
  DestroyParallelContext(pa);
  LimitState* d = nullptr;
  ParallelContext* pd = Prepare("limit.count", 3, &d);
  EXPECT_EQ(RunToEnd(pd, d), 3);
  DestroyParallelContext(pd);
}

TEST_P(ParallelLimitTest, DestroyingWithoutWaitingGivesTheWorkersBack) {
  SetMaxParallelWorkers(2);
  LimitState* a = nullptr;
  ParallelContext* pa = Prepare("limit.hold", 2, &a);
  LaunchParallelWorkers(pa);
  ASSERT_EQ(pa->nworkers_launched, 2);
  ASSERT_TRUE(WaitUntil([&] { return a->ready[0].load() && a->ready[1].load(); }));
  DestroyParallelContext(pa);  // stops them
  LimitState* b = nullptr;
  ParallelContext* pb = Prepare("limit.count", 2, &b);
  EXPECT_EQ(RunToEnd(pb, b), 2);
  DestroyParallelContext(pb);
}

TEST_P(ParallelLimitTest, BadArgumentsAreErrors) {
  std::optional<Error> e = CatchError([] { SetMaxParallelWorkers(-1); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->sqlstate(), ERRCODE_INVALID_PARAMETER_VALUE);
  EXPECT_EQ(MaxParallelWorkers(), saved_max_);
  e = CatchError([&] { CreateParallelContext("limit.count", -1, GetParam()); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->sqlstate(), ERRCODE_INVALID_PARAMETER_VALUE);
  e = CatchError([&] { CreateParallelContext("limit.no such entry", 1, GetParam()); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->sqlstate(), ERRCODE_UNDEFINED_FUNCTION);
}

INSTANTIATE_TEST_SUITE_P(Modes, ParallelLimitTest, AllLaunchModes(), LaunchModeName);

}  // namespace
}  // namespace grove::test
