// Parallel contexts and transactions, in each launch mode.
// The leader's side: a context belongs to the resource owner current when it
// was created — left at commit it is destroyed with a leak WARNING, at abort
// (or a subtransaction's rollback, or RunStatement's error recovery)
// silently; either way its workers are stopped and its segment removed. One
// created outside a transaction belongs to nobody.
// The worker's side (the runtime is linked): the entry runs inside a
// transaction of the worker's own — at nesting level 1, with an owner and
// transaction memory, whatever the leader is in — that commits when the entry
// returns (resources it leaks are reported to the leader) and aborts when
// it fails; the leader's transaction callbacks never run in a worker.
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "parallel_test_support.h"
#include "grove/base/interrupts.h"
#include "grove/workers/parallel.h"

namespace grove::test {
namespace {

using namespace std::chrono_literals;

struct XactState {
  std::atomic<std::uint32_t> ready[kMaxWorkers];
  std::atomic<std::int32_t> pid[kMaxWorkers];
  std::atomic<std::int32_t> in_transaction[kMaxWorkers];  // IsTransactionState(), +1 so that 0 = not run
  std::atomic<std::int32_t> nest_level[kMaxWorkers];
  std::atomic<std::int32_t> has_owner[kMaxWorkers];
  std::atomic<std::int32_t> in_transaction_memory[kMaxWorkers];
  std::atomic<std::uint32_t> events[kMaxWorkers];  // bit per XactEvent the worker's callback saw
  std::atomic<std::int32_t> leader_callback_pid;   // who ran the leader's callback (0: nobody)
  std::atomic<std::int32_t> leader_callback_tid;
  std::int32_t tid[kMaxWorkers];
  std::uint64_t top_bytes[kMaxWorkers];
};

XactState* StateOf(shm_toc* toc) { return static_cast<XactState*>(shm_toc_lookup(toc, kKeyState, false)); }

/// A worker's transaction callback: records the events, and unregisters
/// itself when the transaction ends.
void RecordEvent(XactEvent event, void* arg) {
  static_cast<std::atomic<std::uint32_t>*>(arg)->fetch_or(1u << event);
  if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT) UnregisterXactCallback(&RecordEvent, arg);
}

void RecordTransaction(XactState* s, int n) {
  s->pid[n].store(static_cast<std::int32_t>(getpid()));
  s->in_transaction[n].store(IsTransactionState() ? 2 : 1);
  s->nest_level[n].store(GetCurrentTransactionNestLevel());
  s->has_owner[n].store(CurrentResourceOwner != nullptr && CurrentResourceOwner == CurTransactionResourceOwner ? 2 : 1);
  s->in_transaction_memory[n].store(
      TopTransactionContext != nullptr && MemoryContextIsDescendant(CurrentMemoryContext, TopTransactionContext) ? 2
                                                                                                                 : 1);
  RegisterXactCallback(&RecordEvent, &s->events[n]);
}

void InspectEntry(dsm_segment*, shm_toc* toc) { RecordTransaction(StateOf(toc), ParallelWorkerNumber()); }

void FailEntry(dsm_segment*, shm_toc* toc) {
  RecordTransaction(StateOf(toc), ParallelWorkerNumber());
  ereport(ERROR, errcode(ERRCODE_DATA_CORRUPTED), errmsg("worker %d fails", ParallelWorkerNumber()));
}

/// Leaves a DSM segment attached: the worker's commit reports and releases it.
void LeakEntry(dsm_segment*, shm_toc* toc) {
  RecordTransaction(StateOf(toc), ParallelWorkerNumber());
  dsm_create(64);
}

/// Leaves its callback registered (it never unregisters): nothing of it may
/// stay behind in a warm worker.
void ForgetfulCallback(XactEvent event, void* arg) {
  static_cast<std::atomic<std::uint32_t>*>(arg)->fetch_or(1u << event);
}
void ForgetfulEntry(dsm_segment*, shm_toc* toc) {
  XactState* s = StateOf(toc);
  const int n = ParallelWorkerNumber();
  s->tid[n] = static_cast<std::int32_t>(syscall(SYS_gettid));
  s->top_bytes[n] = TopMemoryContextUsed();
  RegisterXactCallback(&ForgetfulCallback, &s->events[n]);
}

/// Blocks until stopped (bounded).
void HoldEntry(dsm_segment*, shm_toc* toc) {
  XactState* s = StateOf(toc);
  const int n = ParallelWorkerNumber();
  s->ready[n].store(1);
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!ParallelWorkerShouldStop()) {
    CHECK_FOR_INTERRUPTS();
    if (std::chrono::steady_clock::now() > deadline) ereport(ERROR, errmsg("never stopped"));
    std::this_thread::sleep_for(1ms);
  }
}

