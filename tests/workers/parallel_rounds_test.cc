// One context, several rounds (ReinitializeParallelDSM), in each launch
// mode: each round's workers see the leader's fresh state and their own
// numbers, with as many workers as that round asks; a round after a worker's
// ERROR (or a lost worker) runs normally; ReinitializeParallelDSM waits for
// the previous round itself. Who is who: IsParallelWorker() and
// ParallelWorkerNumber() are false / −1 in the leader — before, during and
// after its workers run, in thread mode too — and the worker's number in a
// worker. Calls out of order are ERRORs, not crashes.
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <string>
#include <thread>

#include "parallel_test_support.h"
#include "grove/base/interrupts.h"
#include "grove/workers/parallel.h"

namespace grove::test {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t kKeyRound = PARALLEL_KEY_FIRST_USER;
constexpr std::uint64_t kKeyOther = PARALLEL_KEY_FIRST_USER + 7;

struct RoundState {
  std::int32_t round;             // written by the leader before each launch
  std::int32_t fail_worker;       // this worker raises an ERROR (−1: none)
  std::int32_t die_worker;        // this worker kills itself (−1: none)
  std::atomic<std::int64_t> sum;  // Σ round·100 + worker number
  std::atomic<std::uint32_t> numbers;
  std::atomic<std::uint32_t> runs;
  std::atomic<std::int32_t> was_worker[kMaxWorkers];   // IsParallelWorker() + 1
  std::atomic<std::int32_t> should_stop[kMaxWorkers];  // ParallelWorkerShouldStop() + 1
  std::atomic<std::uint32_t> ready[kMaxWorkers];
  std::atomic<std::uint32_t> release;
};

struct Other {
  std::uint64_t magic;
};

RoundState* StateOf(shm_toc* toc) { return static_cast<RoundState*>(shm_toc_lookup(toc, kKeyRound, false)); }

void RoundEntry(dsm_segment*, shm_toc* toc) {
  RoundState* s = StateOf(toc);
  const int n = ParallelWorkerNumber();
  if (n < 0 || n >= kMaxWorkers) return;
  s->was_worker[n].store(IsParallelWorker() ? 2 : 1);
  s->should_stop[n].store(ParallelWorkerShouldStop() ? 2 : 1);
  const auto* other = static_cast<const Other*>(shm_toc_lookup(toc, kKeyOther, false));
  if (other->magic != 0x0123456789abcdefull) ereport(ERROR, errmsg("the second key's chunk is wrong"));
  if (n == s->die_worker) raise(SIGKILL);
  if (n == s->fail_worker) ereport(ERROR, errcode(ERRCODE_DATA_CORRUPTED), errmsg("round %d fails", s->round));
  s->sum.fetch_add(s->round * 100 + n);
  s->numbers.fetch_or(1u << n);
  s->runs.fetch_add(1);
}

/// Counts, says so, then waits for the test's release (bounded; stops when told).
void SlowEntry(dsm_segment* seg, shm_toc* toc) {
  RoundState* s = StateOf(toc);
  s->ready[ParallelWorkerNumber()].store(1);
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (s->release.load() == 0 && !ParallelWorkerShouldStop()) {
    CHECK_FOR_INTERRUPTS();
    if (std::chrono::steady_clock::now() > deadline) ereport(ERROR, errmsg("never released"));
    std::this_thread::sleep_for(1ms);
  }
  RoundEntry(seg, toc);
}

const bool registered = [] {
  RegisterParallelEntry("rounds.round", &RoundEntry);
  RegisterParallelEntry("rounds.slow", &SlowEntry);
  return true;
}();

class ParallelRoundsTest : public ParallelModeTest {
 protected:
  ParallelContext* Prepare(const char* entry, int nworkers, RoundState** state) {
    ParallelContext* pcxt = CreateParallelContext(entry, nworkers, GetParam());
    shm_toc_estimate_chunk(&pcxt->estimator, sizeof(RoundState));
    shm_toc_estimate_chunk(&pcxt->estimator, sizeof(Other));
    shm_toc_estimate_keys(&pcxt->estimator, 2);
    InitializeParallelDSM(pcxt);
    *state = new (shm_toc_allocate(pcxt->toc, sizeof(RoundState))) RoundState{};
    shm_toc_insert(pcxt->toc, kKeyRound, *state);
    auto* other = static_cast<Other*>(shm_toc_allocate(pcxt->toc, sizeof(Other)));
    other->magic = 0x0123456789abcdefull;
    shm_toc_insert(pcxt->toc, kKeyOther, other);
    ResetForRound(*state, 0);
    return pcxt;
  }

