// Parallel contexts when something goes wrong, in each launch mode where it
// applies:
// * a worker's ERROR reaches the leader's wait with its SQLSTATE, detail,
//   hint and context lines, plus "parallel worker N"; an exception that is
//   not a grove::Error becomes an ERROR too;
// * a worker that calls abort(), is killed with SIGKILL mid-job by the test,
//   or exits without its final report is "lost connection to parallel
//   worker" — never waited on;
// * a worker that dies before attaching is "parallel worker failed to
//   initialize";
// * a leader killed with SIGKILL takes its workers with it
//   (PR_SET_PDEATHSIG) and dsm_cleanup_orphans() removes its segments;
// * a pool process killed while idle does not take the next leader down.
// After each failure DestroyParallelContext stops the other workers, and no
// segment and no child process (other than the pool's) is left.
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "parallel_test_support.h"
#include "grove/base/interrupts.h"
#include "grove/workers/parallel.h"

namespace grove::test {
namespace {

using namespace std::chrono_literals;

constexpr SqlState kDivisionByZero{"22012"};  // a SQLSTATE the worker's error carries through

/// The workers' shared state: each announces its pid and that it is
/// running, then blocks until released or stopped.
struct BlockState {
  std::atomic<std::int32_t> pid[kMaxWorkers];
  std::atomic<std::uint32_t> ready[kMaxWorkers];
  std::atomic<std::uint32_t> release;  // set by the test: blocked workers return
  std::atomic<std::uint32_t> runs;     // workers that returned normally
};

BlockState* StateOf(shm_toc* toc) { return static_cast<BlockState*>(shm_toc_lookup(toc, kKeyState, false)); }

void Announce(BlockState* s) {
  const int n = ParallelWorkerNumber();
  s->pid[n].store(static_cast<std::int32_t>(getpid()));
  s->ready[n].store(1);
}

/// Blocks (in a worker) until the test releases it or the leader stops it,
/// checking for interrupts as entries must. Bounded, so that a broken stop
/// fails a test instead of hanging it.
void Block(BlockState* s) {
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (s->release.load() == 0 && !ParallelWorkerShouldStop()) {
    CHECK_FOR_INTERRUPTS();
    if (std::chrono::steady_clock::now() > deadline)
      ereport(ERROR, errmsg("parallel worker %d was never released nor stopped", ParallelWorkerNumber()));
    std::this_thread::sleep_for(1ms);
  }
}

void BlockEntry(dsm_segment*, shm_toc* toc) {
  BlockState* s = StateOf(toc);
  Announce(s);
  Block(s);
  s->runs.fetch_add(1);
}

void AddRowContext(void*) { errcontext_msg("computing row %d", 7); }

/// Worker 1 fails with a full report (and a context line of its own); the
/// others block until stopped.
void ErrorEntry(dsm_segment*, shm_toc* toc) {
  BlockState* s = StateOf(toc);
  Announce(s);
  if (ParallelWorkerNumber() == 1) {
    ErrorContextCallback callback{error_context_stack, &AddRowContext, nullptr};
    error_context_stack = &callback;
    struct Restore {
      ErrorContextCallback* previous;
      ~Restore() { error_context_stack = previous; }
    } restore{callback.previous};
    ereport(ERROR, errcode(kDivisionByZero), errmsg("division by zero in worker %d", ParallelWorkerNumber()),
            errdetail("The divisor was %d.", 0), errhint("Check the input."));
  }
  Block(s);
  s->runs.fetch_add(1);
}

void ThrowEntry(dsm_segment*, shm_toc* toc) {
  Announce(StateOf(toc));
  throw std::runtime_error("not a grove error");
}

void AbortEntry(dsm_segment*, shm_toc* toc) {
  BlockState* s = StateOf(toc);
  Announce(s);
  if (ParallelWorkerNumber() == 0) {
    const rlimit no_core{0, 0};
    setrlimit(RLIMIT_CORE, &no_core);  // no core file for an abort on purpose
    std::abort();
  }
  Block(s);
  s->runs.fetch_add(1);
}

void ExitEntry(dsm_segment*, shm_toc* toc) {
  BlockState* s = StateOf(toc);
  Announce(s);
  if (ParallelWorkerNumber() == 0) {
    std::fflush(nullptr);
    _exit(0);  // a clean exit status, but no final report
  }
  Block(s);
  s->runs.fetch_add(1);
}

const bool registered = [] {
  RegisterParallelEntry("failure.block", &BlockEntry);
  RegisterParallelEntry("failure.error", &ErrorEntry);
  RegisterParallelEntry("failure.throw", &ThrowEntry);
  RegisterParallelEntry("failure.abort", &AbortEntry);
  RegisterParallelEntry("failure.exit", &ExitEntry);
  return true;
}();

// --- forks that die at once (a worker killed before it attaches) --------------------------------

// The fork (counted from 1) whose child kills itself at once; 0: none.
std::atomic<int> fork_count{0};
std::atomic<int> fork_to_kill{0};
void CountFork() { fork_count.fetch_add(1); }
void MaybeDieInChild() {
  const int target = fork_to_kill.load();
  if (target != 0 && fork_count.load() == target) raise(SIGKILL);
}
void InstallForkHandlersOnce() {
  static const bool installed = [] { return pthread_atfork(&CountFork, nullptr, &MaybeDieInChild) == 0; }();
  ASSERT_TRUE(installed);
}

// --- helpers ------------------------------------------------------------------------------------

/// Cancels (RequestCancel) if not disarmed in time: a wait that should have
/// ended by itself fails the test instead of hanging it.
class CancelWatchdog {
 public:
  explicit CancelWatchdog(std::chrono::seconds limit)
      : thread_([this, limit] {
          std::unique_lock<std::mutex> lock(mutex_);
          if (!cv_.wait_for(lock, limit, [this] { return disarmed_; })) {
            fired_.store(true);
            RequestCancel();
          }
        }) {}
  ~CancelWatchdog() { Disarm(); }
  void Disarm() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      disarmed_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  bool fired() const { return fired_.load(); }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool disarmed_ = false;
  std::atomic<bool> fired_{false};
  std::thread thread_;
};

class ParallelFailureTest : public ParallelModeTest {
 protected:
  void TearDown() override {
    // Only a watchdog that fired (a failure already reported) may leave one.
    EXPECT_FALSE(InterruptPending.load()) << "a cancel was left pending";
    InterruptPending.store(false);
    QueryCancelPending.store(false);
    DsmTest::TearDown();
  }

