// Segment reuse between parallel contexts: a process-mode or pool-mode
// context whose workers all finished normally leaves its segment to the
// next context of the process (zeroed, its detach callbacks run), at most
// four segments of at most 1 MiB are kept, ReleaseRecycledParallelSegments
// removes them, a context that lost a worker never passes its segment on,
// and a worker's own detach callbacks have run when the leader sees it
// finished. Thread-mode contexts use private memory and keep nothing.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "grove/base/interrupts.h"
#include "parallel_test_support.h"

namespace grove::test {
namespace {

struct RecycleState {
  std::atomic<std::uint32_t> runs;
  std::atomic<std::uint32_t> worker_callbacks;  // set by the workers' detach callbacks
  std::atomic<std::int32_t> pid[kMaxWorkers];
  std::atomic<std::uint32_t> ready[kMaxWorkers];
  std::atomic<std::uint32_t> release;
  std::uint64_t junk[64];  // written by the entry: must be zero again in the next context
};

RecycleState* StateOf(shm_toc* toc) { return static_cast<RecycleState*>(shm_toc_lookup(toc, kKeyState, false)); }

void CountWorkerDetach(dsm_segment*, Datum arg) {
  DatumGetPointer<RecycleState>(arg)->worker_callbacks.fetch_add(1);
}

void RunEntry(dsm_segment* seg, shm_toc* toc) {
  RecycleState* s = StateOf(toc);
  for (std::uint64_t& word : s->junk) word = ~std::uint64_t{0};
  if (seg != nullptr && ParallelWorkerNumber() >= 0) on_dsm_detach(seg, CountWorkerDetach, PointerGetDatum(s));
  s->runs.fetch_add(1);
}

void HoldEntry(dsm_segment*, shm_toc* toc) {
  RecycleState* s = StateOf(toc);
  const int n = ParallelWorkerNumber();
  s->pid[n].store(static_cast<std::int32_t>(getpid()));
  s->ready[n].store(1);
  while (s->release.load() == 0 && !ParallelWorkerShouldStop()) {
    CHECK_FOR_INTERRUPTS();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

const bool registered = [] {
  RegisterParallelEntry("recycle.run", &RunEntry);
  RegisterParallelEntry("recycle.hold", &HoldEntry);
  return true;
}();

void CountLeaderDetach(dsm_segment*, Datum arg) { ++*DatumGetPointer<int>(arg); }

class ParallelRecycleTest : public ParallelModeTest {
 protected:
  void SetUp() override {
    DsmTest::SetUp();
    ReleaseRecycledParallelSegments();
    names_at_start_ = SegmentNamesOf(self_);
  }

  /// Creates a context (with `extra` more bytes of segment) and its state.
  ParallelContext* Create(const char* entry, RecycleState** state, std::size_t extra = 0) {
    ParallelContext* pcxt = CreateParallelContext(entry, 2, GetParam());
    if (extra > 0) {
      shm_toc_estimate_chunk(&pcxt->estimator, extra);
      shm_toc_estimate_keys(&pcxt->estimator, 1);
    }
    *state = InitializeParallelDSMWithState<RecycleState>(pcxt, kKeyState);
    return pcxt;
  }

  /// Runs one "recycle.run" context to its end; returns its segment's handle.
  dsm_handle RunOne(std::size_t extra = 0) {
    RecycleState* s = nullptr;
    ParallelContext* pcxt = Create("recycle.run", &s, extra);
    const dsm_handle handle = dsm_segment_handle(pcxt->seg);
    LaunchParallelWorkers(pcxt);
    const std::optional<Error> e = CatchError([&] { WaitForParallelWorkersToFinish(pcxt); });
    EXPECT_FALSE(e.has_value()) << e->Format();
    EXPECT_EQ(s->runs.load(), 2u);
    DestroyParallelContext(pcxt);
    return handle;
  }

  bool ProcessModes() const { return GetParam() != ParallelLaunchMode::kThread; }

  std::vector<std::string> names_at_start_;
};

TEST_P(ParallelRecycleTest, TheNextContextReusesTheSegmentZeroed) {
  const dsm_handle first = RunOne();
  if (!ProcessModes()) {
    EXPECT_EQ(first, DSM_HANDLE_INVALID) << "a thread-mode context's segment is private";
    EXPECT_EQ(SegmentNamesOf(self_), names_at_start_);
    return;
  }
  EXPECT_EQ(NewNames(names_at_start_, SegmentNamesOf(self_)).size(), 1u) << "the segment is kept";
  RecycleState* s = nullptr;
  ParallelContext* pcxt = Create("recycle.run", &s);
  EXPECT_EQ(dsm_segment_handle(pcxt->seg), first) << "the kept segment is reused";
  for (std::uint64_t word : s->junk) ASSERT_EQ(word, 0u) << "the previous context's data is still there";
  EXPECT_EQ(s->runs.load(), 0u);
  LaunchParallelWorkers(pcxt);
  EXPECT_FALSE(CatchError([&] { WaitForParallelWorkersToFinish(pcxt); }).has_value());
  EXPECT_EQ(s->runs.load(), 2u);
  DestroyParallelContext(pcxt);
  EXPECT_EQ(NamesWithoutRecycled(), names_at_start_);
}

TEST_P(ParallelRecycleTest, DetachCallbacksRunAtDestroyAndWorkersBeforeTheyFinish) {
  int leader_detaches = 0;
  for (int round = 0; round < 3; ++round) {
    RecycleState* s = nullptr;
    ParallelContext* pcxt = Create("recycle.run", &s);
    on_dsm_detach(pcxt->seg, CountLeaderDetach, PointerGetDatum(&leader_detaches));
    LaunchParallelWorkers(pcxt);
    ASSERT_FALSE(CatchError([&] { WaitForParallelWorkersToFinish(pcxt); }).has_value());
    if (ProcessModes()) {
      // A process worker's callbacks touch the segment: they have run by the
      // time the leader sees it finished (a thread's run with the leader's).
      EXPECT_EQ(s->worker_callbacks.load(), 2u) << "round " << round;
    }
    DestroyParallelContext(pcxt);
    EXPECT_EQ(leader_detaches, round + 1) << "the leader's callback runs once per context, recycled or not";
  }
}

TEST_P(ParallelRecycleTest, AtMostFourSmallSegmentsAreKept) {
  if (!ProcessModes()) GTEST_SKIP() << "thread-mode contexts keep nothing";
  std::vector<ParallelContext*> open;
  for (int i = 0; i < 6; ++i) {
    RecycleState* s = nullptr;
    open.push_back(Create("recycle.run", &s));  // alive together: six segments
  }
  EXPECT_EQ(NewNames(names_at_start_, SegmentNamesOf(self_)).size(), 6u);
  for (ParallelContext* pcxt : open) DestroyParallelContext(pcxt);  // never launched: nobody attached
  EXPECT_EQ(NewNames(names_at_start_, SegmentNamesOf(self_)).size(), 4u);
  RunOne(std::size_t{2} << 20);  // beyond 1 MiB: removed at once
  EXPECT_EQ(NewNames(names_at_start_, SegmentNamesOf(self_)).size(), 4u);
  ReleaseRecycledParallelSegments();
  EXPECT_EQ(SegmentNamesOf(self_), names_at_start_);
}

TEST_P(ParallelRecycleTest, APinnedSegmentIsNotPassedOn) {
  if (!ProcessModes()) GTEST_SKIP() << "a private segment cannot be pinned";
  RecycleState* s = nullptr;
  ParallelContext* pcxt = Create("recycle.run", &s);
  const dsm_handle pinned = dsm_segment_handle(pcxt->seg);
  dsm_pin_segment(pcxt->seg);  // a pin is the caller's business: never reused behind it
  DestroyParallelContext(pcxt);  // which removes the segment, pinned or not (as always)
  EXPECT_EQ(SegmentNamesOf(self_), names_at_start_);
  EXPECT_NE(RunOne(), pinned);
  EXPECT_EQ(NamesWithoutRecycled(), names_at_start_);
}

TEST_P(ParallelRecycleTest, ContextThatLostAWorkerPassesNothingOn) {
  if (!ProcessModes()) GTEST_SKIP() << "a thread cannot be killed";
  RecycleState* s = nullptr;
  ParallelContext* pcxt = Create("recycle.hold", &s);
  const dsm_handle lost = dsm_segment_handle(pcxt->seg);
  LaunchParallelWorkers(pcxt);
  ASSERT_EQ(pcxt->nworkers_launched, 2);
  ASSERT_TRUE(WaitUntil([&] { return s->ready[0].load() && s->ready[1].load(); }));
  ASSERT_EQ(kill(s->pid[0].load(), SIGKILL), 0);
  const std::optional<Error> e = CatchError([&] { WaitForParallelWorkersToFinish(pcxt); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->message(), "lost connection to parallel worker");
  DestroyParallelContext(pcxt);
  EXPECT_EQ(SegmentNamesOf(self_), names_at_start_) << "a segment a dead worker had attached is removed";
  EXPECT_NE(RunOne(), lost);
}

TEST_P(ParallelRecycleTest, APoolProcessDropsItsKeptSegmentForAnother) {
  if (GetParam() != ParallelLaunchMode::kPool) GTEST_SKIP() << "pool processes only";
  RunOne();  // the pool starts (a process forked now inherits what is mapped now)
  ReleaseRecycledParallelSegments();
  const std::vector<std::string> before = SegmentNamesOf(self_);
  RunOne();
  const std::vector<std::string> kept = NewNames(before, SegmentNamesOf(self_));
  ASSERT_EQ(kept.size(), 1u);
  const std::string path = "/dev/shm/" + kept.front();
  auto mapped_by_pool = [&] {
    int n = 0;
    for (const ChildProcess& c : ChildrenOf(self_)) {
      std::ifstream maps("/proc/" + std::to_string(c.pid) + "/maps");
      for (std::string line; std::getline(maps, line);) {
        if (line.find(path) != std::string::npos) {
          ++n;
          break;
        }
      }
    }
    return n;
  };
  EXPECT_EQ(mapped_by_pool(), 2) << "both pool processes keep the segment of their last job";
  RunOne(std::size_t{512} << 10);  // another segment: the kept one is too small for it
  EXPECT_EQ(mapped_by_pool(), 0) << "a pool process keeps one context segment, the last";
}

INSTANTIATE_TEST_SUITE_P(Modes, ParallelRecycleTest, AllLaunchModes(), LaunchModeName);

}  // namespace
}  // namespace grove::test