const bool registered = [] {
  RegisterParallelEntry("xact.inspect", &InspectEntry);
  RegisterParallelEntry("xact.fail", &FailEntry);
  RegisterParallelEntry("xact.leak", &LeakEntry);
  RegisterParallelEntry("xact.forgetful", &ForgetfulEntry);
  RegisterParallelEntry("xact.hold", &HoldEntry);
  return true;
}();

/// The leader's own transaction callback (arg: the context's XactState).
void LeaderCallback(XactEvent, void* arg) {
  auto* s = static_cast<XactState*>(arg);
  s->leader_callback_pid.store(static_cast<std::int32_t>(getpid()));
  s->leader_callback_tid.store(static_cast<std::int32_t>(syscall(SYS_gettid)));
}

class ParallelXactTest : public ParallelModeTest {
 protected:
  void SetUp() override {
    DsmTest::SetUp();
    // In process mode every child must be one of the context's workers.
    if (GetParam() == ParallelLaunchMode::kProcess) ShutdownParallelWorkerPool();
    segments_before_ = SegmentNamesOf(self_);
  }

  ParallelContext* Start(const char* entry, int nworkers, XactState** state, bool launch = true) {
    ParallelContext* pcxt = CreateParallelContext(entry, nworkers, GetParam());
    *state = InitializeParallelDSMWithState<XactState>(pcxt, kKeyState);
    if (launch) LaunchParallelWorkers(pcxt);
    return pcxt;
  }

  /// Starts a context of blocked workers (still running when it is released).
  ParallelContext* StartHeld(int nworkers) {
    XactState* s = nullptr;
    ParallelContext* pcxt = Start("xact.hold", nworkers, &s);
    EXPECT_EQ(pcxt->nworkers_launched, nworkers);
    EXPECT_TRUE(WaitUntil([&] {
      for (int i = 0; i < pcxt->nworkers_launched; ++i)
        if (!s->ready[i].load()) return false;
      return true;
    }));
    return pcxt;
  }

  /// The context is gone: its segment, its workers.
  void ExpectContextGone() {
    EXPECT_EQ(NamesWithoutRecycled(), segments_before_) << "the context's segment is left";
    if (GetParam() == ParallelLaunchMode::kProcess) {
      errno = 0;
      EXPECT_TRUE(waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD) << "a worker process is left";
    }
  }

  std::vector<std::string> segments_before_;
};

// --- the leader's resource owner -------------------------------------------------------------

TEST_P(ParallelXactTest, ContextLeftAtCommitIsDestroyedWithAWarning) {
  MessageCapture capture;
  StartTransactionCommand();
  StartHeld(2);  // left behind, its workers still running
  CommitTransactionCommand();
  const std::vector<std::string> leaks = capture.LeakTexts();
  ASSERT_EQ(leaks.size(), 1u) << capture.All();
  EXPECT_EQ(leaks[0], "parallel context \"xact.hold\" (2 workers)");
  ExpectContextGone();
}

TEST_P(ParallelXactTest, ContextLeftAtAbortIsDestroyedSilently) {
  MessageCapture capture;
  StartTransactionCommand();
  StartHeld(2);
  AbortCurrentTransaction();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  ExpectContextGone();
}