  /// Creates a context whose segment holds a BlockState, and launches it.
  ParallelContext* Start(const char* entry, int nworkers, BlockState** state, ParallelLaunchMode mode) {
    ParallelContext* pcxt = CreateParallelContext(entry, nworkers, mode);
    *state = InitializeParallelDSMWithState<BlockState>(pcxt, kKeyState);
    LaunchParallelWorkers(pcxt);
    return pcxt;
  }
  ParallelContext* Start(const char* entry, int nworkers, BlockState** state) {
    return Start(entry, nworkers, state, GetParam());
  }

  bool AllReady(const BlockState* s, int n) {
    for (int i = 0; i < n; ++i)
      if (s->ready[i].load() == 0) return false;
    return true;
  }

  /// The wait's ERROR, or a failure if there was none.
  Error WaitExpectingError(ParallelContext* pcxt) {
    CancelWatchdog watchdog(20s);
    try {
      WaitForParallelWorkersToFinish(pcxt);
    } catch (const Error& e) {
      EXPECT_FALSE(watchdog.fired()) << "the wait hung and was cancelled: " << e.Format();
      return e;
    }
    ADD_FAILURE() << "WaitForParallelWorkersToFinish returned without an ERROR";
    return Error(ErrorData{});
  }

  /// No child of this process but the pool's processes, and no zombie.
  void ExpectOnlyPoolChildren() {
    const std::vector<ChildProcess> children = ChildrenOf(self_);
    for (const ChildProcess& c : children) EXPECT_NE(c.state, 'Z') << "zombie child " << c.pid;
    EXPECT_EQ(static_cast<int>(children.size()), ParallelWorkerPoolSize()) << "children that are not pool processes";
    EXPECT_LE(ParallelWorkerPoolSize(), MaxParallelWorkers());
  }

