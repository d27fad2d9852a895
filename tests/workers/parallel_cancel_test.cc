// Cancelling a leader that waits for its workers, in each launch mode: a
// RequestCancel() from another thread while the leader is inside
// WaitForParallelWorkersToFinish ends the wait with ERROR 57014, and
// DestroyParallelContext then stops the workers, which are still running
// (no hang, no process left). Entries stop through either channel, in
// every mode: ParallelWorkerShouldStop() or CHECK_FOR_INTERRUPTS() (the
// context's stop flag is the worker thread's own cancel). A stop never
// leaves a cancel pending in the leader.
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "parallel_test_support.h"
#include "grove/base/interrupts.h"
#include "grove/workers/parallel.h"

namespace grove::test {
namespace {

using namespace std::chrono_literals;

struct SpinState {
  std::atomic<std::uint32_t> ready[kMaxWorkers];
  std::atomic<std::int32_t> pid[kMaxWorkers];
};

/// Workers that spun until their deadline, never stopped: a page shared by
/// this process and every process it forks later (pool processes included),
/// mapped before any test runs. The segment itself is gone once the
/// context is destroyed.
std::atomic<std::uint32_t>& GaveUpCount() {
  static auto* count = [] {
    void* p = mmap(nullptr, sizeof(std::atomic<std::uint32_t>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED) std::abort();
    return new (p) std::atomic<std::uint32_t>(0);
  }();
  return *count;
}

SpinState* StateOf(shm_toc* toc) { return static_cast<SpinState*>(shm_toc_lookup(toc, kKeyState, false)); }

/// Says it is running (in shared memory and with a NOTICE the leader's sink
/// sees only while it waits), then spins until stopped; bounded.
template <bool kCheckInterrupts, bool kPollStopFlag>
void SpinEntry(dsm_segment*, shm_toc* toc) {
  SpinState* s = StateOf(toc);
  const int n = ParallelWorkerNumber();
  s->pid[n].store(static_cast<std::int32_t>(getpid()));
  s->ready[n].store(1);
  ereport(NOTICE, errmsg("worker %d is spinning", n));
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  for (;;) {
    if constexpr (kCheckInterrupts) CHECK_FOR_INTERRUPTS();
    if constexpr (kPollStopFlag) {
      if (ParallelWorkerShouldStop()) return;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      GaveUpCount().fetch_add(1);
      ereport(ERROR, errmsg("parallel worker %d was never stopped", n));
    }
    std::this_thread::sleep_for(1ms);
  }
}

/// Sends NOTICEs as fast as it can (its error queue fills up when the
/// leader does not read), checking for interrupts only; bounded.
void ChatterEntry(dsm_segment*, shm_toc* toc) {
  SpinState* s = StateOf(toc);
  const int n = ParallelWorkerNumber();
  s->ready[n].store(1);
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  for (int i = 0;; ++i) {
    ereport(NOTICE, errmsg("worker %d says %d", n, i));
    CHECK_FOR_INTERRUPTS();
    if (std::chrono::steady_clock::now() > deadline) {
      GaveUpCount().fetch_add(1);
      ereport(ERROR, errmsg("parallel worker %d was never stopped", n));
    }
  }
}

const bool registered = [] {
  GaveUpCount();
  RegisterParallelEntry("cancel.chatter", &ChatterEntry);
  RegisterParallelEntry("cancel.both", &SpinEntry<true, true>);
  RegisterParallelEntry("cancel.flag", &SpinEntry<false, true>);
  RegisterParallelEntry("cancel.interrupts", &SpinEntry<true, false>);
  return true;
}();

class ParallelCancelTest : public ParallelModeTest {
 protected:
  void TearDown() override {
    EXPECT_FALSE(InterruptPending.load()) << "a cancel was left pending";
    InterruptPending.store(false);
    QueryCancelPending.store(false);
    DsmTest::TearDown();
  }

  ParallelContext* Start(const char* entry, int nworkers, SpinState** state) {
    ParallelContext* pcxt = CreateParallelContext(entry, nworkers, GetParam());
    *state = InitializeParallelDSMWithState<SpinState>(pcxt, kKeyState);
    LaunchParallelWorkers(pcxt);
    return pcxt;
  }

  /// The leader waits; once every worker's NOTICE has come through that wait
  /// (so the leader is inside it), another thread cancels.
  void CancelTheWaitFromAnotherThread(const char* entry) {
    std::atomic<int> spinning{0};
    ScopedMessageSink sink([&](const ErrorData& d) {
      if (d.message.find("is spinning") != std::string::npos) spinning.fetch_add(1);
    });
    SpinState* s = nullptr;
    ParallelContext* pcxt = Start(entry, 2, &s);
    ASSERT_EQ(pcxt->nworkers_launched, 2);
    std::atomic<bool> cancelled{false};
    std::thread canceller([&] {
      if (WaitUntil([&] { return spinning.load() == 2; })) {
        cancelled.store(true);
        RequestCancel();
      }
    });
    const std::optional<Error> e = CatchError([&] { WaitForParallelWorkersToFinish(pcxt); });
    canceller.join();
    ASSERT_TRUE(cancelled.load()) << "the leader's wait never forwarded the workers' notices";
    ASSERT_TRUE(e.has_value()) << "the cancel did not end the wait";
    // The leader's own cancel, never taken by a worker (in thread mode the
    // process's cancel reaches every thread, but a worker thread takes only
    // its context's stop).
    EXPECT_EQ(e->sqlstate(), ERRCODE_QUERY_CANCELED) << e->Format();
    EXPECT_TRUE(e->data().context.empty()) << "a worker took the leader's cancel: " << e->Format();
    const std::vector<pid_t> pids{s->pid[0].load(), s->pid[1].load()};
    const std::uint32_t gave_up = GaveUpCount().load();
    DestroyParallelContext(pcxt);  // the workers still spin: it stops them
    EXPECT_EQ(GaveUpCount().load(), gave_up) << "a worker was not stopped but ran out its 30 s";
    if (GetParam() == ParallelLaunchMode::kProcess) {
      for (pid_t pid : pids) EXPECT_EQ(kill(pid, 0), -1) << "worker " << pid << " is still there";
    }
    EXPECT_EQ(ChildCount(self_), static_cast<std::size_t>(ParallelWorkerPoolSize()));
  }
};

TEST_P(ParallelCancelTest, CancelFromAnotherThreadEndsTheWaitAndDestroyStopsTheWorkers) {
  CancelTheWaitFromAnotherThread("cancel.both");
}

TEST_P(ParallelCancelTest, EntriesThatOnlyPollTheStopFlagAreStopped) { CancelTheWaitFromAnotherThread("cancel.flag"); }

TEST_P(ParallelCancelTest, EntriesThatOnlyCheckForInterruptsAreStopped) {
  CancelTheWaitFromAnotherThread("cancel.interrupts");
}

TEST_P(ParallelCancelTest, DestroyingBeforeTheWorkersAttachLeavesTheLeaderUncancelled) {
  // Workers that attach after the stop flag is set take it as their own
  // cancel; one that returns through the flag without a check must not leave
  // a cancel behind for its leader (in thread mode the process is the
  // leader's) nor for the next context's wait. Repeated: which workers
  // attach before the destroy is up to the scheduler.
  for (int round = 0; round < 20; ++round) {
    for (const char* entry : {"cancel.flag", "cancel.interrupts"}) {
      SpinState* s = nullptr;
      ParallelContext* pcxt = Start(entry, 2, &s);
      DestroyParallelContext(pcxt);
      ASSERT_FALSE(InterruptPending.load()) << "round " << round << ", " << entry;
    }
  }
  MessageCapture notices;
  SpinState* s = nullptr;
  ParallelContext* pcxt = Start("cancel.flag", 2, &s);
  ASSERT_TRUE(WaitUntil([&] { return s->ready[0].load() && s->ready[1].load(); }));
  EXPECT_FALSE(CatchError([&] { CheckParallelWorkers(pcxt); }).has_value());
  DestroyParallelContext(pcxt);
  EXPECT_EQ(ChildCount(self_), static_cast<std::size_t>(ParallelWorkerPoolSize()));
}

TEST_P(ParallelCancelTest, PendingCancelEndsTheAttachWait) {
  // Workers that take no cancel themselves (the flag only): the leader's.
  MessageCapture notices;
  SpinState* s = nullptr;
  ParallelContext* pcxt = Start("cancel.flag", 2, &s);
  RequestCancel();
  std::optional<Error> e = CatchError([&] { WaitForParallelWorkersToAttach(pcxt); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->sqlstate(), ERRCODE_QUERY_CANCELED);
  EXPECT_EQ(e->message(), "canceling statement due to user request");
  EXPECT_FALSE(InterruptPending.load()) << "the cancel was consumed";
  // Not cancelled any more: the attach wait works, and destroy stops them.
  e = CatchError([&] { WaitForParallelWorkersToAttach(pcxt); });
  EXPECT_FALSE(e.has_value()) << e->Format();
  DestroyParallelContext(pcxt);
  EXPECT_EQ(ChildCount(self_), static_cast<std::size_t>(ParallelWorkerPoolSize()));
}

TEST_P(ParallelCancelTest, CancelledLeaderCanRunTheNextContext) {
  CancelTheWaitFromAnotherThread("cancel.both");
  MessageCapture notices;
  SpinState* s = nullptr;
  ParallelContext* pcxt = Start("cancel.flag", 2, &s);
  ASSERT_TRUE(WaitUntil([&] { return s->ready[0].load() && s->ready[1].load(); }));
  DestroyParallelContext(pcxt);
  EXPECT_EQ(ChildCount(self_), static_cast<std::size_t>(ParallelWorkerPoolSize()));
}

TEST_P(ParallelCancelTest, WorkersBlockedOnAFullErrorQueueAreStoppedByDestroy) {
  // Nobody reads the workers' notices: their queues fill and their sends
  // block. Destroying the context detaches the queues first, so the sends
  // fail instead, and the stop (held while a report is sent, never
  // swallowed) ends the entries. Before, a thread worker could block for
  // good, and the destroy with it.
  for (int round = 0; round < 3; ++round) {
    SpinState* s = nullptr;
    ParallelContext* pcxt = Start("cancel.chatter", 2, &s);
    ASSERT_EQ(pcxt->nworkers_launched, 2);
    ASSERT_TRUE(WaitUntil([&] { return s->ready[0].load() && s->ready[1].load(); }));
    std::this_thread::sleep_for(20ms);  // long enough to fill 16 KiB of notices
    const std::uint32_t gave_up = GaveUpCount().load();
    DestroyParallelContext(pcxt);
    EXPECT_EQ(GaveUpCount().load(), gave_up) << "round " << round << ": a worker ran out its 30 s";
  }
  EXPECT_EQ(ChildCount(self_), static_cast<std::size_t>(ParallelWorkerPoolSize()));
}

INSTANTIATE_TEST_SUITE_P(Modes, ParallelCancelTest, AllLaunchModes(), LaunchModeName);

}  // namespace
}  // namespace grove::test