TEST_P(ParallelXactTest, ContextDestroyedBeforeCommitIsNoLeak) {
  MessageCapture capture;
  StartTransactionCommand();
  ParallelContext* pcxt = StartHeld(2);
  DestroyParallelContext(pcxt);
  CommitTransactionCommand();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  ExpectContextGone();
}

TEST_P(ParallelXactTest, SubtransactionRollbackDestroysItsContext) {
  MessageCapture capture;
  StartTransactionCommand();
  BeginInternalSubTransaction("parallel");
  StartHeld(2);
  RollbackAndReleaseCurrentSubTransaction();
  ExpectContextGone();  // already, before the top transaction ends
  CommitTransactionCommand();
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
}

TEST_P(ParallelXactTest, WorkerErrorInRunStatementLeavesNothing) {
  MessageCapture capture;
  std::optional<ErrorData> reported;
  const bool ok = RunStatement(
      [&] {
        XactState* s = nullptr;
        ParallelContext* pcxt = Start("xact.fail", 2, &s);
        WaitForParallelWorkersToFinish(pcxt);  // throws; the abort destroys pcxt
        ADD_FAILURE() << "the workers' ERROR was not re-raised";
      },
      [&](const ErrorData& d) { reported = d; });
  EXPECT_FALSE(ok);
  ASSERT_TRUE(reported.has_value());
  EXPECT_EQ(reported->sqlstate, ERRCODE_DATA_CORRUPTED);
  ASSERT_FALSE(reported->context.empty());
  EXPECT_EQ(reported->context.back().rfind("parallel worker ", 0), 0u) << reported->Format();
  EXPECT_TRUE(capture.LeakTexts().empty()) << capture.All();
  EXPECT_FALSE(IsTransactionState());
  ExpectContextGone();
}

TEST_P(ParallelXactTest, ContextCreatedOutsideATransactionBelongsToNobody) {
  MessageCapture capture;
  ASSERT_EQ(CurrentResourceOwner, nullptr);
  XactState* s = nullptr;
  ParallelContext* pcxt = Start("xact.inspect", 2, &s);
  StartTransactionCommand();
  CommitTransactionCommand();  // not its owner: nothing to release
  EXPECT_TRUE(capture.reports.empty()) << capture.All();
  EXPECT_FALSE(CatchError([&] { WaitForParallelWorkersToFinish(pcxt); }).has_value());
  EXPECT_EQ(s->in_transaction[0].load(), 2);
  DestroyParallelContext(pcxt);
  ExpectContextGone();
}

// --- the worker's transaction -------------------------------------------------------------------

TEST_P(ParallelXactTest, WorkersRunInATransactionOfTheirOwn) {
  // The leader is in a transaction, with a callback of its own.
  StartTransactionCommand();
  BeginInternalSubTransaction("leader's");
  ASSERT_EQ(GetCurrentTransactionNestLevel(), 2);
  XactState* s = nullptr;
  ParallelContext* pcxt = Start("xact.inspect", 3, &s, false);
  RegisterXactCallback(&LeaderCallback, s);  // before the launch: forked workers inherit it
  LaunchParallelWorkers(pcxt);
  ASSERT_EQ(pcxt->nworkers_launched, 3);
  EXPECT_FALSE(CatchError([&] { WaitForParallelWorkersToFinish(pcxt); }).has_value());
  for (int n = 0; n < 3; ++n) {
    EXPECT_EQ(s->in_transaction[n].load(), 2) << "worker " << n << ": IsTransactionState() in the entry";
    EXPECT_EQ(s->nest_level[n].load(), 1) << "worker " << n;
    EXPECT_EQ(s->has_owner[n].load(), 2) << "worker " << n << ": CurrentResourceOwner is the transaction's";
    EXPECT_EQ(s->in_transaction_memory[n].load(), 2) << "worker " << n << ": CurrentMemoryContext";
    EXPECT_EQ(s->events[n].load(), (1u << XACT_EVENT_PRE_COMMIT) | (1u << XACT_EVENT_COMMIT))
        << "worker " << n << ": its transaction commits";
  }
  EXPECT_EQ(s->leader_callback_pid.load(), 0) << "the leader's callback ran in a worker";
  UnregisterXactCallback(&LeaderCallback, s);
  DestroyParallelContext(pcxt);
  // The leader's transaction is untouched.
  EXPECT_EQ(GetCurrentTransactionNestLevel(), 2);
  ReleaseCurrentSubTransaction();
  CommitTransactionCommand();
}