  /// The caller's part of a new round: its own shared state.
  static void ResetForRound(RoundState* s, int round) {
    s->round = round;
    s->fail_worker = -1;
    s->die_worker = -1;
    s->sum.store(0);
    s->numbers.store(0);
    s->runs.store(0);
    for (int i = 0; i < kMaxWorkers; ++i) {
      s->was_worker[i].store(0);
      s->should_stop[i].store(0);
      s->ready[i].store(0);
    }
    s->release.store(0);
  }

  static std::int64_t ExpectedSum(int round, int launched) {
    std::int64_t sum = 0;
    for (int n = 0; n < launched; ++n) sum += round * 100 + n;
    return sum;
  }
};

TEST_P(ParallelRoundsTest, EachRoundSeesFreshStateAndItsOwnWorkers) {
  RoundState* s = nullptr;
  ParallelContext* pcxt = Prepare("rounds.round", 4, &s);
  const int asked[] = {4, 1, 0, 3, 4, 2};
  for (int round = 0; round < static_cast<int>(std::size(asked)); ++round) {
    if (round > 0) ReinitializeParallelDSM(pcxt);
    EXPECT_EQ(pcxt->nworkers_launched, 0) << "round " << round;
    ResetForRound(s, round);
    pcxt->nworkers_to_launch = asked[round];
    LaunchParallelWorkers(pcxt);
    const int launched = pcxt->nworkers_launched;
    EXPECT_EQ(launched, asked[round]) << "round " << round;
    EXPECT_FALSE(CatchError([&] { WaitForParallelWorkersToFinish(pcxt); }).has_value()) << "round " << round;
    EXPECT_EQ(s->runs.load(), static_cast<std::uint32_t>(launched)) << "round " << round;
    EXPECT_EQ(s->numbers.load(), (1u << launched) - 1) << "round " << round;
    EXPECT_EQ(s->sum.load(), ExpectedSum(round, launched)) << "round " << round;
    for (int n = 0; n < launched; ++n) {
      EXPECT_EQ(s->was_worker[n].load(), 2) << "round " << round << ", worker " << n;
      EXPECT_EQ(s->should_stop[n].load(), 1) << "round " << round << ", worker " << n;
    }
  }
  DestroyParallelContext(pcxt);
}

TEST_P(ParallelRoundsTest, RoundAfterAWorkersErrorRunsNormally) {
  RoundState* s = nullptr;
  ParallelContext* pcxt = Prepare("rounds.round", 3, &s);
  s->fail_worker = 2;
  LaunchParallelWorkers(pcxt);
  const std::optional<Error> e = CatchError([&] { WaitForParallelWorkersToFinish(pcxt); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->message(), "round 0 fails");
  // The rest of the round (other workers' ends) is absorbed here, not raised again.
  EXPECT_FALSE(CatchError([&] { ReinitializeParallelDSM(pcxt); }).has_value());
  ResetForRound(s, 1);
  LaunchParallelWorkers(pcxt);
  EXPECT_FALSE(CatchError([&] { WaitForParallelWorkersToFinish(pcxt); }).has_value());
  EXPECT_EQ(s->runs.load(), 3u);
  EXPECT_EQ(s->sum.load(), ExpectedSum(1, 3));
  DestroyParallelContext(pcxt);
}

TEST_P(ParallelRoundsTest, RoundAfterALostWorkerRunsNormally) {
  if (GetParam() == ParallelLaunchMode::kThread) GTEST_SKIP() << "a thread cannot be killed alone";
  RoundState* s = nullptr;
  ParallelContext* pcxt = Prepare("rounds.round", 2, &s);
  s->die_worker = 0;
  LaunchParallelWorkers(pcxt);
  const std::optional<Error> e = CatchError([&] { WaitForParallelWorkersToFinish(pcxt); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->message(), "lost connection to parallel worker");
  EXPECT_FALSE(CatchError([&] { ReinitializeParallelDSM(pcxt); }).has_value());
  ResetForRound(s, 1);
  LaunchParallelWorkers(pcxt);
  EXPECT_EQ(pcxt->nworkers_launched, 2);
  EXPECT_FALSE(CatchError([&] { WaitForParallelWorkersToFinish(pcxt); }).has_value());
  EXPECT_EQ(s->sum.load(), ExpectedSum(1, 2));
  DestroyParallelContext(pcxt);
}

TEST_P(ParallelRoundsTest, ReinitializeWaitsForThePreviousRound) {
  RoundState* s = nullptr;
  ParallelContext* pcxt = Prepare("rounds.slow", 2, &s);
  LaunchParallelWorkers(pcxt);
  ASSERT_TRUE(WaitUntil([&] { return s->ready[0].load() && s->ready[1].load(); }));
  s->release.store(1);
  ReinitializeParallelDSM(pcxt);  // no wait of ours: it waits
  EXPECT_EQ(s->runs.load(), 2u);
  ResetForRound(s, 1);
  s->release.store(1);
  LaunchParallelWorkers(pcxt);
  EXPECT_FALSE(CatchError([&] { WaitForParallelWorkersToFinish(pcxt); }).has_value());
  EXPECT_EQ(s->sum.load(), ExpectedSum(1, 2));
  DestroyParallelContext(pcxt);
}

TEST_P(ParallelRoundsTest, LeaderIsNeverAParallelWorker) {
  EXPECT_FALSE(IsParallelWorker());
  EXPECT_EQ(ParallelWorkerNumber(), -1);
  EXPECT_FALSE(ParallelWorkerShouldStop());
  RoundState* s = nullptr;
  ParallelContext* pcxt = Prepare("rounds.slow", 3, &s);
  LaunchParallelWorkers(pcxt);
  ASSERT_TRUE(WaitUntil([&] { return s->ready[0].load() && s->ready[1].load() && s->ready[2].load(); }));
  // Its workers are running (in thread mode, in this very process).
  EXPECT_FALSE(IsParallelWorker());
  EXPECT_EQ(ParallelWorkerNumber(), -1);
  EXPECT_FALSE(ParallelWorkerShouldStop());
  s->release.store(1);
  EXPECT_FALSE(CatchError([&] { WaitForParallelWorkersToFinish(pcxt); }).has_value());
  for (int n = 0; n < 3; ++n) EXPECT_EQ(s->was_worker[n].load(), 2) << "worker " << n;
  EXPECT_EQ(s->numbers.load(), 0b111u);
  DestroyParallelContext(pcxt);
  EXPECT_FALSE(IsParallelWorker());
  EXPECT_EQ(ParallelWorkerNumber(), -1);
  // Another thread of the leader's process is no worker either.
  int other_number = 0;
  bool other_is_worker = true;
  std::thread other([&] {
    other_number = ParallelWorkerNumber();
    other_is_worker = IsParallelWorker();
  });
  other.join();
  EXPECT_EQ(other_number, -1);
  EXPECT_FALSE(other_is_worker);
}

TEST_P(ParallelRoundsTest, CallsOutOfOrderAreErrors) {
  DestroyParallelContext(nullptr);  // nothing
  ParallelContext* pcxt = CreateParallelContext("rounds.round", 1, GetParam());
  std::optional<Error> e = CatchError([&] { LaunchParallelWorkers(pcxt); });
  ASSERT_TRUE(e.has_value()) << "launch before InitializeParallelDSM";
  EXPECT_EQ(e->sqlstate(), ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
  e = CatchError([&] { ReinitializeParallelDSM(pcxt); });
  ASSERT_TRUE(e.has_value()) << "reinitialize before InitializeParallelDSM";
  EXPECT_EQ(e->sqlstate(), ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
  EXPECT_FALSE(CatchError([&] { WaitForParallelWorkersToFinish(pcxt); }).has_value()) << "nothing to wait for";
  DestroyParallelContext(pcxt);  // never initialized

  RoundState* s = nullptr;
  pcxt = Prepare("rounds.round", 1, &s);
  e = CatchError([&] { InitializeParallelDSM(pcxt); });
  ASSERT_TRUE(e.has_value()) << "initialize twice";
  EXPECT_EQ(e->sqlstate(), ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
  LaunchParallelWorkers(pcxt);
  e = CatchError([&] { LaunchParallelWorkers(pcxt); });
  ASSERT_TRUE(e.has_value()) << "launch twice in a round";
  EXPECT_EQ(e->sqlstate(), ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
  EXPECT_FALSE(CatchError([&] { WaitForParallelWorkersToFinish(pcxt); }).has_value());
  EXPECT_EQ(s->runs.load(), 1u) << "the failed second launch started nobody";
  DestroyParallelContext(pcxt);
}

INSTANTIATE_TEST_SUITE_P(Modes, ParallelRoundsTest, AllLaunchModes(), LaunchModeName);

}  // namespace
}  // namespace grove::test