  /// A fresh context of the same mode works (a pool replaced what it lost).
  void ExpectNextContextWorks() {
    ParallelContext* pcxt = CreateParallelContext("failure.block", 2, GetParam());
    BlockState* s = InitializeParallelDSMWithState<BlockState>(pcxt, kKeyState);
    s->release.store(1);
    LaunchParallelWorkers(pcxt);
    EXPECT_EQ(pcxt->nworkers_launched, 2);
    const std::optional<Error> e = CatchError([&] { WaitForParallelWorkersToFinish(pcxt); });
    EXPECT_FALSE(e.has_value()) << e->Format();
    EXPECT_EQ(s->runs.load(), 2u);
    DestroyParallelContext(pcxt);
  }
};

// --- ERROR ------------------------------------------------------------------------------------

TEST_P(ParallelFailureTest, WorkerErrorIsReraisedWholeAndTheOthersAreStopped) {
  BlockState* s = nullptr;
  ParallelContext* pcxt = Start("failure.error", 3, &s);
  ASSERT_EQ(pcxt->nworkers_launched, 3);
  const Error e = WaitExpectingError(pcxt);
  EXPECT_EQ(e.message(), "division by zero in worker 1");
  EXPECT_EQ(e.sqlstate(), kDivisionByZero);
  EXPECT_EQ(e.detail(), "The divisor was 0.");
  EXPECT_EQ(e.hint(), "Check the input.");
  EXPECT_EQ(e.data().elevel, ERROR);
  const std::vector<std::string> expected_context{"computing row 7", "parallel worker 1"};
  EXPECT_EQ(e.data().context, expected_context);
  // Workers 0 and 2 are still blocked: destroying the context stops them.
  DestroyParallelContext(pcxt);
  ExpectOnlyPoolChildren();
  ExpectNextContextWorks();
}

TEST_P(ParallelFailureTest, ExceptionThatIsNotAGroveErrorBecomesAnError) {
  BlockState* s = nullptr;
  ParallelContext* pcxt = Start("failure.throw", 1, &s);
  const Error e = WaitExpectingError(pcxt);
  EXPECT_TRUE(Contains(e.message(), "not a grove error")) << e.Format();
  ASSERT_FALSE(e.data().context.empty());
  EXPECT_EQ(e.data().context.back(), "parallel worker 0");
  DestroyParallelContext(pcxt);
  ExpectOnlyPoolChildren();
}

// --- lost workers -----------------------------------------------------------------------------

TEST_P(ParallelFailureTest, WorkerThatAbortsIsLost) {
  if (GetParam() == ParallelLaunchMode::kThread) GTEST_SKIP() << "abort() in a thread ends the whole process";
  BlockState* s = nullptr;
  ParallelContext* pcxt = Start("failure.abort", 2, &s);
  ASSERT_EQ(pcxt->nworkers_launched, 2);
  const Error e = WaitExpectingError(pcxt);
  EXPECT_EQ(e.message(), "lost connection to parallel worker") << e.Format();
  EXPECT_EQ(e.sqlstate(), ERRCODE_INTERNAL_ERROR);
  EXPECT_TRUE(Contains(e.detail(), "Parallel worker 0")) << e.detail();
  EXPECT_TRUE(Contains(e.detail(), "signal " + std::to_string(SIGABRT))) << e.detail();
  DestroyParallelContext(pcxt);
  ExpectOnlyPoolChildren();
  ExpectNextContextWorks();
}

TEST_P(ParallelFailureTest, WorkerKilledMidJobIsLost) {
  if (GetParam() == ParallelLaunchMode::kThread) GTEST_SKIP() << "a thread cannot be killed alone";
  BlockState* s = nullptr;
  ParallelContext* pcxt = Start("failure.block", 2, &s);
  ASSERT_EQ(pcxt->nworkers_launched, 2);
  ASSERT_TRUE(WaitUntil([&] { return AllReady(s, 2); })) << "the workers never started";
  const pid_t victim = s->pid[0].load();
  ASSERT_GT(victim, 0);
  ASSERT_NE(victim, self_);
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  const Error e = WaitExpectingError(pcxt);
  EXPECT_EQ(e.message(), "lost connection to parallel worker") << e.Format();
  EXPECT_TRUE(Contains(e.detail(), "Parallel worker 0")) << e.detail();
  EXPECT_TRUE(Contains(e.detail(), "signal " + std::to_string(SIGKILL))) << e.detail();
  DestroyParallelContext(pcxt);  // worker 1 is still blocked
  EXPECT_EQ(kill(victim, 0), -1) << "the killed worker was not reaped";
  ExpectOnlyPoolChildren();
  ExpectNextContextWorks();
}

TEST_P(ParallelFailureTest, WorkerThatExitsWithoutReportingIsLost) {
  if (GetParam() == ParallelLaunchMode::kThread) GTEST_SKIP() << "_exit() in a thread ends the whole process";
  BlockState* s = nullptr;
  ParallelContext* pcxt = Start("failure.exit", 2, &s);
  const Error e = WaitExpectingError(pcxt);
  EXPECT_EQ(e.message(), "lost connection to parallel worker") << e.Format();
  EXPECT_TRUE(Contains(e.detail(), "Parallel worker 0")) << e.detail();
  DestroyParallelContext(pcxt);
  ExpectOnlyPoolChildren();
  ExpectNextContextWorks();
}

TEST_P(ParallelFailureTest, ContextCanBeDestroyedWithoutWaiting) {
  BlockState* s = nullptr;
  ParallelContext* pcxt = Start("failure.block", 3, &s);
  ASSERT_TRUE(WaitUntil([&] { return AllReady(s, pcxt->nworkers_launched); }));
  DestroyParallelContext(pcxt);  // no wait: the blocked workers are stopped
  ExpectOnlyPoolChildren();
}

INSTANTIATE_TEST_SUITE_P(Modes, ParallelFailureTest, AllLaunchModes(), LaunchModeName);

// --- workers that never attach ------------------------------------------------------------------

using ParallelNeverAttachedTest = ParallelFailureTest;

// A worker process killed between fork and attach (the test's pthread_atfork
// handler kills the first child of the launch).
TEST_F(ParallelNeverAttachedTest, ProcessKilledBeforeAttachingFailsToInitialize) {
  InstallForkHandlersOnce();
  BlockState* s = nullptr;
  fork_to_kill.store(fork_count.load() + 1);  // the launch's first fork: worker 0
  ParallelContext* pcxt = Start("failure.block", 2, &s, ParallelLaunchMode::kProcess);
  fork_to_kill.store(0);
  ASSERT_EQ(pcxt->nworkers_launched, 2);
  std::optional<Error> e;
  {
    CancelWatchdog watchdog(20s);
    e = CatchError([&] { WaitForParallelWorkersToAttach(pcxt); });
    EXPECT_FALSE(watchdog.fired()) << "WaitForParallelWorkersToAttach hung";
  }
  ASSERT_TRUE(e.has_value()) << "a worker that died before attaching must fail the wait";
  EXPECT_EQ(e->message(), "parallel worker failed to initialize") << e->Format();
  EXPECT_EQ(e->sqlstate(), ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
  EXPECT_TRUE(Contains(e->detail(), "Parallel worker 0")) << e->detail();
  EXPECT_TRUE(Contains(e->detail(), "before attaching")) << e->detail();
  // Worker 1 attached and blocks; the finish wait has nothing more to say
  // about worker 0, and destroying the context stops worker 1.
  EXPECT_EQ(s->ready[0].load(), 0u);
  DestroyParallelContext(pcxt);
  ExpectOnlyPoolChildren();
}

/// How a worker is kept from attaching, in every mode, with public means
/// only: the segment's name is removed before the workers attach it (process
/// modes), or the table of contents at the segment's start is made
/// unrecognizable (all modes).
class ParallelAttachFailureTest : public ParallelFailureTest {
 protected:
  /// Runs a 2-worker context whose workers cannot attach; `spoil` runs
  /// between InitializeParallelDSM and the launch, `repair` after the wait.
  void ExpectFailureToInitialize(const std::function<void(ParallelContext*)>& spoil,
                                 const std::function<void(ParallelContext*)>& repair) {
    ParallelContext* pcxt = CreateParallelContext("failure.block", 2, GetParam());
    auto* s = InitializeParallelDSMWithState<BlockState>(pcxt, kKeyState);
    spoil(pcxt);
    LaunchParallelWorkers(pcxt);
    ASSERT_EQ(pcxt->nworkers_launched, 2);
    std::optional<Error> e;
    bool hung = false;
    {
      CancelWatchdog watchdog(10s);
      e = CatchError([&] { WaitForParallelWorkersToFinish(pcxt); });
      hung = watchdog.fired();
    }
    repair(pcxt);
    EXPECT_FALSE(hung) << "WaitForParallelWorkersToFinish never noticed the workers' failure (cancelled after 10 s)";
    if (!hung) {
      ASSERT_TRUE(e.has_value()) << "workers that never attached must fail the wait";
      EXPECT_EQ(e->message(), "parallel worker failed to initialize") << e->Format();
      EXPECT_EQ(e->sqlstate(), ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE);
    }
    EXPECT_EQ(s->ready[0].load() + s->ready[1].load(), 0u);
    if (hung && GetParam() == ParallelLaunchMode::kThread) {
      // A thread cannot be stopped: DestroyParallelContext would wait for a
      // worker that is gone but never said so. Left behind, on purpose.
      ADD_FAILURE() << "the context is leaked so that the test ends";
      return;
    }
    DestroyParallelContext(pcxt);
    ExpectOnlyPoolChildren();
    ExpectNextContextWorks();
  }
};

TEST_P(ParallelAttachFailureTest, SegmentRemovedBeforeAttachFailsToInitialize) {
  if (GetParam() == ParallelLaunchMode::kThread) GTEST_SKIP() << "thread workers use the leader's mapping";
  const std::vector<std::string> before = SegmentNamesOf(self_);
  ExpectFailureToInitialize(
      [&](ParallelContext*) {
        // The context's segment is the one name this process gained.
        const std::vector<std::string> added = NewNames(before, SegmentNamesOf(self_));
        ASSERT_EQ(added.size(), 1u) << Join(added);
        ASSERT_EQ(shm_unlink(("/" + added.front()).c_str()), 0) << std::strerror(errno);
      },
      [](ParallelContext*) {});
}

TEST_P(ParallelAttachFailureTest, UnrecognizableSegmentFailsToInitialize) {
  std::uint64_t saved = 0;
  ExpectFailureToInitialize(
      [&](ParallelContext* pcxt) {
        // The table of contents starts the segment; its first word is the
        // magic number the workers check (verified here before spoiling it).
        void* start = dsm_segment_address(pcxt->seg);
        std::memcpy(&saved, start, sizeof saved);
        ASSERT_NE(shm_toc_attach(saved, start), nullptr) << "the TOC's magic number is not its first word";
        const std::uint64_t spoiled = ~saved;
        std::memcpy(start, &spoiled, sizeof spoiled);
      },
      [&](ParallelContext* pcxt) { std::memcpy(dsm_segment_address(pcxt->seg), &saved, sizeof saved); });
}

INSTANTIATE_TEST_SUITE_P(Modes, ParallelAttachFailureTest, ::testing::Values(ParallelLaunchMode::kProcess),
                         LaunchModeName);
// In pool and thread modes a worker that fails before attaching cannot mark
// its slot, and its process or thread outlives the job: the pool process
// ends instead, and the thread's task marks itself done, so that the
// leader's waits (and DestroyParallelContext) end.
INSTANTIATE_TEST_SUITE_P(WarmModes, ParallelAttachFailureTest,
                         ::testing::Values(ParallelLaunchMode::kPool, ParallelLaunchMode::kThread), LaunchModeName);

// --- a leader killed with SIGKILL --------------------------------------------------------------

class ParallelLeaderDeathTest : public ParallelFailureTest {};

TEST_P(ParallelLeaderDeathTest, WorkersDieWithTheirLeaderAndItsSegmentsAreCleanedUp) {
  const ParallelLaunchMode mode = GetParam();
  InitializeDsm();  // this process's own first-use cleanup is over before the orphan exists
  // The leader's workers are this process's grandchildren: as a subreaper it
  // inherits them when the leader dies, and can see how they ended.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  struct Unsubreaper {
    ~Unsubreaper() { prctl(PR_SET_CHILD_SUBREAPER, 0); }
  } unsubreaper;

  Pipe to_test;  // the leader's workers' pids
  Pipe hold;     // never written: the leader blocks on it until it is killed
  const pid_t leader = RunChild([&]() -> int {
    to_test.CloseRead();
    hold.CloseWrite();
    BlockState* s = nullptr;
    ParallelContext* pcxt = Start("failure.block", 2, &s, mode);
    CHILD_REQUIRE(pcxt->nworkers_launched == 2);
    CHILD_REQUIRE(WaitUntil([&] { return AllReady(s, 2); }));
    for (int i = 0; i < 2; ++i) CHILD_REQUIRE(to_test.Send(s->pid[i].load()));
    int never = 0;
    hold.Receive(&never);
    return 0;
  });
  ASSERT_GT(leader, 0);
  to_test.CloseWrite();
  hold.CloseRead();
  std::int32_t workers[2] = {0, 0};
  ASSERT_TRUE(to_test.Receive(&workers[0]) && to_test.Receive(&workers[1])) << "the leader never started its workers";
  EXPECT_FALSE(SegmentNamesOf(leader).empty()) << "the leader's context has no segment";

  ASSERT_EQ(kill(leader, SIGKILL), 0);
  const int status = Reap(leader);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << DescribeStatus(status);

  for (const std::int32_t w : workers) {
    int wstatus = 0;
    const bool ended = WaitUntil([&] { return waitpid(w, &wstatus, WNOHANG) == w; }, 20s);
    if (!ended) {
      ADD_FAILURE() << "worker " << w << " outlived its leader";
      kill(w, SIGKILL);
      waitpid(w, &wstatus, 0);
      continue;
    }
    EXPECT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
        << "worker " << w << " " << DescribeStatus(wstatus) << " (PR_SET_PDEATHSIG sends SIGKILL)";
  }

  // Nobody removed the dead leader's segment and registry; the cleanup does
  // (this call, or the first DSM call of a test process starting meanwhile:
  // ctest runs them side by side).
  dsm_cleanup_orphans();
  EXPECT_EQ(GroveNamesOf(leader), std::vector<std::string>{});
  for (const std::int32_t w : workers) EXPECT_EQ(GroveNamesOf(w), std::vector<std::string>{});
}

INSTANTIATE_TEST_SUITE_P(Modes, ParallelLeaderDeathTest,
                         ::testing::Values(ParallelLaunchMode::kProcess, ParallelLaunchMode::kPool), LaunchModeName);

// --- a pool process killed while idle ----------------------------------------------------------

using ParallelPoolFailureTest = ParallelFailureTest;

// A pool process killed while idle: LaunchOne must not write a job into
// its pipe (no reader: SIGPIPE would kill the leader) but reap it and use
// another.
TEST_F(ParallelPoolFailureTest, PoolProcessKilledWhileIdleDoesNotTakeTheLeaderDown) {
  InitializeDsm();
  // In a child acting as leader: what goes wrong there cannot end the test.
  const pid_t leader = RunChild([&]() -> int {
    BlockState* s = nullptr;
    ParallelContext* pcxt = Start("failure.block", 1, &s, ParallelLaunchMode::kPool);
    s->release.store(1);
    WaitForParallelWorkersToFinish(pcxt);
    const pid_t idle = s->pid[0].load();
    DestroyParallelContext(pcxt);
    CHILD_REQUIRE(idle > 0 && ParallelWorkerPoolSize() == 1);
    CHILD_REQUIRE(kill(idle, SIGKILL) == 0);
    // Dead for sure, and left unreaped for the pool to notice.
    siginfo_t info{};
    CHILD_REQUIRE(waitid(P_PID, static_cast<id_t>(idle), &info, WEXITED | WNOWAIT) == 0);
    for (int round = 0; round < 2; ++round) {
      pcxt = CreateParallelContext("failure.block", 1, ParallelLaunchMode::kPool);
      s = InitializeParallelDSMWithState<BlockState>(pcxt, kKeyState);
      s->release.store(1);
      LaunchParallelWorkers(pcxt);  // round 0: fewer workers, or a fresh pool process
      WaitForParallelWorkersToFinish(pcxt);
      CHILD_REQUIRE(s->runs.load() == static_cast<std::uint32_t>(pcxt->nworkers_launched));
      if (round == 1) CHILD_REQUIRE(pcxt->nworkers_launched == 1);
      DestroyParallelContext(pcxt);
    }
    ShutdownParallelWorkerPool();
    return 0;
  });
  const int status = Reap(leader);
  EXPECT_TRUE(ExitedZero(status)) << "leader " << DescribeStatus(status)
                                  << (WIFSIGNALED(status) && WTERMSIG(status) == SIGPIPE ? " (SIGPIPE)" : "");
  dsm_cleanup_orphans();  // the child ended with _exit
}

}  // namespace
}  // namespace grove::test