TEST_P(ParallelXactTest, FailingEntryAbortsTheWorkersTransaction) {
  XactState* s = nullptr;
  ParallelContext* pcxt = Start("xact.fail", 1, &s);
  const std::optional<Error> e = CatchError([&] { WaitForParallelWorkersToFinish(pcxt); });
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->message(), "worker 0 fails");
  EXPECT_EQ(s->in_transaction[0].load(), 2);
  EXPECT_EQ(s->events[0].load(), 1u << XACT_EVENT_ABORT);
  DestroyParallelContext(pcxt);
}

TEST_P(ParallelXactTest, ResourceLeakedInAWorkerIsReportedToTheLeader) {
  MessageCapture capture;
  XactState* s = nullptr;
  ParallelContext* pcxt = Start("xact.leak", 2, &s);
  EXPECT_FALSE(CatchError([&] { WaitForParallelWorkersToFinish(pcxt); }).has_value());
  std::vector<pid_t> pids{s->pid[0].load(), s->pid[1].load()};
  DestroyParallelContext(pcxt);
  int from_worker[2] = {0, 0};
  for (const ErrorData& d : capture.reports) {
    ASSERT_EQ(d.elevel, WARNING) << d.Format();
    EXPECT_EQ(d.message.rfind(kLeakPrefix, 0), 0u) << d.Format();
    EXPECT_NE(d.message.find("dynamic shared memory segment"), std::string::npos) << d.Format();
    ASSERT_FALSE(d.context.empty());
    if (d.context.back() == "parallel worker 0") ++from_worker[0];
    if (d.context.back() == "parallel worker 1") ++from_worker[1];
  }
  EXPECT_EQ(from_worker[0], 1) << capture.All();
  EXPECT_EQ(from_worker[1], 1) << capture.All();
  // The leaked segments were released at the workers' commit.
  for (pid_t pid : pids) {
    if (pid == self_) continue;  // thread mode
    EXPECT_TRUE(SegmentNamesOf(pid).empty()) << Join(SegmentNamesOf(pid));
  }
}

// A callback an entry leaves registered ends with its job: a warm worker (a
// pool process, an arena thread) neither runs it in its next job nor keeps
// it in its TopMemoryContext (it once kept one item, 48 bytes, per job).
TEST_P(ParallelXactTest, CallbackLeftRegisteredIsNotKeptByAWarmWorker) {
  if (GetParam() == ParallelLaunchMode::kProcess) GTEST_SKIP() << "a worker process lives one job";
  std::map<std::int32_t, std::vector<std::uint64_t>> bytes;
  for (int round = 0; round < 20; ++round) {
    XactState* s = nullptr;
    ParallelContext* pcxt = Start("xact.forgetful", 2, &s);
    ASSERT_FALSE(CatchError([&] { WaitForParallelWorkersToFinish(pcxt); }).has_value());
    for (int n = 0; n < pcxt->nworkers_launched; ++n) {
      bytes[s->tid[n]].push_back(s->top_bytes[n]);
      EXPECT_EQ(s->events[n].load(), (1u << XACT_EVENT_PRE_COMMIT) | (1u << XACT_EVENT_COMMIT));
    }
    DestroyParallelContext(pcxt);
  }
  for (const auto& [tid, seen] : bytes) {
    if (seen.size() < 3) continue;
    EXPECT_EQ(seen.back(), seen[1]) << "worker " << tid << ": bytes in use in TopMemoryContext at its second job and "
                                    << "at its last (job " << seen.size() << ")";
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, ParallelXactTest, AllLaunchModes(), LaunchModeName);

}  // namespace
}  // namespace grove::test
